"""gradflowkit.plotting.plot_spread: the median line and the percentile band of an ensemble.

Oracle: numpy's median and percentile of the same samples, read back from the Artists."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradflowkit.plotting import CYCLE, plot_spread, use_book_style


def _band_limits(collection):
    """Lower and upper edge of a fill_between band, per x (from its polygon)."""
    vertices = collection.get_paths()[0].vertices
    xs = np.unique(vertices[:, 0])
    lower = np.array([vertices[vertices[:, 0] == x, 1].min() for x in xs])
    upper = np.array([vertices[vertices[:, 0] == x, 1].max() for x in xs])
    return xs, lower, upper


def test_median_line_and_min_max_band():
    rng = np.random.default_rng(3)
    samples = rng.lognormal(size=(9, 6))
    fig, ax = plt.subplots()
    out = plot_spread(samples, ax=ax, x=np.arange(1, 7), label="net", color=CYCLE[1])
    assert out is ax and ax.get_yscale() == "log"
    line = ax.get_lines()[-1]
    np.testing.assert_allclose(line.get_ydata(), np.median(samples, 0))
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, 7))
    assert line.get_label() == "net" and line.get_color() == CYCLE[1]
    xs, lower, upper = _band_limits(ax.collections[-1])
    np.testing.assert_allclose(xs, np.arange(1, 7))
    np.testing.assert_allclose(lower, samples.min(0))
    np.testing.assert_allclose(upper, samples.max(0))


def test_quartile_band_linear_axis_and_default_colour():
    use_book_style()
    samples = np.arange(40.0).reshape(8, 5) - 10
    fig, ax = plt.subplots()
    plot_spread(samples, ax=ax, band=(25, 75), log_y=False, marker=None)
    assert ax.get_yscale() == "linear"
    assert ax.get_lines()[-1].get_color() == CYCLE[0]     # the first colour of the cycle
    _, lower, upper = _band_limits(ax.collections[-1])
    np.testing.assert_allclose(lower, np.percentile(samples, 25, axis=0))
    np.testing.assert_allclose(upper, np.percentile(samples, 75, axis=0))


def test_non_positive_values_are_gaps_without_warnings():
    samples = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, -1.0]])
    fig, ax = plt.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_spread(samples, ax=ax)
    y = ax.get_lines()[-1].get_ydata()
    assert y[0] == 2.0 and np.isnan(y[1]) and y[2] == 2.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(samples=np.ones(3)), "members, positions"),
    (dict(samples=np.ones((2, 3)), band=(50, 10)), "band must be"),
    (dict(samples=np.ones((2, 3)), x=[1, 2]), "x must have 3"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_spread(**kwargs)
