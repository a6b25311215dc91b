"""Run attributes (hparams) from several contexts and points: nothing overwritten silently; and run times
from the events that carry data. Pure functions called directly."""
from __future__ import annotations

from connectors.event_files import EventFileSource
from transforms.hparams import merge_in_context, merge_run_attributes
from transforms.classify import classify
from runmodel import Series, Skip
from transforms.tensorboard import data_time_span, tensorboard_run_data


def _series(kind, context, points, wall_time=100.0):
    series = Series(kind, kind, {'entry': context} if context else {}, values=[])
    for position, (step, values) in enumerate(points):
        series.append(step, wall_time + step, values, position)
    return series


def test_contexts_with_different_hparams_keep_each_contexts_values():
    versions = [_series('hparams', 'version_0', [(0, {'lr': 0.01, 'layers': 2.0})]),
                _series('hparams', 'version_1', [(0, {'lr': 0.02, 'layers': 2.0})])]
    attributes, written, skips = merge_run_attributes(versions, 'logs/lightning_logs')
    assert attributes == {'hparams': {'layers': 2.0},  # what they agree on
                          'hparams_by_context': {'version_0': {'lr': 0.01, 'layers': 2.0},
                                                 'version_1': {'lr': 0.02, 'layers': 2.0}}}
    assert written == {'hparams': 2} and skips == []


def test_one_context_or_agreeing_contexts_give_plain_hparams():
    own = _series('hparams', None, [(0, {'lr': 0.1})])
    attributes, written, _ = merge_run_attributes([own], 'r')
    assert attributes == {'hparams': {'lr': 0.1}} and written == {'hparams': 1}
    same = [_series('hparams', 'a', [(0, {'lr': 0.1})]), _series('hparams', 'b', [(0, {'lr': 0.1})])]
    assert merge_run_attributes(same, 'r')[0] == {'hparams': {'lr': 0.1}}
    mixed = [_series('hparams', None, [(0, {'lr': 0.1})]), _series('hparams', 'b', [(0, {'lr': 0.3})])]
    assert merge_run_attributes(mixed, 'r')[0]['hparams_by_context'] == {'.': {'lr': 0.1}, 'b': {'lr': 0.3}}


def test_a_value_replaced_within_one_context_is_a_skipped_point_naming_both():
    series = _series('hparams', 'train', [(0, {'lr': 0.1, 'units': 8.0}), (5, {'lr': 0.05}), (9, {'lr': 0.05})])
    values, written, skips = merge_in_context(series, 'logs/run')
    assert values == {'lr': 0.05, 'units': 8.0}  # the later value kept, the earlier point's other value too
    assert written == 2 and len(skips) == 1  # points: 3 read = 2 written + 1 skipped
    skip = skips[0]
    assert (skip.source, skip.kind, skip.count) == ('logs/run', 'point', 1)
    assert 'lr=0.1' in skip.detail and 'kept lr=0.05' in skip.detail and 'step 0' in skip.detail
    assert skip.reason == 'hparams value replaced by a later one in the same context'


def test_run_times_come_from_the_events_that_carry_data():
    metric = Series('metric', 'loss', {})
    for step, wall_time in ((0, 50.0), (1, 80.0)):
        metric.append(step, wall_time, 0.5, step)
    hparams = _series('hparams', None, [(0, {'lr': 0.1})], wall_time=40.0)
    assert data_time_span([metric, hparams]) == (40.0, 80.0)
    assert data_time_span([]) == (None, None)


def test_a_run_holding_only_hparams_starts_and_ends_when_they_were_logged(tmp_path):
    """Not when it is converted: the run's times come from its data events, hparams included."""
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams

    writer = SummaryWriter(str(tmp_path / 'logs' / 'hp'))
    for summary in hparams({'a': 1.0}, {}):
        writer.file_writer.add_summary(summary, global_step=0, walltime=100.0)
    writer.close()
    source = EventFileSource(str(tmp_path / 'logs'))
    data = tensorboard_run_data(source, 'e', 'hp', classify(source.list_event_files()).assignments())
    assert not [item for item in data.items() if not isinstance(item, Skip)]  # no sequence
    assert (data.spec.creation_time, data.spec.end_time) == (100.0, 100.0)
    assert data.spec.name == 'hp' and data.spec.attributes['hparams'] == {'a': 1.0}


def test_the_demos_plugins_sample_lasts_minutes_not_years(tmp_path):
    """``make demo``'s ``plugins_tbx``: every event the sample writes is dated with it, so the run read
    back lasts its steps (minutes), not from 2023 to the day the sample was written."""
    from samples.tensorboard_plugins import write_tbx_plugins
    from transforms.classify import classify
    from transforms.tensorboard import ReadRunFn

    write_tbx_plugins(str(tmp_path / 'logs' / 'plugins_tbx'), steps=5)
    source = EventFileSource(str(tmp_path / 'logs'))
    plan = classify(source.list_event_files())
    assert list(plan.runs) == ['plugins_tbx']
    [data] = ReadRunFn(source, 'demo').process(('plugins_tbx', plan.assignments()))
    list(data.items())  # read: the run's times are known once its files are
    assert 60 <= data.spec.end_time - data.spec.creation_time <= 3600
