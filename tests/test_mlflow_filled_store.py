"""A SQLite store filled the way MLflow 3 users fill one (``samples.mlflow_store.log_filled_store``:
sklearn autolog of a GridSearchCV with nested runs, stepped ``log_image``, ``log_input``,
``log_model``, a deleted run), converted by ``mlflow_to_aim`` and read back through Aim's SDK against
what ``MlflowClient`` says the store holds."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest

from samples.mlflow_store import IMAGE_KEY, IMAGE_STEPS, scratch_dir, stepped_image

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITE_STORE = ('import json, sys\nfrom samples.mlflow_store import log_filled_store\n'
               'print(json.dumps(log_filled_store(sys.argv[1], sys.argv[2])))')


@pytest.fixture(scope='module')
def filled_store():
    """The store, written by MLflow itself in a process of its own (autolog patches scikit-learn, and
    the fluent API sets a process-wide tracking URI); returns the URI, a client and what was logged."""
    from mlflow import MlflowClient

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        done = subprocess.run([sys.executable, '-c', WRITE_STORE, uri, root], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        logged = json.loads(done.stdout.strip().splitlines()[-1])
        logged['image_times'] = {int(k): v for k, v in logged['image_times'].items()}
        logged['image_paths'] = {int(k): v for k, v in logged['image_paths'].items()}
        yield uri, MlflowClient(uri), logged


def aim_runs(repo):
    """{mlflow run id: Aim run}, through the Aim SDK."""
    from aim import Repo

    return {run.get('mlflow_run_id'): run for run in Repo.from_path(repo).iter_runs()}


def convert(capsys, uri, repo, *flags):
    """The command's ``run`` (exit status 0 expected); what it printed."""
    from pipelines import mlflow_to_aim

    capsys.readouterr()
    assert mlflow_to_aim.run(['--tracking-uri', uri, '--repo', repo, *flags]) == 0
    return capsys.readouterr().out


def report_count(report, label):
    match = re.search(rf'^  {label}\s+([\d,]+)$', report, re.M)
    assert match, (label, report)
    return int(match.group(1).replace(',', ''))


def test_filled_store_read_back_against_mlflow(filled_store, tmp_path, capsys):
    from aim.sdk.types import QueryReportMode
    from mlflow.entities import ViewType
    from PIL import Image

    uri, client, logged = filled_store
    repo = str(tmp_path / 'aim')
    report = convert(capsys, uri, repo, '--skipped', str(tmp_path / 'skipped.jsonl'))
    experiments = list(logged['experiments'].values())
    active = {r.info.run_id: r for r in client.search_runs(experiments, run_view_type=ViewType.ACTIVE_ONLY)}
    deleted = [r.info.run_id for r in client.search_runs(experiments, run_view_type=ViewType.DELETED_ONLY)]
    assert deleted == [logged['deleted']]
    runs = aim_runs(repo)
    assert sorted(runs) == sorted(active)  # the deleted run is not converted, and the report says so
    assert report_count(report, 'runs read') == len(active) and report_count(report, 'runs deleted') == 1
    assert '  1 deleted MLflow run not converted (--include-deleted converts them)\n' in report

    # nested runs: the parent's id as an attribute and as an Aim tag to filter on
    parent = logged['parent']
    assert len(logged['children']) == 3
    for run_id, run in runs.items():
        want = active[run_id].data.tags.get('mlflow.parentRunId')
        assert run.get('mlflow_parent_run_id') == want, run_id
        assert (f'parent_run={want}' in run.props.tags) == (want is not None)
        assert run.get('mlflow_lifecycle_stage') == 'active'
    query = runs[parent].repo.query_runs(f"'parent_run={parent}' in run.tags", report_mode=QueryReportMode.DISABLED)
    assert sorted(r.run.get('mlflow_run_id') for r in query.iter_runs()) == sorted(logged['children'])

    # stepped images: one sequence under the key, over its steps, at MLflow's times, with its pixels;
    # the thumbnails are neither sequences nor dead letters; the unstepped image stays an image at step 0
    images = runs[logged['images']]
    contexts = {name: context for name, context, _ in images.iter_sequence_info_by_type(('aim.image',
                                                                                          'list(aim.image)'))}
    assert sorted(contexts) == sorted([IMAGE_KEY, logged['plain_image']])
    steps, (values, _, times) = images.get_image_sequence(IMAGE_KEY, contexts[IMAGE_KEY]).data.items_list()
    assert steps == list(IMAGE_STEPS)
    assert times == pytest.approx([logged['image_times'][s] / 1000 for s in IMAGE_STEPS], abs=1e-3)
    for step, value in zip(steps, values):
        (image,) = value if isinstance(value, list) else [value]
        assert image.storage['caption'] == logged['image_paths'][step]
        with Image.open(io.BytesIO(bytes(image.storage['data'].load()))) as got:
            assert (got.format, got.size) == ('PNG', (6, 4))
            assert list(got.convert('RGB').getdata()) == [tuple(int(c) for c in pixel)
                                                          for row in stepped_image(step) for pixel in row]
    plain_steps, _ = images.get_image_sequence(logged['plain_image'], contexts[logged['plain_image']]).data.items_list()
    assert plain_steps == [0]
    letters = [json.loads(line) for line in open(tmp_path / 'skipped.jsonl')]
    assert not [s for s in letters if 'images/' in s['source']]

    # datasets and models, as MlflowClient has them
    for run_id, run in runs.items():
        inputs = client.get_run(run_id).inputs.dataset_inputs
        want = [{'name': i.dataset.name, 'digest': i.dataset.digest, 'source_type': i.dataset.source_type,
                 'source': i.dataset.source, 'schema': i.dataset.schema, 'profile': i.dataset.profile,
                 'context': {t.key: t.value for t in i.tags}.get('mlflow.data.context'),
                 'tags': {t.key: t.value for t in i.tags if t.key != 'mlflow.data.context'}} for i in inputs]
        assert (run.get('mlflow_datasets') or []) == want, run_id
    (dataset,) = runs[logged['images']].get('mlflow_datasets')
    assert (dataset['name'], dataset['context'], json.loads(dataset['source'])) == \
        ('train', 'training', {'uri': 's3://bucket/train.npz'})
    model = client.get_logged_model(logged['model_id'])
    (listed,) = runs[logged['images']].get('mlflow_models')
    assert (listed['name'], listed['model_id'], listed['flavors'], listed['params'], listed['metrics']) == \
        ('classifier', model.model_id, ['sklearn'], model.params, {m.key: m.value for m in model.metrics})
    assert listed['metrics'] == {'accuracy': 0.875} and listed['artifact_location'] == model.artifact_location
    assert [run_id for run_id, run in runs.items() if run.get('mlflow_models')] == [logged['images']]
    assert report_count(report, 'models listed') == 1
    assert report_count(report, 'datasets listed') == sum(len(r.get('mlflow_datasets') or []) for r in runs.values())

    # --include-deleted adds the deleted run, marked as such; the others are not doubled
    report = convert(capsys, uri, repo, '--skipped', str(tmp_path / 'skipped.jsonl'), '--include-deleted')
    assert 'runs deleted' not in report and 'deleted MLflow run' not in report
    script = ('import json, sys\nfrom aim import Repo\nprint(json.dumps({r.get("mlflow_run_id"): '
              'r.get("mlflow_lifecycle_stage") for r in Repo.from_path(sys.argv[1]).iter_runs()}))')
    done = subprocess.run([sys.executable, '-c', script, repo], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    assert stages == {**{run_id: 'active' for run_id in active}, logged['deleted']: 'deleted'}


def _tree(text):
    """(depth, line) of each tree line of a dry run, below its two title lines."""
    rows = []
    for line in text.splitlines()[2:]:
        match = re.match(r'((?:│   |    )*)(?:├── |└── )(.*)', line)
        assert match, line
        rows.append((len(match.group(1)) // 4, match.group(2)))
    return rows


def test_dry_run_nests_children_under_their_parent_and_counts_deleted_runs(filled_store, tmp_path, capsys):
    uri, client, logged = filled_store
    out = convert(capsys, uri, str(tmp_path / 'aim'), '--dry-run')
    assert os.listdir(tmp_path) == []
    assert out.splitlines()[1].endswith('; 1 deleted run not converted (--include-deleted converts them)')
    rows = _tree(out)
    runs = [(depth, re.search(r'id ([0-9a-f]{32})\]', line).group(1)) for depth, line in rows
            if line.startswith('run ')]
    parent = logged['parent']
    depth_of = dict((run_id, depth) for depth, run_id in runs)
    assert depth_of[parent] == 1 and all(depth_of[child] == 2 for child in logged['children'])
    position = [run_id for _, run_id in runs]
    below_parent = position[position.index(parent) + 1:position.index(parent) + 4]
    assert sorted(below_parent) == sorted(logged['children'])
    children = [client.get_run(run_id).info for run_id in logged['children']]
    assert below_parent == [i.run_id for i in sorted(children, key=lambda i: (i.start_time, i.run_name, i.run_id))]
    assert logged['deleted'] not in depth_of
    assert (0, f"experiment 'vision' [id {logged['experiments']['vision']}]: 1 run; 1 deleted run not converted") \
        in rows
    assert (2, f"image sequence '{IMAGE_KEY}': 3 steps (steps 0–2)") in rows
    assert (2, 'dataset train (training)') in rows
    assert (2, f"model classifier [{logged['model_id']}]") in rows
    assert not [line for _, line in rows if 'compressed.webp' in line]
    images_line = next(line for _, line in rows if f"id {logged['images']}]" in line)
    assert images_line.endswith(': 1 metric, 0 params, 0 tags, 4 artifacts (4 images)')

    included = _tree(convert(capsys, uri, str(tmp_path / 'aim'), '--dry-run', '--include-deleted'))
    assert any(line.startswith(f"run 'gone' [FINISHED, deleted, id {logged['deleted']}]") for _, line in included)
