"""A full disk and a stop signal end a conversion within seconds, with one line, and a re-run completes it
(issue 21, items 2 and 4). The full disk is a real one: a tiny tmpfs mounted for the test (we are root
here and in CI; the tests are skipped, saying why, where ``mount`` is not permitted)."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.readback import assert_same_points, expected_metrics, read_metrics, read_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of ``size`` (e.g. ``'3m'``) mounted at ``path`` for the block; unmounted even on failure."""
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f'mounting a tmpfs is not permitted here: {mounted.stderr.strip()}')
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], check=False)


def convert(logdir, repo, skipped, workers=2):
    argv = [sys.executable, '-m', 'pipelines.tf_to_aim', '--logdir', str(logdir), '--repo', str(repo),
            '--skipped', str(skipped)]
    if workers > 1:
        argv += ['--direct_num_workers', str(workers), '--direct_running_mode', 'multi_processing']
    return argv


@contextlib.contextmanager
def started(argv):
    """The command in its own session; whatever is left of it (its workers too) is killed at the end."""
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def session_processes(session_id):
    """Pids of live processes in the session (zombies aside)."""
    pids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat', 'rb') as stat:
                    fields = stat.read().rsplit(b')', 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session_id and fields[0] != b'Z':
                pids.append(int(entry))
    return pids


def error_lines(stderr):
    """stderr without the progress lines and Beam's start-up chatter that every conversion prints."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith(('progress:', 'WARNING:root:apitools', 'INFO:'))]


@pytest.mark.slow
def test_a_full_disk_ends_the_conversion_with_one_line_and_a_rerun_with_space_completes_it(twenty_four_runs,
                                                                                          tmp_path):
    logdir = tmp_path / 'logs'
    # 12 x (2 x 1,500 + 300) points: a run's databases are published without RocksDB's LOG and preallocated
    # MANIFEST (connectors.aim_staging), so 12 x 2 x 200 points no longer filled the 3 MB
    written = twenty_four_runs(logdir, 12)
    repo_copy = tmp_path / 'with-space'
    with tmpfs(tmp_path / 'tiny', '3m') as tiny:
        repo = tiny / 'repo'
        with started(convert(logdir, repo, tmp_path / 'skipped.jsonl')) as process:
            try:  # measured: ~25 s on 2 idle cores; it used to hang for good (in RocksDB's flush)
                out, err = process.communicate(timeout=150)
            except subprocess.TimeoutExpired:
                pytest.fail('the conversion into a full disk did not end within 150 s')
        shutil.copytree(repo, repo_copy, symlinks=True)

    assert process.returncode == 1, err
    assert 'Traceback' not in err, err
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith('tf_to_aim: error: ') and 'not converted' in lines[0], lines[0]
    assert f'no space left on the filesystem of the Aim repo {repo}' in lines[0], lines[0]
    assert 'runs failed' in out  # the report was printed

    rerun = subprocess.run(convert(logdir, repo_copy, tmp_path / 'skipped-rerun.jsonl', workers=1), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_points(read_metrics(str(repo_copy)), expected_metrics(written))
    assert sorted(read_runs(str(repo_copy))) == sorted({run for run, _ in written})


@pytest.mark.slow
def test_sigterm_stops_the_conversion_with_one_line_and_a_rerun_completes_it(twenty_four_runs, tmp_path):
    logdir = tmp_path / 'logs'
    written = twenty_four_runs(logdir)
    repo = tmp_path / 'repo'
    chunks = repo / '.aim' / 'meta' / 'chunks'
    with started(convert(logdir, repo, tmp_path / 'skipped.jsonl')) as process:
        # read stderr as it comes, so that the pipe never fills
        err_parts = []
        reader = threading.Thread(target=lambda: err_parts.append(process.stderr.read()), daemon=True)
        reader.start()
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            if chunks.exists() and len(os.listdir(chunks)) >= 2:  # runs are being written
                break
            time.sleep(0.05)
        assert process.poll() is None, 'the conversion finished before it could be stopped; make the logdir bigger'
        os.kill(process.pid, signal.SIGTERM)  # the launcher alone, as a scheduler or `kill` would
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail('the conversion did not stop within 60 s of SIGTERM')
        reader.join(30)
        # the launcher's worker processes went with it
        deadline = time.time() + 10
        while session_processes(process.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert session_processes(process.pid) == []
    err = ''.join(err_parts)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert 'Traceback' not in err, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith('tf_to_aim: stopped by SIGTERM'), err

    rerun = subprocess.run(convert(logdir, repo, tmp_path / 'skipped-rerun.jsonl'), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_points(read_metrics(str(repo)), expected_metrics(written))
    assert sorted(read_runs(str(repo))) == sorted({run for run, _ in written})


# Run in a child process: without the fix, the flush waits forever (and so would pytest).
CLOSE_ON_A_FULL_DISK = r'''
import os, sys, time
from aim.storage.rockscontainer import RocksContainer
from connectors import disk_guard
if sys.argv[2] == 'guarded':
    disk_guard.install()
disk = sys.argv[1]
with open(os.path.join(disk, 'filler'), 'wb') as filler:  # the disk, full but for ~300 kB
    try:
        while True:
            filler.write(b'x' * 65536)
            filler.flush()
    except OSError:
        pass
os.truncate(os.path.join(disk, 'filler'), os.path.getsize(os.path.join(disk, 'filler')) - 300_000)
container = RocksContainer(os.path.join(disk, 'meta', 'chunks', 'run'), read_only=False)
batch = container.batch()
for i in range(3000):  # fits in the write-ahead log; its flush to a table file does not fit
    container.set(b'key%06d' % i, b'v' * 20, store_batch=batch)
container.commit(batch)
error = disk_guard.close_containers([container])
progress_left = os.path.exists(os.path.join(disk, 'meta', 'progress', 'run'))
print('closed', type(error).__name__, disk_guard.is_no_space(error), progress_left, flush=True)
os._exit(0)  # the database is dropped: nothing left to close at exit
'''


def test_a_run_container_closes_on_a_full_disk_with_the_error(tmp_path):
    with tmpfs(tmp_path / 'tiny', '4m') as tiny:
        try:
            done = subprocess.run([sys.executable, '-c', CLOSE_ON_A_FULL_DISK, str(tiny), 'guarded'], cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail('closing a container on a full disk did not return within 60 s')
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['closed', 'RocksIOError', 'True', 'False'], done.stdout + done.stderr
