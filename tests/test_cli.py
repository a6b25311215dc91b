"""The shared command-line layer (pipelines/cli.py): flags defined once, a flag that is neither the
program's nor Beam's refused with a suggestion before any work, and no secret shown anywhere.

The end-to-end tests run the real commands as subprocesses, several at once (each mostly waits: for a
refused connection's retries, for MLflow's), against real servers that refuse or are down, and read
what a user would see: both output streams, the report JSON, the dead letters and the Aim repo."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import pytest

from pipelines import mlflow_to_aim, tf_to_aim, tf_to_mlflow, wandb_to_aim
from pipelines.common import UsageError
from templates.flex_args import parser_of, template_argv
from tests import servers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = {'tf_to_aim': (tf_to_aim, ['--logdir', '/data/logs', '--repo', '/mnt/aim']),
                'mlflow_to_aim': (mlflow_to_aim, ['--tracking-uri', 'sqlite:////data/m.db', '--repo', '/mnt/aim']),
                # a destination's SQLite directory must exist when flags are parsed (nothing is created)
                'tf_to_mlflow': (tf_to_mlflow, ['--logdir', '/data/logs',
                                                '--tracking-uri', f'sqlite:///{tempfile.gettempdir()}/m.db'])}
# every program, for the checks that need no --experiment flag (wandb_to_aim has none: --wandb-project)
ALL_ENTRY_POINTS = {**ENTRY_POINTS, 'wandb_to_aim': (wandb_to_aim, ['--wandb-dir', '/data/wandb', '--repo', '/mnt/aim'])}
# Every failure must be quick: one attempt of ours, none of MLflow's own HTTP retries.
FAST_FAILURE = {'RUNFERRY_RETRY_ATTEMPTS': '1', 'MLFLOW_HTTP_REQUEST_MAX_RETRIES': '0',
                'MLFLOW_HTTP_REQUEST_TIMEOUT': '10'}


def usage_error(module, argv) -> str:
    with pytest.raises(UsageError) as error:
        module.parse(argv)
    return str(error.value)


# ------------------------------------------------------------------------------------------ flags, unit

@pytest.mark.parametrize('entry', ENTRY_POINTS)
@pytest.mark.parametrize('typo,meant', [('--dryrun', '--dry-run'), ('--experment', '--experiment'),
                                        ('--strikt', '--strict'), ('--reprot=/tmp/r.json', '--report'),
                                        ('--direct_num_worker', '--direct_num_workers'), ('--regoin', '--region'),
                                        ('--temp-location', '--temp_location')])
def test_unknown_flag_is_refused_with_a_suggestion(entry, typo, meant):
    module, base = ENTRY_POINTS[entry]
    message = usage_error(module, [*base, typo, 'x'] if '=' not in typo else [*base, typo])
    name = typo.split('=')[0]
    assert message == f'unknown flag {name}: neither a flag of this program nor a Beam option; did you mean {meant}?'


@pytest.mark.parametrize('entry', ALL_ENTRY_POINTS)
def test_a_flag_prefix_is_not_taken_for_the_flag(entry):
    """argparse's default would read ``--stric`` as ``--strict`` and ``--dry`` as ``--dry-run``."""
    module, base = ALL_ENTRY_POINTS[entry]
    assert usage_error(module, [*base, '--stric']).endswith('did you mean --strict?')
    assert usage_error(module, [*base, '--dry']).startswith('unknown flag --dry: ')


def test_falt_suggests_flat_where_there_is_one():
    assert usage_error(tf_to_aim, [*ENTRY_POINTS['tf_to_aim'][1], '--falt']).endswith('did you mean --flat?')
    # mlflow_to_aim has no --flat and nothing close: the flag is named, nothing is made up
    assert usage_error(mlflow_to_aim, [*ENTRY_POINTS['mlflow_to_aim'][1], '--falt']) == \
        'unknown flag --falt: neither a flag of this program nor a Beam option'


@pytest.mark.parametrize('entry', ALL_ENTRY_POINTS)
def test_beam_and_runner_flags_pass_in_both_forms(entry):
    module, base = ALL_ENTRY_POINTS[entry]
    beam_args = ['--runner', 'DirectRunner', '--direct_num_workers', '2', '--direct_running_mode=multi_processing',
                 '--project=p', '--region', 'us-central1', '--temp_location=gs://b/tmp', '--staging_location',
                 'gs://b/staging', '--setup_file=./setup.py', '--sdk_container_image', 'gcr.io/p/img:1',
                 '--max_num_workers=20', '--experiments=use_runner_v2', '--save_main_session',
                 '--default_sdk_harness_log_level=ERROR', '--job_name', 'backfill', '--labels', 'team=ml',
                 '--flink_master=localhost:8081', '--environment_type=LOOPBACK', '--job_endpoint', 'localhost:8099']
    _, pipeline_args = module.parse([*base, *beam_args])
    assert pipeline_args == beam_args


def test_a_runners_own_options_are_known_once_its_module_is_loaded():
    """Beam registers a runner's options when its module loads (its Dask runner does); --runner loads it
    before the check, as Beam does before it parses."""
    assert 'tests.custom_runner' not in sys.modules
    _, pipeline_args = tf_to_aim.parse([*ENTRY_POINTS['tf_to_aim'][1], '--runner', 'tests.custom_runner.CustomRunner',
                                        '--custom_cluster_address', 'localhost:8786'])
    assert pipeline_args[-2:] == ['--custom_cluster_address', 'localhost:8786']


def test_a_beam_flag_with_a_bad_value_is_refused():
    message = usage_error(tf_to_aim, [*ENTRY_POINTS['tf_to_aim'][1], '--direct_num_workers', 'two'])
    assert '--direct_num_workers' in message and "'two'" in message


def test_a_stray_value_is_refused():
    message = usage_error(tf_to_aim, [*ENTRY_POINTS['tf_to_aim'][1], '--flat', 'yes'])
    assert message == "unexpected argument 'yes' (every value follows its flag)"


def test_the_refusal_names_the_flag_never_its_value():
    message = usage_error(mlflow_to_aim, ['--repo', 'r', '--tracking_url=http://alice:S3CRETpw@host/'])
    assert message.startswith('unknown flag --tracking_url:') and 'S3CRET' not in message
    assert message.endswith('did you mean --tracking-uri?')


def test_secrets_of_beam_flags_are_remembered(monkeypatch):
    from connectors import redact

    monkeypatch.setattr(redact, '_remembered', set())
    tf_to_aim.parse([*ENTRY_POINTS['tf_to_aim'][1], '--s3_secret_access_key', 'wJalrBEAMsecret',
                     '--s3_session_token=BEAMtoken99', '--s3_endpoint_url', 'http://u:BEAMpw77@minio:9000',
                     '--s3_region_name', 'eu-west-1'])
    assert {'wJalrBEAMsecret', 'BEAMtoken99', 'BEAMpw77'} <= redact.remembered()
    assert 'eu-west-1' not in redact.remembered()


def test_shared_flags_are_defined_once():
    def shared(parser):
        return {a.dest: (tuple(a.option_strings), a.required, a.nargs, a.default) for a in parser._actions
                if a.dest in ('repo', 'dry_run', 'skipped', 'strict', 'report')}

    tf, ml = shared(tf_to_aim.make_parser()), shared(mlflow_to_aim.make_parser())
    assert len(tf) == 5 and tf == ml


@pytest.mark.parametrize('options', ['{"secret": "S3SECRETvalue88", key: AKIAKEYSECRET77}', '["S3SECRETvalue88"]',
                                     '"S3SECRETvalue88"'])
def test_storage_options_that_are_no_json_object_are_refused_without_showing_them(options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tf_to_aim.run(['--logdir', 's3://b/logs', '--repo', 'r', '--storage-options', options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('tf_to_aim: error: --storage-options ')
    assert 'S3SECRET' not in err and 'AKIAKEY' not in err


def test_dataflow_launcher_options_pass_the_check():
    """What Dataflow's Flex Template launcher appends to the template parameters (all Beam options)."""
    launcher = ['--runner=DataflowRunner', '--project=my-project', '--region=us-central1',
                '--staging_location=gs://b/staging', '--temp_location=gs://b/temp', '--job_name=runferry-1',
                '--setup_file=/template/setup.py', '--sdk_container_image=gcr.io/p/runferry:1',
                '--service_account_email=sa@p.iam.gserviceaccount.com', '--max_num_workers=50']
    argv = template_argv(['--logdir=gs://b/logs', '--repo=aim://10.0.0.5:53800', '--flat=true', *launcher],
                         parser_of(tf_to_aim))
    known, pipeline_args = tf_to_aim.parse(argv)
    assert known.flat and pipeline_args == launcher


# --------------------------------------------------------------------------------------- subprocesses

def run_all(commands: Dict[str, List[str]], env: Dict[str, str],
            timeout: float = 400) -> Dict[str, subprocess.CompletedProcess]:
    """Start every command at once, then wait for each (bounded): {name: finished process}."""
    started = {name: subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
               for name, argv in commands.items()}
    finished = {}
    try:
        for name, process in started.items():
            out, err = process.communicate(timeout=timeout)
            finished[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return finished


def command(entry: str, *args: str) -> List[str]:
    return [sys.executable, '-m', f'pipelines.{entry}', *args]


@pytest.fixture(scope='module')
def small_mlflow_store(tmp_path_factory):
    """A SQLite MLflow store with one experiment of two runs, written by MLflow's client."""
    from mlflow import MlflowClient

    from samples.mlflow_store import log_many_runs

    root = tmp_path_factory.mktemp('mlflow-store')
    uri = f'sqlite:///{root}/mlflow.db'
    client = MlflowClient(uri)
    experiment = client.create_experiment('small', artifact_location=f'file://{root}/artifacts')
    log_many_runs(client, experiment, 2, prefix='small')
    return uri


def listing(directory) -> List[str]:
    return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, files in os.walk(directory) for f in files)


@pytest.mark.slow
def test_typos_stop_each_entry_point_before_any_work(seed_logdir, small_mlflow_store, tmp_path):
    """Without the check, Beam drops ``--dryrun`` and the command converts (exit 0, a repo written)."""
    def arguments(entry: str, name: str) -> List[str]:
        aim = ['--repo', str(tmp_path / name / 'aim')]
        return {'tf_to_aim': ['--logdir', seed_logdir[0], *aim],
                'mlflow_to_aim': ['--tracking-uri', small_mlflow_store, *aim],
                'tf_to_mlflow': ['--logdir', seed_logdir[0], '--tracking-uri', f'sqlite:///{tmp_path}/{name}/m.db'],
                'wandb_to_aim': ['--wandb-dir', seed_logdir[0], *aim]}[entry]

    suggestions = {'--dryrun': '--dry-run', '--falt': '--flat', '--experment': '--experiment'}
    # what each program can suggest: the flags it has (wandb_to_aim has neither --flat nor --experiment)
    suggested = {'tf_to_aim': set(suggestions), 'tf_to_mlflow': set(suggestions),
                 'mlflow_to_aim': {'--dryrun', '--experment'}, 'wandb_to_aim': {'--dryrun'}}
    commands = {}
    for entry in suggested:
        for typo in suggestions:
            name = f'{entry}{typo}'
            commands[name] = command(entry, *arguments(entry, name), typo,
                                     *(['x'] if typo == '--experment' else []),
                                     '--skipped', str(tmp_path / name / 'skipped.jsonl'),
                                     '--report', str(tmp_path / name / 'report.json'))
    results = run_all(commands, FAST_FAILURE)
    for name, result in results.items():
        entry, typo = name.split('--', 1)
        typo = '--' + typo
        assert result.returncode == 2, (name, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith(f'{entry}: error: unknown flag {typo}: '), (name, lines[-3:])
        if typo in suggested[entry]:
            assert lines[-1].endswith(f'did you mean {suggestions[typo]}?'), (name, lines[-1])
        assert result.stdout == '', name
    assert listing(tmp_path) == [], 'a refused command left something behind'
    assert sorted(os.listdir(tmp_path)) == [], 'a refused command created a directory'


SECRETS = ('S3CRETpw', 'PGpass99', 'TOKsecret42', 'AKIAKEYSECRET77', 'S3SECRETvalue88', 'SESSIONtok99')


def assert_no_secret(where: str, text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f'{where} shows {leaked}: {text[-3000:]}'


@pytest.mark.slow
def test_secrets_are_never_shown_when_sources_refuse_or_are_down(s3_server, seed_logdir, tmp_path):
    """Each command fails with one line naming the source, masked: an MLflow server and a database where
    nothing listens, moto's S3 without the bucket, an S3 endpoint where nothing listens (the database is
    asked by connectors.sql_store before MLflow's own ~100 s engine loop could start). The commands run at
    once."""
    down = servers.free_port()
    logdir = seed_logdir[0]
    s3_options = {'key': 'AKIAKEYSECRET77', 'secret': 'S3SECRETvalue88', 'token': 'SESSIONtok99',
                  'client_kwargs': {'endpoint_url': s3_server.url}}
    down_options = {**s3_options, 'client_kwargs': {'endpoint_url': f'http://127.0.0.1:{down}'}}
    cases = {
        'basic-auth': command('mlflow_to_aim', '--tracking-uri', f'http://alice:S3CRETpw@127.0.0.1:{down}/'),
        'postgresql': command('mlflow_to_aim', '--tracking-uri', f'postgresql://bob:PGpass99@127.0.0.1:{down}/mlflow'),
        'token-query': command('mlflow_to_aim', '--tracking-uri', f'http://127.0.0.1:{down}/?token=TOKsecret42'),
        's3-wrong-bucket': command('tf_to_aim', '--logdir', 's3://no-such-bucket-here/logs',
                                   '--storage-options', json.dumps(s3_options)),
        's3-wrong-endpoint': command('tf_to_aim', '--logdir', 's3://runferry-logs/logs',
                                     '--storage-options', json.dumps(down_options)),
        # the MLflow destination's store, and the W&B source's bucket
        'to-basic-auth': command('tf_to_mlflow', '--logdir', logdir,
                                 '--tracking-uri', f'http://alice:S3CRETpw@127.0.0.1:{down}/'),
        'to-postgresql': command('tf_to_mlflow', '--logdir', logdir,
                                 '--tracking-uri', f'postgresql://bob:PGpass99@127.0.0.1:{down}/mlflow'),
        'wandb-wrong-endpoint': command('wandb_to_aim', '--wandb-dir', 's3://runferry-logs/wandb',
                                        '--storage-options', json.dumps(down_options)),
    }
    commands = {name: [*argv, *([] if 'tf_to_mlflow' in ' '.join(argv) else ['--repo', str(tmp_path / name / 'aim')]),
                       '--skipped', str(tmp_path / name / 's.jsonl'), '--report', str(tmp_path / name / 'report.json')]
                for name, argv in cases.items()}
    env = {**FAST_FAILURE, **{k: v for k, v in servers.S3_ENV.items() if k == 'AWS_DEFAULT_REGION'}}
    results = run_all(commands, env, timeout=400)
    for name, result in results.items():
        assert result.returncode == 2, (name, result.returncode, result.stderr[-2000:])
        last = result.stderr.strip().splitlines()[-1]
        assert ': error: ' in last, (name, last)
        assert_no_secret(f'{name} stdout', result.stdout)
        assert_no_secret(f'{name} stderr', result.stderr)
    assert 'http://alice:***@127.0.0.1' in results['basic-auth'].stderr.splitlines()[-1]
    assert f'postgresql://bob:***@127.0.0.1:{down}/mlflow' in results['postgresql'].stderr.splitlines()[-1]
    assert 'token=***' in results['token-query'].stderr.splitlines()[-1]
    assert 'no-such-bucket-here' in results['s3-wrong-bucket'].stderr.splitlines()[-1]
    assert 'http://alice:***@127.0.0.1' in results['to-basic-auth'].stderr.splitlines()[-1]
    assert f'postgresql://bob:***@127.0.0.1:{down}/mlflow' in results['to-postgresql'].stderr.splitlines()[-1]
    assert listing(tmp_path) == []


@contextlib.contextmanager
def http_logdir(root: str):
    """The logdir served by Python's own HTTP server (directory listings as HTML, which fsspec's HTTP
    filesystem walks); it ignores the basic-auth credentials a client sends."""
    port = servers.free_port()
    process = subprocess.Popen([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1'],
                               cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not servers._answers(f'http://127.0.0.1:{port}/'):
            assert process.poll() is None and time.monotonic() < deadline, 'http.server did not start'
            time.sleep(0.1)
        yield port
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_secrets_never_reach_the_report_dead_letters_or_aim(seed_logdir, tmp_path):
    """A conversion that works, from a logdir URL with a password, with a secret header in the storage
    options and dead letters to write (the seed logdir's unorganized files): the secret is in no output
    stream, report, dead letter, Aim attribute or experiment name, nor anywhere in the repo's files."""
    from mlflow import MlflowClient

    from samples.mlflow_store import log_rich_run, scratch_dir
    from tests.readback import read_runs

    logdir = str(tmp_path / 'logs')
    shutil.copytree(seed_logdir[0], logdir)
    options = json.dumps({'client_kwargs': {'headers': {'X-Auth-Token': 'TOKsecret42'}}})
    with scratch_dir() as store, servers.mlflow_server(store) as mlflow_server, http_logdir(logdir) as port:
        client = MlflowClient(mlflow_server.url)
        log_rich_run(client, client.create_experiment('secretive'), 'rich', salt=5)  # a skipped artifact in it
        served = mlflow_server.url.replace('http://', 'http://alice:S3CRETpw@')
        commands = {
            'tf_to_aim': command('tf_to_aim', '--logdir', f'http://alice:S3CRETpw@127.0.0.1:{port}/',
                                 '--storage-options', options, '--direct_num_workers', '2',
                                 '--direct_running_mode', 'multi_processing'),
            'mlflow_to_aim': command('mlflow_to_aim', '--tracking-uri', served),
            'mlflow_to_aim-dry-run': command('mlflow_to_aim', '--tracking-uri', served, '--dry-run'),
        }
        outputs = {name: {'repo': str(tmp_path / name / 'aim'), 'skipped': str(tmp_path / name / 'skipped.jsonl'),
                          'report': str(tmp_path / name / 'report.json')} for name in commands}
        results = run_all({name: [*argv, '--repo', outputs[name]['repo'], '--skipped', outputs[name]['skipped'],
                                  '--report', outputs[name]['report']] for name, argv in commands.items()},
                          {'RUNFERRY_RETRY_ATTEMPTS': '2'})
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr[-3000:])
        assert_no_secret(f'{name} stdout', result.stdout)
        assert_no_secret(f'{name} stderr', result.stderr)
    assert 'Plan for http://alice:***@127.0.0.1' in results['mlflow_to_aim-dry-run'].stdout
    for name in ('tf_to_aim', 'mlflow_to_aim'):
        paths = outputs[name]
        for kind in ('report', 'skipped'):
            with open(paths[kind]) as text:
                content = text.read()
            assert content.strip(), f'{name}: no {kind} written'
            assert_no_secret(f'{name} {kind}', content)
        runs = read_runs(paths['repo'])
        assert runs, name
        assert_no_secret(f'{name} Aim runs', json.dumps(runs, default=str))
        for directory, _, files in os.walk(paths['repo']):
            for file in files:
                with open(os.path.join(directory, file), 'rb') as data:
                    assert not any(s.encode() in data.read() for s in SECRETS), (name, file)
    tf_runs = read_runs(outputs['tf_to_aim']['repo'])
    assert {r['attributes']['tensorboard_logdir'] for r in tf_runs.values()} == \
        {f'http://alice:***@127.0.0.1:{port}/{run}' for run in ('run_1', 'group_1/run_2', 'group_1/run_3')}
    assert {r['experiment'] for r in tf_runs.values()} == {f'127.0.0.1:{port}'}
    with open(outputs['tf_to_aim']['skipped']) as lines:
        sources = sorted(json.loads(line)['source'] for line in lines)
    assert sources and all(s.startswith(f'http://alice:***@127.0.0.1:{port}/') for s in sources)
