"""The Aim write path: runferry's storage path for the tested Aim, Aim's own API for any other
(``connectors.aim_version``), and a run hash chosen without leaving Aim's hash function patched.

The end-to-end test converts one logdir with every plugin twice, once on the storage path and once
with Aim's API forced (``RUNFERRY_AIM_WRITE_PATH=api``, as for an untested Aim), and reads both repos
back through Aim's SDK: they must hold the same runs, hashes, sequences, points and objects.
"""
from __future__ import annotations

import json
import math
import threading

import pytest

from connectors.aim_version import TESTED_VERSIONS, WRITE_PATH_ENV, choose_write_path

API_WARNING = f"{WRITE_PATH_ENV}=api: writing through Aim's API, slower"


# ------------------------------------------------------------------------------------- the version guard

def test_the_tested_versions_take_the_storage_path_and_any_other_aims_api():
    assert choose_write_path(TESTED_VERSIONS, None).through_api is False
    assert choose_write_path(TESTED_VERSIONS, 'auto') == choose_write_path(TESTED_VERSIONS, None)
    newer = choose_write_path({**TESTED_VERSIONS, 'aim': '3.30.0'}, None)
    assert newer.through_api
    assert newer.warning == "aim 3.30.0 is not the tested 3.29.1: writing through Aim's API, slower"
    both = choose_write_path({'aim': '3.28.0', 'aimrocks': None}, None)
    assert both.warning == ("aim 3.28.0 is not the tested 3.29.1; aimrocks None is not the tested 0.5.2: "
                            "writing through Aim's API, slower")
    forced = choose_write_path(TESTED_VERSIONS, 'api')
    assert forced.through_api and forced.warning == API_WARNING
    with pytest.raises(ValueError, match=f"{WRITE_PATH_ENV}='bytes' is not one of: auto, api"):
        choose_write_path(TESTED_VERSIONS, 'bytes')


# ----------------------------------------------------------------------------------------- the run hash

def test_a_chosen_hash_goes_to_the_calling_thread_once_and_aims_function_comes_back():
    import aim.sdk.base_run
    import aim.sdk.utils
    from connectors.aim_run_hash import chosen_run_hash

    chosen = 'c' * 24
    elsewhere = []
    with chosen_run_hash(chosen):
        worker = threading.Thread(target=lambda: elsewhere.append(aim.sdk.base_run.generate_run_hash()))
        worker.start()
        worker.join(timeout=30)
        assert aim.sdk.base_run.generate_run_hash() == chosen
        assert aim.sdk.base_run.generate_run_hash() != chosen  # once
    assert len(elsewhere) == 1 and elsewhere[0] != chosen  # another thread got Aim's random hash
    assert aim.sdk.base_run.generate_run_hash is aim.sdk.utils.generate_run_hash


def test_aims_own_runs_keep_random_hashes_after_a_conversion_in_this_process(tmp_path, monkeypatch):
    """Runs created through Aim's SDK with runferry's hash (Aim's API path), then Aim's own ``Run()``."""
    import aim.sdk.base_run
    import aim.sdk.utils
    from aim import Repo, Run

    from connectors.aim_sink import AimRunWriter, index_runs, open_repo, run_hash_for
    from runmodel import METRIC, RunData, RunSpec, Series

    monkeypatch.setenv(WRITE_PATH_ENV, 'api')
    repo = str(tmp_path / 'repo')
    open_repo(repo)
    writer = AimRunWriter(repo)
    written = []
    for name in ('a', 'b'):
        series = Series(METRIC, 'loss', {}, source=name)
        series.append(0, 1_700_000_000.0, 0.5, 0)
        written.append(writer.write(RunData(RunSpec(identity=f'id-{name}', name=name, experiment='e'), [series])))
    index_runs(repo, [w.hash for w in written], [w.props for w in written if w.props is not None],
               {w.hash: w.meta_records for w in written if w.meta_records is not None})
    assert [w.hash for w in written] == [run_hash_for('id-a'), run_hash_for('id-b')]

    assert aim.sdk.base_run.generate_run_hash is aim.sdk.utils.generate_run_hash
    own = [Run(repo=repo, system_tracking_interval=None, capture_terminal_logs=False) for _ in range(2)]
    hashes = [run.hash for run in own]
    for run in own:
        run.close()
    assert len(set(hashes)) == 2 and not set(hashes) & {w.hash for w in written}
    assert all(len(h) == 24 and int(h, 16) >= 0 for h in hashes)
    assert {run.hash for run in Repo.from_path(repo).iter_runs()} >= {w.hash for w in written}


# ---------------------------------------------------------------------------------------- end to end

_OBJECT_GETTERS = {'aim.image': 'get_image_sequence', 'list(aim.image)': 'get_image_sequence',
                   'aim.distribution': 'get_distribution_sequence', 'aim.text': 'get_text_sequence',
                   'list(aim.text)': 'get_text_sequence', 'aim.audio': 'get_audio_sequence',
                   'list(aim.audio)': 'get_audio_sequence'}


def _plain(value):
    """A value read back, comparable with ``==``: objects as their stored fields, blobs loaded, NaN as
    a string."""
    from aim.storage.object import CustomObject

    if isinstance(value, CustomObject):
        return {'type': type(value).__name__, 'storage': _plain(value.storage.collect())}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, 'load'):  # a BLOB
        return value.load()
    if isinstance(value, float) and math.isnan(value):
        return 'nan'
    return value


def _read_repo(path: str) -> dict:
    """{run name: its hash, experiment, times, attributes, contexts, every sequence's points (step,
    value, epoch, time) and what Aim keeps about each sequence}, read through Aim's SDK."""
    from aim import Repo

    runs = {}
    for run in Repo.from_path(path).iter_runs():
        sequences = {}
        for metric in run.metrics():
            steps, (values, epochs, times) = metric.data.items_list()
            sequences[('metric', metric.name, json.dumps(metric.context.to_dict(), sort_keys=True))] = \
                _plain(list(zip(steps, values, epochs, times)))
        for name, context, _ in run.iter_sequence_info_by_type(tuple(_OBJECT_GETTERS)):
            dtype = run.meta_run_tree['traces', context.idx, name, 'dtype']
            sequence = getattr(run, _OBJECT_GETTERS[dtype])(name, context)
            steps, (values, epochs, times) = sequence.data.items_list()
            sequences[(dtype, name, json.dumps(context.to_dict(), sort_keys=True))] = \
                _plain(list(zip(steps, values, epochs, times)))
        attributes = {key: _plain(value) for key, value in run.meta_run_attrs_tree.collect().items()
                      if not key.startswith('__')}
        runs[run.name] = {'hash': run.hash, 'experiment': run.experiment, 'creation_time': run.creation_time,
                          'end_time': run.end_time, 'active': run.active, 'attributes': attributes,
                          'contexts': sorted(json.dumps(context, sort_keys=True)
                                             for context in run.meta_run_tree.subtree('contexts').collect().values()),
                          'sequences': sequences,
                          # what Aim keeps of each sequence (first, last, min, max, dtype...), as its UI shows it
                          'sequence_infos': _plain(run.meta_run_tree.subtree('traces').collect())}
    return runs


def _dead_letters(path) -> list:
    letters = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(json.dumps(letter, sort_keys=True) for letter in letters)


@pytest.mark.slow
def test_aims_api_path_writes_the_same_repo_as_the_storage_path(tmp_path, tf_to_aim):
    from samples.tensorboard_logs import write_tbx, write_tf2
    from samples.tensorboard_plugins import write_tbx_plugins, write_tf2_plugins

    logdir = tmp_path / 'logs'
    write_tbx_plugins(str(logdir / 'tbx_run'))  # images, distributions, text, audio, hparams, skipped plugins
    write_tf2_plugins(str(logdir / 'tf2_run' / 'train'))
    write_tbx(str(logdir / 'scalars'), ('loss', 'acc'), 30)
    write_tf2(str(logdir / 'scalars'), ('loss',), 40, start_time=1_700_000_100.0)  # steps 0..29 again: superseded
    write_tbx(str(logdir / 'scalars' / 'eval'), ('acc',), 5)

    def convert(repo, skipped, env=None):
        done = tf_to_aim('--logdir', str(logdir), '--repo', str(tmp_path / repo), '--skipped',
                         str(tmp_path / skipped), env=env, workers=1)
        assert done.returncode == 0, done.stderr
        return done

    storage = convert('storage', 'storage.jsonl')
    api = convert('api', 'api.jsonl', env={WRITE_PATH_ENV: 'api'})
    assert API_WARNING not in storage.stderr
    assert api.stderr.count(API_WARNING) == 1, api.stderr

    expected = _read_repo(str(tmp_path / 'storage'))
    assert sorted(expected) == ['scalars', 'tbx_run', 'tf2_run']
    kinds = {key[0] for run in expected.values() for key in run['sequences']}
    assert {'metric', 'aim.image', 'list(aim.image)', 'aim.distribution', 'aim.text', 'aim.audio'} <= kinds
    assert expected['tbx_run']['attributes']['hparams']
    assert _read_repo(str(tmp_path / 'api')) == expected
    # the same dead letters (skipped plugins, superseded points) and the same report
    assert _dead_letters(tmp_path / 'api.jsonl') == _dead_letters(tmp_path / 'storage.jsonl')
    assert any('superseded' in letter for letter in _dead_letters(tmp_path / 'api.jsonl'))
    assert _report(api.stdout) == _report(storage.stdout)

    # a re-run through Aim's API adds nothing: no duplicate run or point
    convert('api', 'api_again.jsonl', env={WRITE_PATH_ENV: 'api'})
    assert _read_repo(str(tmp_path / 'api')) == expected


def _report(stdout: str) -> list:
    """The report's counter lines (the elapsed time and the repo's path left out)."""
    return [line for line in stdout.splitlines() if line.strip() and 'elapsed' not in line and 'tmp' not in line]
