"""plot_layer_profiles(start=...): where the per-layer values land on the x-axis (lesson 1)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from gradflowkit.plotting import plot_layer_profiles


@pytest.mark.parametrize("start", [0, 1, 5])
def test_values_are_plotted_from_start(start):
    values = [1.0, 1e-3, 1e-6, 2.0]
    _, ax = plt.subplots()
    plot_layer_profiles({"a": values}, ax=ax, start=start)
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), start + np.arange(len(values)))
    np.testing.assert_array_equal(line.get_ydata(), values)
    assert ax.get_yscale() == "log"


def test_default_start_is_one_and_zeros_are_gaps():
    """The book numbers layers from 1 (the notation page): so does the default."""
    _, ax = plt.subplots()
    plot_layer_profiles({"a": [1.0, 0.0, 3.0]}, ax=ax)
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
    assert np.isnan(line.get_ydata()[1])
