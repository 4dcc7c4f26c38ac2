"""gradflowkit.glue: MyST-NB's glue for the book, plus the values shown per cell in Lab.
Oracles: MyST-NB's own glue outputs, and a real kernel run through nbclient."""

from __future__ import annotations

import os

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from gradflowkit import glue as glue_module
from gradflowkit.glue import SHOW_ENV, format_value, glue, pending_summary, showing_values


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(SHOW_ENV, raising=False)
    glue_module._pending.clear()
    yield
    glue_module._pending.clear()


def test_format_value():
    assert format_value(0.000123456) == "0.0001235"
    assert format_value(np.float32(2.5)) == "2.5"
    assert format_value(np.int64(7)) == "7"
    assert format_value(True) == "True"
    assert format_value(float("nan")) == "nan"
    assert format_value(float("inf")) == "inf"
    assert format_value("09-gates") == "09-gates"
    assert format_value("x" * 100).endswith("...") and len(format_value("x" * 100)) == 60


def test_showing_values_reads_the_switch(monkeypatch):
    assert not showing_values()
    monkeypatch.setenv(SHOW_ENV, "1")
    assert showing_values()
    monkeypatch.setenv(SHOW_ENV, "yes")
    with pytest.raises(ValueError, match="GRADFLOW_SHOW_GLUE must be 1"):
        showing_values()


def test_glue_passes_through_to_myst_nb(monkeypatch):
    calls = []
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: calls.append((a, k)))
    glue("x", 1.5)
    glue("y", 2, display=True)
    assert calls == [(("x", 1.5), {"display": False}), (("y", 2), {"display": True})]
    assert pending_summary() is None            # switch off: nothing is kept


def test_glue_rejects_a_bad_name():
    with pytest.raises(TypeError, match="non-empty string"):
        glue("", 1)
    with pytest.raises(TypeError, match="non-empty string"):
        glue(3, 1)


def test_pending_summary_lists_values_once(monkeypatch):
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: None)
    monkeypatch.setattr(glue_module, "_hook_end_of_cell", lambda: None)   # no IPython here
    monkeypatch.setenv(SHOW_ENV, "1")
    glue("a", 0.123456)
    glue("b", 3)
    glue("shown", 1, display=True)              # displayed by MyST-NB itself: not repeated
    assert pending_summary() == "Numbers in the text: `a` = 0.1235, `b` = 3"
    assert pending_summary() is None


def test_outside_ipython_nothing_piles_up(monkeypatch):
    import myst_nb

    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: None)
    monkeypatch.setenv(SHOW_ENV, "1")
    glue("a", 1)
    assert pending_summary() is None            # no shell to show it in: dropped, not kept


def _run(cells: list[str], show: bool) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = dict(os.environ)
    env.pop(SHOW_ENV, None)
    if show:
        env[SHOW_ENV] = "1"
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)                      # the kernel inherits this environment
    try:
        NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def _markdown(cell) -> list[str]:
    return [o["data"]["text/markdown"] for o in cell.outputs if "text/markdown" in o.get("data", {})]


def test_in_a_kernel_each_cell_shows_its_own_values():
    cells = ["from gradflowkit.glue import glue\nglue('a', 1.23456)\nglue('b', 2)",
             "x = 1",
             "glue('c', 0.5)"]
    nb = _run(cells, show=True)
    assert _markdown(nb.cells[0]) == ["Numbers in the text: `a` = 1.235, `b` = 2"]
    assert _markdown(nb.cells[1]) == []
    assert _markdown(nb.cells[2]) == ["Numbers in the text: `c` = 0.5"]
    # MyST-NB's hidden glue outputs are still there for the book.
    names = [o["metadata"]["scrapbook"]["name"] for o in nb.cells[0].outputs
             if "scrapbook" in o.get("metadata", {})]
    assert names == ["a", "b"]


def test_in_the_book_build_nothing_extra_is_shown():
    nb = _run(["from gradflowkit.glue import glue\nglue('a', 1.23456)"], show=False)
    assert _markdown(nb.cells[0]) == []
    assert [o["metadata"]["scrapbook"]["name"] for o in nb.cells[0].outputs] == ["a"]
