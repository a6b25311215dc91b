"""Shared pytest fixtures. Servers are session-scoped (started once, stopped at the end, even on failure)."""
from __future__ import annotations

import importlib.util
import os

import pytest

from tests import servers


@pytest.fixture(scope='session')
def s3_server():
    """moto's S3 server on 127.0.0.1; ``.env`` is what a client process needs (endpoint, dummy keys)."""
    with servers.moto_s3() as server:
        yield server


@pytest.fixture(scope='session')
def gcs_server():
    """A GCS emulator on 127.0.0.1; ``.env`` holds ``STORAGE_EMULATOR_HOST``. Clients need token="anon"."""
    with servers.gcs_emulator() as server:
        yield server


@pytest.fixture(scope='session')
def aim_server(tmp_path_factory):
    """``aim server`` on 127.0.0.1 over a fresh local repo: ``.url`` is ``aim://…``, ``.repo`` its path."""
    repo = str(tmp_path_factory.mktemp('aim-server') / 'repo')
    with servers.aim_server(repo) as server:
        server.repo = repo
        yield server


@pytest.fixture(scope='session')
def postgres_server():
    """A PostgreSQL 15 cluster on 127.0.0.1 in a temp dir; ``.url`` is an MLflow tracking URI
    (``postgresql+psycopg://mlflow@127.0.0.1:PORT/postgres``)."""
    with servers.postgres_server() as server:
        yield server


@pytest.fixture(scope='session')
def mlflow_http():
    """One ``mlflow server`` for the session (SQLite in memory, artifacts proxied by the server): a start
    costs many seconds, minutes under load. Tests sharing it give their experiments names of their own
    and convert only those (``--experiment``), never every experiment on the server."""
    from samples.mlflow_store import scratch_dir

    with scratch_dir() as root, servers.mlflow_server(root, timeout=300) as server:
        yield server


@pytest.fixture(scope='session')
def s3fs_client(s3_server):
    """An s3fs filesystem on the moto server, for uploading test data."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=s3_server.url, key=servers.S3_ENV['AWS_ACCESS_KEY_ID'],
                             secret=servers.S3_ENV['AWS_SECRET_ACCESS_KEY'], skip_instance_cache=True)


@pytest.fixture(scope='session')
def gcsfs_client(gcs_server):
    """A gcsfs filesystem on the emulator, for uploading test data."""
    for key, value in servers.GCS_ENV.items():
        os.environ.setdefault(key, value)  # gcsfs reads it at import
    import gcsfs

    if gcsfs.GCSFileSystem.__module__ != 'gcsfs.core':
        pytest.fail('gcsfs was imported before GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false was set')
    return gcsfs.GCSFileSystem(endpoint_url=gcs_server.url, token='anon', skip_instance_cache=True)


@pytest.fixture(scope='session')
def seed_logdir(tmp_path_factory):
    """The converter guide's logdir (3 runs, contexts, unorganized files) and what the writers wrote."""
    from samples.tensorboard_logs import write_seed_logdir

    root = str(tmp_path_factory.mktemp('seed') / 'logs')
    return root, write_seed_logdir(root, steps=40)


@pytest.fixture(scope='session')
def eight_run_logdir(tmp_path_factory):
    """The seed logdir plus five more runs (8 in all), for concurrent writers; and what was written."""
    from samples.tensorboard_logs import write_seed_logdir, write_tbx

    root = str(tmp_path_factory.mktemp('eight') / 'logs')
    expected = write_seed_logdir(root, steps=30)
    for i in range(5):
        run = f'run_extra_{i}'  # at depth 1, a run (deeper, it would be a context of its parent)
        expected[(run, None)] = write_tbx(os.path.join(root, run), ('loss', 'acc'), 30, salt=10 + i,
                                          start_time=1_700_100_000.0 + 1000 * i)
    return root, expected


@pytest.fixture(scope='session')
def twenty_four_runs(tmp_path_factory):
    """24 runs ``run_NN``, each a ``train`` context (loss, acc: 1,500 steps) and a ``validate`` one (loss:
    300 steps), 79,200 points: a conversion long enough to be stopped mid-way (test_kill_rerun,
    test_full_disk). Written once a session (tensorboardX wrote about 6,000 points a second here). Returns
    ``copy(logdir, count=None)``: puts copies of the first ``count`` runs (all by default) in ``logdir``
    and returns what they hold, by (run, context)."""
    import shutil

    from samples.tensorboard_logs import write_tbx

    root = str(tmp_path_factory.mktemp('twenty_four') / 'logs')
    written = {}
    for i in range(24):
        run, start = f'run_{i:02d}', 1_700_000_000.0 + 1000 * i
        written[(run, 'train')] = write_tbx(os.path.join(root, run, 'train'), ('loss', 'acc'), 1500, salt=i,
                                            start_time=start)
        written[(run, 'validate')] = write_tbx(os.path.join(root, run, 'validate'), ('loss',), 300, salt=i,
                                               start_time=start)

    def copy(logdir, count=None):
        names = sorted({run for run, _ in written})[:count]
        for name in names:
            shutil.copytree(os.path.join(root, name), os.path.join(str(logdir), name))
        return {key: points for key, points in written.items() if key[0] in names}

    return copy


@pytest.fixture(scope='session')
def tensorflow_zoo(tmp_path_factory):
    """The directory ``samples.tensorflow_zoo`` filled: a Keras run and TF1/TF2 histograms written by
    TensorFlow itself, in one subprocess (TensorFlow's import, ~20 s, is paid once a session and stays
    out of the test process)."""
    import subprocess
    import sys

    if importlib.util.find_spec('tensorflow') is None:
        pytest.fail('tensorflow-cpu is a dev dependency (setup.py dev extra): install it to run this test')
    root = tmp_path_factory.mktemp('tensorflow_zoo')
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    written = subprocess.run([sys.executable, '-m', 'samples.tensorflow_zoo', str(root)], cwd=repo_root,
                             env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}, capture_output=True, text=True,
                             timeout=300)
    assert written.returncode == 0, written.stderr[-3000:]
    return root


@pytest.fixture(scope='session')
def wandb_runs(tmp_path_factory):
    """W&B runs written offline by the real ``wandb`` package (``tests/wandb_runs.py``): (root, what was logged)."""
    from tests.wandb_runs import write_wandb_runs

    root = str(tmp_path_factory.mktemp('wandb'))
    return root, write_wandb_runs(root)


@pytest.fixture
def tf_to_aim(tmp_path):
    """Runs ``python -m pipelines.tf_to_aim ARGS`` in a subprocess (as a user would) with extra env vars;
    2 DirectRunner worker processes unless ``workers=1``. Dead letters go to the test's temp dir."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(*args, env=None, workers=2, timeout=300):
        argv = [sys.executable, '-m', 'pipelines.tf_to_aim', *args]
        if '--skipped' not in args:
            argv += ['--skipped', str(tmp_path / 'skipped.jsonl')]
        if workers > 1:
            argv += ['--direct_num_workers', str(workers), '--direct_running_mode', 'multi_processing']
        return subprocess.run(argv, cwd=root, env={**os.environ, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)

    return run
