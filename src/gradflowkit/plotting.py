"""Plots shared by the lessons. Every function takes ``ax=None`` and returns the Axes.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common forms
of colour blindness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

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
