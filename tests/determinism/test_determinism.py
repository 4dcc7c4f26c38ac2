"""Every lesson, executed twice from its .md source, prints the same text.

Each run: jupytext reads lessons/NN-name.md, nbclient executes it with the `python3` kernel in
the lesson's folder (as the book build does) and PYTHONHASHSEED=0. Compared: stream output
(stdout and stderr) and text/plain results, cell by cell. Not compared: images and HTML
(rendering details), and widget model ids, which are random UUIDs by design. Memory addresses
("at 0x7f...") are masked, because a repr that shows one is not a result of the lesson.
Consecutive stream outputs of one cell are joined before comparing: how the kernel splits
printed text into messages depends on timing, not on the lesson.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]
LESSONS = sorted((REPO / "lessons").glob("*.md"))
ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
MODEL_ID = re.compile(r"\b[0-9a-f]{32}\b")


def _text_outputs(path: Path) -> list[tuple[int, str, str]]:
    nb = jupytext.read(path)
    os.environ["PYTHONHASHSEED"] = "0"  # inherited by the kernel
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    out = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text = output.text
                kind = f"stream:{output.name}"
            elif output.output_type in ("execute_result", "display_data"):
                if "text/plain" not in output.get("data", {}):
                    continue
                text = output["data"]["text/plain"]
                kind = "text/plain"
            elif output.output_type == "error":
                text = f"{output.ename}: {output.evalue}"
                kind = "error"
            else:
                continue
            text = MODEL_ID.sub("<id>", ADDRESS.sub("0x<addr>", text))
            if kind.startswith("stream:") and out and out[-1][:2] == (index, kind):
                out[-1] = (index, kind, out[-1][2] + text)  # one print split in two messages
            else:
                out.append((index, kind, text))
    return out


@pytest.mark.skipif(not LESSONS, reason="no lessons/*.md yet")
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.name for p in LESSONS])
def test_two_runs_print_the_same_text(lesson: Path) -> None:
    first = _text_outputs(lesson)
    second = _text_outputs(lesson)
    assert len(first) == len(second), f"{lesson.name}: number of text outputs differs between runs"
    for a, b in zip(first, second):
        assert a == b, (
            f"{lesson.name}, code cell {a[0]} ({a[1]}) printed different text in two runs:\n"
            f"--- run 1\n{a[2][:1000]}\n--- run 2\n{b[2][:1000]}"
        )
