"""MLflow artifacts end to end: SVG figures become PNG images. Logged with the real MLflow client,
converted by the pipeline, read back through the Aim SDK."""
from __future__ import annotations

import io

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

