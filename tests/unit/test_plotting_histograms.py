"""plot_layer_histograms: bin shares against numpy.histogram, log bins, colours, errors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradflowkit.plotting import plot_layer_histograms


def test_shares_match_numpy_histogram():
    rng = np.random.default_rng(0)
    samples = {"layer 1": rng.normal(size=500), "layer 2": rng.normal(size=(10, 30)) * 0.5}
    _, ax = plt.subplots()
    plot_layer_histograms(samples, ax=ax, bins=20, value_range=(-4.0, 4.0))
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["layer 1", "layer 2"]
    for line, values in zip(lines, samples.values()):
        counts, edges = np.histogram(np.ravel(values), bins=np.linspace(-4, 4, 21))
        np.testing.assert_allclose(line.get_ydata(), counts / np.size(values))
        np.testing.assert_allclose(line.get_xdata(), (edges[:-1] + edges[1:]) / 2)
    assert not np.allclose(lines[0].get_color(), lines[1].get_color())


def test_log_x_uses_absolute_values_and_drops_zeros():
    values = np.array([0.0, -1e-3, 1e-3, 1e-1, -10.0])
    _, ax = plt.subplots()
    plot_layer_histograms({"g": values}, ax=ax, bins=4, value_range=(1e-4, 1e2), log_x=True)
    (line,) = ax.get_lines()
    assert ax.get_xscale() == "log"
    # Edges 1e-4, 10^-2.5, 1e-1, 10^0.5, 1e2: 1e-3 twice in bin 0, 0.1 in bin 2, 10 in bin 3.
    np.testing.assert_allclose(line.get_ydata(), [0.5, 0.0, 0.25, 0.25])
    edges = np.geomspace(1e-4, 1e2, 5)
    np.testing.assert_allclose(line.get_xdata(), np.sqrt(edges[:-1] * edges[1:]))


def test_default_range_covers_all_values():
    _, ax = plt.subplots()
    plot_layer_histograms({"a": [1.0, 2.0, 3.0], "b": [5.0]}, ax=ax, bins=4)
    shares = [line.get_ydata() for line in ax.get_lines()]
    np.testing.assert_allclose([s.sum() for s in shares], [1.0, 1.0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(samples={}), "samples is empty"),
    (dict(samples={"a": [1.0]}, bins=0), "bins must be >= 1"),
    (dict(samples={"a": [1.0, 2.0]}, value_range=(2.0, 1.0)), "value_range"),
    (dict(samples={"a": [1.0, 2.0]}, value_range=(0.0, 1.0), log_x=True), "value_range"),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_layer_histograms(**kwargs)
