"""Explorers: sliders that switch between precomputed figures, with or without a kernel.

Every combination of slider values is drawn once, when the notebook executes; the sliders
are linked to the frames in the browser (``jslink``), so the explorer works the same in
Jupyter, in Binder and on the static site, where no kernel runs.

Each frame is an ``<img>`` with alt text inside an ``HTML`` widget rather than an ``Image``
widget: ``Image`` has no alt trait, and its ``tooltip`` breaks the widget's rendering
(ipywidgets 8 reads the ``description`` that ``Image`` lacks), so a screen reader would
meet an unnamed picture. The alt text names the explorer, the slider values and what the
axes show, and it works in JupyterLab and on the static site alike.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt

from .plaintext import plain_math

#: Largest number of frames an explorer may draw (each is a PNG embedded in the page).
MAX_FRAMES = 60

#: If this environment variable names a file, every explorer appends one JSON line
#: ``{"frames": n, "seconds": s}`` to it. ``make bench`` sets it per notebook to measure how
#: much of a lesson's execution time goes to drawing explorer frames.
TIMING_LOG_ENV = "GRADFLOW_EXPLORER_LOG"

_PNG_DATA = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def explorer(draw: Callable[..., Any], sliders: Mapping[str, Sequence[Any]], *,
             initial: Mapping[str, Any] | None = None, nrows: int = 1, ncols: int = 1,
             figsize: tuple[float, float] = (7.0, 4.0), dpi: int = 100,
             title: str) -> widgets.VBox:
    """Draw ``draw(axes, **values)`` for every slider combination; return the widget.

    Args:
        draw: called as ``draw(axes, **{slider name: value})``; ``axes`` is one Axes, or an
            array of them when ``nrows * ncols > 1``. It must not call ``plt.show()``. Fix
            the axis limits inside ``draw`` so that frames can be compared. The first
            frame's layout is reused by the others; a frame that makes a different number
            of axes is drawn a second time, laid out on its own.
        sliders: one or two ``{name: values}`` entries, in slider order. A value may be a
            ``(label, value)`` pair to show ``label`` on the slider.
        initial: ``{name: value}`` shown first (default: each slider's first value).
        nrows: rows of subplots per frame (default 1).
        ncols: columns of subplots per frame (default 1).
        figsize: size of each frame in inches (default (7, 4)).
        dpi: resolution of each frame (default 100).
        title: what the explorer shows, named as a figure would be ("Backward signal per
            layer"); required, because the frames' alt text starts with it and reads
            "<title>, <slider> = <value>, ...: <y label> against <x label>".

    Returns:
        A ``VBox`` of the sliders above the frames; each frame is an ``HTML`` widget holding
        one ``<img>`` (``frame_png`` returns its PNG). Its attributes ``frame_count`` and
        ``draw_seconds`` say how many frames were drawn and how long it took.
    """
    if not callable(draw):
        raise TypeError(f"draw must be callable, got {type(draw).__name__}")
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if not 1 <= len(sliders) <= 2:
        raise ValueError(f"explorer takes one or two sliders, got {len(sliders)}: "
                         f"{list(sliders)}")
    names = list(sliders)
    options = {name: _options(name, sliders[name]) for name in names}
    n_frames = 1
    for name in names:
        n_frames *= len(options[name])
    if n_frames > MAX_FRAMES:
        raise ValueError(f"{n_frames} frames is more than MAX_FRAMES={MAX_FRAMES}; use "
                         "fewer slider values (each frame is an image in the page)")
    start = _initial_indices(names, options, initial or {})
    width_px = int(figsize[0] * dpi)
    began = time.perf_counter()

    layout: list[Any] = []  # the first frame's axes positions, reused by the others

    def frame(*chosen: tuple[str, Any]) -> widgets.HTML:
        values = {name: value for name, (_, value) in zip(names, chosen)}
        caption = ", ".join([title.strip()] + [f"{name} = {label}" for name, (label, _)
                                                in zip(names, chosen)])
        return _render(draw, values, caption, nrows, ncols, figsize, dpi, width_px, layout)

    if len(names) == 1:
        (name,) = names
        stack = widgets.Stack([frame(o) for o in options[name]], selected_index=start[0])
        controls = [_slider(name, options[name], start[0], stack)]
    else:
        first, second = names
        inner = [widgets.Stack([frame(o1, o2) for o2 in options[second]],
                               selected_index=start[1]) for o1 in options[first]]
        stack = widgets.Stack(inner, selected_index=start[0])
        controls = [_slider(first, options[first], start[0], stack),
                    _slider(second, options[second], start[1], *inner)]
    box = widgets.VBox([*controls, stack], layout=widgets.Layout(max_width=f"{width_px}px"))
    box.frame_count = n_frames
    box.draw_seconds = time.perf_counter() - began
    log = os.environ.get(TIMING_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf8") as f:
            f.write(json.dumps({"frames": n_frames, "seconds": box.draw_seconds}) + "\n")
    return box


def _options(name: str, values: Sequence[Any]) -> list[tuple[str, Any]]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"slider {name!r} needs a non-empty list of values, got {values!r}")
    pairs = [v if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
             else (_label(v), v) for v in values]
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"slider {name!r} has repeated labels {labels}; give distinct "
                         "(label, value) pairs")
    return pairs


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _initial_indices(names, options, initial) -> list[int]:
    unknown = set(initial) - set(names)
    if unknown:
        raise ValueError(f"initial names unknown sliders {sorted(unknown)}; sliders: {names}")
    indices = []
    for name in names:
        if name not in initial:
            indices.append(0)
            continue
        values = [v for _, v in options[name]]
        if initial[name] not in values:
            raise ValueError(f"initial value {initial[name]!r} of {name!r} is not one of "
                             f"its slider values {values}")
        indices.append(values.index(initial[name]))
    return indices


def frame_png(frame: widgets.HTML) -> bytes:
    """The PNG image of one explorer frame.

    Args:
        frame: a frame of an explorer, an ``HTML`` widget made by ``explorer``.

    Returns:
        The PNG file's bytes.
    """
    match = _PNG_DATA.search(getattr(frame, "value", "") or "")
    if not isinstance(frame, widgets.HTML) or match is None:
        raise ValueError("not an explorer frame (an HTML widget with a PNG <img>): got "
                         f"{type(frame).__name__} {str(getattr(frame, 'value', ''))[:60]!r}")
    return base64.b64decode(match.group(1))


def _describe_axes(fig) -> str:
    """What the axes of a figure plot, from their labels: "y against x; ..."."""
    parts = []
    for ax in fig.axes:
        ylabel, xlabel = ax.get_ylabel().strip(), ax.get_xlabel().strip()
        text = f"{ylabel} against {xlabel}" if ylabel and xlabel else ylabel or xlabel
        if ax.get_title().strip():
            text = f"{ax.get_title().strip()} ({text})" if text else ax.get_title().strip()
        if text and text not in parts:
            parts.append(text)
    return plain_math("; ".join(parts))


# TeX commands that have a one-character reading; spacing commands read as a space.
def _frame_html(png: bytes, alt: str, width_px: int) -> widgets.HTML:
    data = base64.b64encode(png).decode("ascii")
    return widgets.HTML(
        f'<img class="gradflow-frame" src="data:image/png;base64,{data}" '
        f'alt="{html.escape(alt, quote=True)}" '
        f'style="width: 100%; max-width: {width_px}px; height: auto">',
        layout=widgets.Layout(width="100%", max_width=f"{width_px}px"))


def _render(draw, values, caption, nrows, ncols, figsize, dpi, width_px,
            layout) -> widgets.HTML:
    """Draw one frame as an ``<img>`` whose alt text is ``caption`` and what the axes show.

    The first frame is laid out by matplotlib's constrained layout, and its axes positions
    are stored in ``layout``. Later frames reuse those positions instead of solving the
    layout again, which halves the drawing time and keeps the axes still while a slider
    moves. A frame whose ``draw`` makes a different number of axes (a colour bar only
    sometimes, say) is laid out on its own.
    """
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize,
                             layout=None if layout else "constrained")
    try:
        draw(axes, **values)
        if layout and len(fig.axes) == len(layout):
            for ax, position in zip(fig.axes, layout):
                ax.set_position(position)
        elif layout:  # draw it again, laid out on its own (axes made without a layout
            plt.close(fig)  # engine cannot be handed to one afterwards)
            fig, axes = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained")
            draw(axes, **values)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        if not layout:
            layout.extend(ax.get_position() for ax in fig.axes)
        shows = _describe_axes(fig)
    finally:
        plt.close(fig)  # drawn frames are not shown as separate outputs
    alt = f"{caption}: {shows}" if shows else caption
    return _frame_html(buffer.getvalue(), alt, width_px)


def _slider(name: str, options, index: int, *stacks: widgets.Stack) -> widgets.SelectionSlider:
    slider = widgets.SelectionSlider(options=options, index=index, description=name,
                                     continuous_update=True,
                                     style={"description_width": "initial"},
                                     layout=widgets.Layout(width="90%"))
    for stack in stacks:
        # A front-end link: the browser switches frames with no kernel running.
        widgets.jslink((slider, "index"), (stack, "selected_index"))
    return slider
