"""The book's map: which lesson builds on which, reading paths and their minutes (roadmap).

:data:`BUILDS_ON` is the one record of the lessons' prerequisites; the roadmap page draws
it (:func:`plot_roadmap`) and sums the reading minutes of each path
(:func:`~gradflowkit.reading.reading_minutes`). Lessons are named by their number
(``"06"``); only the lessons in the table of contents are drawn, so a lesson being written
appears once it is in ``_toc.yml``.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import yaml
from matplotlib.axes import Axes

from .plotting import PALETTE, _axes

#: For each lesson, the earlier lessons a reader needs first (not every lesson it mentions).
BUILDS_ON: dict[str, tuple[str, ...]] = {
    "01": (),
    "02": ("01",),
    "03": ("01",),
    "04": ("03",),
    "05": ("03", "04"),
    "06": ("02", "03"),
    "07": ("02", "06"),
    "08": ("06",),
    "09": ("04",),
    "10": ("03", "08"),
    "11": ("01",),
    "12": ("11",),
    "13": ("12", "08"),
    "14": ("12", "08"),
    "15": ("12", "14"),
    "16": ("05", "08", "13"),
    "17": ("13", "14"),
    "18": ("02", "06", "08", "13"),
    "19": ("08", "12", "16"),
    "20": ("05", "16"),
}

_PART_COLORS = [PALETTE["blue"], PALETTE["orange"], PALETTE["green"], PALETTE["purple"]]


class TocLesson(NamedTuple):
    """A lesson of the table of contents."""

    number: str    # "06"
    file: str      # "lessons/06-initialization" (as in _toc.yml, no suffix)
    part: str      # the part's caption
    part_index: int  # 0 for the first part that holds lessons


def book_root(start: str | Path | None = None) -> Path:
    """The book's repository: the first of ``start`` and its parents that holds ``_toc.yml``.

    The pages find the lessons' sources and the benchmark results from wherever they run
    (the book runs them in ``book/``, nbval in a copy under ``_build/notebooks/book/``).

    Args:
        start: where to look from (default: the current directory).
    """
    here = Path.cwd() if start is None else Path(start)
    here = here.resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    raise FileNotFoundError(f"no _toc.yml in {here} or any folder above it: run this from "
                            "inside the book's repository")


def toc_lessons(toc: str | Path) -> list[TocLesson]:
    """The lessons (``lessons/NN-*``) of ``_toc.yml``, in book order, with their parts."""
    data = yaml.safe_load(Path(toc).read_text(encoding="utf-8"))
    out: list[TocLesson] = []
    parts_seen: list[str] = []
    for part in data.get("parts", []):
        for chapter in part.get("chapters", []):
            match = re.fullmatch(r"lessons/(\d\d)-[\w-]+", chapter.get("file", ""))
            if match:
                if part["caption"] not in parts_seen:
                    parts_seen.append(part["caption"])
                out.append(TocLesson(match.group(1), chapter["file"], part["caption"],
                                     parts_seen.index(part["caption"])))
    if not out:
        raise ValueError(f"{toc} lists no lessons/NN-*.md file: is it the book's _toc.yml?")
    return out


def page_title(path: str | Path) -> str:
    """The title of a MyST page (its first level-1 heading), without its number."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return re.sub(r"^\d+\.\s*", "", line[2:].strip())
    raise ValueError(f"{path} has no '# ' title line")


def check_builds_on(lessons: Sequence[str], builds_on: Mapping[str, Sequence[str]]) -> None:
    """Every lesson has an entry, and builds only on earlier lessons of the list."""
    for i, number in enumerate(lessons):
        if number not in builds_on:
            raise ValueError(f"lesson {number} is in the table of contents but not in "
                             "BUILDS_ON: add what it builds on to gradflowkit/roadmap.py")
        later = [n for n in builds_on[number] if n in lessons[i:]]
        if later:
            raise ValueError(f"lesson {number} builds on {later}, which come at or after it")


def plot_roadmap(lessons: Sequence[TocLesson], titles: Mapping[str, str],
                 builds_on: Mapping[str, Sequence[str]] = BUILDS_ON, *,
                 ax: Axes | None = None, per_column: int = 5) -> Axes:
    """Boxes for the lessons, columns by part (at most ``per_column`` a column), and an
    arrow from each lesson to every lesson that builds on it (present in ``lessons``)."""
    check_builds_on([les.number for les in lessons], builds_on)
    ax = _axes(ax)
    place: dict[str, tuple[float, float]] = {}
    column, row, part = -1, 0, None
    for les in lessons:
        if les.part_index != part or row == per_column:
            column, row, part = column + 1, 0, les.part_index
        place[les.number] = (column * 2.4, -row * 1.25)
        row += 1
    boxes = {}
    for les in lessons:
        x, y = place[les.number]
        color = _PART_COLORS[les.part_index % len(_PART_COLORS)]
        label = f"{int(les.number)}. " + "\n".join(textwrap.wrap(titles[les.number], 18))
        boxes[les.number] = ax.text(
            x, y, label, ha="center", va="center", fontsize=7.5, zorder=3,
            bbox=dict(boxstyle="round,pad=0.35", facecolor="white", edgecolor=color,
                      linewidth=1.6)).get_bbox_patch()
    for les in lessons:
        for before in builds_on[les.number]:
            if before not in place:
                continue
            (x0, y0), (x1, y1) = place[before], place[les.number]
            bend = 0.35 if x0 == x1 else 0.08
            # The arrow starts and ends at the boxes' edges, whatever their size.
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=1,
                        arrowprops=dict(arrowstyle="-|>", color="0.55", lw=0.8,
                                        patchA=boxes[before], patchB=boxes[les.number],
                                        shrinkA=1, shrinkB=1,
                                        connectionstyle=f"arc3,rad={bend}"))
    xs, ys = zip(*place.values())
    ax.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.set_axis_off()
    return ax
