"""Unit tests of gradflowkit.plotting (matplotlib Agg backend, set in conftest.py)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from gradflowkit.plotting import CYCLE, PALETTE, itertools_cycle, plot_layer_profiles, use_book_style


def test_backend_is_agg():
    assert plt.get_backend().lower() == "agg"


def test_returns_the_given_axes_with_one_line_per_profile():
    fig, ax = plt.subplots()
    profiles = {"sigmoid": [1.0, 0.25, 0.0625], "relu": np.array([1.0, 1.0, 1.0, 1.0]),
                "tanh": (2.0, 1.0)}
    out = plot_layer_profiles(profiles, ax=ax, title="Signal")
    assert out is ax
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["sigmoid", "relu", "tanh"]
    for line, values in zip(lines, profiles.values()):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(values) + 1))
        np.testing.assert_array_equal(line.get_ydata(), np.asarray(values, dtype=float))
        assert line.get_marker() == "o"
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "Signal"
    assert ax.get_xlabel() == "layer $l$ (1 = input side)"        # the book's notation
    assert ax.get_ylabel() == r"$\|\partial L / \partial x_l\|$"
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["sigmoid", "relu", "tanh"]


def test_layer_profiles_from_zero_say_so():
    fig, ax = plt.subplots()
    plot_layer_profiles({"a": [1.0, 0.5]}, ax=ax, start=0)
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [0, 1])
    assert ax.get_xlabel() == "layer $l$ (0 = input side)"
    plt.close(fig)


def test_colours_follow_the_okabe_ito_cycle():
    fig, ax = plt.subplots()
    plot_layer_profiles({str(i): [1.0, 2.0] for i in range(10)}, ax=ax)
    colours = [to_hex(line.get_color()) for line in ax.get_lines()]
    expected = [c.lower() for c in CYCLE] + [CYCLE[0].lower(), CYCLE[1].lower()]
    assert colours == expected
    assert CYCLE[:2] == (PALETTE["blue"], PALETTE["vermillion"])
    assert itertools_cycle(10) == list(CYCLE) + list(CYCLE[:2])
    assert itertools_cycle(0) == []


def test_zeros_and_negatives_become_gaps():
    fig, ax = plt.subplots()
    plot_layer_profiles({"underflow": [1e-3, 0.0, 1e-40, -1.0, 2.0]}, ax=ax)
    y = ax.get_lines()[0].get_ydata()
    assert math.isnan(y[1]) and math.isnan(y[3])
    assert y[0] == 1e-3 and y[2] == 1e-40 and y[4] == 2.0


def test_labels_and_default_axes():
    fig, ax = plt.subplots()
    plt.sca(ax)
    out = plot_layer_profiles({"a": [1.0, 2.0]}, ylabel="norm", xlabel="depth")
    assert out is ax  # the current Axes
    assert ax.get_ylabel() == "norm" and ax.get_xlabel() == "depth"
    assert ax.get_title() == ""


def test_empty_profiles_raise():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"^profiles is empty"):
        plot_layer_profiles({}, ax=ax)
    assert ax.get_lines() == []


def test_use_book_style_sets_the_palette():
    with plt.rc_context():
        use_book_style()
        colours = [c["color"] for c in plt.rcParams["axes.prop_cycle"]]
        assert colours == list(CYCLE)
        assert plt.rcParams["axes.grid"] is True
        assert tuple(plt.rcParams["figure.figsize"]) == (7.0, 4.0)
