"""Monitor plots: what is drawn equals the records (log10 norms, ratios, histograms)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from gradflowkit.monitor import Monitor
from gradflowkit.nets import DeepMLP
from gradflowkit.plotting import (plot_grad_norm_heatmap, plot_monitor_histograms,
                                  plot_update_ratios)


@pytest.fixture
def monitor():
    model = DeepMLP(depth=3, width=6, out_features=2, activation="tanh")
    with torch.no_grad():
        for block in model.blocks:
            block.linear.bias.uniform_(-0.1, 0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 6), torch.randint(0, 2, (16,))
    with Monitor(model, optimizer=opt, every=2, histogram_bins=8) as mon:
        for _ in range(6):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return mon


WEIGHTS = ["blocks.0.linear.weight", "blocks.1.linear.weight", "blocks.2.linear.weight",
           "head.weight"]


def test_heatmap_colours_are_log10_norms_input_on_top(monitor):
    _, ax = plt.subplots()
    assert plot_grad_norm_heatmap(monitor, ax=ax) is ax
    (mesh,) = ax.collections
    values = np.asarray(mesh.get_array()).reshape(len(WEIGHTS), 3)
    expected = np.log10([[r["grad_norm"][n] for r in monitor.records] for n in WEIGHTS])
    np.testing.assert_allclose(values, expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == WEIGHTS
    assert ax.get_ylim()[0] > ax.get_ylim()[1]          # row 0 (input side) on top
    colorbar_axes = [a for a in ax.figure.axes if a is not ax]
    assert "log" in colorbar_axes[0].get_ylabel()


def test_heatmap_all_parameters_and_bare_records(monitor):
    _, ax = plt.subplots()
    plot_grad_norm_heatmap(monitor.records, ax=ax, weights_only=False)
    assert len(ax.get_yticklabels()) == 8
    _, ax = plt.subplots()
    plot_grad_norm_heatmap(monitor.records, ax=ax)      # names ending in "weight"
    assert [t.get_text() for t in ax.get_yticklabels()] == WEIGHTS


def test_update_ratios_lines_and_reference(monitor):
    _, ax = plt.subplots()
    assert plot_update_ratios(monitor, ax=ax) is ax
    lines = ax.get_lines()
    assert [line.get_label() for line in lines[:-1]] == WEIGHTS
    for line, name in zip(lines, WEIGHTS):
        np.testing.assert_array_equal(line.get_xdata(), [0, 2, 4])
        np.testing.assert_allclose(line.get_ydata(),
                                   [r["update_ratio"][name] for r in monitor.records])
    reference = lines[-1]
    assert reference.get_linestyle() == "--"
    np.testing.assert_allclose(reference.get_ydata(), [-3.0, -3.0])
    assert "rule of thumb" in reference.get_label()
    assert ax.get_legend() is not None


@pytest.mark.parametrize("kind, key", [("grad", "grad_hist"), ("act", "act_hist")])
def test_histograms_one_line_per_layer_at_offsets(monitor, kind, key):
    record = monitor.records[1]
    _, ax = plt.subplots()
    assert plot_monitor_histograms(record, kind, ax=ax) is ax
    hists = record[key]
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == list(hists)
    n = len(hists)
    for i, (line, (counts, edges)) in enumerate(zip(lines, hists.values())):
        np.testing.assert_allclose(line.get_xdata(), (edges[:-1] + edges[1:]) / 2)
        shares = counts / counts.sum()
        np.testing.assert_allclose(line.get_ydata(), n - 1 - i + 0.9 * shares / shares.max())
    assert [t.get_text() for t in ax.get_yticklabels()] == list(hists)[::-1]


def test_histograms_selected_names(monitor):
    _, ax = plt.subplots()
    plot_monitor_histograms(monitor.records[0], "grad", ax=ax, names=WEIGHTS[:2])
    labels = [line.get_label() for line in ax.get_lines()]
    assert [label for label in labels if not label.startswith("_")] == WEIGHTS[:2]


def test_plot_errors(monitor):
    with pytest.raises(ValueError, match="kind must be"):
        plot_monitor_histograms(monitor.records[0], "loss")
    with pytest.raises(ValueError, match="histogram_bins"):
        plot_monitor_histograms({"step": 0, "grad_norm": {}}, "grad")
    with pytest.raises(ValueError, match="not in the record"):
        plot_monitor_histograms(monitor.records[0], "act", names=["nope"])
    with pytest.raises(ValueError, match="no records"):
        plot_grad_norm_heatmap([])
    model = nn.Linear(2, 2)
    with Monitor(model) as mon:
        model(torch.ones(1, 2)).sum().backward()
        mon.step()
    with pytest.raises(ValueError, match="optimizer"):
        plot_update_ratios(mon)
