"""Counts as data: what a step counted, handed on as a PCollection, so that the pipeline itself can
total its report (``pipelines.report_step``) on a runner whose launcher does not wait for the job.

A counting DoFn derives from ``CountedDoFn``: at the end of each bundle it outputs, under the tag
``COUNTS``, the ``runferry`` counters its step counted in that bundle, read from the very cells Beam's
metrics hold for that step and bundle (``MetricsEnvironment.current_container()``). The counts are
therefore the metrics' own increments, not a second bookkeeping that could drift from them: what a
DoFn counts through ``Metrics.counter`` (also what a run's stream counts while the writer reads it, and
``connectors.retry``'s retries) is in its step's container. A bundle that fails is retried whole, and
its output is discarded with its committed metrics, so the totals equal the committed counters.

A subclass that overrides ``start_bundle`` or ``finish_bundle`` calls the base's (``finish_bundle``: its
own outputs first, then ``yield from super().finish_bundle()``), and its ParDo declares the tag
(``.with_outputs(SKIPPED, COUNTS, main=…)``); an undeclared tag's output is dropped by the runner.
"""
from __future__ import annotations

import collections
from typing import Dict, Iterable

import apache_beam as beam
from apache_beam.metrics.execution import MetricsEnvironment
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.counters import COUNTS, NAMESPACE

__all__ = ['CountedDoFn', 'step_counts', 'add_counts', 'SumCounts']


def step_counts() -> Dict[str, int]:
    """The ``runferry`` counters of the step and bundle running now, by name (those incremented by 0
    too); {} outside a runner."""
    container = MetricsEnvironment.current_container()
    if container is None:
        return {}
    counts: Dict[str, int] = {}
    for key, value in container.get_cumulative().counters.items():
        if key.metric.namespace == NAMESPACE:  # a counter incremented by 0 too: the report shows its row
            counts[key.metric.name] = counts.get(key.metric.name, 0) + value
    return counts


class CountedDoFn(beam.DoFn):
    """A DoFn whose step's counts of each bundle come out as one ``COUNTS`` element (see the module)."""

    def start_bundle(self):
        self._counted_before = step_counts()  # nothing, where the runner starts each bundle afresh

    def finish_bundle(self):
        before = getattr(self, '_counted_before', {})
        counts = {name: value - before.get(name, 0) for name, value in step_counts().items()}
        if counts:
            yield TaggedOutput(COUNTS, WindowedValue(counts, MIN_TIMESTAMP, [GlobalWindow()]))


def add_counts(parts: Iterable[Dict[str, int]]) -> Dict[str, int]:
    """Counts summed by name."""
    total: collections.Counter = collections.Counter()
    for part in parts:
        total.update(part)
    return dict(total)


class SumCounts(beam.CombineFn):
    """Counts (dicts by name) → their sum; {} when nothing was counted."""

    def create_accumulator(self) -> Dict[str, int]:
        return {}

    def add_input(self, total: Dict[str, int], counts: Dict[str, int]) -> Dict[str, int]:
        return add_counts((total, counts))

    def merge_accumulators(self, totals: Iterable[Dict[str, int]]) -> Dict[str, int]:
        return add_counts(totals)

    def extract_output(self, total: Dict[str, int]) -> Dict[str, int]:
        return total
