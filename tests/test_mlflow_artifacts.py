"""MLflow artifacts end to end: SVG figures become PNG images, and artifacts on a remote (S3, GCS) artifact
store come through MLflow's own artifact repository, with no temporary download left behind. Logged with
the real MLflow client, converted by the pipeline, read back through the Aim SDK."""
from __future__ import annotations

import io
import json

import pytest

from pipelines import mlflow_to_aim
from samples.mlflow_store import SVG_LOGO, SVG_SIZE, scratch_dir, svg_rendering_matches

pytestmark = pytest.mark.slow


def aim_images(repo):
    """{mlflow run id: {image name: (format, width, height, caption, PIL image)}} through the Aim SDK."""
    from aim import Repo

    out = {}
    for run in Repo.from_path(repo).iter_runs():
        images = {}
        for name, context, _ in run.iter_sequence_info_by_type(('aim.image', 'list(aim.image)')):
            steps, (values, _, _) = run.get_image_sequence(name, context).data.items_list()
            assert steps == [0]
            image = values[0]
            images[name] = (image.storage['format'], image.storage['width'], image.storage['height'],
                            image.caption, image.to_pil_image())
        out[run.get('mlflow_run_id')] = images
    return out


def _figure():
    """A matplotlib figure as users log them: 4 x 3 inches, a red line, a title (text needs fonts)."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3))
    axes = figure.subplots()
    axes.plot([0, 1, 2, 3], [3, 1, 2, 0], color='#ff0000', linewidth=4)
    axes.set_title('validation loss')
    return figure


def test_svg_figures_become_png_images(tmp_path):
    """``log_figure(fig, '….svg')`` (matplotlib writes sizes in pt) and a hand-written SVG (px size and a
    viewBox): each becomes an ``aim.Image`` holding a PNG of the SVG's own size, captioned with its path."""
    from mlflow import MlflowClient

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        experiment = client.create_experiment('plots', artifact_location=f'file://{root}/artifacts')
        run_id = client.create_run(experiment, run_name='with-figures').info.run_id
        client.log_figure(run_id, _figure(), 'plots/loss.svg')
        client.log_figure(run_id, _figure(), 'plots/loss.png')
        (tmp_path / 'logo.svg').write_bytes(SVG_LOGO)
        client.log_artifact(run_id, str(tmp_path / 'logo.svg'), 'icons')
        client.set_terminated(run_id)
        repo = str(tmp_path / 'aim')
        assert mlflow_to_aim.run(['--tracking-uri', uri, '--repo', repo, '--skipped', str(tmp_path / 's.jsonl'),
                                  '--strict']) == 0  # nothing skipped

    images = aim_images(repo)[run_id]
    assert sorted(images) == ['icons/logo.svg', 'plots/loss.png', 'plots/loss.svg']
    fmt, width, height, caption, pil = images['plots/loss.svg']
    # matplotlib's SVG says 288pt x 216pt: 384 x 288 CSS pixels (its PNG, at 100 dpi, is 400 x 300)
    assert (fmt, width, height, caption, pil.size) == ('png', 384, 288, 'plots/loss.svg', (384, 288))
    assert images['plots/loss.png'][:3] == ('png', 400, 300)
    pixels = pil.convert('RGBA')
    assert any(pixels.getpixel((x, y)) == (255, 0, 0, 255) for x in range(384) for y in range(288))  # the line
    fmt, width, height, caption, pil = images['icons/logo.svg']
    assert (fmt, (width, height), caption) == ('png', SVG_SIZE, 'icons/logo.svg')
    png = io.BytesIO()
    pil.save(png, format='PNG')
    assert svg_rendering_matches(png.getvalue())


# ------------------------------------------------------------------------------- artifacts on S3 (moto)

@pytest.fixture(params=['sqlite', 'server'])
def s3_artifact_store(request, s3_server, s3fs_client, monkeypatch):
    """A tracking store whose artifacts live in S3 (moto's server): a SQLite store whose experiment's
    artifact location is ``s3://…``, or a real ``mlflow server`` with ``--default-artifact-root s3://…``
    and ``--no-serve-artifacts`` (clients read and write S3 themselves, the usual production setup).
    MLflow's S3 artifact repository reaches moto through ``MLFLOW_S3_ENDPOINT_URL``. A rich run and a
    small one are logged with the real client."""
    import uuid

    from mlflow import MlflowClient

    from samples.mlflow_store import log_many_runs, log_rich_run
    from tests import servers

    env = {**servers.S3_ENV, 'MLFLOW_S3_ENDPOINT_URL': s3_server.url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv('AWS_ENDPOINT_URL', raising=False)  # MLflow must find S3 by its own variable
    bucket = f'mlflow-{uuid.uuid4().hex[:12]}'
    s3fs_client.mkdir(bucket)
    with scratch_dir() as root:
        if request.param == 'sqlite':
            uri = f'sqlite:///{root}/mlflow.db'
            client = MlflowClient(uri)
            experiment = client.create_experiment('remote', artifact_location=f's3://{bucket}/artifacts')
            yield uri, client, experiment, bucket, root
            return
        artifacts = ['--default-artifact-root', f's3://{bucket}/artifacts', '--no-serve-artifacts']
        with servers.mlflow_server(root, artifacts, env) as server:
            client = MlflowClient(server.url)
            experiment = client.create_experiment('remote')
            yield server.url, client, experiment, bucket, root


def _convert_leaving_no_download(uri, client, experiment, root, stored_paths, tmp_path, monkeypatch):
    """Logs a rich run and a plain one into ``experiment`` (whose artifacts live in a remote store),
    checks that ``stored_paths()`` (every object path in the store) holds the rich run's artifacts and
    that nothing was written under ``root``; then converts and checks that no download is left behind
    and that everything came through."""
    import os
    import tempfile
    import threading

    from connectors.mlflow_source import MlflowSource
    from samples.mlflow_store import log_many_runs, log_rich_run
    from tests.test_mlflow_to_aim import assert_converted

    expected = log_rich_run(client, experiment, 'on-remote', salt=6, steps=5)
    expected.update(log_many_runs(client, experiment, 1, prefix='plain'))
    (rich_id,) = [k for k, v in expected.items() if v['name'] == 'on-remote']
    # the artifacts are in the bucket, and nowhere on this disk
    stored = sorted(path.split(f'{rich_id}/artifacts/', 1)[1] for path in stored_paths() if rich_id in path)
    assert stored == sorted([*expected[rich_id]['artifacts'], *expected[rich_id]['skipped_artifacts']])
    assert not [f for _, _, files in os.walk(root) for f in files if f.endswith(('.png', '.wav', '.svg'))]

    # Every temporary directory made while a run is fetched (runferry's downloads and MLflow's own) is
    # recorded, under a temp root of this test's; after the conversion none is left, and no artifact file
    # is anywhere under that root (Beam's runner leaves its own temp dirs there: they hold no artifact).
    downloads = tmp_path / 'tmp'
    downloads.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(downloads))
    # (a run's artifacts and models are read in MlflowSource._record, whether runs are read one by one
    # or, from a SQL store, many at a time)
    made, fetching, real_mkdtemp, real_record = [], threading.local(), tempfile.mkdtemp, MlflowSource._record

    def mkdtemp(*args, **kwargs):
        path = real_mkdtemp(*args, **kwargs)
        if getattr(fetching, 'on', False):
            made.append(path)
        return path

    def record(self, run, metrics):
        fetching.on = True
        try:
            return real_record(self, run, metrics)
        finally:
            fetching.on = False

    monkeypatch.setattr(tempfile, 'mkdtemp', mkdtemp)
    monkeypatch.setattr(MlflowSource, '_record', record)
    repo = str(tmp_path / 'aim')
    argv = ['--tracking-uri', uri, '--repo', repo, '--skipped', str(tmp_path / 'skipped.jsonl')]
    assert mlflow_to_aim.run(argv) == 0
    assert made and all(path.startswith(str(downloads)) and not os.path.exists(path) for path in made), made
    names = {os.path.basename(path) for path in [*expected[rich_id]['artifacts'], *expected[rich_id]['skipped_artifacts']]}
    assert [name for _, _, files in os.walk(downloads) for name in files if name in names] == []
    assert_converted(repo, expected)
    letters = [json.loads(line) for line in open(tmp_path / 'skipped.jsonl')]
    assert [s['source'].split('/', 1)[1] for s in letters if s['kind'] == 'artifact'] == ['model/weights.bin']


def test_artifacts_on_s3_are_converted_and_no_download_is_left(s3_artifact_store, s3fs_client, tmp_path,
                                                              monkeypatch):
    uri, client, experiment, bucket, root = s3_artifact_store
    _convert_leaving_no_download(uri, client, experiment, root, lambda: s3fs_client.find(f'{bucket}/artifacts'),
                                 tmp_path, monkeypatch)


# ------------------------------------------------------------------ artifacts on GCS (gcp-storage-emulator)

def test_artifacts_on_gcs_are_converted_and_no_download_is_left(gcs_server, gcsfs_client, tmp_path, monkeypatch):
    """A SQLite store whose experiment's artifact location is ``gs://…``: MLflow's GCS artifact repository
    (google-cloud-storage) writes and reads the emulator's bucket. With ``STORAGE_EMULATOR_HOST`` set,
    ``google.cloud.storage.Client()`` talks to it with anonymous credentials (no project or key needed)."""
    import uuid

    from mlflow import MlflowClient

    for key, value in gcs_server.env.items():
        monkeypatch.setenv(key, value)
    for key in ('GOOGLE_APPLICATION_CREDENTIALS', 'GOOGLE_CLOUD_PROJECT', 'API_ENDPOINT_OVERRIDE'):
        monkeypatch.delenv(key, raising=False)  # only the emulator variable may lead the client there
    bucket = f'mlflow-{uuid.uuid4().hex[:12]}'
    gcsfs_client.mkdir(bucket)
    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        experiment = client.create_experiment('remote', artifact_location=f'gs://{bucket}/artifacts')

        def stored_paths():
            gcsfs_client.invalidate_cache()
            return gcsfs_client.find(f'{bucket}/artifacts')

        _convert_leaving_no_download(uri, client, experiment, root, stored_paths, tmp_path, monkeypatch)
