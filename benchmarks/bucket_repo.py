"""The bucket repo's rate: ``tf_to_aim --repo s3://…`` into moto's S3 server with one and two worker
processes, in interleaved pairs (each round runs both, the order alternating), whole processes timed.

    python -m benchmarks.bucket_repo [--runs 200] [--rounds 3] [--cache .bench]

Prints, for each worker count, the median wall time, runs/s and points/s (points written / wall time,
start-up included) and the ratio of the medians (two workers against one). The logdir is the bench's
(``benchmarks.logdir``: its first ``--runs`` runs); moto runs on the same cores, so it costs the
conversion CPU that a real bucket would not. So each conversion's CPU seconds (its process tree's) and
moto's during it are printed too: how many cores each way keeps busy, and the ceiling on this machine
(two workers cannot take less wall time than their CPU and moto's spread over every core).
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import uuid
from typing import Dict, List

from benchmarks.logdir import ensure_logdir, subset_logdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S3_ENV = {'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': 'us-east-1'}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its waited-for children, from /proc."""
    with open(f'/proc/{pid}/stat') as stat:
        fields = stat.read().rsplit(')', 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf('SC_CLK_TCK')


def _server_pid(port: int) -> int:
    """The moto server's pid: the process whose command line names its port."""
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/cmdline', 'rb') as cmdline:
                words = cmdline.read().split(b'\0')
        except OSError:
            continue
        if any(word.endswith(b'moto_server') for word in words) and str(port).encode() in words:
            return int(name)
    raise RuntimeError(f'no moto_server process on port {port}')


def _convert(logdir: str, url: str, workers: int, env: Dict[str, str], scratch: str,
             server_pid: int) -> Dict[str, float]:
    argv = [sys.executable, '-m', 'pipelines.tf_to_aim', '--logdir', logdir, '--repo', url,
            '--skipped', os.path.join(scratch, 'skipped.jsonl'), '--direct_num_workers', str(workers),
            '--direct_running_mode', 'multi_processing' if workers > 1 else 'in_memory']
    cpu, server_cpu = _children_cpu(), _process_cpu(server_pid)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu, server_cpu = _children_cpu() - cpu, _process_cpu(server_pid) - server_cpu
    if done.returncode != 0:
        raise RuntimeError(f'{workers} worker(s): exit {done.returncode}\n{done.stderr[-3000:]}')
    runs = int(re.search(r'runs written\s+([\d,]+)', done.stdout).group(1).replace(',', ''))
    points = int(re.search(r'points written\s+([\d,]+)', done.stdout).group(1).replace(',', ''))
    return {'seconds': seconds, 'runs': runs, 'points': points, 'cpu': cpu, 'server_cpu': server_cpu}


def measure(logdir: str, rounds: int, endpoint: str, scratch: str, server_pid: int) -> Dict[int, List[Dict[str, float]]]:
    import s3fs

    env = {**S3_ENV, 'AWS_ENDPOINT_URL': endpoint}
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key='testing', secret='testing')
    results: Dict[int, List[Dict[str, float]]] = {1: [], 2: []}
    for round_ in range(rounds):
        for workers in ((1, 2) if round_ % 2 == 0 else (2, 1)):
            bucket = f'bench-{uuid.uuid4().hex[:10]}'
            fs.mkdir(bucket)
            result = _convert(logdir, f's3://{bucket}/aim', workers, env, scratch, server_pid)
            results[workers].append(result)
            print(f'round {round_ + 1}, {workers} worker(s): {result["seconds"]:.1f} s, conversion CPU '
                  f'{result["cpu"]:.1f} s, moto CPU {result["server_cpu"]:.1f} s', flush=True)
            fs.rm(bucket, recursive=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=200)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--cache', default=os.path.join(ROOT, '.bench'))
    args = parser.parse_args(argv)
    full, _ = ensure_logdir(args.cache, 200)
    logdir = full if args.runs == 200 else subset_logdir(args.cache, full, args.runs)[0]

    from tests.servers import moto_s3  # the tests' server helper: a free port, always stopped
    import tempfile

    with moto_s3() as server, tempfile.TemporaryDirectory() as scratch:
        results = measure(logdir, args.rounds, server.url, scratch, _server_pid(server.port))
    medians = {}
    for workers, rows in results.items():
        seconds = statistics.median(r['seconds'] for r in rows)
        medians[workers] = seconds
        print(f'{workers} worker(s): median {seconds:.1f} s over {len(rows)}; {rows[0]["runs"] / seconds:.1f} runs/s, '
              f'{rows[0]["points"] / seconds:,.0f} points/s ({rows[0]["runs"]} runs, {rows[0]["points"]:,} points)')
    print(f'two workers against one: {medians[1] / medians[2]:.2f}x (ratio of medians)')
    cores = os.cpu_count() or 1
    for workers, rows in sorted(results.items()):
        cpu = statistics.median(r['cpu'] for r in rows)
        server_cpu = statistics.median(r['server_cpu'] for r in rows)
        print(f'{workers} worker(s): conversion CPU {cpu:.1f} s + moto CPU {server_cpu:.1f} s (medians): '
              f'{(cpu + server_cpu) / medians[workers]:.2f} of {cores} cores busy')
    # two workers' wall time is at least their CPU (and moto's) spread over every core
    floor = statistics.median(r['cpu'] + r['server_cpu'] for r in results[2]) / cores
    print(f'ceiling on this machine: two workers need at least {floor:.1f} s, so at most '
          f'{medians[1] / floor:.2f}x one worker')
    return 0


if __name__ == '__main__':
    sys.exit(main())
