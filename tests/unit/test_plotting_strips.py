"""Unit test of plotting.plot_strips: points, columns and medians where the docstring says."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradflowkit.plotting import plot_strips


def test_points_columns_and_medians():
    groups = {"T = 5": {"a": [3.0, 1.0, 2.0], "b": [5.0, np.nan]},
              "T = 10": {"a": [4.0], "b": [6.0, 7.0, 8.0, 9.0]}}
    fig, ax = plt.subplots()
    plot_strips(groups, ax=ax, colors={"a": "#000000", "b": "#0072B2"},
                labels={"a": "first"}, width=0.8)
    points = ax.collections[::2]                  # scatter, then its median line
    assert [len(c.get_offsets()) for c in points] == [3, 1, 1, 4]   # the NaN is left out
    for c, (g, k) in zip(points, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        x = c.get_offsets()[:, 0]
        left = g - 0.4 + 0.4 * k
        assert np.all((x > left) & (x < left + 0.4))
        assert np.all(np.diff(c.get_offsets()[:, 1]) >= 0)          # sorted
    medians = [seg[0][1] for c in ax.collections[1::2] for seg in c.get_segments()]
    assert medians == [2.0, 5.0, 4.0, 7.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["T = 5", "T = 10"]
    assert ax.get_legend_handles_labels()[1] == ["first", "b"]
    plt.close(fig)


def test_log_axis_drops_non_positive_values_and_empty_input_fails():
    fig, ax = plt.subplots()
    plot_strips({"g": {"a": [0.0, 1e-3, 1.0]}}, ax=ax, log_y=True)
    assert len(ax.collections[0].get_offsets()) == 2 and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="groups is empty"):
        plot_strips({}, ax=ax)
    plt.close(fig)
