"""The benchmark's logdir holds what it says it holds, and the per-point path writes the same points."""
from __future__ import annotations

import collections
import glob
import io
import os

import numpy as np
from aim import Repo
from PIL import Image as PILImage

from benchmarks import logdir as bench
from benchmarks.run import _sample_files, per_point_rate, verify_repo
from connectors.aim_sink import index_runs
from transforms.events import read_event_stream
from runmodel import Series


def _decoded(root):
    out = []
    for path in sorted(glob.glob(os.path.join(root, 'run_*', '*', '*tfevents*'))):
        run, context = path.split(os.sep)[-3:-1]
        with open(path, 'rb') as stream:
            for item in read_event_stream(stream, path, {'entry': context}):
                assert isinstance(item, list), item  # no dead letters
                out.extend((run, context, s) for s in item if isinstance(s, Series))
    return out


def test_logdir_holds_scalars_images_and_histograms(tmp_path):
    cache = str(tmp_path)
    root, by_kind = bench.ensure_logdir(cache, 2)
    assert by_kind == bench.points_by_kind(2) == {'metric': 8_000, 'image': 80, 'distribution': 80}
    assert bench.points_by_kind(200) == {'metric': 800_000, 'image': 8_000, 'distribution': 8_000}

    counts = collections.Counter()
    for run, context, series in _decoded(root):
        counts[(run, context, series.kind, series.name)] += len(series)
        index = int(run.split('_')[1])
        for step, wall_time, value in zip(series.steps, series.wall_times, series.values):
            assert wall_time == bench.wall_time_at(index, step)
            if series.kind == 'image':
                (sample,) = value
                pixels = np.asarray(PILImage.open(io.BytesIO(sample['data'])))
                assert pixels.shape == bench.IMAGE_SIZE + (3,)
                assert np.array_equal(pixels, bench.image_at(index, context, step))
            elif series.kind == 'distribution':
                edges, bucket_counts = bench.histogram_at(index, context, step)
                assert (value['edges'], value['counts']) == (edges, bucket_counts)
                assert len(bucket_counts) == bench.HISTOGRAM_BINS
                assert sum(bucket_counts) == bench.HISTOGRAM_VALUES
    assert dict(counts) == bench.expected_points(2)

    # cached: a second call reads the marker and writes nothing
    files = sorted(glob.glob(os.path.join(root, '*', '*', '*')))
    mtimes = [os.path.getmtime(f) for f in files]
    assert bench.ensure_logdir(cache, 2) == (root, by_kind)
    assert [os.path.getmtime(f) for f in files] == mtimes

    small, small_by_kind = bench.subset_logdir(cache, root, 1)
    assert small_by_kind == bench.points_by_kind(1)
    assert collections.Counter((r, c, s.kind, s.name) for r, c, s in _decoded(small)
                               for _ in range(len(s))) == bench.expected_points(1)


def test_per_point_path_writes_every_kind_as_the_source_holds_it(tmp_path):
    root, _ = bench.ensure_logdir(str(tmp_path), 1)
    repo = str(tmp_path / 'aim-per-point')
    result = per_point_rate(_sample_files(root, 1), repo)
    assert result['by_kind'] == bench.points_by_kind(1)
    assert set(result['kind_rates']) == set(bench.KINDS)
    # what Aim's per-point path wrote reads back equal to the source, as the converted repo must (once
    # indexed: runs written with the SDK are not listed by iter_runs until they are)
    index_runs(repo, Repo.from_path(repo).list_all_runs())
    check = verify_repo(repo, 1)
    assert check['points'] == bench.points_by_kind(1)
    assert check['sequences'] == {'metric': 8, 'image': 2, 'distribution': 2}


def test_object_check_tells_a_wrong_image_or_histogram(tmp_path):
    from benchmarks.run import _object_differs
    from connectors.aim_objects import OBJECT_CONVERTERS

    root, _ = bench.ensure_logdir(str(tmp_path), 1)
    checked = set()
    for _run, context, series in _decoded(root):
        if series.kind == 'metric':
            continue
        obj = OBJECT_CONVERTERS[series.kind](series.values[1])
        step = series.steps[1]
        assert _object_differs(series.kind, obj, 0, context, step) is None
        assert _object_differs(series.kind, obj, 0, context, step + bench.OBJECT_EVERY)
        assert _object_differs(series.kind, obj, 1, context, step)
        checked.add(series.kind)
    assert checked == {'image', 'distribution'}


def test_a_measured_repo_is_set_aside_and_deleted_after_the_measurements(tmp_path):
    """The bench does not delete an earlier repo just before a timed run (see ``set_aside``): it is
    moved beside it, under ``.trash``, and deleted at the end."""
    from benchmarks.run import empty_trash, set_aside

    repo = tmp_path / 'aim-full'
    (repo / '.aim').mkdir(parents=True)
    set_aside(str(repo))
    set_aside(str(repo))  # nothing there any more: nothing to do
    assert not repo.exists()
    assert [p.name.startswith('aim-full-') for p in (tmp_path / '.trash').iterdir()] == [True]
    empty_trash(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
