"""W&B's own Python reader over ``.wandb`` files, as ``wandb sync`` used it: run in the venv of
``benchmarks.wandb_reader_venv`` (wandb 0.29.0), never in runferry's (wandb 0.31 has no such reader).

    <wandb-reader-venv>/bin/python benchmarks/wandb_reader_own.py FILE.wandb...

Every file is opened with ``wandb.sdk.internal.datastore.DataStore().open_for_scan``, each record's
bytes come from ``scan_data()`` until it returns None, and each is parsed into W&B's
``wandb.proto.wandb_internal_pb2.Record``. Prints one JSON object: the counts of ``count_record`` and
the seconds the reading took (imports and interpreter start-up excluded). W&B's reader asserts on damage
(a failed CRC, a truncated file): such a file stops the script with W&B's own error.

Imports only the standard library at module level, so that ``benchmarks.wandb_reader_runferry`` counts
runferry's records with the very same ``count_record``.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List

__all__ = ['new_counts', 'count_record', 'finish', 'read_with_wandb', 'main']


def new_counts(reader: str) -> Dict[str, Any]:
    return {'reader': reader, 'files': 0, 'records': 0, 'by_type': {}, 'history_rows': 0, 'history_items': 0}


def count_record(counts: Dict[str, Any], record) -> None:
    """One parsed ``Record``: by its ``record_type`` (``unset`` if none), and a history row's items
    (touched, so that both readers do the same work on every record they parse)."""
    kind = record.WhichOneof('record_type') or 'unset'
    counts['records'] += 1
    counts['by_type'][kind] = counts['by_type'].get(kind, 0) + 1
    if kind == 'history':
        counts['history_rows'] += 1
        counts['history_items'] += len(record.history.item)


def finish(counts: Dict[str, Any], seconds: float) -> Dict[str, Any]:
    counts['by_type'] = dict(sorted(counts['by_type'].items()))
    counts['seconds'] = seconds
    counts['records_per_s'] = counts['records'] / seconds if seconds > 0 else 0.0
    return counts


def read_with_wandb(paths: List[str]) -> Dict[str, Any]:
    import wandb
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    counts = new_counts(f'wandb {wandb.__version__} DataStore')
    started = time.perf_counter()
    for path in paths:
        store = datastore.DataStore()
        store.open_for_scan(path)
        try:
            while True:
                data = store.scan_data()
                if data is None:
                    break
                record = wandb_internal_pb2.Record()
                record.ParseFromString(data)
                count_record(counts, record)
        finally:
            store.close()
        counts['files'] += 1
    return finish(counts, time.perf_counter() - started)


def main(argv: List[str]) -> int:
    if not argv:
        print('usage: wandb_reader_own.py FILE.wandb...', file=sys.stderr)
        return 2
    print(json.dumps(read_with_wandb(argv)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
