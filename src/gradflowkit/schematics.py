"""Schematic figures for the lessons: boxes, arrows and mathtext, no data and no randomness.

Each function takes ``ax=None`` (default: the current Axes), draws one diagram, turns the
axes off and returns the Axes. The labels follow the book's notation: the depth is
:math:`D`, layers are numbered from 1, :math:`x_1` is the input, :math:`x_{D+1}` the output
and :math:`L` only ever the loss. Colours come from :data:`~gradflowkit.plotting.PALETTE`
(Okabe-Ito, safe with the common forms of colour blindness), and the same thing has the same
colour in every figure: the stream and its shortcuts blue, residual branches orange,
LayerNorm green, the backward pass vermillion.

Every box, label and arrow carries a ``gid`` naming what it is (``"node"``, ``"branch"``,
``"jacobian"``, ...), so that tests and readers can find the parts of a figure.

- :func:`plot_jacobian_chain` (lesson 1): backpropagation is a product of transposed Jacobians;
- :func:`plot_residual_block` (lesson 11): one block, :math:`x_{l+1} = x_l + F_l(x_l)`;
- :func:`plot_unrolled_stream` (lesson 12): the stream, :math:`x_{D+1} = x_1 + \\sum_l F_l(x_l)`;
- :func:`plot_residual_paths` (lesson 15): the :math:`2^n` paths, :math:`\\binom{n}{k}` of length
  :math:`k`;
- :func:`plot_transformer_blocks` (lesson 19): plain residual, post-LN and pre-LN blocks.
"""

from __future__ import annotations

import itertools
import math

from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.patches import FancyBboxPatch
from matplotlib.text import Text

from .plotting import PALETTE, _axes
from .validation import check_int

__all__ = ["FIGSIZE", "MAX_DRAWN", "MAX_PATH_BLOCKS", "plot_jacobian_chain",
           "plot_residual_block", "plot_residual_paths", "plot_transformer_blocks",
           "plot_unrolled_stream"]

#: Chains and streams up to this many layers (blocks) are drawn whole; longer ones show the
#: first two and the last, with ``⋯`` between.
MAX_DRAWN = 5
#: The largest number of blocks the paths figure draws (32 rows, one for each path).
MAX_PATH_BLOCKS = 5
#: Figure sizes (inches) at which each diagram was checked, 7 inches wide, drawn with
#: ``plt.subplots(figsize=FIGSIZE[name], layout="constrained")``. The diagrams keep an equal
#: aspect and the labels keep their size in points, so a much smaller Axes crowds them.
#: :func:`plot_residual_paths` needs about 0.25 inch a row: ``(7, 1.5 + 0.27 * 2**blocks)``.
FIGSIZE: dict[str, tuple[float, float]] = {
    "plot_jacobian_chain": (7.0, 3.2),
    "plot_residual_block": (7.0, 2.8),
    "plot_unrolled_stream": (7.0, 2.8),
    "plot_residual_paths": (7.0, 4.2),
    "plot_transformer_blocks": (7.0, 4.6),
}

STREAM = PALETTE["blue"]
BRANCH = PALETTE["orange"]
NORM = PALETTE["green"]
BACKWARD = PALETTE["vermillion"]
INK = "0.15"
MUTED = "0.45"

_ELLIPSIS = r"$\cdots$"


def _tint(color: str, amount: float = 0.16) -> tuple[float, float, float]:
    """``color`` mixed with white: a light fill that keeps black text readable."""
    return tuple(1 - amount * (1 - c) for c in to_rgb(color))  # type: ignore[return-value]


def _box(ax: Axes, x: float, y: float, text: str, color: str, *, gid: str,
         fontsize: float = 12, shape: str = "round,pad=0.35") -> Text:
    """A label in a lightly filled box; arrows attach to its edge (``get_bbox_patch``)."""
    return ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, zorder=3, gid=gid,
                   color=INK, bbox=dict(boxstyle=shape, facecolor=_tint(color),
                                        edgecolor=color, linewidth=1.6))


def _plus(ax: Axes, x: float, y: float) -> Text:
    """The + node where a branch joins the stream: a circle in display space at any aspect."""
    return ax.text(x, y, "+", ha="center", va="center", fontsize=13, fontweight="bold",
                   zorder=3, gid="plus", color=INK,
                   bbox=dict(boxstyle="circle,pad=0.12", facecolor="white", edgecolor=STREAM,
                             linewidth=1.6))


def _dot(ax: Axes, x: float, y: float, color: str = STREAM) -> None:
    """Where the stream splits into shortcut and branch."""
    ax.plot([x], [y], marker="o", markersize=5, color=color, zorder=4, gid="split")


def _arrow(ax: Axes, start: Text | tuple[float, float], end: Text | tuple[float, float], *,
           color: str = INK, gid: str = "arrow", connection: str = "arc3", lw: float = 1.5,
           head: bool = True) -> None:
    """An arrow from ``start`` to ``end`` (boxes or points); it stops at the boxes' edges."""
    def where(obj):
        return obj.get_position() if isinstance(obj, Text) else obj

    def patch(obj):
        return obj.get_bbox_patch() if isinstance(obj, Text) else None

    ax.annotate("", xy=where(end), xytext=where(start), zorder=2, gid=gid,
                arrowprops=dict(arrowstyle="-|>,head_length=0.5,head_width=0.25" if head else "-",
                                color=color, lw=lw, patchA=patch(start), patchB=patch(end),
                                shrinkA=1 if isinstance(start, Text) else 0,
                                shrinkB=1 if isinstance(end, Text) else 0,
                                connectionstyle=connection))


def _note(ax: Axes, x: float, y: float, text: str, *, gid: str, color: str = MUTED,
          fontsize: float = 10, ha: str = "center", va: str = "center", **kw) -> Text:
    return ax.text(x, y, text, ha=ha, va=va, fontsize=fontsize, color=color, gid=gid, **kw)


def _shown(count: int) -> list[int | None]:
    """The layers (blocks) drawn, numbered from 1: all, or 1, 2 and the last, with ``None``
    where the middle is elided."""
    if count <= MAX_DRAWN:
        return list(range(1, count + 1))
    return [1, 2, None, count]


def _finish(ax: Axes, xlim: tuple[float, float], ylim: tuple[float, float]) -> Axes:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")   # adjustable="box": the limits stay as set
    ax.set_axis_off()
    return ax


def plot_jacobian_chain(depth: int = 4, ax: Axes | None = None) -> Axes:
    r"""Backpropagation as a product (lesson 1).

    The forward pass :math:`x_1 \to x_2 \to \dots \to x_{D+1} \to L` runs left to right
    along the top; below it the backward pass runs right to left, from
    :math:`\partial L/\partial x_{D+1}` to :math:`\partial L/\partial x_1`, each step a
    multiplication by one transposed Jacobian :math:`J_l^\top`, written under the arrow of
    layer :math:`l`. The product printed underneath lists the factors in the order in which
    they stand in the picture, :math:`J_1^\top J_2^\top \cdots J_D^\top`.

    Drawn for ``figsize=FIGSIZE["plot_jacobian_chain"]`` (:data:`FIGSIZE`).

    Args:
        depth: the number of layers :math:`D` (>= 1). Chains longer than
            :data:`MAX_DRAWN` show layers 1, 2 and :math:`D`, with ``⋯`` between.
        ax: where to draw (default: the current Axes).

    Returns:
        The Axes: ``gid="node"`` forward boxes (:math:`D+1` when drawn whole), one
        ``gid="loss"`` box, ``gid="signal"`` backward boxes, ``gid="jacobian"`` labels (one
        per drawn layer), ``gid="product"`` the product.
    """
    depth = check_int("depth", depth, minimum=1)
    ax = _axes(ax)
    # The columns, left to right: x_1 ... x_{D+1}, with None for the elided middle.
    columns: list[int | None] = [1] + [None if layer is None else layer + 1
                                       for layer in _shown(depth)]
    if depth > MAX_DRAWN:
        columns.insert(4, depth)     # [1, 2, 3, None, D, D+1]
    step, top, bottom = 1.55, 1.7, 0.0
    xs = {i: c * step for c, i in enumerate(columns)}
    forward: dict[int, Text] = {}
    backward: dict[int, Text] = {}
    for c, i in enumerate(columns):
        x = c * step
        if i is None:
            for y, gid in ((top, "ellipsis"), (bottom, "ellipsis")):
                _note(ax, x, y, _ELLIPSIS, gid=gid, color=INK, fontsize=16)
            continue
        forward[i] = _box(ax, x, top, f"$x_{{{i}}}$", STREAM, gid="node", fontsize=13)
        backward[i] = _box(ax, x, bottom, rf"$\dfrac{{\partial L}}{{\partial x_{{{i}}}}}$",
                           BACKWARD, gid="signal", fontsize=12)
    loss = _box(ax, len(columns) * step, top, "$L$", PALETTE["black"], gid="loss", fontsize=13)
    for a, b in itertools.pairwise(columns):
        if a is None or b is None:   # into or out of the elided middle: no layer label
            mid = xs[None]
            if a is not None:
                _arrow(ax, forward[a], (mid - 0.35, top), gid="elided", color=STREAM)
                _arrow(ax, (mid - 0.35, bottom), backward[a], gid="elided", color=BACKWARD)
            else:
                _arrow(ax, (mid + 0.35, top), forward[b], gid="elided", color=STREAM)
                _arrow(ax, backward[b], (mid + 0.35, bottom), gid="elided", color=BACKWARD)
            continue
        x_mid = (xs[a] + xs[b]) / 2
        _arrow(ax, forward[a], forward[b], gid="forward", color=STREAM)
        _note(ax, x_mid, top + 0.5, f"layer {a}", gid="layer", fontsize=10)
        _arrow(ax, backward[b], backward[a], gid="backward", color=BACKWARD)
        _note(ax, x_mid, bottom - 0.5, rf"$J_{{{a}}}^{{\top}}$", gid="jacobian",
              color=BACKWARD, fontsize=13)
    _arrow(ax, forward[depth + 1], loss, gid="forward", color=STREAM)
    _note(ax, (xs[depth + 1] + loss.get_position()[0]) / 2, top + 0.5, "loss", gid="layer",
          fontsize=10)
    _arrow(ax, loss, backward[depth + 1], gid="backward", color=BACKWARD,
           connection="angle,angleA=-90,angleB=0")
    _note(ax, -0.85, top, "forward", gid="row", ha="right", fontsize=11, color=STREAM)
    _note(ax, -0.85, bottom, "backward", gid="row", ha="right", fontsize=11, color=BACKWARD)
    factors = r"\,".join(r"\cdots" if l is None else f"J_{{{l}}}^{{\\top}}"
                          for l in _shown(depth))
    _note(ax, len(columns) * step / 2, bottom - 1.6,
          rf"$\dfrac{{\partial L}}{{\partial x_1}} = {factors}\,"
          rf"\dfrac{{\partial L}}{{\partial x_{{{depth + 1}}}}}$",
          gid="product", color=INK, fontsize=14)
    return _finish(ax, (-2.6, len(columns) * step + 0.6), (bottom - 2.35, top + 0.9))


def plot_residual_block(ax: Axes | None = None) -> Axes:
    r"""One residual block, :math:`x_{l+1} = x_l + F_l(x_l)` (lesson 11).

    The input :math:`x_l` splits: the identity shortcut carries it unchanged to the +
    node, and the residual branch :math:`F_l` (linear :math:`W_l^{(1)}`, ReLU, linear
    :math:`W_l^{(2)}`) adds its output there, giving :math:`x_{l+1}`. As in lesson 11, no
    ReLU follows the addition.

    Drawn for ``figsize=FIGSIZE["plot_residual_block"]`` (:data:`FIGSIZE`).

    Args:
        ax: where to draw (default: the current Axes).

    Returns:
        The Axes: two ``gid="node"`` boxes, three ``gid="layer"`` branch boxes, one
        ``gid="plus"`` node, arrows ``gid="branch"`` and ``gid="stream"``.
    """
    ax = _axes(ax)
    y0, y1 = 0.0, 1.5
    x_in = _box(ax, 0.0, y0, "$x_l$", STREAM, gid="node", fontsize=14)
    split = (1.0, y0)
    _dot(ax, *split)
    w1 = _box(ax, 2.5, y1, "linear\n$W_l^{(1)},\\ b_l^{(1)}$", BRANCH, gid="layer",
              fontsize=10.5)
    relu = _box(ax, 4.6, y1, "ReLU", BRANCH, gid="layer", fontsize=10.5)
    w2 = _box(ax, 6.7, y1, "linear\n$W_l^{(2)},\\ b_l^{(2)}$", BRANCH, gid="layer",
              fontsize=10.5)
    plus = _plus(ax, 8.2, y0)
    x_out = _box(ax, 9.6, y0, "$x_{l+1}$", STREAM, gid="node", fontsize=14)
    _arrow(ax, x_in, split, gid="stream", color=STREAM, head=False, lw=2.2)
    _arrow(ax, split, plus, gid="stream", color=STREAM, lw=2.2)
    _arrow(ax, plus, x_out, gid="stream", color=STREAM, lw=2.2)
    _arrow(ax, split, w1, gid="branch", color=BRANCH, connection="angle,angleA=90,angleB=0,rad=0")
    _arrow(ax, w1, relu, gid="branch", color=BRANCH)
    _arrow(ax, relu, w2, gid="branch", color=BRANCH)
    _arrow(ax, w2, plus, gid="branch", color=BRANCH, connection="angle,angleA=0,angleB=90,rad=0")
    _note(ax, 4.6, y0 - 0.35, "identity shortcut: $x_l$ unchanged", gid="caption",
          color=STREAM, fontsize=11, va="top")
    _note(ax, 4.6, y1 + 0.75, r"residual branch $F_l$", gid="caption", color=BRANCH,
          fontsize=11)
    # The branch, framed: its three layers together are F_l.
    ax.add_patch(_frame(1.55, y1 - 0.55, 7.65 - 1.55, 1.1))
    _note(ax, 4.6, y0 - 1.25, r"$x_{l+1} = x_l + F_l(x_l), \qquad F_l(x) = W_l^{(2)}\,"
          r"\mathrm{relu}\!\left(W_l^{(1)} x + b_l^{(1)}\right) + b_l^{(2)}$",
          gid="equation", color=INK, fontsize=12.5)
    return _finish(ax, (-1.0, 10.6), (y0 - 1.75, y1 + 1.1))


def _frame(x: float, y: float, width: float, height: float) -> FancyBboxPatch:
    """The dashed outline that groups a branch's layers."""
    return FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.05,rounding_size=0.15",
                          facecolor="none", edgecolor=BRANCH, linestyle="--", linewidth=1.1,
                          zorder=1, gid="frame")


def plot_unrolled_stream(blocks: int = 3, ax: Axes | None = None) -> Axes:
    r"""The residual stream unrolled over :math:`D` blocks (lesson 12).

    The stream :math:`x_1 \to x_2 \to \dots \to x_{D+1}` runs along the bottom; each branch
    :math:`F_l` reads :math:`x_l` and adds its output on a + node, so the output is the
    input plus one term per block, :math:`x_{D+1} = x_1 + \sum_{l=1}^{D} F_l(x_l)`, printed
    underneath (term by term when the stream is drawn whole).

    Drawn for ``figsize=FIGSIZE["plot_unrolled_stream"]`` (:data:`FIGSIZE`).

    Args:
        blocks: the number of blocks :math:`D` (>= 1). Streams longer than
            :data:`MAX_DRAWN` show blocks 1, 2 and :math:`D`, with ``⋯`` between.
        ax: where to draw (default: the current Axes).

    Returns:
        The Axes: ``gid="node"`` boxes (:math:`D+1` when drawn whole), one
        ``gid="branch"`` box and one ``gid="plus"`` node per drawn block,
        ``gid="equation"`` the sum.
    """
    blocks = check_int("blocks", blocks, minimum=1)
    ax = _axes(ax)
    shown = _shown(blocks)
    y0, y1, step = 0.0, 1.45, 3.2
    x = 0.0
    previous = _box(ax, x, y0, "$x_{1}$", STREAM, gid="node", fontsize=13)
    for block in shown:
        if block is None:
            _arrow(ax, previous, (x + 0.9, y0), gid="elided", color=STREAM, lw=2.2)
            _note(ax, x + 1.45, y0, _ELLIPSIS, gid="ellipsis", color=INK, fontsize=16)
            x += 2.3
            previous = (x - 0.3, y0)
            nxt = _box(ax, x + 0.5, y0, f"$x_{{{blocks}}}$", STREAM, gid="node",
                       fontsize=13)
            _arrow(ax, previous, nxt, gid="elided", color=STREAM, lw=2.2)
            previous, x = nxt, x + 0.5
            continue
        branch = _box(ax, x + step / 2 - 0.5, y1, f"$F_{{{block}}}$", BRANCH, gid="branch",
                      fontsize=13)
        plus = _plus(ax, x + step - 1.05, y0)
        nxt = _box(ax, x + step, y0, f"$x_{{{block + 1}}}$", STREAM, gid="node", fontsize=13)
        _arrow(ax, previous, plus, gid="stream", color=STREAM, lw=2.2)
        _arrow(ax, plus, nxt, gid="stream", color=STREAM, lw=2.2)
        _arrow(ax, previous, branch, gid="branch", color=BRANCH,
               connection="angle,angleA=90,angleB=0,rad=0")
        _arrow(ax, branch, plus, gid="branch", color=BRANCH,
               connection="angle,angleA=0,angleB=90,rad=0")
        previous, x = nxt, x + step
    right = x
    middle = right / 2
    _note(ax, middle, y0 - 0.55, "the stream: identity shortcuts", gid="caption",
          color=STREAM, fontsize=11, va="top")
    _note(ax, middle, y1 + 0.7, "one branch per block, each added to the stream",
          gid="caption", color=BRANCH, fontsize=11)
    total = rf"$x_{{{blocks + 1}}} = x_1 + \sum_{{l=1}}^{{{blocks}}} F_l(x_l)$"
    if blocks <= MAX_DRAWN:
        terms = " + ".join(f"F_{{{l}}}(x_{{{l}}})" for l in range(1, blocks + 1))
        total = total[:-1] + f" = x_1 + {terms}$"
    _note(ax, middle, y0 - 1.75, total, gid="equation", color=INK, fontsize=13)
    return _finish(ax, (-0.7, right + 0.7), (y0 - 2.45, y1 + 1.1))


def plot_residual_paths(blocks: int = 3, ax: Axes | None = None) -> Axes:
    r"""The :math:`2^n` paths of an :math:`n`-block residual net (lesson 15; Veit et al. 2016).

    The unravelled view: one row per path from :math:`x_1` to :math:`x_{n+1}`; at each
    block the path either goes through the branch (an orange box :math:`F_i`) or skips it
    (a faint dashed box). Rows are grouped by the path's length :math:`k`, the number of
    branches it goes through; beside each group stands its count
    :math:`\binom{n}{k}`, and underneath the total :math:`\sum_k \binom{n}{k} = 2^n`.

    Drawn for ``figsize=FIGSIZE["plot_residual_paths"]`` (:data:`FIGSIZE`).

    Args:
        blocks: the number of blocks :math:`n`, from 1 to :data:`MAX_PATH_BLOCKS` (every
            path gets a row: with 4 or 5 blocks give the figure some height, about
            0.25 inch a row).
        ax: where to draw (default: the current Axes).

    Returns:
        The Axes: ``gid="path"`` lines (:math:`2^n`), ``gid="branch"`` boxes for the
        branches taken, ``gid="skip"`` boxes for those skipped, ``gid="length"`` labels (one
        per path), ``gid="binomial"`` counts (one per length :math:`k = 0, \dots, n`),
        ``gid="total"`` the sum.
    """
    blocks = check_int("blocks", blocks, minimum=1)
    if blocks > MAX_PATH_BLOCKS:
        raise ValueError(f"blocks must be <= {MAX_PATH_BLOCKS} to draw every path (2**{blocks}"
                         f" = {2 ** blocks} rows); count longer nets with "
                         f"gradflowkit.paths.path_length_counts instead")
    ax = _axes(ax)
    n = blocks
    step, row, gap = 1.5, 0.62, 0.45
    x_start, x_end = 0.0, (n + 1) * step
    y = 0.0
    for k in range(n + 1):
        group = list(itertools.combinations(range(1, n + 1), k))
        top = y
        for taken in group:
            ax.plot([x_start + 0.35, x_end - 0.35], [y, y], color=STREAM, lw=1.8, zorder=1,
                    gid="path", solid_capstyle="round")
            for i in range(1, n + 1):
                if i in taken:
                    _box(ax, i * step, y, f"$F_{{{i}}}$", BRANCH, gid="branch", fontsize=11,
                         shape="round,pad=0.2")
                else:
                    # An empty box under the line: the path runs past it, on the shortcut.
                    ax.text(i * step, y, f"$F_{{{i}}}$", ha="center", va="center",
                            fontsize=11, zorder=0, gid="skip", color="none",
                            bbox=dict(boxstyle="round,pad=0.2", facecolor="none",
                                      edgecolor="0.72", linewidth=1.0, linestyle="--"))
            _note(ax, x_end + 0.35, y, f"$k={k}$", gid="length", color=INK, fontsize=11,
                  ha="left")
            y -= row
        bottom = y + row
        bx = x_end + 1.55
        ax.plot([bx, bx + 0.12, bx + 0.12, bx], [top + 0.2, top + 0.2, bottom - 0.2,
                                                   bottom - 0.2],
                color=MUTED, lw=1.0, gid="bracket")
        count = math.comb(n, k)
        _note(ax, bx + 0.35, (top + bottom) / 2,
              rf"$\binom{{{n}}}{{{k}}} = {count}$ path" + ("s" if count != 1 else ""),
              gid="binomial", color=INK, fontsize=11, ha="left")
        y -= gap
    last = y + gap + row
    header = row * 0.95
    for i in range(1, n + 1):
        _note(ax, i * step, header, f"block {i}", gid="header", fontsize=10)
    _note(ax, x_start, header, "$x_1$", gid="header", color=STREAM, fontsize=12)
    _note(ax, x_end, header, f"$x_{{{n + 1}}}$", gid="header", color=STREAM, fontsize=12)
    _note(ax, x_end + 0.35, header, "length $k$", gid="header", fontsize=10, ha="left")
    terms = " + ".join(str(math.comb(n, k)) for k in range(n + 1))
    _note(ax, (x_end + 3.4) / 2, last - 1.0,
          rf"$\sum_{{k=0}}^{{{n}}} \binom{{{n}}}{{k}} = {terms} = 2^{{{n}}} = {2 ** n}$ paths",
          gid="total", color=INK, fontsize=12)
    _note(ax, (x_end + 3.4) / 2, last - 1.85, "solid box: the path goes through branch "
          "$F_i$; dashed: it skips block $i$ on the shortcut", gid="legend", fontsize=10)
    return _finish(ax, (x_start - 0.5, x_end + 3.9), (last - 2.2, header + 0.45))


def plot_transformer_blocks(ax: Axes | None = None) -> Axes:
    r"""Where the LayerNorm goes: three residual blocks side by side (lesson 19).

    Left to right: the plain residual block :math:`x + F(x)`; post-LN,
    :math:`\mathrm{LN}(x + F(x))`, with the LayerNorm on the stream after the addition
    (the original Transformer); pre-LN, :math:`x + F(\mathrm{LN}(x))`, with the LayerNorm at
    the start of the branch (GPT-2), so the shortcut stays an identity, and a final LN
    after the last block. :math:`F` is the sub-layer (attention or MLP). LayerNorm boxes are
    green and branches orange in all three; the text under each panel says what changes.

    Drawn for ``figsize=FIGSIZE["plot_transformer_blocks"]`` (:data:`FIGSIZE`).

    Args:
        ax: where to draw (default: the current Axes).

    Returns:
        The Axes: ``gid="ln"`` boxes (one post-LN, one pre-LN), ``gid="branch"`` boxes (one
        per panel), ``gid="plus"`` nodes (one per panel), ``gid="title"`` and
        ``gid="caption"`` texts (one per panel).
    """
    ax = _axes(ax)
    width = 4.6
    y_in, y_split, y_ln, y_f, y_plus, y_post, y_out = 0.0, 0.75, 1.75, 3.05, 4.15, 5.25, 6.35
    panels = (
        ("plain residual", r"$x + F(x)$", None,
         "the shortcut is an\nidentity from input\nto output"),
        ("post-LN", r"$\mathrm{LN}(x + F(x))$", "stream",
         "LN on the stream, after\nthe +: the shortcut\npasses through it\n"
         "(original Transformer)"),
        ("pre-LN", r"$x + F(\mathrm{LN}(x))$", "branch",
         "LN inside the branch:\nthe shortcut stays an\nidentity; a final LN\n"
         "follows the last block\n(GPT-2)"),
    )
    for p, (title, formula, ln_at, caption) in enumerate(panels):
        cx = p * width
        bx = cx + 1.35
        x_in = _box(ax, cx, y_in, "$x$", STREAM, gid="node", fontsize=13)
        split = (cx, y_split)
        _dot(ax, *split)
        _arrow(ax, x_in, split, gid="stream", color=STREAM, lw=2.2, head=False)
        plus = _plus(ax, cx, y_plus)
        _arrow(ax, split, plus, gid="stream", color=STREAM, lw=2.2)
        f_box = _box(ax, bx, y_f, "$F$\nattention\nor MLP", BRANCH, gid="branch", fontsize=10)
        if ln_at == "branch":
            ln = _box(ax, bx, y_ln, "LN", NORM, gid="ln", fontsize=11)
            _arrow(ax, split, ln, gid="branch", color=BRANCH,
                   connection="angle,angleA=0,angleB=-90,rad=0")
            _arrow(ax, ln, f_box, gid="branch", color=BRANCH)
        else:
            _arrow(ax, split, f_box, gid="branch", color=BRANCH,
                   connection="angle,angleA=0,angleB=-90,rad=0")
        _arrow(ax, f_box, plus, gid="branch", color=BRANCH,
               connection="angle,angleA=90,angleB=0,rad=0")
        out = _box(ax, cx, y_out, formula, STREAM, gid="node", fontsize=11.5)
        if ln_at == "stream":
            ln = _box(ax, cx, y_post, "LN", NORM, gid="ln", fontsize=11)
            _arrow(ax, plus, ln, gid="stream", color=STREAM, lw=2.2)
            _arrow(ax, ln, out, gid="stream", color=STREAM, lw=2.2)
        else:
            _arrow(ax, plus, out, gid="stream", color=STREAM, lw=2.2)
        _note(ax, cx + 0.45, y_out + 0.75, title, gid="title", color=INK, fontsize=12,
              fontweight="bold")
        _note(ax, cx + 0.45, y_in - 0.55, caption, gid="caption", color=INK, fontsize=9.5,
              va="top", linespacing=1.25)
    return _finish(ax, (-1.3, 2 * width + 2.3), (y_in - 3.0, y_out + 1.15))
