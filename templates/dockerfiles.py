"""Write each template's Dockerfile from one text: the templates differ only by their name.

    .venv/bin/python -m templates.dockerfiles          # rewrite templates/*/Dockerfile
    .venv/bin/python -m templates.dockerfiles --check  # exit 1 if one differs from what it would be

A new template is a folder with its ``metadata.json`` (and ``launcher.py``, ``extras`` where needed); this
writes its Dockerfile, ``templates.pin_requirements`` its requirements.txt, and ``tests/test_templates.py``
checks both are up to date.
"""
from __future__ import annotations

import argparse
import os
import sys

from templates.pin_requirements import ROOT, TEMPLATES

__all__ = ['DOCKERFILE', 'render', 'main']

# every template's Dockerfile, ``{name}`` standing for the template's name
DOCKERFILE = """# runferry {name}: one image that is both the Flex Template image (the launcher runs launcher.py in it)
# and the workers' SDK container (sdk_container_image), so submission and workers have the same code and
# the same packages. Build it from the repository root (it copies the runferry package):
#
#   docker build -f templates/{name}/Dockerfile -t IMAGE .
#
# The Beam version of the SDK image below is setup.py's BEAM pin and requirements.txt's apache-beam pin
# (tests/test_templates.py checks that the three agree).

# Only the Flex Template launcher binary is taken from this image.
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:20230622_RC00 AS launcher

FROM apache/beam_python3.11_sdk:2.77.0

COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

ARG WORKDIR=/template
WORKDIR ${WORKDIR}

# Every package pinned (python -m templates.pin_requirements); installed first so code edits reuse the layer.
COPY templates/{name}/requirements.txt requirements.txt
RUN pip install --no-cache-dir -r requirements.txt

COPY setup.py constraints.txt ./
COPY runmodel runmodel
COPY connectors connectors
COPY transforms transforms
COPY pipelines pipelines
COPY samples samples
COPY templates/__init__.py templates/flex_args.py templates/
COPY templates/{name}/launcher.py templates/{name}/metadata.json templates/{name}/

# runferry itself, without touching the pinned dependencies; pip check fails the build on a conflict
# between our pins and the packages the Beam SDK image ships for apache-beam[gcp].
RUN pip install --no-cache-dir --no-deps . && pip check

# The launcher runs this file with the template parameters as --name=value arguments.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/templates/{name}/launcher.py"
# ...and passes --setup_file, so workers started from another image still get the same runferry code.
ENV FLEX_TEMPLATE_PYTHON_SETUP_FILE="${WORKDIR}/setup.py"

# As an SDK container image, the workers start Beam's boot binary.
ENTRYPOINT ["/opt/apache/beam/boot"]
"""


def render(name: str) -> str:
    """The Dockerfile of the template ``name``."""
    return DOCKERFILE.replace('{name}', name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m templates.dockerfiles', description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true', help='exit 1 if a Dockerfile is out of date')
    args = parser.parse_args(argv)
    stale = []
    for name in TEMPLATES:
        path = os.path.join(ROOT, 'templates', name, 'Dockerfile')
        current = open(path).read() if os.path.exists(path) else None
        if current == render(name):
            continue
        stale.append(path)
        if not args.check:
            with open(path, 'w') as out:
                out.write(render(name))
    for path in stale:
        print(f'{"out of date" if args.check else "written"}: {os.path.relpath(path, ROOT)}', file=sys.stderr)
    return 1 if (args.check and stale) else 0


if __name__ == '__main__':
    sys.exit(main())
