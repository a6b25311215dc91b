"""Dataflow Flex Templates: metadata.json against the pipelines' parsers, regexes, pins, launcher end to end.

No Docker engine here: the images are not built. What can be checked without one is: every template
parameter is a flag the pipeline parses to the expected value, every required flag is a parameter, the
regexes accept and reject real examples, the Beam version is one in setup.py / Dockerfile /
requirements.txt, and the launcher (the file Dataflow runs) converts a logdir end to end on DirectRunner.
"""
import importlib
import json
import os
import re
import subprocess
import sys
import time

import pytest

from pipelines import tf_to_aim
from pipelines.common import UsageError
from samples.tensorboard_logs import write_seed_logdir
from templates import pin_requirements
from templates.flex_args import parser_of, switches, template_argv
from tests.readback import assert_same_points, expected_metrics, read_metrics, read_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, 'templates')

try:
    mlflow_to_aim = importlib.import_module('pipelines.mlflow_to_aim')
except ModuleNotFoundError as error:
    if error.name != 'pipelines.mlflow_to_aim':
        raise
    mlflow_to_aim = None
needs_mlflow = pytest.mark.skipif(mlflow_to_aim is None,
                                  reason='pipelines/mlflow_to_aim.py does not exist yet (issue 4)')


TEMPLATE_NAMES = ('mlflow_to_aim', 'tf_to_aim', 'tf_to_mlflow', 'wandb_to_aim')


def test_every_template_directory_is_found():
    from templates.pin_requirements import TEMPLATES, template_extras

    assert TEMPLATES == TEMPLATE_NAMES
    assert template_extras('wandb_to_aim') == ('wandb',) and template_extras('tf_to_aim') == ()


def metadata(template):
    with open(os.path.join(TEMPLATES, template, 'metadata.json')) as f:
        return json.load(f)


def params(template):
    return {p['name']: p for p in metadata(template)['parameters']}


# Per parameter: a template value, the argparse dest it must land in, and the value it must have there.
LANDS = {
    'tf_to_aim': {
        'logdir': ('gs://my-bucket/exp/resnet', 'logdir', 'gs://my-bucket/exp/resnet'),
        'repo': ('gs://my-bucket/aim-repo', 'repo', 'gs://my-bucket/aim-repo'),
        'flat': ('true', 'flat', True),
        'layout': ('tensorboard', 'layout', 'tensorboard'),
        'experiment': ('resnet sweep', 'experiment', 'resnet sweep'),
        'skipped': ('gs://my-bucket/skipped.jsonl', 'skipped', 'gs://my-bucket/skipped.jsonl'),
        'report': ('gs://my-bucket/report.json', 'report', 'gs://my-bucket/report.json'),
        'storage_options': ('{"anon": true}', 'storage_options', {'anon': True}),
        'wait_for_job': ('true', 'wait_for_job', True),
    },
    'tf_to_mlflow': {
        'logdir': ('gs://my-bucket/exp/resnet', 'logdir', 'gs://my-bucket/exp/resnet'),
        'tracking_uri': ('https://mlflow.example.com', 'tracking_uri', 'https://mlflow.example.com'),
        'experiment': ('resnet sweep', 'experiment', 'resnet sweep'),
        'artifact_location': ('gs://my-bucket/mlflow', 'artifact_location', 'gs://my-bucket/mlflow'),
        'flat': ('true', 'flat', True),
        'layout': ('tensorboard', 'layout', 'tensorboard'),
        'skipped': ('gs://my-bucket/skipped.jsonl', 'skipped', 'gs://my-bucket/skipped.jsonl'),
        'report': ('gs://my-bucket/report.json', 'report', 'gs://my-bucket/report.json'),
        'storage_options': ('{"anon": true}', 'storage_options', {'anon': True}),
        'wait_for_job': ('true', 'wait_for_job', True),
    },
    'mlflow_to_aim': {
        'tracking_uri': ('https://mlflow.example.com', 'tracking_uri', 'https://mlflow.example.com'),
        'include_deleted': ('true', 'include_deleted', True),
        'experiment': ('17', 'experiment', None),  # None: accept '17' or ['17'] (append or single)
        'repo': ('/mnt/aim', 'repo', '/mnt/aim'),
        'skipped': ('gs://my-bucket/skipped.jsonl', 'skipped', 'gs://my-bucket/skipped.jsonl'),
        'report': ('gs://my-bucket/report.json', 'report', 'gs://my-bucket/report.json'),
        'wait_for_job': ('true', 'wait_for_job', True),
    },
    'wandb_to_aim': {
        'wandb_dir': ('gs://my-bucket/cluster/wandb', 'wandb_dir', 'gs://my-bucket/cluster/wandb'),
        'repo': ('aim://10.128.0.5:53800', 'repo', 'aim://10.128.0.5:53800'),
        'wandb_project': ('vision', 'wandb_projects', ['vision']),
        'skipped': ('gs://my-bucket/skipped.jsonl', 'skipped', 'gs://my-bucket/skipped.jsonl'),
        'report': ('gs://my-bucket/report.json', 'report', 'gs://my-bucket/report.json'),
        'storage_options': ('{"anon": true}', 'storage_options', {'anon': True}),
        'wait_for_job': ('true', 'wait_for_job', True),
    },
}
# The smallest template argv that satisfies each pipeline's required flags.
BASE = {
    'tf_to_aim': {'logdir': '/data/logs', 'repo': '/mnt/aim'},
    'mlflow_to_aim': {'tracking_uri': 'sqlite:////data/mlflow.db', 'repo': '/mnt/aim'},
    'wandb_to_aim': {'wandb_dir': '/data/wandb', 'repo': '/mnt/aim'},
    'tf_to_mlflow': {'logdir': '/data/logs', 'tracking_uri': 'https://mlflow.example.com'},
}
# Good and bad values for every parameter's regexes.
EXAMPLES = {
    'logdir': (['gs://my-bucket/exp/resnet', 's3://ml-logs/2024/run-1/', 'gs://b-1', '/mnt/logs',
                '/mnt/logs with space/x'],
               ['logs', './logs', '~/logs', 'gs://', 'gs:///x', 'gs://My_Bucket/x', 'http://host/logs',
                'file:///x', '', '/a\nb', 'gs://b/x\n--flat']),
    'repo': (['gs://my-bucket/aim-repo', 's3://ml-runs/aim/', 'aim://127.0.0.1:53800',
              'aim://aim-server.internal:43800', 'aim://10.0.0.5:53800/', '/mnt/aim', '/mnt/filestore/aim repo'],
             ['aim://host', 'aim://:53800', 'aim://host:port', 'aim://host:123456', 'aim', 'demo-aim', 'gs://',
              'gs://My_Bucket/aim', 'http://host:53800', '', '/a\nb', 'gs://b/aim\n--flat']),
    'wait_for_job': (['true', 'false'], ['True', 'yes', '1', '', 'true ']),
    'flat': (['true', 'false'], ['True', 'yes', '1', '', 'true ']),
    'include_deleted': (['true', 'false'], ['True', 'yes', '1', '', 'false ']),
    'layout': (['aim', 'flat', 'tensorboard'], ['Aim', 'nested', '', 'tensorboard ', 'aim\nflat']),
    'experiment': (['resnet', 'resnet sweep 3', '17', 'a/b'], ['', ' lead', 'trail ', 'a\nb']),
    'wandb_dir': (['gs://my-bucket/cluster/wandb', 's3://ml-logs/wandb/', '/mnt/home/me/wandb'],
                  ['wandb', './wandb', '~/wandb', 'gs://', 'http://host/wandb', '', '/a\nb']),
    'wandb_project': (['vision', 'my project', 'team-2'], ['', ' lead', 'trail ', 'a\nb']),
    'skipped': (['gs://my-bucket/runferry/skipped.jsonl', 's3://bkt/x.jsonl', '/mnt/aim.skipped.jsonl'],
                ['skipped.jsonl', 'gs://', '', 'aim://h:1']),
    'report': (['gs://my-bucket/runferry/report.json', '/mnt/aim/report.json'], ['report.json', 'gs://', '']),
    'storage_options': (['{"anon": true}', '{}', '{"endpoint_url": "http://minio:9000", "key": "k"}'],
                        ['anon=true', '[1, 2]', '"x"', '', '{"a": 1}\n{"b": 2}']),
    'artifact_location': (['gs://my-bucket/mlflow-artifacts', 's3://bkt/a', '/mnt/artifacts'],
                          ['artifacts', './a', 'gs://', '', '/a\nb']),
    'tracking_uri': (['https://mlflow.example.com', 'http://10.0.0.3:5000', 'http://mlflow:5000/prefix',
                      'postgresql://user@10.0.0.3/mlflow', 'postgresql+psycopg2://u:p@db:5432/mlflow',
                      'sqlite:////mnt/mlflow/mlflow.db', 'file:///mnt/mlruns', '/mnt/mlruns'],
                     ['mlruns', './mlruns', 'ftp://host/x', 'https://', 'sqlite://', '', 'http://h x']),
}


def template_args(values):
    return [f'--{name}={value}' for name, value in values.items()]


# ---------------------------------------------------------------------------------------------- metadata

@pytest.mark.parametrize('template', TEMPLATE_NAMES)
def test_metadata_has_every_field(template):
    doc = metadata(template)
    assert doc['name'] and doc['description']
    names = [p['name'] for p in doc['parameters']]
    assert len(names) == len(set(names))
    for p in doc['parameters']:
        assert re.fullmatch(r'[a-z][a-z0-9_]*', p['name']), p['name']
        assert p['label'] and len(p['helpText']) > 30, p['name']
        assert isinstance(p['isOptional'], bool), p['name']
        assert p['regexes'] and all(isinstance(rx, str) for rx in p['regexes']), p['name']
        for rx in p['regexes']:
            re.compile(rx)
    assert sorted(names) == sorted(LANDS[template]), 'a parameter was added or removed: update LANDS'


@pytest.mark.parametrize('template,name', [(t, n) for t in TEMPLATE_NAMES for n in params(t)])
def test_regexes_accept_good_values_and_reject_bad_ones(template, name):
    regexes = params(template)[name]['regexes']
    good, bad = EXAMPLES[name]

    def accepted(value):
        return all(re.fullmatch(rx, value) for rx in regexes)

    assert [v for v in good if not accepted(v)] == []
    assert [v for v in bad if accepted(v)] == []
    assert accepted(LANDS[template][name][0])  # the value used below for parse() is a valid one


# -------------------------------------------------------------------- metadata against the pipelines' flags

def check_parameters_land(module, template):
    for name, (value, dest, expected) in LANDS[template].items():
        values = {**BASE[template], name: value}
        known, pipeline_args = module.parse(template_argv(template_args(values), parser_of(module)))
        assert pipeline_args == [], f'--{name} was not taken by {module.__name__}.parse'
        got = getattr(known, dest)
        if expected is None:
            assert got in (value, [value]), (name, got)
        else:
            assert got == expected, (name, got)


def check_required_flags_are_parameters(module, template):
    declared = params(template)
    for action in parser_of(module)._actions:
        if action.required and action.option_strings:
            spellings = {opt.lstrip('-') for opt in action.option_strings}
            names = spellings & set(declared)
            assert names, f'required {action.option_strings} is no template parameter'
            assert all(not declared[n]['isOptional'] for n in names), names
    for name, p in declared.items():  # and every switch is a true/false parameter
        if f'--{name}' in switches(parser_of(module)):
            assert p['regexes'] == ['^(true|false)$'], name


def test_tf_template_parameters_are_flags_of_the_pipeline():
    check_parameters_land(tf_to_aim, 'tf_to_aim')


def test_tf_required_flags_are_template_parameters():
    check_required_flags_are_parameters(tf_to_aim, 'tf_to_aim')
    assert {'logdir', 'repo'} <= {n for n, p in params('tf_to_aim').items() if not p['isOptional']}


@needs_mlflow
def test_mlflow_template_parameters_are_flags_of_the_pipeline():
    check_parameters_land(mlflow_to_aim, 'mlflow_to_aim')


@needs_mlflow
def test_mlflow_required_flags_are_template_parameters():
    check_required_flags_are_parameters(mlflow_to_aim, 'mlflow_to_aim')


def test_wandb_template_parameters_are_flags_of_the_pipeline():
    from pipelines import wandb_to_aim

    check_parameters_land(wandb_to_aim, 'wandb_to_aim')
    check_required_flags_are_parameters(wandb_to_aim, 'wandb_to_aim')


def test_tf_to_mlflow_template_parameters_are_flags_of_the_pipeline():
    from pipelines import tf_to_mlflow

    check_parameters_land(tf_to_mlflow, 'tf_to_mlflow')
    check_required_flags_are_parameters(tf_to_mlflow, 'tf_to_mlflow')
    assert {'logdir', 'tracking_uri'} <= {n for n, p in params('tf_to_mlflow').items() if not p['isOptional']}


def test_template_switches_and_empty_optionals_are_translated():
    parser = parser_of(tf_to_aim)
    beam = ['--runner=DataflowRunner', '--experiments=use_runner_v2', '--project=p']
    argv = template_argv(['--logdir=/l', '--repo=/r', '--flat=true', '--strict=false', '--experiment=',
                          *beam], parser)
    assert argv == ['--logdir=/l', '--repo=/r', '--flat', *beam]
    known, rest = tf_to_aim.parse(argv)
    assert known.flat is True and known.strict is False and known.experiment == 'l' and rest == beam
    with pytest.raises(UsageError, match='--flat must be true or false'):
        template_argv(['--flat=yes'], parser)


def test_parser_is_caught_from_parse_when_a_module_has_no_make_parser():
    class NoAccessor:
        __name__ = 'pipelines.tf_to_aim'
        parse = staticmethod(tf_to_aim.parse)

    caught = parser_of(NoAccessor)
    assert [a.option_strings for a in caught._actions] == \
        [a.option_strings for a in parser_of(tf_to_aim)._actions]


# ------------------------------------------------------------------------------- image and pinned packages

def beam_pins():
    setup = open(os.path.join(ROOT, 'setup.py')).read()
    pins = {'setup.py': re.search(r"""^BEAM = ['"]apache-beam==([\w.]+)['"]""", setup, re.M).group(1)}
    for template in TEMPLATE_NAMES:
        dockerfile = open(os.path.join(TEMPLATES, template, 'Dockerfile')).read()
        sdk = re.findall(r'^FROM apache/beam_python3\.11_sdk:([\w.]+)', dockerfile, re.M)
        assert len(sdk) == 1, f'{template}/Dockerfile: one FROM apache/beam_python3.11_sdk:VERSION'
        pins[f'{template}/Dockerfile'] = sdk[0]
        requirements = open(os.path.join(TEMPLATES, template, 'requirements.txt')).read()
        pins[f'{template}/requirements.txt'] = re.search(r'^apache-beam==([\w.]+)$', requirements, re.M).group(1)
    return pins


def test_beam_version_is_the_same_in_setup_dockerfiles_and_requirements():
    pins = beam_pins()
    assert len(set(pins.values())) == 1, pins


def test_requirements_are_pinned_like_constraints_and_up_to_date():
    constraints = dict(line.strip().split('==') for line in open(os.path.join(ROOT, 'constraints.txt'))
                       if '==' in line)
    constraints = {re.sub(r'[-_.]+', '-', k).lower(): v for k, v in constraints.items()}
    for template in TEMPLATE_NAMES:
        lines = [line.strip() for line in open(os.path.join(TEMPLATES, template, 'requirements.txt'))
                 if line.strip() and not line.startswith('#')]
        pins = dict(line.split('==') for line in lines)
        assert len(pins) == len(lines) and all(re.fullmatch(r'[\w.+-]+', v) for v in pins.values())
        assert {k: v for k, v in pins.items() if constraints.get(k) != v} == {}
        for direct in pin_requirements.setup_requirements():  # every setup.py pin, with the same version
            name, _, version = direct.partition('==')
            assert pins[re.sub(r'\[.*\]', '', name).lower()] == version, direct
    assert pin_requirements.main(['--check']) == 0, 'run: python -m templates.pin_requirements'


def test_every_dockerfile_is_the_one_text_with_its_template_name():
    """A new template is a metadata.json and a launcher; its Dockerfile is generated, never edited."""
    from templates import dockerfiles

    assert dockerfiles.main(['--check']) == 0, 'run: python -m templates.dockerfiles'


@pytest.mark.parametrize('template', TEMPLATE_NAMES)
def test_dockerfile_copies_files_that_exist_and_points_the_launcher_at_them(template):
    dockerfile = open(os.path.join(TEMPLATES, template, 'Dockerfile')).read()
    assert re.search(r'^FROM gcr\.io/dataflow-templates-base/python311-template-launcher-base:\S+ AS launcher$',
                     dockerfile, re.M)
    copied = []
    for line in re.findall(r'^COPY (?!--from)(.+)$', dockerfile, re.M):
        *sources, dest = line.split()
        for source in sources:
            assert os.path.exists(os.path.join(ROOT, source)), source
            copied.append(source)
    env = dict(re.findall(r'^ENV (\w+)="\$\{WORKDIR\}/(\S+)"$', dockerfile, re.M))
    assert env['FLEX_TEMPLATE_PYTHON_PY_FILE'] == f'templates/{template}/launcher.py'
    assert env['FLEX_TEMPLATE_PYTHON_SETUP_FILE'] == 'setup.py'
    assert f'templates/{template}/launcher.py' in copied and 'templates/flex_args.py' in copied
    assert 'setup.py' in copied and {'runmodel', 'connectors', 'transforms', 'pipelines'} <= set(copied)


# ------------------------------------------------------------------------------ launcher, end to end

@pytest.mark.slow
def test_launcher_runs_tf_to_aim_from_template_arguments(tmp_path):
    """The file Dataflow runs, as a script from another directory, with template-style arguments."""
    root = tmp_path / 'logs'
    seed = write_seed_logdir(str(root), steps=12, writer='tbx')
    repo, skipped = tmp_path / 'aim', tmp_path / 'dead' / 'skipped.jsonl'
    skipped.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    done = subprocess.run(
        [sys.executable, os.path.join(TEMPLATES, 'tf_to_aim', 'launcher.py'),
         f'--logdir={root}', f'--repo={repo}', '--flat=false', '--experiment=from-template',
         f'--skipped={skipped}', f'--report={tmp_path / "report.json"}', '--storage_options={}',
         '--runner=DirectRunner'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    runs = read_runs(str(repo))
    assert sorted(runs) == ['group_1/run_2', 'group_1/run_3', 'run_1']
    assert {r['experiment'] for r in runs.values()} == {'from-template'}
    metrics, expected = read_metrics(str(repo)), expected_metrics(seed)
    assert {k: len(v) for k, v in metrics.items()} == {k: len(v) for k, v in expected.items()}
    assert_same_points(metrics, expected)
    assert skipped.exists()  # the dead letters went where the skipped parameter said
    report = json.loads((tmp_path / 'report.json').read_text())
    assert report['repo'] == str(repo) and report['skipped_path'] == str(skipped)
    assert report['counters']['runs_written'] == 3
    assert report['counters']['points_written'] == sum(len(v) for v in expected.values())


@pytest.mark.slow
def test_launcher_in_process_flat_switch(tmp_path):
    """``--flat=true`` reaches the pipeline as ``--flat``: every event directory becomes a run."""
    from templates.tf_to_aim import launcher

    root = tmp_path / 'logs'
    write_seed_logdir(str(root), steps=4, writer='tf2')
    repo = tmp_path / 'aim'
    assert launcher.run([f'--logdir={root}', f'--repo={repo}', '--flat=true', '--experiment=',
                         '--runner=DirectRunner']) == 0
    runs = read_runs(str(repo))
    assert sorted(runs) == ['group_1/run_2/train', 'group_1/run_2/validate', 'group_1/run_3', 'run_1']
    assert {r['experiment'] for r in runs.values()} == {'logs'}  # empty experiment = the default


def _ended(pid: int) -> bool:
    """The process ``pid`` has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except OSError:
        return True


@pytest.mark.slow
def test_template_launch_returns_and_the_job_writes_its_report_and_dead_letters_to_the_bucket(
        s3_server, s3fs_client, tmp_path):
    """On a runner that is not the DirectRunner the launcher submits and returns: with a runner whose job
    never ends as far as the launcher can tell (``tests.custom_runner.DetachedRunner``: the job runs in a
    process of its own), it exits 0 with one line naming the job and where its report goes; the job
    then writes the report and the dead letters to S3 itself."""
    import uuid

    root = tmp_path / 'logs'
    seed = write_seed_logdir(str(root), steps=6, writer='tbx')  # its 2 unorganized files are dead letters
    bucket = f'runferry-{uuid.uuid4().hex[:12]}'
    s3fs_client.mkdir(bucket)
    s3fs_client.put(str(root), f'{bucket}/logs', recursive=True)
    repo, out = tmp_path / 'aim', f's3://{bucket}/out'
    env = {**{k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}, **s3_server.env,
           'RUNFERRY_DETACHED_LOG': str(tmp_path / 'job.log')}
    launched = subprocess.run(
        [sys.executable, os.path.join(TEMPLATES, 'tf_to_aim', 'launcher.py'), f'--logdir=s3://{bucket}/logs',
         f'--repo={repo}', f'--skipped={out}/skipped.jsonl', f'--report={out}/report.json', '--wait_for_job=false',
         '--runner=tests.custom_runner.DetachedRunner'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)  # waiting for the job: never ends
    assert launched.returncode == 0, launched.stderr[-3000:]
    (line,) = [line for line in launched.stdout.splitlines() if 'submitted' in line]
    job = int(re.search(r'^tf_to_aim: job (\d+) submitted, not waited for', line).group(1))
    assert f'its report to {out}/report.json and to the job log, and its dead letters to {out}/skipped.jsonl' in line
    assert 'runferry report' not in launched.stdout  # the launcher did not wait to print it

    try:
        for _ in range(600):  # the job, on 2 busy cores: up to 5 minutes
            if _ended(job):
                break
            time.sleep(0.5)
        assert _ended(job), 'the job did not end in 5 minutes'
    finally:
        if not _ended(job):
            os.kill(job, 9)
    job_log = (tmp_path / 'job.log').read_text()
    report = json.loads(s3fs_client.cat(f'{bucket}/out/report.json'))
    points = sum(len(v) for v in expected_metrics(seed).values())
    assert report['counters']['runs_written'] == 3, job_log[-3000:]
    assert report['counters']['points_written'] == points and report['counters']['files_ignored'] == 2
    assert report['skipped_path'] == f'{out}/skipped.jsonl'
    assert report['skipped_by_reason'] == [{'reason': 'unorganized event file', 'kind': 'file', 'items': 2,
                                            'count': 2}]
    letters = [json.loads(line) for line in s3fs_client.cat(f'{bucket}/out/skipped.jsonl').decode().splitlines()]
    assert len(letters) == 2 and all(letter['reason'].startswith('unorganized event file')
                                     and letter['source'].startswith(f's3://{bucket}/logs/') for letter in letters)
    assert sorted(read_runs(str(repo))) == ['group_1/run_2', 'group_1/run_3', 'run_1']
