"""Dataflow Flex Template arguments → the pipeline's own command line.

Dataflow's launcher starts ``FLEX_TEMPLATE_PYTHON_PY_FILE`` with every template parameter as
``--name=value`` and every value a string, followed by the Beam options it adds itself
(``--runner=DataflowRunner``, ``--project=…``, ``--setup_file=…``). The pipelines' switches are argparse
``store_true`` flags, which reject ``--flat=true``; this module turns ``--flat=true`` into ``--flat`` and
drops ``--flat=false``, drops optional parameters left empty, and passes everything else on untouched.
"""
from __future__ import annotations

import argparse
import logging
from types import ModuleType
from typing import List, Set

from pipelines.common import UsageError, fail_usage

__all__ = ['parser_of', 'switches', 'template_argv', 'launch']

log = logging.getLogger('flex_template')


class _Captured(Exception):
    pass


def parser_of(module: ModuleType) -> argparse.ArgumentParser:
    """The argparse parser behind ``module.parse``: ``module.make_parser()`` where the module has one,
    otherwise the parser caught at the moment ``parse`` hands it the arguments (nothing is parsed)."""
    if hasattr(module, 'make_parser'):
        return module.make_parser()
    original = argparse.ArgumentParser.parse_known_args

    def grab(self, *args, **kwargs):
        raise _Captured(self)

    argparse.ArgumentParser.parse_known_args = grab  # parse_args goes through parse_known_args too
    try:
        module.parse([])
    except _Captured as captured:
        return captured.args[0]
    finally:
        argparse.ArgumentParser.parse_known_args = original
    raise RuntimeError(f'{module.__name__}.parse() does not use argparse')


def _options(parser: argparse.ArgumentParser, switch: bool) -> Set[str]:
    # argparse has no public list of its actions; _actions is the documented-by-use way in.
    return {option for action in parser._actions if action.option_strings
            and (action.nargs == 0 and action.const is True) == switch and action.dest != 'help'
            and (switch or not action.required) for option in action.option_strings}


def switches(parser: argparse.ArgumentParser) -> Set[str]:
    """The parser's on/off flags (``store_true``), every spelling: {'--flat', '--dry-run', '--dry_run', …}."""
    return _options(parser, switch=True)


def template_argv(argv: List[str], parser: argparse.ArgumentParser) -> List[str]:
    """``--name=value`` template arguments → arguments the pipeline's ``parse`` accepts."""
    on_off = switches(parser)
    optional = _options(parser, switch=False)
    out = []
    for arg in argv:
        name, equals, value = arg.partition('=')
        if equals and name in on_off:
            word = value.strip().lower()
            if word == 'true':
                out.append(name)
            elif word != 'false':
                raise UsageError(f'{name} must be true or false, got: {value!r}')
        elif equals and name in optional and not value.strip():
            continue  # an optional template parameter left empty means "not set"
        else:
            out.append(arg)
    return out


def _warn_local_dead_letters(argv: List[str]) -> None:
    """On Dataflow the default dead-letter file would land on one worker's disk and vanish with it."""
    runner = next((a.partition('=')[2] for a in argv if a.startswith('--runner=')), '')
    if runner.lower() in ('dataflowrunner', 'dataflow') and not any(a.startswith('--skipped=') for a in argv):
        log.warning('no skipped parameter: dead letters go to a worker-local file; '
                    'set skipped=gs://BUCKET/PATH.jsonl to keep them')


def launch(module: ModuleType, argv: List[str]) -> int:
    """Translate template arguments and run ``module.run`` — the same code as ``python -m module``."""
    try:
        translated = template_argv(argv, parser_of(module))
    except UsageError as error:
        fail_usage(f'{module.__name__.rpartition(".")[2]} (template)', error)
    _warn_local_dead_letters(translated)
    return module.run(translated)
