"""gradflowkit.reading: words a reader reads, counted by hand on small pages (the oracle)."""

from __future__ import annotations

import pytest

from gradflowkit.reading import count_words, prose, reading_minutes

PAGE = '''---
jupytext:
  formats: md:myst
---

(lesson-x)=
# One two

% a comment nobody reads
Three four five, six-seven.

```{code-cell} ipython3
:tags: [hide-input]
print("not read")
```

```{note}
:class: tip
Eight nine
```

````{solution-start} ex-1
:class: dropdown
```
````

Ten $x_{l+1}$ eleven.

````{exercise-start}
```{code-cell} ipython3
hidden = "code inside a directive"
```
twelve
````

```text
a code block
```
<!-- an html
comment -->
'''


def test_counts_prose_only():
    # One two | Three four five six-seven | Eight nine | Ten x l 1 eleven | twelve
    assert count_words(PAGE) == 2 + 4 + 2 + 5 + 1
    text = prose(PAGE)
    for left_out in ("formats", "comment", "not read", "hidden", "a code block", "dropdown",
                     "lesson-x", "tip"):
        assert left_out not in text, left_out


def test_reading_minutes_of_a_file(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n" + "word " * 399, encoding="utf-8")   # 400 words
    assert reading_minutes(page) == pytest.approx(400 / 200)
    assert reading_minutes(page, words_per_minute=100) == pytest.approx(4.0)


def test_errors_say_what_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no page at"):
        reading_minutes(tmp_path / "missing.md")
    with pytest.raises(ValueError, match="words_per_minute"):
        reading_minutes(tmp_path, words_per_minute=0)
    with pytest.raises(ValueError, match="never closed"):
        prose("---\ntitle: x\n")
