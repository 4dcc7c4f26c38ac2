"""JupyterLab never changes a lesson by opening, running or autosaving it.

Oracle: jupytext itself, the library JupyterLab saves `.md` notebooks with. Each notebook
source of `_toc.yml` is read as MyST, given the metadata JupyterLab adds when the kernel
starts (the installed python3 kernel's spec and a `language_info`), and written back; the
text must come back byte for byte. The header must not pair the notebook with an `.ipynb`
(JupyterLab would write one beside the lesson, and Sphinx would see two sources). To repair
a failure: `python tools/lab_fixpoint.py --write`, then review the diff.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path

import jupytext
import pytest
import yaml
from jupyter_client.kernelspec import KernelSpecManager

ROOT = Path(__file__).resolve().parents[2]


def _load_tool():
    spec = importlib.util.spec_from_file_location("lab_fixpoint",
                                                  ROOT / "tools" / "lab_fixpoint.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["lab_fixpoint"] = module
    spec.loader.exec_module(module)
    return module


lab_fixpoint = _load_tool()


def toc_sources() -> list[Path]:
    """The `.md` files of `_toc.yml` that carry a jupytext header (the notebooks)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    names = [toc["root"]] + [chapter["file"] for part in toc["parts"]
                             for chapter in part["chapters"]]
    paths = [ROOT / f"{name}.md" for name in names]
    return [p for p in paths if p.read_text(encoding="utf8").startswith("---\njupytext:")]


SOURCES = toc_sources()


def installed_kernelspec() -> dict:
    """The kernelspec JupyterLab writes into a notebook whose python3 kernel started."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    return {"display_name": spec.display_name, "language": spec.language, "name": "python3"}


def lab_save(text: str) -> str:
    notebook = jupytext.reads(text, fmt="md:myst")
    notebook.metadata["kernelspec"] = installed_kernelspec()
    notebook.metadata["language_info"] = {
        "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
        "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3", "version": sys.version.split()[0],
    }
    return jupytext.writes(notebook, fmt="md:myst")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_source_is_what_jupyterlab_saves(path):
    text = path.read_text(encoding="utf8")
    saved = lab_save(text)
    diff = "\n".join(difflib.unified_diff(text.splitlines(), saved.splitlines(),
                                          "on disk", "after JupyterLab saves", lineterm=""))
    assert saved == text, (
        f"{path.relative_to(ROOT)} is not what JupyterLab's autosave writes, so opening it in "
        f"Lab would change it. Run `python tools/lab_fixpoint.py --write`.\n{diff}")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_source_is_not_paired_with_a_notebook(path):
    header = jupytext.reads(path.read_text(encoding="utf8"), fmt="md:myst").metadata
    formats = header.get("jupytext", {}).get("formats", "md:myst")
    assert formats == "md:myst", (
        f"{path.relative_to(ROOT)} declares `formats: {formats}`: JupyterLab would save a "
        "paired .ipynb beside it. Declare `formats: md:myst`.")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_solutions_are_folded_in_lab(path):
    """jupyterlab-myst cannot fold a solution that spans cells: the cells fold themselves."""
    notebook = jupytext.reads(path.read_text(encoding="utf8"), fmt="md:myst")
    open_cells = [c.source.splitlines()[0] for c in lab_fixpoint.solution_cells(notebook)
                  if c.metadata.get("jupyter", {}) != lab_fixpoint.FOLDED]
    assert not open_cells, (
        f"{path.relative_to(ROOT)}: solution code cells that JupyterLab would show open "
        f"(first lines {open_cells}); run `python tools/lab_fixpoint.py --write`")


@pytest.mark.parametrize("path", [p for p in SOURCES if "{exercise-start}" in p.read_text("utf8")],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_some_solution_runs_and_asserts(path):
    """CONTRIBUTING: a lesson's exercises have worked solutions, and at least one of them
    runs and asserts its answer (a solution of prose only is checked by nobody)."""
    notebook = jupytext.reads(path.read_text(encoding="utf8"), fmt="md:myst")
    asserting = [c for c in lab_fixpoint.solution_cells(notebook)
                 if c.cell_type == "code" and "assert " in c.source]
    assert asserting, (f"{path.relative_to(ROOT)}: no solution code cell asserts its answer; "
                       "give one exercise a numeric answer that a code cell computes and asserts")


def test_solution_cells_are_found():
    """The scan sees the code of every solution (one or more per lesson with exercises)."""
    text = (ROOT / "lessons" / "01-backprop-is-a-product.md").read_text(encoding="utf8")
    cells = lab_fixpoint.solution_cells(jupytext.reads(text, fmt="md:myst"))
    assert len(cells) == text.count("{solution-start}") == 3
    assert all(c.cell_type == "code" for c in cells)


def test_every_notebook_of_the_toc_is_checked():
    """The scan must see the lessons (else the round trip checks nothing)."""
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {"lessons/01-backprop-is-a-product.md", "book/intro.md"} <= names
    assert len([n for n in names if n.startswith("lessons/")]) >= 16


def test_the_tool_agrees_with_the_test():
    """tools/lab_fixpoint.py (what contributors run) uses the same kernel and ToC."""
    assert lab_fixpoint.LAB_KERNELSPEC == installed_kernelspec()
    assert lab_fixpoint.toc_sources() == SOURCES
    assert lab_fixpoint.lab_roundtrip(SOURCES[0].read_text(encoding="utf8")) == \
        lab_save(SOURCES[0].read_text(encoding="utf8"))


def test_the_tool_finds_a_drift_and_a_stray_notebook(tmp_path):
    """The tool's check catches the two failures it exists for, in a copy of the tree."""
    (tmp_path / "lessons").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: lessons/a\n", encoding="utf8")
    lesson = SOURCES[1].read_text(encoding="utf8")
    drifted = lesson.replace("display_name: Python 3 (ipykernel)", "display_name: Python 3")
    (tmp_path / "lessons" / "a.md").write_text(drifted, encoding="utf8")
    (tmp_path / "lessons" / "a.ipynb").write_text("{}", encoding="utf8")
    assert lab_fixpoint.toc_sources(tmp_path) == [tmp_path / "lessons" / "a.md"]
    paired = lesson.replace("formats: md:myst", "formats: ipynb,md:myst")
    assert lab_fixpoint.paired_formats(paired) == ["ipynb"]
    assert lab_fixpoint.lab_roundtrip(drifted) == lesson
    assert lab_fixpoint.stray_notebooks(tmp_path) == [tmp_path / "lessons" / "a.ipynb"]
