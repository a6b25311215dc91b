"""How the launcher sets Beam up and ends: the DirectRunner defaults by run count, and the fast exit."""
import gc
import json
import os

import pytest

from pipelines.common import PARALLEL_FROM_RUNS, exit_program, pipeline_options
from transforms.aim_write import in_direct_runner_worker_process

QUIET = ['--default_sdk_harness_log_level=CRITICAL']
PARALLEL = ['--direct_running_mode=multi_processing', f'--direct_num_workers={os.cpu_count() or 1}'] + QUIET


@pytest.mark.parametrize('args, runs, added', [
    ([], PARALLEL_FROM_RUNS, PARALLEL),  # many runs on the default (direct) runner: a worker per core
    (['--runner=DirectRunner'], 5 * PARALLEL_FROM_RUNS, PARALLEL),
    (['--runner', 'direct'], PARALLEL_FROM_RUNS, PARALLEL),
    ([], PARALLEL_FROM_RUNS - 1, QUIET),  # fewer runs: the launcher's own process is faster
    (['--direct_num_workers=3'], PARALLEL_FROM_RUNS, QUIET),  # the user's choice stands
    (['--direct_running_mode=in_memory'], PARALLEL_FROM_RUNS, QUIET),
    (['--runner=DataflowRunner'], PARALLEL_FROM_RUNS, []),  # not the DirectRunner: untouched
    (['--default_sdk_harness_log_level=INFO'], PARALLEL_FROM_RUNS, PARALLEL[:2]),  # the user's log level stands
])
def test_pipeline_options_by_run_count(args, runs, added):
    options = pipeline_options(args, runs=runs)
    assert options._flags == args + added
    if added[:1] == PARALLEL[:1]:
        direct = options.get_all_options()
        assert direct['direct_running_mode'] == 'multi_processing'
        assert direct['direct_num_workers'] == (os.cpu_count() or 1)


def test_exit_program_exits_with_the_status_and_freezes_the_heap():
    assert gc.get_freeze_count() == 0
    try:
        with pytest.raises(SystemExit) as exited:
            exit_program(3)
        assert exited.value.code == 3
        assert gc.get_freeze_count() > 0  # the final collection will not walk these objects
    finally:
        gc.unfreeze()


@pytest.mark.parametrize('env, expected', [
    ({}, False),  # the launcher's (or a test's) own process
    ({'PIPELINE_OPTIONS': json.dumps({'beam:option:direct_running_mode:v1': 'multi_processing'})}, False),
    ({'CONTROL_API_SERVICE_DESCRIPTOR': 'url: "localhost:1"',
      'PIPELINE_OPTIONS': json.dumps({'beam:option:direct_running_mode:v1': 'multi_processing'})}, True),
    ({'CONTROL_API_SERVICE_DESCRIPTOR': 'url: "localhost:1"',  # e.g. a Dataflow worker
      'PIPELINE_OPTIONS': json.dumps({'beam:option:direct_running_mode:v1': 'in_memory'})}, False),
    ({'CONTROL_API_SERVICE_DESCRIPTOR': 'url: "localhost:1"', 'PIPELINE_OPTIONS': '{not json'}, False),
])
def test_only_a_direct_runner_worker_process_freezes_at_teardown(monkeypatch, env, expected):
    for name in ('CONTROL_API_SERVICE_DESCRIPTOR', 'PIPELINE_OPTIONS'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert in_direct_runner_worker_process() is expected


def test_the_launcher_does_not_load_aim():
    """The launcher's modules load without Aim (~0.5 s of its start, on the path to the first worker);
    the workers load it when their DoFns are set up."""
    import subprocess
    import sys

    code = ('import sys, pipelines.tf_to_aim, pipelines.mlflow_to_aim; '
            "print(sorted(m for m in sys.modules if m == 'aim' or m.startswith('aim.')))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == '[]'
