"""Plots shared by the lessons. Every function takes ``ax=None`` and returns the Axes.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common forms
of colour blindness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike

#: Okabe & Ito (2008) colour-blind-safe palette.
PALETTE: dict[str, str] = {
    "blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
    "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000",
}
#: The order in which lines are coloured.
CYCLE: tuple[str, ...] = tuple(PALETTE[c] for c in
                               ("blue", "vermillion", "green", "orange", "purple", "sky",
                                "black", "yellow"))


def use_book_style() -> None:
    """Set matplotlib defaults for the book: palette, legible font sizes, light grid."""
    plt.rcParams.update({
        "axes.prop_cycle": plt.cycler(color=CYCLE),
        "figure.figsize": (7.0, 4.0),
        "figure.dpi": 100,
        "savefig.dpi": 100,
        "font.size": 11,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.fontsize": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })


def _axes(ax: Axes | None) -> Axes:
    return plt.gca() if ax is None else ax


def plot_layer_profiles(profiles: Mapping[str, Sequence[float]], *, ax: Axes | None = None,
                        ylabel: str = r"$\|\partial L / \partial x_l\|$",
                        xlabel: str = "layer $l$ (0 = input side)",
                        title: str | None = None, start: int = 0) -> Axes:
    """One line per profile: a per-layer quantity on a log scale against the layer index.

    Args:
        profiles: ``{legend label: values per layer}``; zeros are drawn as gaps, since a
            log axis cannot show them (underflow to 0 is reported by the caller).
        ax: where to draw (default: the current Axes).
        ylabel: y-axis label (default: the backward-signal norm).
        xlabel: x-axis label.
        title: optional title.
        start: layer index of the first value (default 0, as in
            :class:`~gradflowkit.gradients.LayerProfile`); pass 1 to plot against the book's
            notation, where the input is :math:`x_1`.

    Returns:
        The Axes.
    """
    ax = _axes(ax)
    start = int(start)
    if not profiles:
        raise ValueError("profiles is empty; pass {label: values per layer}")
    for (label, values), color in zip(profiles.items(), itertools_cycle(len(profiles))):
        values = np.asarray(values, dtype=float)
        shown = np.where(values > 0, values, np.nan)
        ax.semilogy(start + np.arange(len(values)), shown, marker="o", markersize=3, label=label,
                    color=color)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def itertools_cycle(n: int) -> list[str]:
    """The first ``n`` colours of :data:`CYCLE`, repeating if needed."""
    return [CYCLE[i % len(CYCLE)] for i in range(n)]


def plot_layer_histograms(samples: Mapping[str, ArrayLike], *, ax: Axes | None = None,
                          bins: int = 40, value_range: tuple[float, float] | None = None,
                          log_x: bool = False, xlabel: str = "value",
                          cmap: str = "cividis") -> Axes:
    """One histogram per layer, drawn as a line and coloured by depth (Glorot & Bengio style).

    Args:
        samples: ``{legend label: values}`` in depth order (input side first); each array is
            flattened.
        ax: where to draw (default: the current Axes).
        bins: number of bins (default 40), equally spaced on the x-axis as drawn.
        value_range: ``(low, high)`` of the bins (default: the smallest and largest value
            over all samples). Values outside are not counted.
        log_x: histogram ``|values|`` on a log x-axis (default False); zeros are dropped,
            since a log axis cannot show them.
        xlabel: x-axis label (default "value").
        cmap: a sequential matplotlib colormap for the depth (default ``"cividis"``, which
            stays ordered with the common forms of colour blindness).

    Returns:
        The Axes. The y-axis is the share of each layer's values per bin, so curves of
        layers with different numbers of values compare.
    """
    ax = _axes(ax)
    if not samples:
        raise ValueError("samples is empty; pass {label: values per layer}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    arrays = {label: np.asarray(v, dtype=float).ravel() for label, v in samples.items()}
    if log_x:
        arrays = {label: np.abs(v[v != 0]) for label, v in arrays.items()}
    arrays = {label: v[np.isfinite(v)] for label, v in arrays.items()}
    pooled = np.concatenate(list(arrays.values()))
    if value_range is None:
        if pooled.size == 0:
            raise ValueError("no finite (non-zero, with log_x) values to histogram")
        value_range = (float(pooled.min()), float(pooled.max()))
    low, high = value_range
    if not low < high or (log_x and low <= 0):
        raise ValueError(f"value_range must have low < high (and low > 0 with log_x), "
                         f"got {value_range}")
    edges = np.geomspace(low, high, bins + 1) if log_x else np.linspace(low, high, bins + 1)
    centres = np.sqrt(edges[:-1] * edges[1:]) if log_x else (edges[:-1] + edges[1:]) / 2
    colors = plt.get_cmap(cmap)(np.linspace(0.0, 0.85, len(arrays)))  # skip the palest end
    for (label, values), color in zip(arrays.items(), colors):
        counts, _ = np.histogram(values, bins=edges)
        share = counts / max(values.size, 1)
        ax.plot(centres, share, color=color, label=label, linewidth=1.6)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of values per bin")
    ax.legend()
    return ax
