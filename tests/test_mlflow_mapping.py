"""What MLflow 3 stores hold beyond metrics and plain artifacts, mapped by pure functions: stepped images,
parent runs, datasets, logged models; and the dry run's tree of nested runs."""
from __future__ import annotations

import io

import pytest

from connectors.mlflow_source import (DatasetRecord, ExperimentRef, MlflowRunRecord, MlflowSource, ModelRecord,
                                      SteppedImagePart, stepped_image_part)
from pipelines.sources.mlflow import RunSummary, print_mlflow_plan
from transforms.mlflow import image_points, mlflow_run_data, parent_tag, stepped_image_series

UUID = '24d7ea9e-302a-46bc-869b-f175ee66639f'


def _png(color) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new('RGB', (3, 2), color).save(out, format='PNG')
    return out.getvalue()


@pytest.mark.parametrize('path,part', [
    (f'images/samples+step+3+timestamp+1700000000017+{UUID}.png',
     SteppedImagePart('samples', 3, 1700000000017, UUID, 'image')),
    (f'images/samples+step+3+timestamp+1700000000017+{UUID}+compressed.webp',
     SteppedImagePart('samples', 3, 1700000000017, UUID, 'thumbnail')),
    # MLflow 2's spelling: '%' between the fields, '#' for a slash in the key; a metadata file beside it
    (f'images/val#digits%step%12%timestamp%5%{UUID}.png', SteppedImagePart('val/digits', 12, 5, UUID, 'image')),
    (f'images/val#digits%step%12%timestamp%5%{UUID}%compressed.webp',
     SteppedImagePart('val/digits', 12, 5, UUID, 'thumbnail')),
    (f'images/a b%step%0%timestamp%5%{UUID}.json', SteppedImagePart('a b', 0, 5, UUID, 'metadata')),
    (f'images/val~digits+step+0+timestamp+5+{UUID}.png', SteppedImagePart('val/digits', 0, 5, UUID, 'image')),
])
def test_stepped_image_files_are_recognized(path, part):
    assert stepped_image_part(path) == part


@pytest.mark.parametrize('path', [
    'images/plot.png', 'plots/samples+step+0+timestamp+5+abc.png', f'images/x+step+0+timestamp+5+{UUID}.jpg',
    f'images/sub/x+step+0+timestamp+5+{UUID}.png', f'images/x+step+-1+timestamp+5+{UUID}.png'])
def test_other_files_are_not_stepped_images(path):
    assert stepped_image_part(path) is None


def test_images_at_one_step_are_one_point_at_the_last_time():
    first, second, later = _png((255, 0, 0)), _png((0, 255, 0)), _png((0, 0, 255))
    images = [(SteppedImagePart('k', 1, 2_000, 'b', 'image'), 'p/b.png', second),
              (SteppedImagePart('k', 1, 1_000, 'a', 'image'), 'p/a.png', first),
              (SteppedImagePart('k', 0, 9_000, 'c', 'image'), 'p/c.png', later)]
    series = stepped_image_series('k', images)
    assert (series.kind, series.name, series.context) == ('image', 'k', {})
    assert list(series.steps) == [0, 1] and list(series.wall_times) == [9.0, 2.0]
    assert [[(i['caption'], i['data']) for i in point] for point in series.values] == \
        [[('p/c.png', later)], [('p/a.png', first), ('p/b.png', second)]]


def _record(**changes):
    fields = dict(run_id='abc', experiment_id='7', run_name='r1', status='FINISHED', start_time=1_000, end_time=9_000,
                  params={}, tags={}, metrics={}, artifacts=[], skipped_artifacts=[])
    fields.update(changes)
    return MlflowRunRecord(**fields)


def test_stepped_images_become_one_sequence_and_a_bad_one_is_a_dead_letter():
    paths = {step: f'images/s~v+step+{step}+timestamp+{1000 + step}+u{step}.png' for step in range(3)}
    artifacts = [(paths[0], 'image', _png((1, 2, 3))), (paths[1], 'image', b'not a png'),
                 (paths[2], 'image', _png((4, 5, 6))), ('plain.png', 'image', _png((7, 8, 9)))]
    record = _record(artifacts=artifacts, image_companions=[paths[0][:-4] + '+compressed.webp'])
    data, skips = mlflow_run_data(record, 'exp')
    by_name = {s.name: s for s in data.series}
    assert sorted(by_name) == ['plain.png', 's/v']
    assert list(by_name['s/v'].steps) == [0, 2] and list(by_name['s/v'].wall_times) == [1.0, 1.002]
    assert list(by_name['plain.png'].steps) == [0]
    assert [(s.source, s.kind, s.count) for s in skips] == [(f'mlflow run abc/{paths[1]}', 'artifact', 1)]
    assert image_points(record) == 4  # three steps of one key, and the plain image


def test_parent_run_is_an_attribute_and_an_aim_tag():
    parent = 'c846dcc9e07443059f18e6ef55565b13'
    data, _ = mlflow_run_data(_record(tags={'mlflow.parentRunId': parent, 'team': 'a'}), 'exp')
    assert data.spec.attributes['mlflow_parent_run_id'] == parent
    assert data.spec.tags == ['team=a', f'parent_run={parent}']
    assert 'parent_run' not in data.spec.attributes['tags']  # the user's tags stay the user's
    top, _ = mlflow_run_data(_record(tags={'team': 'a'}), 'exp')
    assert 'mlflow_parent_run_id' not in top.spec.attributes and top.spec.tags == ['team=a']
    assert parent_tag({'mlflow.parentRunId': 'x' * 60}) is None  # too long for an Aim tag: the attribute holds it


def test_datasets_models_and_deletion_are_run_attributes():
    dataset = DatasetRecord('train', 'd1', 's3', '{"uri": "s3://b/t"}', '{"cols": []}', '{"rows": 2}', 'training',
                            {'k': 'v'})
    model = ModelRecord('m-1', 'clf', ['sklearn'], None, 'READY', 0, 'file:///a', {'C': '1'}, {'acc': 0.5}, {})
    data, _ = mlflow_run_data(_record(datasets=[dataset], models=[model], lifecycle_stage='deleted'), 'exp')
    attributes = data.spec.attributes
    assert attributes['mlflow_lifecycle_stage'] == 'deleted'
    assert attributes['mlflow_datasets'] == [{'name': 'train', 'digest': 'd1', 'source_type': 's3',
                                              'source': '{"uri": "s3://b/t"}', 'schema': '{"cols": []}',
                                              'profile': '{"rows": 2}', 'context': 'training', 'tags': {'k': 'v'}}]
    assert attributes['mlflow_models'] == [{'model_id': 'm-1', 'name': 'clf', 'flavors': ['sklearn'],
                                            'model_type': None, 'status': 'READY', 'step': 0,
                                            'artifact_location': 'file:///a', 'params': {'C': '1'},
                                            'metrics': {'acc': 0.5}, 'tags': {}}]
    plain, _ = mlflow_run_data(_record(), 'exp')
    assert 'mlflow_datasets' not in plain.spec.attributes and 'mlflow_models' not in plain.spec.attributes


def _summary(run_id, start, parent=None, name=None):
    return RunSummary(run_id=run_id, name=name or run_id, status='FINISHED', start_time=start, parent_id=parent,
                      deleted=False, metrics=0, params=0, tags={}, artifacts={}, skipped_artifacts=[])


def test_dry_run_tree_nests_by_parent_in_an_order_without_ties():
    summaries = {s.run_id: s for s in [
        _summary('p', 5), _summary('c2', 7, 'p'), _summary('c1', 7, 'p', name='a'), _summary('g', 9, 'c2'),
        _summary('orphan', 1, 'elsewhere'), _summary('x', 3, 'y'), _summary('y', 3, 'x')]}  # x, y: a loop
    out = io.StringIO()
    print_mlflow_plan(MlflowSource('sqlite:////s.db'), [(ExperimentRef('1', 'e'), list(summaries))], 'Aim repo r',
                      summaries, out, deleted={'1': 2})
    lines = out.getvalue().splitlines()
    assert lines[1].endswith('; 2 deleted runs not converted (--include-deleted converts them)')
    assert [line.split(' [')[0] for line in lines[2:]] == [
        "└── experiment 'e'",
        "    ├── run 'orphan'",
        '    │   └── child of run elsewhere, which is not in this plan',
        "    ├── run 'x'",
        "    ├── run 'y'",
        "    └── run 'p'",
        "        ├── run 'a'",  # c1: same start as c2, first by name
        "        └── run 'c2'",
        "            └── run 'g'"]


@pytest.mark.slow
def test_a_thumbnail_without_its_image_is_a_dead_letter(tmp_path):
    """Read through a real (local) artifact store: the thumbnail beside an image is part of it and not
    downloaded; one whose image is missing is skipped with its reason, never dropped unsaid."""
    import os

    from mlflow import MlflowClient

    from samples.mlflow_store import scratch_dir

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        experiment = client.create_experiment('t', artifact_location=f'file://{root}/artifacts')
        run_id = client.create_run(experiment).info.run_id
        image = f'images/k+step+0+timestamp+5+{UUID}.png'
        thumbnail = f'images/k+step+0+timestamp+5+{UUID}+compressed.webp'
        orphan = 'images/k+step+1+timestamp+6+00000000-0000-0000-0000-000000000000+compressed.webp'
        files = {image: _png((1, 2, 3)), thumbnail: b'webp', orphan: b'webp'}
        for path, data in files.items():
            local = tmp_path / os.path.basename(path)
            local.write_bytes(data)
            client.log_artifact(run_id, str(local), 'images')
        record = MlflowSource(uri).fetch_run(run_id)
    assert [path for path, _, _ in record.artifacts] == [image]
    assert record.image_companions == [thumbnail]
    assert record.skipped_artifacts == [(orphan, 'thumbnail or metadata of a stepped image whose full image '
                                                 'is not in the run')]
