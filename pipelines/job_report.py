"""The report the job writes itself, as its last step: on a runner whose launcher returns once the job
is submitted (Dataflow), nobody is left to read Beam's metrics at the end, so the pipeline totals them.

    every step's counts (``transforms.counted``) ─SumCounts─▶ one dict ─WriteReport─▶ --report (JSON),
    the dead letters as written (``WriteSkipped``) ─────────────────────┘           the job log

The totals are the counters' own increments (see ``transforms.counted``), plus what the source knew
before the pipeline (``Source.counters``: files ignored, deleted runs left out); the reasons are the
dead-letter file's lines. So the JSON and the logged table hold the numbers that the launcher, where it
waits (DirectRunner), prints from Beam's metrics (``pipelines.common.finish``). The JSON is written
here, by the job, on every runner; the launcher only prints.
"""
from __future__ import annotations

import io
import json
import logging
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam

from connectors.redact import mask_text
from pipelines.report import group_reasons, print_report
from transforms.counted import SumCounts, add_counts

__all__ = ['ReportJob', 'WriteReport', 'report_document']

log = logging.getLogger('runferry.report')


def report_document(counters: Dict[str, int], elapsed: float, skipped_path: Optional[str],
                    fields: Dict[str, Any], reasons: List[Tuple[str, str, int, int]]) -> Dict[str, Any]:
    """The ``--report`` JSON: the destination's fields (``Destination.report_fields``), the counters, the
    elapsed seconds, where the dead letters are and how many of each reason."""
    return {**fields, 'counters': counters, 'elapsed_seconds': round(elapsed, 3),
            'skipped_path': mask_text(skipped_path),
            'skipped_by_reason': [{'reason': label, 'kind': kind, 'items': items, 'count': count}
                                  for label, kind, items, count in reasons]}


class WriteReport(beam.DoFn):
    """The summed counts (one dict), with the dead-letter lines as a side input → the report logged
    (``runferry.report``, INFO: the job log) and written as JSON to ``report_path`` (any fsspec URL)
    when given; outputs the counters. ``destination``: the ``pipelines.seam.Destination`` (its report
    lines and fields); ``known``: ``Source.counters()``; ``started``: when the launcher started (epoch
    seconds); ``secrets``: the launcher's literal secrets, masked here too (a worker does not know them)."""

    def __init__(self, report_path: Optional[str], skipped_path: Optional[str], destination, known: Dict[str, int],
                 started: float, secrets: Iterable[str] = ()):
        self.report_path = report_path
        self.skipped_path = skipped_path
        self.destination = destination
        self.known = dict(known)
        self.started = started
        self.secrets = sorted(secrets)

    def process(self, counts: Dict[str, int], letters: List[str]):
        counters = add_counts((counts, self.known))
        elapsed = max(time.time() - self.started, 0.0)
        reasons = group_reasons(letters)
        table = io.StringIO()
        print_report(counters, elapsed, self.skipped_path, out=table, reasons=reasons,
                     closing_lines=self.destination.report_lines(counters))
        log.info('%s', mask_text(table.getvalue().rstrip('\n'), self.secrets))
        if self.report_path:
            import fsspec

            document = report_document(counters, elapsed, self.skipped_path, self.destination.report_fields(),
                                       reasons)
            with fsspec.open(self.report_path, 'w') as out:
                out.write(mask_text(json.dumps(document, indent=2, sort_keys=True), self.secrets))
        yield counters


class ReportJob(beam.PTransform):
    """Every step's counts (a tuple of PCollections) → the report, written by the job, once ``letters``
    (the dead-letter lines, one list, as ``WriteSkipped`` outputs them once the file is written) is done."""

    def __init__(self, write_report: WriteReport, letters: beam.PCollection):
        super().__init__()
        self.write_report = write_report
        self.letters = letters

    def expand(self, counts: Tuple[beam.PCollection, ...]) -> beam.PCollection:
        return (counts
                | 'FlattenCounts' >> beam.Flatten()
                | 'SumCounts' >> beam.CombineGlobally(SumCounts())
                | 'WriteReport' >> beam.ParDo(self.write_report, beam.pvalue.AsSingleton(self.letters)))
