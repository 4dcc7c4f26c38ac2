"""Keep the book's notebook sources exactly as JupyterLab (with jupytext) would save them.

    python tools/lab_fixpoint.py            # check; exit 1 naming every offending file
    python tools/lab_fixpoint.py --write    # rewrite them: fixed points, solutions folded

JupyterLab opens a lesson `.md` as a notebook through jupytext, starts a kernel (which puts
the kernel's `kernelspec` and `language_info` into the notebook metadata) and autosaves it
with jupytext's MyST writer. If the file on disk is not exactly what that writer produces,
Lab's autosave silently changes the lesson (the kernel's display name, the line wrapping of
YAML cell options, blank lines). So every source must be a fixed point of that round trip,
and this script checks it with the same jupytext version the book pins.

Solutions stay folded in Lab too. In the book, sphinx-exercise folds a solution
(`{solution-start}` with `:class: dropdown`), but jupyterlab-myst renders cell by cell, so
only the empty "Start of Solution" line folds and the solution's code cells stay open. So
each code cell between `{solution-start}` and `{solution-end}` carries the cell metadata
with which JupyterLab folds its code (`jupyter: {source_hidden: true}`; its printed answer
stays visible, as Lab unfolds outputs when a cell runs);
Sphinx ignores it (the book's HTML is the same with and without it). `--write` adds it.

It also fails on a stray `.ipynb` beside a source (a paired copy JupyterLab writes when a
notebook declares `formats: ipynb,md:myst`, or a reader's "Save as"): Sphinx would see two
files for one document. `_config.yml` excludes such files from the build anyway; the check
says which file it is.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute import ROOT, toc_sources  # noqa: E402 - the ToC notebooks, as the build finds them

#: What JupyterLab puts into the notebook metadata when the python3 kernel of ipykernel
#: starts: the kernel's spec and its kernel_info reply. jupytext keeps the kernelspec and
#: drops language_info when it writes MyST.
LAB_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python",
                  "name": "python3"}
LAB_LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
    "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3", "version": "3.11",
}


def lab_roundtrip(text: str) -> str:
    """The text JupyterLab saves for `text` once a python3 kernel has started in it."""
    notebook = jupytext.reads(text, fmt="md:myst")
    notebook.metadata["kernelspec"] = dict(LAB_KERNELSPEC)
    notebook.metadata["language_info"] = dict(LAB_LANGUAGE_INFO)
    return jupytext.writes(notebook, fmt="md:myst")


def paired_formats(text: str) -> list[str]:
    """The formats besides MyST that the header pairs the notebook with (should be none)."""
    header = yaml.safe_load(text.split("\n---\n", 1)[0][4:]) or {}
    formats = (header.get("jupytext") or {}).get("formats") or "md:myst"
    return [f for f in formats.split(",") if f.strip() != "md:myst"]


#: The cell metadata with which JupyterLab shows a code cell's input folded. Its outputs
#: cannot stay folded: Lab drops `outputs_hidden` when the cell runs, and autosave would
#: then rewrite the lesson.
FOLDED = {"source_hidden": True}


def solution_cells(notebook) -> list:
    """The code cells between a `{solution-start}` and its `{solution-end}`."""
    cells, inside = [], False
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            # A markdown cell may close one solution and open the next.
            for marker in re.findall(r"\{solution-(start|end)\}", cell.source):
                inside = marker == "start"
        elif inside:
            cells.append(cell)
    return cells


def fold_solutions(text: str) -> str:
    """The MyST text with every solution code cell folded in JupyterLab."""
    notebook = jupytext.reads(text, fmt="md:myst")
    for cell in solution_cells(notebook):
        kept = {k: v for k, v in cell.metadata.get("jupyter", {}).items()
                if k != "outputs_hidden"}
        cell.metadata["jupyter"] = {**kept, **FOLDED}
    return jupytext.writes(notebook, fmt="md:myst")


def unfolded_solutions(text: str) -> int:
    """How many solution code cells JupyterLab would not show as it saves them, folded."""
    return sum(dict(c.metadata.get("jupyter", {})) != FOLDED
               for c in solution_cells(jupytext.reads(text, fmt="md:myst")))


def stray_notebooks(root: Path = ROOT) -> list[Path]:
    """`.ipynb` files beside the book's sources (Sphinx would find two files per page)."""
    return sorted(p.with_suffix(".ipynb") for p in toc_sources(root)
                  if p.with_suffix(".ipynb").exists())


def problems_of(path: Path) -> list[str]:
    """What is wrong with one source, as lines for the reader."""
    name, text = path.relative_to(ROOT), path.read_text(encoding="utf8")
    problems = []
    if paired_formats(text):
        problems.append(f"{name}: `formats:` pairs it with {paired_formats(text)}; JupyterLab "
                        "would write that file too (declare `formats: md:myst`)")
    if lab_roundtrip(text) != text:
        problems.append(f"{name}: JupyterLab's autosave would change it")
    if unfolded_solutions(text):
        problems.append(f"{name}: {unfolded_solutions(text)} solution code cell(s) would "
                        "show open in JupyterLab")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="rewrite the sources: fixed points, solutions folded")
    args = parser.parse_args(argv)
    problems = []
    for path in toc_sources():
        text = path.read_text(encoding="utf8")
        if args.write and lab_roundtrip(fold_solutions(text)) != text:
            path.write_text(lab_roundtrip(fold_solutions(text)), encoding="utf8")
            print(f"rewrote {path.relative_to(ROOT)}")
        problems += problems_of(path)
    problems += [f"{p.relative_to(ROOT)}: a notebook copy beside its .md source (the .md is "
                 "the only source); delete it" for p in stray_notebooks()]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems and not args.write:
        print("Repair: python tools/lab_fixpoint.py --write, then review the diff",
              file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
