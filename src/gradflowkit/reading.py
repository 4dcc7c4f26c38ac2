"""Reading time of a page: the words a reader reads, at 200 words a minute (the roadmap).

Counted: the prose of a MyST-Markdown lesson, including the text inside directives (notes,
exercises, solutions, figure captions written in the text) and its inline math, whose TeX
commands count as words (reading a formula takes time too). Not counted: the front matter,
code cells and other code blocks, MyST comments (``%``), HTML comments and labels
(``(name)=``). Code is left out because readers of the site skim most of it (it is folded
away in most lessons); the figures' captions, written in cell metadata, are left out with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from .validation import check_float

#: The reading speed the book assumes for technical prose.
WORDS_PER_MINUTE = 200

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")
_CODE_INFO = re.compile(r"^\s*(\{code-cell\}.*|[\w+-]*)\s*$")


def prose(text: str) -> str:
    """The lines of a MyST-Markdown ``text`` that a reader reads (see the module docstring)."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":              # front matter
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        if end is None:
            raise ValueError("the front matter opened by '---' on line 1 is never closed")
        lines = lines[end + 1:]
    kept: list[str] = []
    fences: list[tuple[str, bool]] = []     # (closing marker prefix, is code)
    for line in lines:
        match = _FENCE.match(line)
        if match and fences and match.group(1).startswith(fences[-1][0]) \
                and not match.group(2).strip():
            fences.pop()
            continue
        if match and not (fences and fences[-1][1]):
            marker, info = match.groups()
            fences.append((marker, bool(_CODE_INFO.match(info))))
            continue
        if fences and fences[-1][1]:
            continue
        stripped = line.strip()
        if stripped.startswith("%") or re.fullmatch(r"\([\w:-]+\)=", stripped):
            continue
        if fences and re.match(r":[\w-]+:", stripped):   # a directive's option line
            continue
        kept.append(line)
    return re.sub(r"<!--.*?-->", " ", "\n".join(kept), flags=re.S)


def count_words(text: str) -> int:
    """The number of words in the prose of ``text`` (letters and digits, joined by ' . -)."""
    return len(_WORD.findall(prose(text)))


def reading_minutes(path: str | Path, words_per_minute: float = WORDS_PER_MINUTE) -> float:
    """Minutes to read the page at ``path`` (MyST Markdown) at ``words_per_minute``.

    Args:
        path: a lesson or page source (``lessons/01-backprop-is-a-product.md``).
        words_per_minute: reading speed (> 0, default 200).

    Returns:
        ``count_words(text) / words_per_minute``.
    """
    speed = check_float("words_per_minute", words_per_minute, positive=True)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no page at {path}: give the path of a .md source")
    return count_words(path.read_text(encoding="utf-8")) / speed
