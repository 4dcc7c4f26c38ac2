"""Unit tests of the explorer frames' alt text: what a screen reader says for each frame."""

from __future__ import annotations

import html
import re

import ipywidgets as widgets
import pytest

from gradflowkit.explorer import explorer, frame_png

SMALL = dict(figsize=(1.0, 1.0), dpi=20)


def _alt(frame: widgets.HTML) -> str:
    match = re.search(r'alt="([^"]*)"', frame.value)
    assert match, f"frame has no alt attribute: {frame.value[:80]}"
    return html.unescape(match.group(1))


def _labelled(ax, **values):
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("layer $l$")
    ax.set_ylabel("gradient norm")


def test_alt_names_the_title_and_the_slider_labels():
    box = explorer(_labelled, {"depth": [10, 20]}, title="Gradient profile", **SMALL)
    stack = box.children[1]
    assert [_alt(f) for f in stack.children] == [
        "Gradient profile, depth = 10: gradient norm against layer l",
        "Gradient profile, depth = 20: gradient norm against layer l",
    ]


def test_alt_of_two_sliders_uses_labels_of_label_value_pairs():
    box = explorer(_labelled, {"act": [("ReLU", "relu"), ("tanh", "tanh")], "c": [0.5]},
                   title="Explorer", **SMALL)
    outer = box.children[2]
    assert _alt(outer.children[0].children[0]).startswith("Explorer, act = ReLU, c = 0.5:")
    assert _alt(outer.children[1].children[0]).startswith("Explorer, act = tanh, c = 0.5:")


def test_alt_is_escaped_and_axes_titles_are_included():
    def draw(ax, k):
        ax.set_title('a "quoted" <title>')
    frame = explorer(draw, {"k": [1]}, title="Explorer", **SMALL).children[1].children[0]
    assert _alt(frame) == 'Explorer, k = 1: a "quoted" <title>'
    assert frame_png(frame)[:4] == b"\x89PNG"


def test_unlabelled_axes_give_the_caption_only():
    frame = explorer(lambda ax, k: ax.plot([0, 1]), {"k": [1]}, title="Explorer",
                     **SMALL).children[1].children[0]
    assert _alt(frame) == "Explorer, k = 1"


def test_title_is_required_so_alt_text_names_the_figure():
    with pytest.raises(TypeError, match="title"):
        explorer(lambda ax, k: None, {"k": [1]}, figsize=(1.0, 1.0), dpi=20)


@pytest.mark.parametrize("title", ["", "  ", None])
def test_bad_title_raises(title):
    with pytest.raises(ValueError, match="title must be a non-empty string"):
        explorer(_labelled, {"k": [1]}, title=title, **SMALL)


def test_frame_png_rejects_other_widgets():
    with pytest.raises(ValueError, match="not an explorer frame"):
        frame_png(widgets.HTML("<b>no image</b>"))


def test_plain_math_reads_mathtext_labels():
    from gradflowkit.explorer import plain_math

    label = r"$\|\partial L/\partial x_l\| \,/\, \|\partial L/\partial x_{L+1}\|$"
    assert plain_math(label) == "‖∂ L/∂ x_l‖ / ‖∂ L/∂ x_L+1‖"
    assert plain_math(r"$\lambda^{20}$ and $\sigma(b_f)$") == "λ^20 and σ(b_f)"
    assert plain_math(r"$\left(\sqrt{c/2}\right)$") == "(√c/2)"
    assert plain_math(r"$\mathrm{rate}\;r$") == "rate r"
    assert plain_math(r"$\unknowncmd x$") == "unknowncmd x"
    assert plain_math("no math here") == "no math here"
