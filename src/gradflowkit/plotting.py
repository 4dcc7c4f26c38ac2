"""Plots shared by the lessons. Every function takes ``ax=None`` and returns the Axes.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common forms
of colour blindness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
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


def _monitor_records(monitor_or_records) -> tuple[list, dict | None]:
    """Records and parameter shapes (None for bare records) from a Monitor or its records."""
    records = getattr(monitor_or_records, "records", monitor_or_records)
    shapes = getattr(monitor_or_records, "parameter_shapes", None)
    if not isinstance(records, (list, tuple)) or not records:
        raise ValueError("no records to plot: pass a Monitor that recorded at least one step, "
                         "or its non-empty list of records")
    return list(records), shapes


def _parameter_matrix(monitor_or_records, kind: str, weights_only: bool):
    """``records_matrix`` of a Monitor or its records, optionally only the weight matrices
    (ndim >= 2 when the Monitor's shapes are known, else names ending in "weight")."""
    from .monitor import records_matrix

    records, shapes = _monitor_records(monitor_or_records)
    steps, names, values = records_matrix(records, kind)
    if weights_only:
        if shapes is not None:
            keep = [i for i, n in enumerate(names) if len(shapes.get(n, ())) >= 2]
        else:
            keep = [i for i, n in enumerate(names) if n.endswith("weight")]
        names, values = [names[i] for i in keep], values[:, keep]
    return steps, names, values


def plot_grad_norm_heatmap(monitor_or_records, ax: Axes | None = None, *,
                           weights_only: bool = True, cmap: str = "viridis") -> Axes:
    """Gradient norm per parameter (rows, input side at the top) × recorded step (lesson 16).

    Args:
        monitor_or_records: a :class:`~gradflowkit.monitor.Monitor` or its ``records``.
        ax: where to draw (default: the current Axes).
        weights_only: show only weight matrices (default True): parameters with two or more
            dimensions for a Monitor, names ending in "weight" for bare records.
        cmap: a sequential matplotlib colormap (default ``"viridis"``).

    Returns:
        The Axes. The colour is ``log10`` of the norm; zero or missing norms are blank.
    """
    ax = _axes(ax)
    steps, names, values = _parameter_matrix(monitor_or_records, "grad_norm", weights_only)
    if not names:
        raise ValueError("no gradient norms to plot (weights_only=True keeps only weight "
                         "matrices; pass weights_only=False to show every parameter)")
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
    logs = np.where(np.isfinite(logs), logs, np.nan)
    x_edges = _step_edges(steps)
    mesh = ax.pcolormesh(x_edges, np.arange(len(names) + 1), logs.T, cmap=cmap,
                         shading="flat")
    ax.set_ylim(len(names), 0)   # the input side on top
    ax.set_yticks(np.arange(len(names)) + 0.5)
    ax.set_yticklabels(names, fontsize=10 if len(names) <= 12 else 8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("parameter (input at the top)")
    ax.grid(False)
    colorbar = ax.figure.colorbar(mesh, ax=ax)
    colorbar.set_label(r"$\log_{10}$ gradient norm")
    return ax


def _step_edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around each recorded step for pcolormesh."""
    steps = np.asarray(steps, dtype=float)
    if steps.size == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mids = (steps[:-1] + steps[1:]) / 2
    return np.concatenate([[steps[0] - (mids[0] - steps[0])], mids,
                           [steps[-1] + (steps[-1] - mids[-1])]])


def plot_monitor_histograms(record: Mapping, kind: str = "grad", ax: Axes | None = None, *,
                            names: Sequence[str] | None = None,
                            cmap: str = "cividis") -> Axes:
    """One recorded step's per-layer histograms, offset upwards by depth (lesson 16).

    Each layer's histogram is a line drawn at its own baseline (the first layer at the top),
    as the share of its values per bin scaled to the layer's own peak, so that the shapes
    and positions compare (a parameter with few entries would otherwise flatten the rest).

    Args:
        record: one element of :attr:`Monitor.records
            <gradflowkit.monitor.Monitor.records>`, recorded with ``histogram_bins``.
        kind: ``"grad"`` (histograms of ``log10|gradient|`` per parameter) or ``"act"``
            (of the activation values per watched module); default ``"grad"``.
        ax: where to draw (default: the current Axes).
        names: the layers to draw, in this order (default: all, in the record's order),
            e.g. only the weight matrices.
        cmap: a sequential matplotlib colormap for the depth (default ``"cividis"``).

    Returns:
        The Axes, with one line per layer; the y ticks name the layers.
    """
    if kind not in ("grad", "act"):
        raise ValueError(f"kind must be 'grad' or 'act'; got {kind!r}")
    key = f"{kind}_hist"
    if key not in record:
        raise ValueError(f"the record has no {key!r}: create the Monitor with "
                         "histogram_bins=<int> to keep histograms")
    hists = record[key]
    if names is not None:
        missing = [n for n in names if n not in hists]
        if missing:
            raise ValueError(f"names {missing} are not in the record's {key!r}; it has "
                             f"{list(hists)}")
        hists = {n: hists[n] for n in names}
    if not hists:
        raise ValueError(f"the record's {key!r} is empty: nothing to plot")
    ax = _axes(ax)
    shares = {name: np.asarray(c, float) / max(np.sum(c), 1) for name, (c, _) in hists.items()}
    n = len(hists)
    colors = plt.get_cmap(cmap)(np.linspace(0.0, 0.85, n))
    for i, ((name, (_, edges)), color) in enumerate(zip(hists.items(), colors)):
        edges = np.asarray(edges, float)
        centres = (edges[:-1] + edges[1:]) / 2
        base = n - 1 - i
        peak = float(shares[name].max()) or 1.0
        ax.plot(centres, base + 0.9 * shares[name] / peak, color=color, linewidth=1.6,
                label=name)
        ax.axhline(base, color=color, linewidth=0.5, alpha=0.5)
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels(list(hists)[::-1], fontsize=10 if n <= 12 else 8)
    ax.set_ylim(-0.2, n)
    ax.set_xlabel(r"$\log_{10}|$gradient$|$" if kind == "grad" else "activation value")
    ax.set_ylabel("layer (input at the top)")
    ax.set_title(f"step {record.get('step', '?')}")
    return ax


def plot_update_ratios(monitor_or_records, ax: Axes | None = None, *,
                       weights_only: bool = True, reference: float = -3.0,
                       cmap: str = "cividis") -> Axes:
    """``log10`` update-to-data ratio of each weight over the recorded steps (lesson 16).

    Args:
        monitor_or_records: a :class:`~gradflowkit.monitor.Monitor` or its ``records``
            (recorded with an optimizer).
        ax: where to draw (default: the current Axes).
        weights_only: only weight matrices (default True), as in
            :func:`plot_grad_norm_heatmap`.
        reference: height of the dashed reference line (default -3, the 1e-3 rule of
            thumb).
        cmap: a sequential matplotlib colormap for the depth (default ``"cividis"``).

    Returns:
        The Axes: one line per parameter coloured by depth (legend up to 8 lines, else a
        colour bar of the layer index), and the labelled reference line.
    """
    ax = _axes(ax)
    steps, names, values = _parameter_matrix(monitor_or_records, "update_ratio", weights_only)
    if not names:
        raise ValueError("no update ratios to plot: they need a Monitor with an optimizer "
                         "(and, with weights_only=True, weight matrices)")
    colors = plt.get_cmap(cmap)(np.linspace(0.0, 0.85, len(names)))
    for j, (name, color) in enumerate(zip(names, colors)):
        ax.plot(steps, values[:, j], color=color, linewidth=1.4, label=name)
    ax.axhline(reference, color=PALETTE["vermillion"], linestyle="--", linewidth=1.5,
               label=rf"$10^{{{reference:g}}}$ rule of thumb")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(r"$\log_{10}$ (std of update / std of weights)")
    if len(names) <= 8:
        ax.legend()
    else:
        mappable = plt.cm.ScalarMappable(cmap=ListedColormap(colors),
                                         norm=plt.Normalize(-0.5, len(names) - 0.5))
        colorbar = ax.figure.colorbar(mappable, ax=ax)
        colorbar.set_label("layer (0 = input side)")
        ax.legend(handles=[ax.get_lines()[-1]])
    return ax
