"""runferry's reader over ``.wandb`` files, the same work as ``benchmarks/wandb_reader_own.py`` does with
W&B's: run in runferry's venv.

    python -m benchmarks.wandb_reader_runferry FILE.wandb...

Every record of every file through ``connectors.wandb_file.iter_records`` (chunks checked by CRC and
joined, each record parsed into W&B's ``Record`` proto), counted by the same ``count_record``. Prints one
JSON object: those counts, the problems the reader reported (none in an intact file), and the seconds
the reading took (imports, the proto module's included, and interpreter start-up excluded).
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List

from benchmarks.wandb_reader_own import count_record, finish, new_counts
from connectors.wandb_file import Problem, iter_records, record_class

__all__ = ['read_with_runferry', 'main']


def read_with_runferry(paths: List[str]) -> Dict[str, Any]:
    counts = new_counts('runferry connectors.wandb_file')
    problems: List[str] = []
    record_class()  # wandb's proto module imported before the clock starts, as wandb_reader_own does
    started = time.perf_counter()
    for path in paths:
        with open(path, 'rb') as stream:
            for item in iter_records(stream):
                if item.__class__ is Problem:
                    problems.append(f'{path}@{item.offset}: {item.kind}: {item.reason}')
                    continue
                count_record(counts, item[1])
        counts['files'] += 1
    counts = finish(counts, time.perf_counter() - started)
    counts['problems'] = problems
    return counts


def main(argv: List[str]) -> int:
    if not argv:
        print('usage: python -m benchmarks.wandb_reader_runferry FILE.wandb...', file=sys.stderr)
        return 2
    print(json.dumps(read_with_runferry(argv)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
