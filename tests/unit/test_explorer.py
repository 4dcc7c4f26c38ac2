"""Unit tests of gradflowkit.explorer: widget structure, front-end links, initial
selection and what ``draw`` is called with. Frames are tiny so the tests stay fast."""

from __future__ import annotations

import itertools

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
from ipywidgets.widgets import widget as widget_module
from ipywidgets.widgets.widget_link import Link

from gradflowkit.explorer import MAX_FRAMES, explorer, frame_png

SMALL = dict(figsize=(1.0, 1.0), dpi=20, title="Explorer")


class Recorder:
    """A draw function that remembers every call and draws something."""

    def __init__(self):
        self.calls = []

    def __call__(self, axes, **values):
        self.calls.append((axes, values))
        ax = axes if not isinstance(axes, np.ndarray) else axes.flat[0]
        ax.plot([0, 1], [0, 1])


def _new_links(before):
    """Link widgets created since the registry snapshot ``before``."""
    return [w for key, w in widget_module._instances.items()
            if key not in before and isinstance(w, Link)]


def _build(sliders, **kwargs):
    before = set(widget_module._instances)
    draw = Recorder()
    box = explorer(draw, sliders, **SMALL, **kwargs)
    return box, draw, _new_links(before)


def _is_png(frame):
    return isinstance(frame, widgets.HTML) and frame_png(frame)[:8] == b"\x89PNG\r\n\x1a\n"


# --- one slider --------------------------------------------------------------------------

def test_one_slider_structure_and_link():
    box, draw, links = _build({"depth": [2, 5, 10]})
    assert isinstance(box, widgets.VBox)
    assert box.frame_count == 3 and box.draw_seconds >= 0
    slider, stack = box.children
    assert isinstance(slider, widgets.SelectionSlider) and isinstance(stack, widgets.Stack)
    assert slider.description == "depth"
    assert slider.options == (("2", 2), ("5", 5), ("10", 10))
    assert len(stack.children) == 3 and all(_is_png(im) for im in stack.children)
    assert slider.index == 0 and stack.selected_index == 0
    assert len(links) == 1
    (link,) = links
    assert link.source == (slider, "index") and link.target == (stack, "selected_index")
    assert box.layout.max_width == "20px"  # figsize[0] * dpi


def test_draw_called_once_per_value_with_the_value():
    box, draw, _ = _build({"lr": [0.1, 1.0]})
    assert [values for _, values in draw.calls] == [{"lr": 0.1}, {"lr": 1.0}]
    axes = [ax for ax, _ in draw.calls]
    assert all(isinstance(ax, plt.Axes) for ax in axes)
    assert axes[0] is not axes[1]  # a fresh figure per frame
    assert plt.get_fignums() == []  # every frame's figure is closed


def test_frames_differ_when_the_drawing_differs():
    def draw(ax, k):
        ax.bar([0], [k])
        ax.set_ylim(0, 3)

    box = explorer(draw, {"k": [1, 2]}, **SMALL)
    a, b = box.children[1].children
    assert frame_png(a) != frame_png(b)


def test_initial_selection_one_slider():
    box, _, _ = _build({"act": ["relu", "tanh", "sigmoid"]}, initial={"act": "sigmoid"})
    slider, stack = box.children
    assert slider.index == 2 and stack.selected_index == 2
    assert slider.value == "sigmoid" and slider.label == "sigmoid"


def test_label_value_pairs():
    scale = object()  # a value with no useful str(): the label is shown instead
    box, draw, _ = _build({"init": [("He", "he"), ("×2", scale), ("Xavier", "xavier")]},
                          initial={"init": scale})
    slider, stack = box.children
    assert slider.options == (("He", "he"), ("×2", scale), ("Xavier", "xavier"))
    assert slider.index == 1 and slider.value is scale and slider.label == "×2"
    assert stack.selected_index == 1
    assert [v["init"] for _, v in draw.calls] == ["he", scale, "xavier"]


def test_float_labels_use_general_format():
    box, _, _ = _build({"lr": [0.001, 0.25, 1.0, 1e-6]})
    assert [label for label, _ in box.children[0].options] == ["0.001", "0.25", "1", "1e-06"]


def test_axes_array_for_several_subplots():
    box, draw, _ = _build({"k": [1, 2]}, nrows=1, ncols=2)
    for axes, _ in draw.calls:
        assert isinstance(axes, np.ndarray) and axes.shape == (2,)


# --- two sliders -------------------------------------------------------------------------

def test_two_sliders_structure_links_and_draw_calls():
    depths, acts = [2, 4, 8], ["relu", "tanh"]
    box, draw, links = _build({"depth": depths, "act": acts})
    assert box.frame_count == 6
    first, second, outer = box.children
    assert isinstance(first, widgets.SelectionSlider) and first.description == "depth"
    assert isinstance(second, widgets.SelectionSlider) and second.description == "act"
    assert isinstance(outer, widgets.Stack) and len(outer.children) == len(depths)
    for inner in outer.children:
        assert isinstance(inner, widgets.Stack) and len(inner.children) == len(acts)
        assert all(_is_png(im) for im in inner.children)
    # draw once per combination, in nested order: outer[i].children[j] is (depths[i], acts[j])
    assert [v for _, v in draw.calls] == [{"depth": d, "act": a}
                                          for d, a in itertools.product(depths, acts)]
    # The first slider drives the outer stack; the second drives every inner stack.
    pairs = {(id(link.source[0]), link.source[1], id(link.target[0]), link.target[1])
             for link in links}
    assert len(links) == 1 + len(depths)
    assert (id(first), "index", id(outer), "selected_index") in pairs
    for inner in outer.children:
        assert (id(second), "index", id(inner), "selected_index") in pairs


def test_two_sliders_frame_contents_are_in_the_right_place():
    """Each frame is the PNG of its own (i, j) combination: redraw one and compare."""
    def draw(ax, a, b):
        ax.bar([0, 1], [a, b])
        ax.set_ylim(0, 4)

    box = explorer(draw, {"a": [1, 2, 3], "b": [1, 3]}, **SMALL)
    outer = box.children[2]
    alone = explorer(draw, {"a": [3], "b": [1]}, **SMALL).children[2].children[0].children[0]
    assert frame_png(outer.children[2].children[0]) == frame_png(alone)
    assert frame_png(outer.children[0].children[0]) != frame_png(alone)


def test_two_sliders_initial_selection():
    box, _, _ = _build({"a": [1, 2, 3], "b": ["x", "y"]}, initial={"b": "y"})
    first, second, outer = box.children
    assert first.index == 0 and outer.selected_index == 0
    assert second.index == 1
    assert all(inner.selected_index == 1 for inner in outer.children)
    box, _, _ = _build({"a": [1, 2, 3], "b": ["x", "y"]}, initial={"a": 3, "b": "x"})
    first, second, outer = box.children
    assert first.index == 2 and outer.selected_index == 2 and second.index == 0


def test_max_frames_boundary(monkeypatch):
    """Exactly MAX_FRAMES frames are drawn; one more is refused (a small limit keeps the
    test fast; the real limit's refusal is tested below)."""
    import gradflowkit.explorer as explorer_module

    assert MAX_FRAMES == 60
    monkeypatch.setattr(explorer_module, "MAX_FRAMES", 6)
    box, draw, _ = _build({"a": [1, 2, 3], "b": [0, 1]})
    assert box.frame_count == 6 == len(draw.calls)
    with pytest.raises(ValueError, match=r"^7 frames is more than MAX_FRAMES=6"):
        _build({"a": list(range(7))})


# --- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("sliders, msg", [
    ({}, r"^explorer takes one or two sliders, got 0"),
    ({"a": [1], "b": [2], "c": [3]}, r"^explorer takes one or two sliders, got 3"),
    ({"a": list(range(MAX_FRAMES + 1))}, rf"^{MAX_FRAMES + 1} frames is more than MAX_FRAMES"),
    ({"a": list(range(8)), "b": list(range(8))}, r"^64 frames is more than MAX_FRAMES=60"),
    ({"a": []}, r"^slider 'a' needs a non-empty list of values"),
    ({"a": "abc"}, r"^slider 'a' needs a non-empty list of values"),
    ({"a": 3}, r"^slider 'a' needs a non-empty list of values"),
    ({"a": [1, "1"]}, r"^slider 'a' has repeated labels \['1', '1'\]"),
    ({"a": [("x", 1), ("x", 2)]}, r"^slider 'a' has repeated labels"),
    ({"a": [0.1, 0.1000000001]}, r"^slider 'a' has repeated labels"),
])
def test_bad_sliders_raise_before_drawing(sliders, msg):
    draw = Recorder()
    with pytest.raises(ValueError, match=msg):
        explorer(draw, sliders, **SMALL)
    assert draw.calls == []


@pytest.mark.parametrize("initial, msg", [
    ({"c": 1}, r"^initial names unknown sliders \['c'\]"),
    ({"a": 4}, r"^initial value 4 of 'a' is not one of its slider values \[1, 2\]"),
    ({"b": "x"}, r"^initial value 'x' of 'b' is not one of"),
])
def test_unknown_initial_raises(initial, msg):
    draw = Recorder()
    with pytest.raises(ValueError, match=msg):
        explorer(draw, {"a": [1, 2], "b": [3]}, initial=initial, **SMALL)
    assert draw.calls == []


def test_draw_must_be_callable():
    with pytest.raises(TypeError, match=r"^draw must be callable, got str"):
        explorer("plot", {"a": [1]}, title="Explorer")


def test_error_in_draw_propagates_and_closes_the_figure():
    def draw(ax, a):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        explorer(draw, {"a": [1, 2]}, **SMALL)
    assert plt.get_fignums() == []


def test_timing_log_gets_one_line_per_explorer(monkeypatch, tmp_path):
    import json

    from gradflowkit.explorer import TIMING_LOG_ENV
    log = tmp_path / "explorers.jsonl"
    monkeypatch.setenv(TIMING_LOG_ENV, str(log))
    first = explorer(Recorder(), {"a": [1, 2, 3]}, **SMALL)
    second = explorer(Recorder(), {"a": [1, 2], "b": ["x", "y"]}, **SMALL)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["frames"] for line in lines] == [3, 4]
    assert [line["seconds"] for line in lines] == [first.draw_seconds, second.draw_seconds]
    assert all(line["seconds"] > 0 for line in lines)


def test_no_timing_log_without_the_variable(monkeypatch, tmp_path):
    from gradflowkit.explorer import TIMING_LOG_ENV
    monkeypatch.delenv(TIMING_LOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    explorer(Recorder(), {"a": [1]}, **SMALL)
    assert list(tmp_path.iterdir()) == []


def _frames(box):
    stack = box.children[-1]
    return [frame_png(child) for child in stack.children]


def test_later_frames_reuse_the_first_frames_layout_exactly():
    """Frames after the first are not laid out again but get the first frame's axes
    positions: the same drawing gives the same PNG, bit for bit."""
    def same_drawing(ax, k):
        ax.plot([0, 1, 2], [1, 10, 100])
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel("gradient norm")
        ax.set_title("same title")
    box = explorer(same_drawing, {"k": [1, 2, 3]}, figsize=(3.0, 2.0), dpi=40,
                   title="Explorer")
    first, *others = _frames(box)
    assert all(frame == first for frame in others)


def test_a_frame_with_more_axes_gets_its_own_layout():
    def sometimes_colorbar(ax, k):
        image = ax.imshow(np.arange(6.0).reshape(2, 3))
        if k == 2:
            ax.figure.colorbar(image, ax=ax)
    box = explorer(sometimes_colorbar, {"k": [1, 2, 3]}, figsize=(3.0, 2.0), dpi=40,
                   title="Explorer")
    one, two, three = _frames(box)
    assert one == three and two != one
