"""Plots shared by the lessons. Every function takes ``ax=None`` and returns the Axes.

Colours come from the Okabe-Ito palette, which stays distinguishable with the common forms
of colour blindness.
"""

from __future__ import annotations

import warnings
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
                        xlabel: str | None = None,
                        title: str | None = None, start: int = 1) -> Axes:
    """One line per profile: a per-layer quantity on a log scale against the layer index.

    Args:
        profiles: ``{legend label: values per layer}``; zeros are drawn as gaps, since a
            log axis cannot show them (underflow to 0 is reported by the caller).
        ax: where to draw (default: the current Axes).
        ylabel: y-axis label (default: the backward-signal norm).
        xlabel: x-axis label (default: "layer $l$ (``start`` = input side)").
        title: optional title.
        start: layer index of the first value (default 1: the book's notation, where the
            input is :math:`x_1`); pass 0 for 0-based indices such as a Python list's.

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
    ax.set_xlabel(f"layer $l$ ({start} = input side)" if xlabel is None else xlabel)
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
    from .monitor import records_matrix, weight_matrix_names

    records, shapes = _monitor_records(monitor_or_records)
    steps, names, values = records_matrix(records, kind)
    if weights_only:
        weights = set(weight_matrix_names(names, shapes))
        keep = [i for i, n in enumerate(names) if n in weights]
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
                                         norm=plt.Normalize(0.5, len(names) + 0.5))
        colorbar = ax.figure.colorbar(mappable, ax=ax)
        colorbar.set_label("parameter (1 = input side)")
        ax.legend(handles=[ax.get_lines()[-1]])
    return ax


def plot_spread(samples: ArrayLike, *, ax: Axes | None = None, x: ArrayLike | None = None,
                label: str | None = None, color: str | None = None,
                band: tuple[float, float] = (0.0, 100.0), log_y: bool = True,
                marker: str | None = "o", alpha: float = 0.2, **line_kw) -> Axes:
    """The median over an ensemble as a line, and a band between two percentiles.

    For a per-layer (or per-step) quantity measured on ``S`` members: the figures of the
    book show the spread over seeds, not one run.

    Args:
        samples: ``(S, K)`` values, one row per member.
        ax: where to draw (default: the current Axes).
        x: the ``K`` positions (default ``0 … K-1``).
        label: legend label of the median line (default none).
        color: of the line and the band (default: the next colour of the cycle).
        band: the percentiles that bound the band (default ``(0, 100)``: min to max).
        log_y: log y-axis (default True); values <= 0 are left out of the median and
            the band, since a log axis cannot show them.
        marker: marker of the median line (default ``"o"``, size 3; None for none).
        alpha: opacity of the band (default 0.2).
        **line_kw: passed to ``ax.plot`` for the median line (e.g. ``linestyle``).

    Returns:
        The Axes; its last line is the median, its last collection the band.
    """
    ax = _axes(ax)
    values = np.asarray(samples, dtype=float)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"samples must be (members, positions), got shape {values.shape}")
    low, high = band
    if not 0 <= low <= high <= 100:
        raise ValueError(f"band must be two percentiles 0 <= low <= high <= 100, got {band}")
    positions = np.arange(values.shape[1]) if x is None else np.asarray(x, dtype=float)
    if positions.shape != (values.shape[1],):
        raise ValueError(f"x must have {values.shape[1]} entries, got {positions.shape}")
    if log_y:
        values = np.where(values > 0, values, np.nan)
    with warnings.catch_warnings():   # a column with no positive value: a gap, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(values, axis=0)
        lower, upper = np.nanpercentile(values, [low, high], axis=0)
    if marker is not None:
        line_kw.setdefault("markersize", 3)
    (line,) = ax.plot(positions, median, color=color, marker=marker, label=label, **line_kw)
    ax.fill_between(positions, lower, upper, color=line.get_color(), alpha=alpha, linewidth=0)
    if log_y:
        ax.set_yscale("log")
    return ax


def plot_strips(groups: Mapping[str, Mapping[str, ArrayLike]], *, ax: Axes | None = None,
                colors: Mapping[str, str] | None = None,
                labels: Mapping[str, str] | None = None, width: float = 0.8,
                log_y: bool = False, size: float = 16.0) -> Axes:
    """A strip plot of ensemble results: one point per member, series side by side per group.

    Each group (e.g. a sequence length) is one tick on the x-axis; within it every series
    (e.g. a network type) gets a column, in the order of the first group. A column's points
    are spread evenly across it in sorted order (no random jitter, so two runs draw the
    same figure), and a short black line marks their median. NaN values (e.g. members that
    never reached a level) are left out of both.

    Args:
        groups: ``{group label: {series name: values}}``.
        ax: where to draw (default: the current Axes).
        colors: ``{series name: colour}`` (default: the book's cycle, in series order).
        labels: ``{series name: legend label}`` (default: the series names).
        width: of a group, in x units (default 0.8; groups are 1 apart).
        log_y: log y-axis (default False).
        size: marker area in points² (default 16).

    Returns:
        The Axes; one ``PathCollection`` per (group, series) with points, in order.
    """
    ax = _axes(ax)
    if not groups:
        raise ValueError("groups is empty; pass {group label: {series name: values}}")
    series = list(next(iter(groups.values())))
    if not series:
        raise ValueError("the first group has no series")
    colors = dict(zip(series, CYCLE)) if colors is None else dict(colors)
    labels = {} if labels is None else dict(labels)
    column = width / len(series)
    for g, (group, by_series) in enumerate(groups.items()):
        for k, name in enumerate(series):
            values = np.asarray(by_series.get(name, []), dtype=float).ravel()
            values = np.sort(values[np.isfinite(values)])
            if log_y:
                values = values[values > 0]
            left = g - width / 2 + k * column
            x = left + column * (np.arange(len(values)) + 0.5) / max(len(values), 1)
            label = labels.get(name, name) if g == 0 else None
            ax.scatter(x, values, s=size, color=colors.get(name), label=label,
                       edgecolors="none", alpha=0.85, zorder=3)
            if len(values):
                ax.hlines(np.median(values), left + 0.1 * column, left + 0.9 * column,
                          color=PALETTE["black"], lw=1.5, zorder=4)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_xlim(-0.5, len(groups) - 0.5)
    if log_y:
        ax.set_yscale("log")
    return ax


def plot_outcome_shares(x: ArrayLike, counts: Mapping[str, ArrayLike], *,
                        ax: Axes | None = None,
                        colors: Mapping[str, str] | None = None) -> Axes:
    """Stacked shares: at each ``x``, the share of ensemble members in each outcome.

    For outcomes that depend on the seed or on the CPU (finite / inf / NaN, vanished /
    exploded), the book shows how the members split, not what one run did. Each outcome is
    one filled staircase (a column per position, reaching halfway to its neighbours), which
    draws far faster than one bar per position and outcome.

    Args:
        x: increasing positions, shape ``(K,)``.
        counts: ``{outcome: counts per position}`` (each ``(K,)``), stacked bottom-up in
            this order; at each position they are divided by their sum.
        ax: where to draw (default: the current Axes).
        colors: ``{outcome: colour}`` (default: the book's cycle, in outcome order).

    Returns:
        The Axes; one ``StepPatch`` per outcome, in order, labelled with its name.
    """
    ax = _axes(ax)
    if not counts:
        raise ValueError("counts is empty; pass {outcome: counts per position}")
    positions = np.asarray(x, dtype=float)
    table = np.array([np.asarray(c, dtype=float) for c in counts.values()])
    if positions.ndim != 1 or table.ndim != 2 or table.shape[1] != positions.shape[0]:
        raise ValueError(f"every count needs one entry per position ({positions.shape[0]}), "
                         f"got shape {table.shape}")
    if positions.size > 1 and np.any(np.diff(positions) <= 0):
        raise ValueError("x must be increasing")
    if np.any(table < 0):
        raise ValueError("counts must be >= 0")
    total = table.sum(axis=0)
    if np.any(total == 0):
        raise ValueError("every position needs at least one member counted")
    half = np.diff(positions) / 2 if positions.size > 1 else np.array([0.5])
    edges = np.concatenate([[positions[0] - half[0]], positions[:-1] + half,
                            [positions[-1] + half[-1]]])
    colors = dict(zip(counts, CYCLE)) if colors is None else dict(colors)
    bottom = np.zeros_like(positions)
    for name, row in zip(counts, table):
        top = bottom + row / total
        ax.stairs(top, edges, baseline=bottom, fill=True, color=colors.get(name), label=name)
        bottom = top
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of members")
    return ax


def wilson_interval(successes: ArrayLike, trials: ArrayLike,
                    z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (default z = 1.96: about 95%).

    Used by :func:`plot_fraction` for the error bars of "share of seeds with outcome X".

    Args:
        successes: counts ``k`` (array-like).
        trials: numbers of trials ``n`` (> 0), broadcast against ``successes``.
        z: the normal quantile (default 1.96).

    Returns:
        ``(low, high)`` arrays in ``[0, 1]``.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= successes <= trials and trials > 0")
    p = k / n
    denom = 1 + z ** 2 / n
    centre = (p + z ** 2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def plot_fraction(x: ArrayLike, successes: ArrayLike, trials: ArrayLike, *,
                  ax: Axes | None = None, label: str | None = None,
                  color: str | None = None, marker: str = "o", **line_kw) -> Axes:
    """The share of members with an outcome against a swept parameter, with Wilson bars.

    Args:
        x: the swept values, shape ``(K,)``.
        successes: members with the outcome at each value, ``(K,)``.
        trials: members at each value (a number or ``(K,)``).
        ax: where to draw (default: the current Axes).
        label: legend label (default none).
        color: of the line and bars (default: the next colour of the cycle).
        marker: of the points (default ``"o"``).
        **line_kw: passed to ``ax.errorbar``.

    Returns:
        The Axes; its last container is the errorbar of this call.
    """
    ax = _axes(ax)
    xs = np.asarray(x, dtype=float)
    k = np.asarray(successes, dtype=float)
    n = np.broadcast_to(np.asarray(trials, dtype=float), k.shape)
    if xs.shape != k.shape or xs.ndim != 1:
        raise ValueError(f"x and successes must be 1-D of one length, got {xs.shape} and "
                         f"{k.shape}")
    low, high = wilson_interval(k, n)
    share = k / n
    ax.errorbar(xs, share, yerr=[share - low, high - share], color=color, marker=marker,
                capsize=3, label=label, **line_kw)
    ax.set_ylim(-0.03, 1.03)
    return ax
