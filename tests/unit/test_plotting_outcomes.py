"""plot_outcome_shares, wilson_interval and plot_fraction (lessons 3 and 4)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import StepPatch

from gradflowkit.plotting import plot_fraction, plot_outcome_shares, wilson_interval


def test_shares_stack_to_one():
    _, ax = plt.subplots()
    counts = {"a": [1, 0, 3], "b": [1, 2, 1]}
    plot_outcome_shares([1, 2, 3], counts, ax=ax)
    patches = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert [p.get_label() for p in patches] == ["a", "b"]
    top = patches[-1].get_data()
    np.testing.assert_allclose(top.values, [1, 1, 1])
    np.testing.assert_allclose(patches[0].get_data().values, [0.5, 0, 0.75])
    np.testing.assert_allclose(top.edges, [0.5, 1.5, 2.5, 3.5])


def test_shares_reject_bad_counts():
    with pytest.raises(ValueError, match="one entry per position"):
        plot_outcome_shares([1, 2], {"a": [1, 2, 3]})
    with pytest.raises(ValueError, match="at least one member"):
        plot_outcome_shares([1, 2], {"a": [1, 0]})
    with pytest.raises(ValueError, match="increasing"):
        plot_outcome_shares([2, 1], {"a": [1, 1]})


def test_wilson_interval_closed_forms():
    low, high = wilson_interval(0, 16)
    assert low == 0 and high == pytest.approx(1.96 ** 2 / (16 + 1.96 ** 2))
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low2, high2 = wilson_interval(np.array([3, 13]), 16)
    assert low2[0] == pytest.approx(1 - high2[1]) and high2[0] == pytest.approx(1 - low2[1])
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_plot_fraction_draws_the_shares():
    _, ax = plt.subplots()
    plot_fraction([1, 2, 4], [0, 8, 16], 16, ax=ax, label="x")
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), [0, 0.5, 1])
    assert ax.get_legend_handles_labels()[1] == ["x"]
