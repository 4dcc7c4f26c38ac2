"""Every random draw of the book comes from the seed switch (gradflowkit.seeding).

Oracle: the lessons' own code cells, read as text. A literal seed (``torch.manual_seed(0)``,
``np.random.default_rng(0)``, ``seed=3``) would pin a result to one run, and
``GRADFLOW_SEED`` would not reach it; `make test-robust` checks the other half (another
seed changes what a seeded lesson prints).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "lessons").glob("*.md")) + sorted((ROOT / "book").glob("*.md"))
CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)
FORBIDDEN = {
    r"\bmanual_seed\(": "torch.manual_seed / Generator().manual_seed: use seed_all() or "
                        "generator() from gradflowkit.seeding",
    r"\bdefault_rng\(": "np.random.default_rng: use seed_all() or numpy_rng()",
    r"\bnp\.random\.seed\(|\brandom\.seed\(": "global seeding: use seed_all()",
    r"\bseed\s*=\s*\d": "a literal seed argument: derive it with gradflowkit.seeding",
    r"\bseeds\s*=\s*(\(|\[|range\()\s*\d": "literal seeds: use ensemble_seeds()",
}


def code_of(page: Path) -> str:
    return "\n".join(CODE_CELL.findall(page.read_text(encoding="utf8")))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_literal_seeds(page):
    code = code_of(page)
    found = [f"{pattern!r} ({why}): {line.strip()}"
             for pattern, why in FORBIDDEN.items()
             for line in code.splitlines() if re.search(pattern, line)]
    assert not found, f"{page.name} seeds by hand:\n" + "\n".join(found)


def test_the_pattern_finds_code_cells():
    """The scanner itself: it must see the code of a known lesson (else it checks nothing)."""
    code = code_of(ROOT / "lessons" / "01-backprop-is-a-product.md")
    assert "import torch" in code and "DeepMLP" in code
