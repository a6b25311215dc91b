"""``merge_series``: one sequence from its parts, in step order, the last written point winning a step."""
from __future__ import annotations

from runmodel import METRIC, Series, merge_series


def _part(source, points):
    """points: [(step, value, position)]"""
    series = Series(METRIC, 'loss', {'entry': 'train'}, source=source)
    for step, value, position in points:
        series.append(step, 1000.0 + position, value, position)
    return series


def _points(series):
    return list(zip(series.steps, series.values, series.wall_times))


def test_one_part_in_step_order_is_kept_as_is():
    part = _part('a', [(0, 1.0, 10), (1, 2.0, 20), (5, 3.0, 30)])
    merged, superseded = merge_series([part])
    assert superseded == 0 and _points(merged) == [(0, 1.0, 1010.0), (1, 2.0, 1020.0), (5, 3.0, 1030.0)]


def test_one_part_with_a_repeated_step_keeps_the_later_point():
    part = _part('a', [(0, 1.0, 10), (1, 2.0, 20), (1, 9.0, 30), (2, 3.0, 40)])
    merged, superseded = merge_series([part])
    assert superseded == 1 and _points(merged) == [(0, 1.0, 1010.0), (1, 9.0, 1030.0), (2, 3.0, 1040.0)]


def test_one_part_out_of_step_order_is_sorted():
    part = _part('a', [(3, 1.0, 10), (1, 2.0, 20), (2, 3.0, 30)])
    merged, superseded = merge_series([part])
    assert superseded == 0 and [s for s, _, _ in _points(merged)] == [1, 2, 3]


def test_parts_from_two_files_later_file_wins_whatever_order_they_arrive_in():
    early = _part('dir/events.1', [(0, 1.0, 10), (1, 2.0, 20)])
    late = _part('dir/events.2', [(1, 7.0, 5), (2, 8.0, 15)])
    for parts in ([early, late], [late, early]):
        merged, superseded = merge_series(parts)
        assert superseded == 1
        assert _points(merged) == [(0, 1.0, 1010.0), (1, 7.0, 1005.0), (2, 8.0, 1015.0)]
