"""What a person reads, whatever the source and destination: trees (the sources' dry-run plans print
with ``print_tree``) and the end-of-run report (as a table), which ends with the destination's lines.

The report is printed from the pipeline's counters (``transforms``' ``Metrics.counter``s, namespace
``runferry``) and the dead-letter file, which holds one line per skipped item with its reason::

    runferry report
      runs written                5
      runs failed                 0
      contexts                    8
      ...
      points by kind           read       written       skipped
        metric                   89            88             1
      skipped by reason                                        count
        truncated record at end of file                     1 record
      elapsed                   2.1 s
      throughput                 42 points/s
    View the result: aim up --repo REPO          (the destination's own lines: Destination.report_lines)

Files below a TensorBoard logdir that are not event files (projector files, Lightning's
``hparams.yaml``, checkpoints) are counted as ``files not converted``, by kind.

Every count row is ``label`` (15 wide) and a right-aligned number (12 wide), so that scripts can grep
``runs written\\s+N``. Per kind, ``skipped`` is ``read - written``: everything read of a kind is either
written or listed in the dead letters.
"""
from __future__ import annotations

import collections
import json
import re
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from connectors.redact import mask_text

__all__ = ['print_report', 'print_tree', 'Tree', 'plural', 'skipped_by_reason', 'group_reasons', 'reason_label',
           'points_by_kind',
           'NOT_CONVERTED', 'LABEL_WIDTH', 'VALUE_WIDTH']

LABEL_WIDTH = 15
VALUE_WIDTH = 12
REASON_WIDTH = 72
OTHER_KIND = '(other)'

Tree = Tuple[str, List['Tree']]  # (line, children)


# ---------------------------------------------------------------------------------------------- trees

def _branches(out) -> Tuple[str, str, str, str]:
    """Box-drawing branches where the stream can encode them, ASCII otherwise."""
    encoding = getattr(out, 'encoding', None) or 'utf-8'
    try:
        '├└│─'.encode(encoding)
        return '├── ', '└── ', '│   ', '    '
    except (UnicodeEncodeError, LookupError):
        return '|-- ', '`-- ', '|   ', '    '


def print_tree(title: str, children: Sequence[Tree], out=None) -> None:
    """``title`` then each child as a branch of a tree, recursively."""
    out = out or sys.stdout
    tee, last, pipe, blank = _branches(out)
    print(title, file=out)

    def walk(nodes: Sequence[Tree], indent: str) -> None:
        for position, (line, below) in enumerate(nodes):
            final = position == len(nodes) - 1
            print(f'{indent}{last if final else tee}{line}', file=out)
            walk(below, indent + (blank if final else pipe))

    walk(children, '')


def plural(count: int, noun: str) -> str:
    """``1 run``, ``2 runs``."""
    return f'{count:,} {noun}{"" if count == 1 else "s"}'


# ---------------------------------------------------------------------------------------------- report

_PARENTHESES = re.compile(r'\s*\([^)]*\)')
# reasons that carry one item's error message after ': '
_DETAILED_REASONS = ('run could not be written', 'run could not be read', 'file cannot be opened',
                     'file read failed part-way', 'record is not an Event proto', 'SVG that resvg cannot render')


def reason_label(reason: str) -> str:
    """A dead letter's reason without what is particular to one item (parenthesized details, an error
    message), so that like reasons group together: ``truncated record (35 of 42 bytes) at end of file``
    → ``truncated record at end of file``, ``run could not be written: OSError: …`` → ``run could not be
    written``."""
    label = _PARENTHESES.sub('', reason).strip()
    for prefix in _DETAILED_REASONS:
        if label.startswith(prefix + ':'):
            return prefix
    return label


def skipped_by_reason(path: Optional[str]) -> Optional[List[Tuple[str, str, int, int]]]:
    """The dead-letter file grouped: ``[(reason label, kind, items, count)]``, most items first;
    None when there is no file to read."""
    if not path:
        return None
    import fsspec

    try:
        with fsspec.open(path, 'r') as lines:
            return group_reasons(lines)
    except (OSError, ValueError):
        return None


def group_reasons(lines: Iterable[str]) -> List[Tuple[str, str, int, int]]:
    """Dead letters (JSON lines, as the dead-letter file holds them) grouped: ``[(reason label, kind,
    items, count)]``, most items first."""
    groups: Dict[Tuple[str, str], List[int]] = collections.defaultdict(lambda: [0, 0])
    for line in lines:
        if not line.strip():
            continue
        letter = json.loads(line)
        group = groups[(reason_label(letter.get('reason', '')), letter.get('kind', ''))]
        group[0] += 1
        group[1] += int(letter.get('count', 1))
    return sorted(((label, kind, items, count) for (label, kind), (items, count) in groups.items()),
                  key=lambda g: (-g[3], g[0], g[1]))


def _skip_amount(kind: str, items: int, count: int) -> str:
    """``3 points``, ``1 record``, ``1 run (120 points)``: what one reason cost."""
    if kind == 'point':
        return plural(count, 'point')
    text = plural(items, kind or 'item')
    if count and count != items:  # count 0: nothing but the item itself was lost (e.g. a tag)
        text += f' ({plural(count, "point")})'
    return text


_KIND_ORDER = ('metric', 'image', 'distribution', 'text', 'audio', 'log_line')


def _kinds(counters: Dict[str, int]) -> List[str]:
    kinds = {name.split(':', 1)[1] for name in counters if name.startswith(('points_read:', 'points_written:'))}
    return sorted(kinds, key=lambda k: (_KIND_ORDER.index(k) if k in _KIND_ORDER else len(_KIND_ORDER), k))


def points_by_kind(counters: Dict[str, int]) -> List[Tuple[str, int, int, int]]:
    """``[(kind, read, written, skipped)]``; points counted only in the totals (values of a plugin, or
    artifacts, that have no Aim object) form the ``(other)`` row."""
    rows = []
    for kind in _kinds(counters):
        read = counters.get(f'points_read:{kind}', 0)
        written = counters.get(f'points_written:{kind}', 0)
        rows.append((kind, read, written, read - written))
    rest_read = counters.get('points_read', 0) - sum(r[1] for r in rows)
    rest_written = counters.get('points_written', 0) - sum(r[2] for r in rows)
    if rows and (rest_read or rest_written):
        rows.append((OTHER_KIND, rest_read, rest_written, rest_read - rest_written))
    return rows


# files that are not event files, counted by kind: ``files_not_converted:<kind>`` (tf_to_aim)
NOT_CONVERTED = 'files_not_converted'
# (label, counter) rows; a section is printed when any of its counters is present
_SECTIONS = (
    (('runs read', 'runs_read'), ('runs skipped', 'runs_skipped'), ('runs deleted', 'runs_deleted')),
    (('runs written', 'runs_written'), ('runs failed', 'runs_failed'), ('runs unindexed', 'runs_unindexed'),
     ('contexts', 'contexts_written')),
    (('files read', 'files_read'), ('files skipped', 'files_skipped'), ('files ignored', 'files_ignored')),
    (('records read', 'records_read'), ('records skipped', 'records_skipped')),
    (('points read', 'points_read'), ('points written', 'points_written'), ('points skipped', 'points_skipped')),
    (('artifacts read', 'artifacts_read'), ('artifacts skipped', 'artifacts_skipped')),
    (('tags read', 'tags_read'), ('tags skipped', 'tags_skipped')),
    (('models listed', 'models_listed'), ('datasets listed', 'datasets_listed')),
    (('retries', 'retries'),),
)
# rows only where a pipeline counts them: contexts (tf_to_aim), deleted runs left out (mlflow_to_aim)
_WHERE_COUNTED = {'contexts_written', 'runs_deleted'}
_ALWAYS = {'runs_written', 'runs_failed', 'points_read', 'points_written', 'points_skipped'}
_NUMBER_END = 2 + LABEL_WIDTH + 2 + VALUE_WIDTH  # the column where every count row's number ends


def _shown(key: str, counters: Dict[str, int]) -> bool:
    if key in _WHERE_COUNTED:  # only where the pipeline counts them (contexts, deleted MLflow runs)
        return key in counters
    if key == 'runs_unindexed':  # only when a full disk left runs out of the index
        return bool(counters.get(key))
    return True


def _count_row(label: str, value: str) -> str:
    return f'  {label}{value:>{_NUMBER_END - 2 - len(label)}}'


def print_report(counters: Dict[str, int], elapsed: float, skipped_path: Optional[str], out=None,
                 closing_lines: Sequence[str] = (), reasons: Optional[List[Tuple[str, str, int, int]]] = None
                 ) -> None:
    """The table a person reads at the end of a conversion (see the module's docstring), then
    ``closing_lines``: the destination's own (``pipelines.seam.Destination.report_lines``). The skipped
    by reason are ``reasons`` (``group_reasons``) where given, else read from the file at ``skipped_path``."""
    out = out or sys.stdout
    v = VALUE_WIDTH

    def say(line: str = '') -> None:
        print(line, file=out)

    skipped_path = skipped_path and mask_text(skipped_path)
    say('runferry report')
    for section in _SECTIONS:
        if not any(key in counters or key in _ALWAYS for _, key in section):
            continue
        for label, key in section:
            if _shown(key, counters):
                say(_count_row(label, f'{counters.get(key, 0):,}'))

    not_converted = sorted((key.split(':', 1)[1], count) for key, count in counters.items()
                           if key.startswith(NOT_CONVERTED + ':'))
    if not_converted:
        say(_count_row('files not converted', f'{sum(c for _, c in not_converted):,}'))
        for kind, count in not_converted:
            say(_count_row('  ' + kind, f'{count:,}'))

    kinds = points_by_kind(counters)
    if kinds:
        say()
        say(_count_row('points by kind', 'read') + f'  {"written":>{v}}  {"skipped":>{v}}')
        for kind, read, written, skipped in kinds:
            say(_count_row('  ' + kind, f'{read:,}') + f'  {written:>{v},}  {skipped:>{v},}')

    if reasons is None:
        reasons = skipped_by_reason(skipped_path)
    if reasons:
        labels = [label if len(label) <= REASON_WIDTH else label[:REASON_WIDTH - 1] + '…'
                  for label, _, _, _ in reasons]
        width = max(max(len(label) for label in labels), LABEL_WIDTH)
        amounts = [_skip_amount(kind, items, count) for _, kind, items, count in reasons]
        amount_width = max(max(len(a) for a in amounts), v)
        say()
        say(f'  {"skipped by reason":<{width + 2}}  {"count":>{amount_width}}')
        for label, amount in zip(labels, amounts):
            say(f'    {label:<{width}}  {amount:>{amount_width}}')

    written = counters.get('points_written', 0)
    rate = written / elapsed if elapsed > 0 else 0.0
    say()
    say(_count_row('elapsed', f'{elapsed:,.1f}') + ' s')
    say(_count_row('throughput', f'{rate:,.0f}') + ' points/s (points written / elapsed)')
    if counters.get('runs_deleted'):
        say(f'  {counters["runs_deleted"]:,} deleted MLflow run{"s" * (counters["runs_deleted"] != 1)} '
            'not converted (--include-deleted converts them)')
    if reasons:
        say(f'  every skipped item, with its reason, is listed in {skipped_path}')
    elif reasons is not None:
        say('  nothing was skipped')
    for line in closing_lines:
        say(mask_text(line))
