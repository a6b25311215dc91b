"""MLflow source and mapping: pure functions directly, the source against real MLflow stores."""
from __future__ import annotations

import glob
import io
import os
import tempfile

import pytest

from connectors import mlflow_source
from connectors.mlflow_source import (ExperimentRef, MlflowRunRecord, MlflowSource, artifact_kind,
                                      normalize_tracking_uri, select_experiments)
from samples.mlflow_store import log_many_runs, log_rich_run, scratch_dir
from transforms.mlflow import (AIM_TAG_MAX_CHARS, SVG_MAX_SIDE, aim_tags, artifact_series, metric_series,
                              mlflow_run_data, run_identity, svg_supported, svg_to_png)


# ------------------------------------------------------------------------------------------ pure functions

@pytest.mark.parametrize('path,kind', [
    ('a/b/plot.PNG', 'image'), ('x.jpeg', 'image'), ('x.svg', 'image'), ('x.gif', 'image'), ('x.bmp', 'image'),
    ('logs/train.log', 'text'), ('conf.yml', 'text'), ('t.tsv', 'text'), ('m.jsonnet', 'text'), ('r.rst', 'text'),
    ('s/a.wav', 'audio'), ('a.mp3', 'audio'), ('a.flac', 'audio'),
    ('model/model.pkl', None), ('MLmodel', None), ('weights.bin', None), ('dir.png/file', None),
])
def test_artifact_kind(path, kind):
    assert artifact_kind(path) == kind


def test_normalize_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_tracking_uri('mlruns') == f'file://{tmp_path}/mlruns'
    assert normalize_tracking_uri('sqlite:///m.db') == f'sqlite:///{tmp_path}/m.db'
    assert normalize_tracking_uri('sqlite:////abs/m.db') == 'sqlite:////abs/m.db'
    assert normalize_tracking_uri(' http://127.0.0.1:5000 ') == 'http://127.0.0.1:5000'
    assert normalize_tracking_uri('file:///x/mlruns') == 'file:///x/mlruns'


def test_select_experiments_by_id_and_name():
    experiments = [ExperimentRef('0', 'Default'), ExperimentRef('1', 'vision'), ExperimentRef('2', '1')]
    assert select_experiments(experiments, []) == (experiments, [])
    # an id wins over a name that looks like it; order follows the listing; no duplicates
    assert select_experiments(experiments, ['vision', '1', '0']) == ([experiments[0], experiments[1]], [])
    assert select_experiments(experiments, ['2', 'nope']) == ([experiments[2]], ['nope'])


def test_metric_series_orders_by_step_and_keeps_the_last_duplicate():
    history = [(2, 0.5, 1000), (0, 1.5, 1001), (1, 2.5, 1002), (2, 9.0, 1500)]
    series, superseded = metric_series('loss', history)
    assert superseded == 1
    assert list(series.steps) == [0, 1, 2]
    assert list(series.values) == [1.5, 2.5, 9.0]
    assert list(series.wall_times) == [1.001, 1.002, 1.5]
    assert series.context == {} and series.kind == 'metric'


def test_artifact_series_payloads():
    text = artifact_series('notes/a.md', 'text', 'ü'.encode(), 12.5)
    assert (text.kind, text.name, list(text.steps), list(text.wall_times), text.values) == \
        ('text', 'notes/a.md', [0], [12.5], ['ü'])
    image = artifact_series('img/x.PNG', 'image', b'\x89PNG', 1.0)
    assert image.values == [[{'data': b'\x89PNG', 'format': 'png', 'caption': 'img/x.PNG'}]]


def _record(**changes):
    fields = dict(run_id='abc', experiment_id='7', run_name='r1', status='FINISHED', start_time=1_700_000_000_123,
                  end_time=1_700_000_100_456, params={'lr': '0.1'},
                  tags={'team': 'a', 'mlflow.note.content': 'hello', 'mlflow.user': 'me'},
                  metrics={'loss': [(0, 1.0, 1_700_000_000_200), (0, 2.0, 1_700_000_000_300)], 'empty': []},
                  artifacts=[('a.txt', 'text', b'hi'), ('b.svg', 'image', b'<svg')],  # a cut SVG
                  skipped_artifacts=[('m.bin', 'no Aim object')])
    fields.update(changes)
    return MlflowRunRecord(**fields)


def test_mlflow_run_data_maps_a_run():
    data, skips = mlflow_run_data(_record(), 'exp')
    spec = data.spec
    assert spec.identity == run_identity('abc') == 'mlflow:abc'
    assert (spec.name, spec.experiment, spec.description) == ('r1', 'exp', 'hello')
    assert spec.creation_time == 1_700_000_000.123 and spec.end_time == 1_700_000_100.456
    assert spec.attributes == {'mlflow_run_id': 'abc', 'mlflow_experiment_id': '7', 'mlflow_run_name': 'r1',
                               'mlflow_status': 'FINISHED', 'mlflow_lifecycle_stage': 'active',
                               'params': {'lr': '0.1'}, 'tags': {'team': 'a'}}
    assert spec.tags == ['team=a']  # mlflow.* tags are MLflow's own, not the user's
    assert [(s.kind, s.name) for s in data.series] == [('metric', 'loss'), ('text', 'a.txt')]
    assert list(data.series[0].values) == [2.0]
    assert data.series[1].wall_times[0] == 1_700_000_100.456  # artifacts at the run's end
    assert sorted((s.kind, s.source, s.count) for s in skips) == [
        ('artifact', 'mlflow run abc/b.svg', 1), ('artifact', 'mlflow run abc/m.bin', 1), ('point', 'mlflow run abc', 1)]


def test_aim_tags_follow_aim_tag_rules():
    fifty = 'k=' + 'v' * (AIM_TAG_MAX_CHARS - 2)
    names, refused = aim_tags({
        'team': 'vision', 'reviewed': '', 'blank': '   ', 'a=b': 'c', 'a': 'b=c', 'ünï': 'cödé ✓', 'k': fifty[2:],
        'long': 'x' * AIM_TAG_MAX_CHARS, 'lines': 'one\ntwo', 'tab': 'a\tb', 'pad': 'value ', ' lead': 'x'})
    # key=value; the key alone for an empty (or blank) value; one tag for two spellings of the same name
    assert names == ['a=b=c', 'blank', 'k=' + 'v' * 48, 'reviewed', 'team=vision', 'ünï=cödé ✓']
    assert len(names[2]) == AIM_TAG_MAX_CHARS
    assert dict(refused) == {
        'long': f'tag longer than the {AIM_TAG_MAX_CHARS} characters Aim allows a tag name (55)',
        'lines': 'tag holds a line break or control character, which an Aim tag name cannot show',
        'tab': 'tag holds a line break or control character, which an Aim tag name cannot show',
        'pad': 'tag starts or ends with whitespace, which Aim strips from tag names',
        ' lead': 'tag starts or ends with whitespace, which Aim strips from tag names'}
    assert aim_tags({}) == ([], [])


def test_refused_tags_are_dead_letters_that_lose_no_point():
    tags = {'team': 'a', 'summary': 'x' * 80, 'mlflow.note.content': 'hello'}
    data, skips = mlflow_run_data(_record(tags=tags, artifacts=[], skipped_artifacts=[]), 'exp')
    assert data.spec.tags == ['team=a']
    assert data.spec.attributes['tags'] == {'summary': 'x' * 80, 'team': 'a'}  # every user tag kept here
    tag_skips = [s for s in skips if s.kind == 'tag']
    assert [(s.source, s.detail, s.count) for s in tag_skips] == [('mlflow run abc', 'summary', 0)]
    assert tag_skips[0].reason.startswith('tag longer than the 50 characters')


# ----------------------------------------------------------------------------------------------------- SVG

def _png_size(png):
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.format, image.size


def test_svg_is_rendered_to_a_png_of_its_own_size():
    from samples.mlflow_store import SVG_LOGO, SVG_SIZE, svg_rendering_matches

    png = svg_to_png(SVG_LOGO)
    assert svg_rendering_matches(png) and _png_size(png) == ('PNG', SVG_SIZE)
    box_only = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 30 10"><circle cx="5" cy="5" r="4"/></svg>'
    assert _png_size(svg_to_png(box_only)) == ('PNG', (30, 10))


def test_a_huge_svg_is_rendered_scaled_down():
    huge = b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="25000"><rect width="9" height="9"/></svg>'
    assert _png_size(svg_to_png(huge)) == ('PNG', (SVG_MAX_SIDE, SVG_MAX_SIDE // 4))


@pytest.mark.parametrize('data', [b'<svg', b'not xml at all', b'\xff\xfe<svg/>', b''])
def test_svg_that_cannot_be_rendered_raises_value_error(data):
    with pytest.raises(ValueError):
        svg_to_png(data)


def test_mlflow_run_data_makes_an_svg_a_png_image():
    from samples.mlflow_store import SVG_LOGO, svg_rendering_matches

    data, skips = mlflow_run_data(_record(artifacts=[('plots/roc.svg', 'image', SVG_LOGO),
                                                     ('bad.svg', 'image', b'<svg')], skipped_artifacts=[]), 'exp')
    (image,) = [s for s in data.series if s.kind == 'image']
    (payload,) = image.values[0]
    assert image.name == 'plots/roc.svg' and payload['format'] == 'png' and payload['caption'] == 'plots/roc.svg'
    assert svg_rendering_matches(payload['data'])
    assert [(s.source, s.reason.split(':')[0]) for s in skips if s.kind == 'artifact'] == \
        [('mlflow run abc/bad.svg', 'SVG that resvg cannot render')]


def test_without_resvg_an_svg_is_skipped_naming_the_extra(monkeypatch):
    import sys

    from samples.mlflow_store import SVG_LOGO

    monkeypatch.setitem(sys.modules, 'resvg_py', None)  # import fails as if not installed
    assert not svg_supported()
    data, skips = mlflow_run_data(_record(artifacts=[('roc.svg', 'image', SVG_LOGO)], skipped_artifacts=[]), 'exp')
    assert [s.kind for s in data.series] == ['metric']
    assert [s.reason for s in skips if s.kind == 'artifact'] == ['SVG image: rendering it needs runferry[svg] (resvg-py)']


def test_mlflow_run_data_without_end_time_or_note():
    data, _ = mlflow_run_data(_record(end_time=None, tags={}, artifacts=[('a.txt', 'text', b'x')]), 'exp')
    assert data.spec.description is None and data.spec.end_time is None
    assert data.series[-1].wall_times[0] == 1_700_000_000.123


# ------------------------------------------------------------------------------------ the source, for real

@pytest.fixture(scope='module')
def small_store():
    from mlflow import MlflowClient

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        experiment_id = client.create_experiment('small', artifact_location=f'file://{root}/artifacts')
        expected = log_many_runs(client, experiment_id, 5)
        expected.update(log_rich_run(client, experiment_id, 'rich', salt=1, steps=10))
        for i in range(3):
            client.create_experiment(f'extra-{i}')
        yield uri, experiment_id, expected


def test_source_follows_every_page(small_store):
    uri, experiment_id, expected = small_store
    source = MlflowSource(uri, page_size=2)  # 6 runs, 5 experiments: every listing spans pages
    names = [e.name for e in source.experiments()]
    assert sorted(names) == ['Default', 'extra-0', 'extra-1', 'extra-2', 'small']
    ids = [run.info.run_id for _, run in source.runs([experiment_id])]
    assert sorted(ids) == sorted(expected)


def test_a_sql_store_lists_run_ids_by_query_in_search_runs_order(tmp_path, monkeypatch):
    """The launcher's listing of a SQL store: the ids alone, not a ``search_runs`` that builds every run,
    in the order ``search_runs`` gives (oldest first, equal start times by run id), experiment by
    experiment as asked, deleted runs only where asked."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    uri = f'sqlite:///{tmp_path}/mlflow.db'
    client = MlflowClient(uri)
    first, second = client.create_experiment('first'), client.create_experiment('second')
    runs = {e: [client.create_run(e, start_time=ms).info.run_id for ms in (5, 3, 3, 3, 9, 3)] for e in (first, second)}
    client.delete_run(runs[first][1])
    client.delete_run(runs[second][4])

    def listed(view):
        return [(e, run.info.run_id) for e in (second, first)
                for run in client.search_runs([e], run_view_type=view, order_by=['attributes.start_time ASC'])]

    active, every, deleted = listed(ViewType.ACTIVE_ONLY), listed(ViewType.ALL), listed(ViewType.DELETED_ONLY)
    assert len(active) == 10 and len(every) == 12 and len(deleted) == 2

    def refuse(*args, **kwargs):
        raise AssertionError('search_runs called to list run ids')

    monkeypatch.setattr(MlflowClient, 'search_runs', refuse)
    source = MlflowSource(uri)
    assert list(source.run_ids([second, first])) == active
    assert list(source.run_ids([second, first], include_deleted=True)) == every
    assert list(source.deleted_run_ids([second, first])) == deleted
    assert list(source.run_ids([])) == []
    monkeypatch.setattr(mlflow_source, 'SQL_IN_ITEMS', 1)  # one query an experiment: the same listing
    assert list(source.run_ids([second, first], include_deleted=True)) == every


def test_fetch_run_reads_everything_and_cleans_up(small_store):
    uri, _, expected = small_store
    source = MlflowSource(uri)
    run_id = next(k for k, v in expected.items() if v['name'] == 'rich')
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), 'runferry-mlflow-*')))
    record = source.fetch_run(run_id)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), 'runferry-mlflow-*'))) == before
    want = expected[run_id]
    assert record.run_name == 'rich' and record.status == 'FINISHED'
    assert record.params == want['params']
    assert record.tags['team'] == 'vision' and record.tags['mlflow.note.content'] == want['description']
    assert len(record.metrics['loss']) == 11  # the duplicate step is read; the mapping resolves it
    assert {p: (k, d) for p, k, d in record.artifacts} == want['artifacts']  # the SVG as it was logged
    assert [p for p, _ in record.skipped_artifacts] == ['model/weights.bin']


def test_source_pickles_without_its_client(small_store):
    import pickle

    source = MlflowSource(small_store[0])
    source.experiments()
    clone = pickle.loads(pickle.dumps(source))
    assert clone._client is None and clone.tracking_uri == source.tracking_uri


def test_a_metric_listed_without_history_fails_its_run_naming_the_key(tmp_path, monkeypatch):
    """A key whose latest value the store lists but of whose history it returns no point (a tracking
    server's answer cut short; here a store that lost the rows) is never dropped in silence: one by one,
    the call is retried as transient and then named; in bulk, the run is an error naming the key. The
    other runs are read whole."""
    import sqlite3

    from mlflow import MlflowClient

    from connectors.retry import RetriesExhausted

    uri = f'sqlite:///{tmp_path}/mlflow.db'
    client = MlflowClient(uri)
    experiment = client.create_experiment('lost')
    damaged, whole = (client.create_run(experiment).info.run_id for _ in range(2))
    for run_id in (damaged, whole):
        for step in range(3):
            client.log_metric(run_id, 'loss', 1.0 / (step + 1), step=step)
            client.log_metric(run_id, 'acc', step / 4, step=step)
    with sqlite3.connect(f'{tmp_path}/mlflow.db') as db:  # the history gone, the latest value kept
        db.execute("DELETE FROM metrics WHERE run_uuid = ? AND key = 'acc'", (damaged,))

    source = MlflowSource(uri)
    fetched = dict(source.fetch_runs([damaged, whole], [experiment]))
    assert isinstance(fetched[damaged], LookupError) and "'acc'" in str(fetched[damaged])
    assert {key: len(points) for key, points in fetched[whole].metrics.items()} == {'acc': 3, 'loss': 3}

    monkeypatch.setenv('RUNFERRY_RETRY_ATTEMPTS', '2')
    monkeypatch.setenv('RUNFERRY_RETRY_INITIAL_SECONDS', '0.01')
    with pytest.raises(RetriesExhausted, match=r"get_metric_history .*acc.*no point of 'acc'"):
        source.fetch_run(damaged)
    assert len(source.fetch_run(whole).metrics['acc']) == 3
