"""Numbers for the prose: ``glue`` them for the book, and show them where glue cannot reach.

The book's lessons compute every number they quote and ``glue`` it; MyST-NB puts the value
in place of a ``{glue:text}`` role naming it when the site is built. JupyterLab's MyST renderer
(jupyterlab-myst) has no store of glued values: in Lab the prose shows the role as the
name (for instance ``l12_err_product:.0e``), not the number.

So, when the environment variable ``GRADFLOW_SHOW_GLUE`` is ``1`` (``make lab`` and Binder
set it), every code cell that glues values also shows them in one small output at its end,
"Numbers in the text: ``name`` = value, …", and a reader can match each name in the prose
with its value just above. The book build does not set the variable, so the site and its
executed notebooks are unchanged.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import myst_nb

#: ``1`` shows each cell's glued values as an output (set for JupyterLab, not for the book).
SHOW_ENV = "GRADFLOW_SHOW_GLUE"

_pending: list[tuple[str, Any]] = []
_hooked = False


def showing_values() -> bool:
    """Whether glued values are shown as cell outputs (``GRADFLOW_SHOW_GLUE=1``)."""
    raw = os.environ.get(SHOW_ENV, "").strip()
    if raw not in ("", "0", "1"):
        raise ValueError(f"{SHOW_ENV} must be 1 (show glued values) or 0 / unset, got {raw!r}")
    return raw == "1"


def glue(name: str, value: Any, display: bool = False) -> None:
    """``myst_nb.glue(name, value, display=display)``, plus the Lab fallback described above.

    Args:
        name: the key the prose refers to in a ``{glue:text}`` role; a non-empty string.
        value: the value (a number, a string or anything MyST-NB can glue).
        display: also display the value where the cell runs (MyST-NB's meaning).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"glue name must be a non-empty string, got {name!r}")
    myst_nb.glue(name, value, display=display)
    if not display and showing_values():
        _pending.append((name, value))
        _hook_end_of_cell()


def format_value(value: Any) -> str:
    """A short text for a glued value: numbers to 4 significant digits, others as text."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        return str(x) if not math.isfinite(x) else f"{x:.4g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def pending_summary() -> str | None:
    """The Markdown line for the values glued since the last call (then forgets them)."""
    if not _pending:
        return None
    items = ", ".join(f"`{name}` = {format_value(value)}" for name, value in _pending)
    _pending.clear()
    return f"Numbers in the text: {items}"


def _show_pending() -> None:
    summary = pending_summary()
    if summary is not None:
        from IPython.display import Markdown, display

        display(Markdown(summary))


def _hook_end_of_cell() -> None:
    """Show the pending values once per cell, after it ran (as the inline backend's figures)."""
    global _hooked
    if _hooked:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:            # plain Python: nothing to show the values in
        _pending.clear()
        return
    shell.events.register("post_execute", _show_pending)
    _hooked = True
