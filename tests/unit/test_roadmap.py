"""gradflowkit.roadmap: the table of contents read back, prerequisites checked, the map drawn.
Oracles: hand-written tables of contents and the book's own _toc.yml."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from gradflowkit.roadmap import (BUILDS_ON, TocLesson, book_root, check_builds_on, page_title,  # noqa: E402
                                 plot_roadmap, toc_lessons)

ROOT = Path(__file__).resolve().parents[2]

TOC = """format: jb-book
root: book/intro
parts:
  - caption: Start here
    chapters:
      - file: book/how-to-use
  - caption: Part A
    chapters:
      - file: lessons/01-first
      - file: lessons/02-second
  - caption: Part B
    chapters:
      - file: lessons/03-third
      - file: book/elsewhere
"""


def test_toc_lessons_in_order_with_their_parts(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(TOC)
    assert toc_lessons(toc) == [TocLesson("01", "lessons/01-first", "Part A", 0),
                                TocLesson("02", "lessons/02-second", "Part A", 0),
                                TocLesson("03", "lessons/03-third", "Part B", 1)]


def test_every_lesson_of_the_book_has_its_prerequisites_before_it():
    lessons = [les.number for les in toc_lessons(ROOT / "_toc.yml")]
    assert lessons == sorted(lessons)
    check_builds_on(lessons, BUILDS_ON)
    for les in toc_lessons(ROOT / "_toc.yml"):
        assert page_title(ROOT / f"{les.file}.md")


def test_bad_prerequisites_are_named():
    with pytest.raises(ValueError, match="not in BUILDS_ON"):
        check_builds_on(["01", "99"], BUILDS_ON)
    with pytest.raises(ValueError, match=r"builds on \['02'\]"):
        check_builds_on(["01", "02"], {"01": ("02",), "02": ()})


def test_page_title_drops_the_number(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("---\nx: 1\n---\n(label)=\n# 6. Initialization\n\n## More\n")
    assert page_title(page) == "Initialization"
    (tmp_path / "q.md").write_text("no title\n")
    with pytest.raises(ValueError, match="no '# ' title"):
        page_title(tmp_path / "q.md")
    with pytest.raises(ValueError, match="lists no lessons"):
        (tmp_path / "t.yml").write_text("parts: []\n")
        toc_lessons(tmp_path / "t.yml")


def test_the_map_has_a_box_per_lesson_and_an_arrow_per_prerequisite(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(TOC)
    lessons = toc_lessons(toc)
    builds_on = {"01": (), "02": ("01",), "03": ("01", "02")}
    fig, ax = plt.subplots()
    plot_roadmap(lessons, {"01": "First", "02": "Second", "03": "Third"}, builds_on, ax=ax)
    labels = [t.get_text() for t in ax.texts if t.get_text()]   # annotations have no text
    assert labels == ["1. First", "2. Second", "3. Third"]
    arrows = [c for c in ax.get_children() if getattr(c, "arrow_patch", None) is not None]
    assert len(arrows) == 3
    plt.close(fig)


def test_book_root_is_found_from_below_and_missing_is_named(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\n", encoding="utf-8")
    deep = tmp_path / "_build" / "notebooks" / "book"
    deep.mkdir(parents=True)
    assert book_root(deep) == tmp_path.resolve()
    assert book_root(tmp_path) == tmp_path.resolve()
    elsewhere = tmp_path / "x"
    elsewhere.mkdir()
    (tmp_path / "_toc.yml").unlink()
    with pytest.raises(FileNotFoundError, match="no _toc.yml in .* or any folder above"):
        book_root(elsewhere)
