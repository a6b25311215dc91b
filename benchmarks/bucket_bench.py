"""The bucket repo lines of the ``aim convert`` bench: runferry's ``tf_to_aim --repo s3://…`` on a local
moto S3 server, with one and with two worker processes, in interleaved rounds; the repo copied down
once and read back through Aim's SDK, equal to the local conversion's.

Whether ``--repo s3://`` is supported is found out by doing it, not by reading code: a one-run
conversion into the bucket from an empty working directory must exit 0, put objects under the prefix
and leave no local ``s3:`` directory (the old behaviour: the URL taken as a relative path). Otherwise
the lines are one "not available" line with the reason.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
from typing import Dict, List, Optional

from benchmarks.convert_logdir import ensure_convert_logdir
from benchmarks.repo_counts import RepoCounts, compare_counts, count_repo
from benchmarks.timed_run import run_timed, runferry_command

__all__ = ['BUCKET', 'measure_bucket', 'probe_bucket_repo']

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUCKET = 'runferry-bench'


def _filesystem(server):
    import s3fs

    return s3fs.S3FileSystem(key=server.env['AWS_ACCESS_KEY_ID'], secret=server.env['AWS_SECRET_ACCESS_KEY'],
                             client_kwargs={'endpoint_url': server.env['AWS_ENDPOINT_URL']},
                             use_listings_cache=False)


def _env(server) -> Dict[str, str]:
    return {**os.environ, **server.env, 'PYTHONPATH': ROOT}


def probe_bucket_repo(cache: str, server, fs) -> Optional[str]:
    """None when ``tf_to_aim --repo s3://…`` writes into the bucket; else why not, in one line."""
    logdir, _, _ = ensure_convert_logdir(cache, 1)
    prefix = f'{BUCKET}/probe'
    with tempfile.TemporaryDirectory(prefix='bucket-probe-', dir=cache) as cwd:
        proc = subprocess.run(runferry_command(os.path.abspath(logdir), f's3://{prefix}', _flags(1, cwd)),
                              cwd=cwd, env=_env(server), capture_output=True, text=True)
        local = os.path.exists(os.path.join(cwd, 's3:'))
    objects = fs.find(prefix) if fs.exists(prefix) else []
    if local:
        return 'it took s3://… as a local path (wrote ./s3:/…)'
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']
        return f'tf_to_aim exited {proc.returncode}: {last[0][:200]}'
    if not objects:
        return 'tf_to_aim exited 0 but wrote nothing into the bucket'
    fs.rm(prefix, recursive=True)
    return None


def _flags(workers: int, scratch: str) -> List[str]:
    """Beam's worker count (one worker: its in-process mode), the dead letters kept off the bucket."""
    mode = 'multi_processing' if workers > 1 else 'in_memory'
    return [f'--direct_num_workers={workers}', f'--direct_running_mode={mode}',
            '--skipped', os.path.join(scratch, 'skipped.jsonl')]


def _copy_down_and_count(fs, prefix: str, cache: str) -> RepoCounts:
    with tempfile.TemporaryDirectory(prefix='bucket-copy-', dir=cache) as local:
        fs.get(prefix + '/', local + '/repo/', recursive=True)
        return count_repo(os.path.join(local, 'repo'))


def measure_bucket(cache: str, logdir: str, local_counts: RepoCounts, trials: int, workers: List[int],
                   extra: List[str]) -> List[str]:
    """The lines for this logdir: wall and peak memory per worker count (medians of ``trials`` rounds,
    each round every worker count once, the order reversed every other round), the speed-up of the
    largest count over the smallest, and the read-back."""
    from tests.servers import moto_s3

    runs = local_counts.runs
    points = sum(local_counts.total(kind) for kind in ('metric', 'image', 'distribution'))
    with moto_s3() as server, tempfile.TemporaryDirectory(prefix='bucket-scratch-', dir=cache) as scratch:
        fs = _filesystem(server)
        fs.mkdir(BUCKET)
        why_not = probe_bucket_repo(cache, server, fs)
        if why_not:
            return [f'bucket repo (--repo s3://, moto server): not available: {why_not}']
        walls: Dict[int, List[float]] = {count: [] for count in workers}
        peaks: Dict[int, float] = dict.fromkeys(workers, 0.0)
        last_prefix = None
        for trial in range(1, trials + 1):
            for count in (workers if trial % 2 else workers[::-1]):
                prefix = f'{BUCKET}/aim-{runs}-{count}w-{trial}'
                timed = run_timed(runferry_command(logdir, f's3://{prefix}', [*_flags(count, scratch), *extra]),
                                  env=_env(server))
                walls[count].append(timed.wall)
                peaks[count] = max(peaks[count], timed.peak_mb)
                print(f'  bucket, {runs} runs, round {trial}, {count} worker(s): {timed.wall:.1f}s '
                      f'({timed.peak_mb:.0f} MB); load {" ".join(f"{x:.1f}" for x in os.getloadavg())}', flush=True)
                if last_prefix:
                    fs.rm(last_prefix, recursive=True)  # moto holds it in memory; the last one is read back
                last_prefix = prefix
        differences = compare_counts(local_counts, _copy_down_and_count(fs, last_prefix, cache))
    lines = []
    for count in workers:
        median = statistics.median(walls[count])
        lines.append(f'bucket repo (--repo s3://, moto server on this machine), {runs} runs, {count} worker '
                     f'process(es): {median:.1f}s median ({", ".join(f"{w:.1f}s" for w in walls[count])}), '
                     f'{points / median:,.0f} points/s, peak memory {peaks[count]:.0f} MB')
    if len(workers) >= 2:
        low, high = min(workers), max(workers)
        speedup = statistics.median(walls[low]) / statistics.median(walls[high])
        per_round = [a / b for a, b in zip(walls[low], walls[high])]
        lines.append(f'bucket repo, {runs} runs: {high} workers {speedup:.2f}x {low} (ratio of medians; rounds '
                     f'{", ".join(f"{r:.2f}x" for r in per_round)}; target 1.6x: '
                     f'{"met" if speedup >= 1.6 else "NOT met"})')
    lines.append(f'bucket repo, {runs} runs, copied down and read through the Aim SDK: '
                 + ('the same runs, sequences and points as the local repo' if not differences else
                    'DIFFERS from the local repo: ' + '; '.join(f'{what}: {how}' for what, how in differences)))
    return lines

