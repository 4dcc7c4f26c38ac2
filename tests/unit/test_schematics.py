"""gradflowkit.schematics: the lessons' diagrams. Oracles: the book's notation written out by
hand, math.comb for the path counts, and the rendered figure (nothing cut off, no two labels
on top of each other)."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

from gradflowkit.plotting import PALETTE, use_book_style  # noqa: E402
from gradflowkit.schematics import (FIGSIZE, MAX_DRAWN, MAX_PATH_BLOCKS,  # noqa: E402
                                    plot_jacobian_chain, plot_residual_block,
                                    plot_residual_paths, plot_transformer_blocks,
                                    plot_unrolled_stream)

FIGURES = {   # name: (draw it, at the size the module gives for it)
    "chain": (lambda ax: plot_jacobian_chain(4, ax=ax), FIGSIZE["plot_jacobian_chain"]),
    "chain-long": (lambda ax: plot_jacobian_chain(30, ax=ax), FIGSIZE["plot_jacobian_chain"]),
    "block": (lambda ax: plot_residual_block(ax=ax), FIGSIZE["plot_residual_block"]),
    "stream": (lambda ax: plot_unrolled_stream(3, ax=ax), FIGSIZE["plot_unrolled_stream"]),
    "stream-long": (lambda ax: plot_unrolled_stream(12, ax=ax),
                    FIGSIZE["plot_unrolled_stream"]),
    "paths": (lambda ax: plot_residual_paths(3, ax=ax), FIGSIZE["plot_residual_paths"]),
    "paths-5": (lambda ax: plot_residual_paths(5, ax=ax), (7.0, 1.5 + 0.27 * 2 ** 5)),
    "transformer": (lambda ax: plot_transformer_blocks(ax=ax),
                    FIGSIZE["plot_transformer_blocks"]),
}


def labels(ax, gid):
    """The texts (not arrows) with this gid, in drawing order."""
    return [t for t in ax.texts if t.get_gid() == gid and not isinstance(t, Annotation)]


def strings(ax, gid):
    return [t.get_text() for t in labels(ax, gid)]


def arrows(ax, gid):
    return [c for c in ax.get_children() if isinstance(c, Annotation) and c.get_gid() == gid]


def xs(i):
    """The label of the activations x_i."""
    return f"$x_{{{i}}}$"


def edge(text):
    return to_hex(text.get_bbox_patch().get_edgecolor())


def draw(name):
    function, size = FIGURES[name]
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    assert function(ax) is ax
    return fig, ax


# --- the Jacobian chain (lesson 1) ----------------------------------------------------------

def test_chain_has_a_box_per_activation_and_a_transposed_jacobian_per_layer():
    fig, ax = plt.subplots()
    assert plot_jacobian_chain(4, ax=ax) is ax
    assert strings(ax, "node") == [xs(i) for i in (1, 2, 3, 4, 5)]
    assert strings(ax, "loss") == ["$L$"]
    assert strings(ax, "jacobian") == [f"$J_{{{l}}}^{{\\top}}$" for l in (1, 2, 3, 4)]
    assert [re.search(r"x_\{(\d+)\}", s).group(1) for s in strings(ax, "signal")] == \
        ["1", "2", "3", "4", "5"]
    assert strings(ax, "layer") == ["layer 1", "layer 2", "layer 3", "layer 4", "loss"]
    # D forward arrows between activations and one into the loss; D backward ones and one
    # out of the loss.
    assert len(arrows(ax, "forward")) == 5
    assert len(arrows(ax, "backward")) == 5
    assert not labels(ax, "ellipsis") and not arrows(ax, "elided")
    (product,) = strings(ax, "product")
    assert r"\partial x_1" in product and r"\partial x_{5}" in product
    # The factors in the order they stand in the picture: J_1^T on the left.
    assert re.findall(r"J_\{(\d+)\}", product) == ["1", "2", "3", "4"]
    assert not ax.axison


@pytest.mark.parametrize("depth", [1, 2, MAX_DRAWN])
def test_short_chains_are_drawn_whole(depth):
    fig, ax = plt.subplots()
    plot_jacobian_chain(depth, ax=ax)
    assert len(strings(ax, "node")) == depth + 1
    assert len(strings(ax, "jacobian")) == depth
    assert len(strings(ax, "signal")) == depth + 1
    assert not labels(ax, "ellipsis")


@pytest.mark.parametrize("depth", [MAX_DRAWN + 1, 50])
def test_long_chains_elide_the_middle(depth):
    fig, ax = plt.subplots()
    plot_jacobian_chain(depth, ax=ax)
    assert strings(ax, "node") == [xs(i) for i in (1, 2, 3, depth, depth + 1)]
    assert strings(ax, "jacobian") == [r"$J_{1}^{\top}$", r"$J_{2}^{\top}$",
                                       f"$J_{{{depth}}}^{{\\top}}$"]
    assert strings(ax, "ellipsis") == [r"$\cdots$", r"$\cdots$"]   # forward and backward
    assert len(arrows(ax, "elided")) == 4
    (product,) = strings(ax, "product")
    assert re.findall(r"J_\{(\d+)\}", product) == ["1", "2", str(depth)]
    assert r"\cdots" in product and f"x_{{{depth + 1}}}" in product


# --- residual block and stream (lessons 11-12) ----------------------------------------------

def test_residual_block_has_branch_shortcut_and_plus():
    fig, ax = plt.subplots()
    assert plot_residual_block(ax=ax) is ax
    assert strings(ax, "node") == ["$x_l$", "$x_{l+1}$"]
    layers = strings(ax, "layer")
    assert len(layers) == 3 and layers[1] == "ReLU"
    assert "W_l^{(1)}" in layers[0] and "W_l^{(2)}" in layers[2]
    assert len(labels(ax, "plus")) == 1
    assert len(arrows(ax, "branch")) == 4   # split -> W1 -> ReLU -> W2 -> +
    assert len(arrows(ax, "stream")) == 3   # x_l -> split -> + -> x_{l+1}
    assert any("x_{l+1} = x_l + F_l(x_l)" in s for s in strings(ax, "equation"))
    assert {edge(t) for t in labels(ax, "layer")} == {PALETTE["orange"].lower()}
    assert {edge(t) for t in labels(ax, "node")} == {PALETTE["blue"].lower()}


@pytest.mark.parametrize("blocks", [1, 3, MAX_DRAWN])
def test_unrolled_stream_adds_one_branch_per_block(blocks):
    fig, ax = plt.subplots()
    assert plot_unrolled_stream(blocks, ax=ax) is ax
    assert strings(ax, "node") == [xs(i) for i in range(1, blocks + 2)]
    assert strings(ax, "branch") == [f"$F_{{{i}}}$" for i in range(1, blocks + 1)]
    assert len(labels(ax, "plus")) == blocks
    assert len(arrows(ax, "branch")) == 2 * blocks     # x_l -> F_l -> +
    assert len(arrows(ax, "stream")) == 2 * blocks     # x_l -> + -> x_{l+1}
    (equation,) = strings(ax, "equation")
    assert f"x_{{{blocks + 1}}} = x_1 + \\sum_{{l=1}}^{{{blocks}}} F_l(x_l)" in equation
    assert re.findall(r"F_\{(\d+)\}\(x_\{(\d+)\}\)", equation) == \
        [(str(i), str(i)) for i in range(1, blocks + 1)]


def test_long_streams_elide_the_middle():
    fig, ax = plt.subplots()
    plot_unrolled_stream(12, ax=ax)
    assert strings(ax, "node") == [xs(i) for i in (1, 2, 3, 12, 13)]
    assert strings(ax, "branch") == ["$F_{1}$", "$F_{2}$", "$F_{12}$"]
    assert strings(ax, "ellipsis") == [r"$\cdots$"]
    (equation,) = strings(ax, "equation")
    assert equation == r"$x_{13} = x_1 + \sum_{l=1}^{12} F_l(x_l)$"


# --- the 2^n paths (lesson 15) --------------------------------------------------------------

@pytest.mark.parametrize("blocks", range(1, MAX_PATH_BLOCKS + 1))
def test_paths_are_all_drawn_and_counted_by_length(blocks):
    fig, ax = plt.subplots(figsize=(7, 7))
    assert plot_residual_paths(blocks, ax=ax) is ax
    paths = [line for line in ax.get_lines() if line.get_gid() == "path"]
    assert len(paths) == 2 ** blocks
    taken, skipped = labels(ax, "branch"), labels(ax, "skip")
    assert len(taken) == len(skipped) == blocks * 2 ** (blocks - 1)
    # Each row: the branches on it are as many as its length label says, and every row is
    # a different subset of the blocks.
    lengths = {t.get_position()[1]: int(re.search(r"k=(\d+)", t.get_text()).group(1))
               for t in labels(ax, "length")}
    assert len(lengths) == 2 ** blocks
    rows = {y: [] for y in lengths}
    for t in taken:
        rows[t.get_position()[1]].append(int(re.search(r"F_\{(\d+)\}", t.get_text()).group(1)))
    assert {y: len(r) for y, r in rows.items()} == lengths
    assert sorted(tuple(r) for r in rows.values()) == sorted(
        s for k in range(blocks + 1) for s in itertools.combinations(range(1, blocks + 1), k))
    assert Counter(lengths.values()) == {k: math.comb(blocks, k) for k in range(blocks + 1)}
    printed = [re.fullmatch(r"\$\\binom\{(\d+)\}\{(\d+)\} = (\d+)\$ paths?", s).groups()
               for s in strings(ax, "binomial")]
    assert printed == [(str(blocks), str(k), str(math.comb(blocks, k)))
                       for k in range(blocks + 1)]
    (total,) = strings(ax, "total")
    assert total.endswith(f"= 2^{{{blocks}}} = {2 ** blocks}$ paths")


# --- Transformer blocks (lesson 19) ---------------------------------------------------------

def test_transformer_blocks_place_the_layernorm():
    fig, ax = plt.subplots()
    assert plot_transformer_blocks(ax=ax) is ax
    assert strings(ax, "title") == ["plain residual", "post-LN", "pre-LN"]
    outputs = strings(ax, "node")[1::2]
    assert outputs == [r"$x + F(x)$", r"$\mathrm{LN}(x + F(x))$", r"$x + F(\mathrm{LN}(x))$"]
    lns, branches, pluses = labels(ax, "ln"), labels(ax, "branch"), labels(ax, "plus")
    assert len(lns) == 2 and len(branches) == 3 and len(pluses) == 3
    # One colour for LayerNorm, another for the branch, the same in every panel.
    assert {edge(t) for t in lns} == {PALETTE["green"].lower()}
    assert {edge(t) for t in branches} == {PALETTE["orange"].lower()}
    # post-LN: the LN is on the stream, above the +; pre-LN: in the branch, under F.
    post_ln, pre_ln = (t.get_position() for t in lns)
    assert post_ln[0] == pluses[1].get_position()[0]
    assert post_ln[1] > pluses[1].get_position()[1]
    assert pre_ln[0] == branches[2].get_position()[0]
    assert pre_ln[1] < branches[2].get_position()[1]
    captions = strings(ax, "caption")
    assert len(captions) == 3 and "final LN" in captions[2].replace("\n", " ")


# --- all figures ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIGURES)
def test_default_axes_is_the_current_one(name):
    fig, ax = plt.subplots()
    assert FIGURES[name][0](None) is ax


@pytest.mark.parametrize("name", FIGURES)
def test_renders_with_nothing_cut_off_and_no_labels_on_top_of_each_other(name, tmp_path):
    use_book_style()
    try:
        fig, ax = draw(name)
        fig.savefig(tmp_path / f"{name}.png", dpi=100)
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000
        renderer = fig.canvas.get_renderer()
        shown = [t for t in ax.texts if t.get_text() and not isinstance(t, Annotation)]
        boxes = []
        for t in shown:
            patch = t.get_bbox_patch()
            box = (patch if patch is not None else t).get_window_extent(renderer)
            assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, t.get_text()
            assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1, t.get_text()
            boxes.append((t.get_text(), box.expanded(0.98, 0.98)))  # touching is not overlap
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
            assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"
    finally:
        plt.rcdefaults()


@pytest.mark.parametrize("name", FIGURES)
def test_same_figure_every_time(name):
    def picture():
        fig, ax = draw(name)
        fig.canvas.draw()
        return bytes(fig.canvas.buffer_rgba())
    assert picture() == picture()


# --- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("function, name", [(plot_jacobian_chain, "depth"),
                                            (plot_unrolled_stream, "blocks"),
                                            (plot_residual_paths, "blocks")])
def test_bad_sizes_are_rejected(function, name):
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got 0"):
        function(0)
    with pytest.raises(ValueError, match=f"{name} must be >= 1, got -2"):
        function(-2)
    for bad in (2.0, "3", True, None):
        with pytest.raises(TypeError, match=f"{name} must be an int"):
            function(bad)


def test_too_many_blocks_for_every_path_is_rejected_with_the_alternative():
    with pytest.raises(ValueError, match=r"blocks must be <= 5 .*path_length_counts"):
        plot_residual_paths(MAX_PATH_BLOCKS + 1)
