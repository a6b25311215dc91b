"""Merge the runs of an Aim repo (local, or a prefix on object storage) into a local Aim repo, even one
that ``aim up`` is serving, run by run, idempotent by run hash.

    python -m pipelines.merge_aim --from SRC --into REPO [--dry-run] [--skipped PATH] [--report PATH]
        [--storage-options JSON]

SRC: the directory or URL (``s3://bucket/prefix``, ``gs://bucket/prefix``, any fsspec URL) holding the
source repo's ``.aim``, e.g. a repo built on Dataflow with ``--repo gs://…``. REPO: a local Aim repo.

Not a Beam pipeline, a loop over runs: the work is copying files into one repo on one machine, whose
SQLite store and index take one writer each; the copies are bound by the disk and the network, not by
a core, and Beam's worker processes would cost seconds to start and add nothing to that
(``connectors.aim_merge`` has the order of the steps, and why it is safe to interrupt).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

from connectors import redact
from connectors.aim_repo import is_remote
from connectors.redact import mask_text, mask_uri
from pipelines.cli import start, suggestion
from pipelines.common import UsageError, exit_program, fail_usage, masked_letter, parse_json_flag
from pipelines.report import Tree, plural, print_tree, skipped_by_reason

__all__ = ['PROG', 'make_parser', 'parse', 'check', 'run', 'print_merge_report']

PROG = 'merge_aim'


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f'python -m pipelines.{PROG}', description=__doc__.split('\n')[0],
                                     allow_abbrev=False)
    parser.add_argument('--from', dest='source',
                        help='the Aim repo to merge from: a directory holding .aim, or its URL (s3://, gs://, ...)')
    parser.add_argument('--into', dest='target', help='the local Aim repo to merge into')
    parser.add_argument('--storage-options', '--storage_options', dest='storage_options',
                        help="JSON object of fsspec options for --from's filesystem (credentials, endpoint)")
    parser.add_argument('--dry-run', '--dry_run', dest='dry_run', action='store_true',
                        help='list what would be merged, and write nothing')
    parser.add_argument('--skipped', help='dead-letter JSON-lines file (default: REPO.merge-skipped.jsonl)')
    parser.add_argument('--report', help='also write the final report as JSON to this path')
    return parser


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The flags, resolved, or ``UsageError``: an unknown flag (with a suggestion, first), a missing
    or bad value. (``--from`` and ``--into`` are required here, not by argparse: its error would come
    before the unknown flag's, with a usage block, for ``--int REPO``.)"""
    parser = make_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        first = next((arg for arg in unknown if arg.startswith('-')), unknown[0])
        if not first.startswith('-'):
            raise UsageError(f'unexpected argument {first!r} (every value follows its flag)')
        name = first.split('=', 1)[0]
        close = suggestion(name, parser, ())
        raise UsageError(f'unknown flag {name}{f"; did you mean {close}?" if close else ""}')
    for flag, value in (('--from', args.source), ('--into', args.target)):
        if value is None:
            raise UsageError(f'{flag} is required')
    args.storage_options = parse_json_flag('--storage-options', args.storage_options)
    redact.remember(redact.secrets_of_uri(args.source) | redact.secrets_of_options(args.storage_options))
    for flag, value in (('--from', args.source), ('--into', args.target)):
        if not value.strip():
            raise UsageError(f'{flag} is empty')
    if is_remote(args.target) or '://' in args.target:
        raise UsageError(f'--into {mask_uri(args.target)} must be a local Aim repo (the merge renames whole runs '
                         'into place, which needs its filesystem)')
    if args.skipped is None:
        args.skipped = os.path.abspath(args.target.rstrip('/')) + '.merge-skipped.jsonl'
    return args


# what the merge writes in the target's .aim (besides its own staging directory, made in .aim)
_TARGET_WRITES = ('.', 'run_metadata.sqlite', 'meta/chunks', 'meta/index', 'seqs/chunks')


def check(args: argparse.Namespace):
    """The source readable as an Aim repo, the target an existing, writable Aim repo; ``UsageError``
    (one line) otherwise. Returns the source (``connectors.aim_repo_files.RepoFiles``)."""
    from connectors.aim_repo_files import NotAnAimRepo, RepoFiles
    from connectors.retry import one_line

    target = os.path.abspath(args.target)
    aim_dir = os.path.join(target, '.aim')
    if not os.path.isfile(os.path.join(aim_dir, 'run_metadata.sqlite')):
        raise UsageError(f'--into {args.target} is not an Aim repo (no .aim/run_metadata.sqlite; create it with '
                         f'`aim init --repo {args.target}` or merge into an existing one)')
    for part in _TARGET_WRITES:
        path = os.path.normpath(os.path.join(aim_dir, part))
        while not os.path.lexists(path):
            path = os.path.dirname(path)
        if not os.access(path, os.W_OK | (os.X_OK if os.path.isdir(path) else 0)):
            raise UsageError(f'--into {args.target} is not writable: {path} is read-only')
    source_is_local = '://' not in args.source
    if source_is_local and not os.path.isdir(args.source):
        raise UsageError(f'--from {args.source} does not exist')
    if source_is_local and os.path.realpath(args.source) == os.path.realpath(target):
        raise UsageError('--from and --into are the same repo')
    try:
        source = RepoFiles(args.source, args.storage_options)
        source.check()
    except NotAnAimRepo as error:
        raise UsageError(f'--from {error}') from None
    except Exception as error:  # a bad URL, credentials, a missing bucket: the library's own words
        raise UsageError(mask_text(f'--from {mask_uri(args.source)} cannot be read: {one_line(error)}')) from None
    return source


def print_plan(source_url: str, target: str, plans, out=None) -> None:
    """The dry run: every run of the source and what the merge would do with it."""
    from connectors.aim_merge import IN_TARGET, NEW

    words = {NEW: 'would be merged', IN_TARGET: 'in the target already (by hash; its records are compared '
                                                'when merging)'}
    children: List[Tree] = []
    for run in plans:
        name = run.props.name if run.props is not None else '?'
        experiment = run.props.experiment if run.props is not None else '?'
        what = words.get(run.action, f'skipped: {run.action}')
        children.append((f'{run.hash}  {name} (experiment {experiment}): {what}', []))
    counts = {action: sum(run.action == action for run in plans) for action in (NEW, IN_TARGET)}
    print_tree(mask_text(f'{mask_uri(source_url)} → {target}: {plural(len(plans), "run")}, '
                         f'{counts[NEW]:,} to merge, {counts[IN_TARGET]:,} in the target already'),
               children, out=out)


_ROW = 2 + 15 + 2 + 12  # the column where a count row's number ends (as pipelines.report's)


def print_merge_report(counters: Dict[str, int], elapsed: float, skipped_path: str, target: str, out=None) -> None:
    """The table a person reads at the end (rows greppable as ``runs merged\\s+N``)."""
    out = out or sys.stdout

    def row(label: str, value: str) -> str:
        return f'  {label}{value:>{_ROW - 2 - len(label)}}'

    print('runferry merge report', file=out)
    for label, key in (('runs in source', 'runs_read'), ('runs merged', 'runs_merged'),
                       ('runs present', 'runs_present'), ('runs skipped', 'runs_skipped')):
        print(row(label, f'{counters.get(key, 0):,}'), file=out)
    print(row('bytes read', f'{counters.get("bytes_read", 0):,}'), file=out)
    reasons = skipped_by_reason(skipped_path)
    if reasons:
        print(file=out)
        print('  skipped by reason', file=out)
        for label, _kind, items, _count in reasons:
            print(f'    {label}  {plural(items, "run")}', file=out)
    print(file=out)
    print(row('elapsed', f'{elapsed:,.1f}') + ' s', file=out)
    if reasons:
        print(f'  every skipped run, with its reason, is listed in {mask_text(skipped_path)}', file=out)
    elif reasons is not None:
        print('  nothing was skipped', file=out)
    if counters.get('runs_index_deferred'):
        print(f'  {counters["runs_index_deferred"]:,} run(s) merged but not yet indexed: '
              f'{os.path.join(target, ".aim", "meta", "index")} stayed locked by another process (an `aim up` on '
              f'the repo indexes them itself within seconds; else run `aim storage reindex --repo {target}`)', file=out)
    if counters.get('runs_merged'):
        print(f'View the result: aim up --repo {target}', file=out)


def _write_skipped(path: str, letters) -> None:
    lines = sorted(masked_letter(letter, redact.remembered()) for letter in letters)
    with open(path, 'w') as out:
        for line in lines:
            out.write(line + '\n')


def run(argv: Optional[List[str]] = None) -> int:
    """The command: 0 when every run of the source is in the target, 1 when a run was not merged (one
    line on stderr), 2 for a bad flag or value (before anything is written)."""
    from connectors.aim_merge import merge, plan

    start(PROG)
    try:
        args = parse(argv)
        source = check(args)
    except UsageError as error:
        fail_usage(PROG, error)
    target = os.path.abspath(args.target)
    started = time.time()
    try:
        plans = plan(source, os.path.join(target, '.aim'))
    except Exception as error:  # the listing was readable at the check: a failure now is the storage's
        from connectors.retry import one_line
        print(mask_text(f'{PROG}: error: {mask_uri(args.source)} cannot be read: {one_line(error)}'), file=sys.stderr)
        return 1
    if args.dry_run:
        print_plan(args.source, target, plans)
        return 0
    try:
        result = merge(source, target, plans)
    except Exception as error:  # e.g. the target's SQLite store: what is merged so far stays, whole
        from connectors.retry import one_line
        print(mask_text(f'{PROG}: error: the merge failed: {one_line(error)}; runs merged so far are whole, and '
                        'running the same command again completes the merge'), file=sys.stderr)
        return 1
    _write_skipped(args.skipped, result.skipped)
    counters = {'runs_read': len(plans), 'runs_merged': len(result.merged), 'runs_present': len(result.present),
                'runs_skipped': len(result.skipped), 'bytes_read': result.bytes_read,
                'runs_index_deferred': result.index_deferred}
    elapsed = time.time() - started
    print_merge_report(counters, elapsed, args.skipped, target)
    if args.report:
        import fsspec

        with fsspec.open(args.report, 'w') as out:
            json.dump({'from': mask_text(mask_uri(args.source)), 'into': target, 'counters': counters,
                       'elapsed_seconds': round(elapsed, 3), 'skipped_path': mask_text(args.skipped),
                       'merged': result.merged, 'present': result.present}, out, indent=2, sort_keys=True)
    if result.skipped:
        first = result.skipped[0]
        print(mask_text(f'{PROG}: error: {plural(len(result.skipped), "run")} not merged; the first: '
                        f'{first.source}: {first.reason}'), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    exit_program(run())
