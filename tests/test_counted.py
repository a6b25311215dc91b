"""Counts as data (``transforms.counted``): what a step hands on under ``COUNTS`` is what Beam's metrics
count for it, bundle by bundle; and when the launcher waits for the job (``waits_for_job``)."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # (as: not a pytest class)
from apache_beam.testing.util import assert_that, equal_to

from pipelines.common import read_counters, waits_for_job
from transforms.counted import CountedDoFn, SumCounts, step_counts
from transforms.counters import COUNTS, NAMESPACE


class CountValues(CountedDoFn):
    """Counts each value, once more at the bundle's end (as a writer holding its last run does), and a
    counter it only ever increments by 0 (the report shows its row: so must the counts)."""

    def __init__(self):
        self.values = Metrics.counter(NAMESPACE, 'values')
        self.nothing = Metrics.counter(NAMESPACE, 'nothing')
        self.other = Metrics.counter('another_namespace', 'values')

    def start_bundle(self):
        super().start_bundle()
        self.held = 0

    def process(self, value):
        self.values.inc(value)
        self.nothing.inc(0)
        self.other.inc(value)
        self.held += 1
        yield value

    def finish_bundle(self):
        self.values.inc(self.held)  # counted at the bundle's end, before the counts are handed on
        yield from super().finish_bundle()


@pytest.mark.parametrize('workers', [1, 2])
def test_the_counts_handed_on_are_the_metrics_of_every_bundle(workers):
    options = ['--direct_num_workers', str(workers)] + (
        ['--direct_running_mode', 'multi_processing'] if workers > 1 else [])
    p = BeamTestPipeline(argv=options)
    values = list(range(1, 41))
    counted = (p | beam.Create(values) | 'Count' >> beam.ParDo(CountValues()).with_outputs(COUNTS, main='values'))
    total = counted[COUNTS] | beam.CombineGlobally(SumCounts())
    expected = {'values': sum(values) + len(values), 'nothing': 0}
    assert_that(total, equal_to([expected]))
    result = p.run()
    result.wait_until_finish()
    assert read_counters(result) == expected


def test_no_counts_outside_a_runner():
    assert step_counts() == {}
    fn = CountValues()
    fn.start_bundle()
    assert list(fn.process(3)) == [3] and list(fn.finish_bundle()) == []


@pytest.mark.parametrize('args, wait, expected', [
    ([], False, True),  # the DirectRunner runs the job here
    (['--runner=DirectRunner'], False, True),
    (['--runner=DataflowRunner'], False, False),  # submitted: the launcher returns
    (['--runner=DataflowRunner'], True, True),  # --wait-for-job
    (['--runner=tests.custom_runner.DetachedRunner'], False, False),
])
def test_the_launcher_waits_only_for_a_job_that_runs_here_or_with_wait(args, wait, expected):
    assert waits_for_job(args, wait) is expected
