"""Accessibility of the built book: axe-core on every page, in light and dark mode.

axe-core comes from node_modules/ (`make node` installs the version pinned in
package-lock.json) and is injected from that file, so nothing is fetched at run time.
A page passes when axe reports no violation of impact "serious" or "critical" once the
page's explorers and math are rendered (axe checks what a reader meets, not the page
before its scripts ran).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from conftest import REPO, SITE
from site_helpers import is_redirect, open_page, wait_until_rendered

AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
MODES = ("light", "dark")

# axe.run over the whole document; only violations are returned (smaller, faster).
JS_AXE = """async () => {
    const result = await axe.run(document, {resultTypes: ['violations']});
    return result.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))
    }));
}"""


# What a slider handle announces: its name, and the value shown next to it.
JS_HANDLES = """() => Array.from(document.querySelectorAll('.widget-slider')).map(s => ({
    label: (s.querySelector('.widget-label') || {}).textContent,
    readout: (s.querySelector('.widget-readout') || {}).textContent,
    name: s.querySelector('.noUi-handle').getAttribute('aria-label'),
    valuetext: s.querySelector('.noUi-handle').getAttribute('aria-valuetext')}))"""

IMG = re.compile(r"<img\b[^>]*>", re.I)
ALT = re.compile(r'\balt=\\?"([^"\\]*)', re.I)
FILE_NAME = re.compile(r"(^|/)[\w.-]+\.(png|jpe?g|svg|gif|webp)$|_images/", re.I)
# The whole alt attribute (it may hold escaped backslashes), and TeX a screen reader would spell.
ALT_WHOLE = re.compile(r'\balt=\\?"(.*?)\\?"', re.I | re.S)
RAW_TEX = re.compile(r"\$|\\+(partial|lambda|sigma|gamma|sqrt|left|right|mathrm|lVert|rVert)\b|\\+\|")


def axe_violations(page) -> list[dict]:
    """Run axe-core on an opened page and return its violations (all impacts).

    Args:
        page: a Playwright page whose document is loaded and rendered.

    Returns:
        One dict per violated rule: ``id``, ``impact``, ``help`` and ``nodes`` (each with the
        ``target`` selector and axe's ``summary`` of what is wrong).
    """
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `make node` (npm ci installs axe-core).")
    page.add_script_tag(path=str(AXE))
    return page.evaluate(JS_AXE)


def format_violations(page_path: str, mode: str, violations: list[dict]) -> str:
    """A failure message that names each rule, its impact and the elements that fail it."""
    lines = [f"{page_path} ({mode} mode): {len(violations)} serious/critical axe violation(s)"]
    for v in violations:
        lines.append(f"  - {v['id']} [{v['impact']}] {v['help']} ({len(v['nodes'])} node(s))")
        for node in v["nodes"][:8]:
            summary = " ".join((node["summary"] or "").split())[:160]
            lines.append(f"      {node['target']}  -- {summary}")
        if len(v["nodes"]) > 8:
            lines.append(f"      ... and {len(v['nodes']) - 8} more")
    return "\n".join(lines)


def test_images_have_alt_text_not_file_names(page_path: str) -> None:
    """axe accepts any alt text; a file name ("../_images/4fac....png") tells a reader nothing,
    and neither does raw TeX ("\\partial L"): explorer alt text is plain (explorer.plain_math).

    Explorer frames are <img> tags inside the embedded widget state (escaped JSON), so the
    pattern also reads ``alt=\\"...``.
    """
    html = (SITE / page_path).read_text(encoding="utf-8")
    bad = []
    for tag in IMG.findall(html):
        match = ALT.search(tag)
        alt = match.group(1).strip() if match else ""
        whole = ALT_WHOLE.search(tag)
        if not alt or FILE_NAME.search(alt) or (whole and RAW_TEX.search(whole.group(1))):
            bad.append(tag[:120] if not whole else whole.group(1)[:160])
    assert not bad, f"{page_path}: {len(bad)} image(s) without a real alt text: {bad[:5]}"


@pytest.mark.parametrize("mode", MODES)
def test_axe(page_path: str, mode: str, site_url: str, browser) -> None:
    if is_redirect(page_path):
        pytest.skip("redirect page (its target is tested)")
    with open_page(browser, site_url, page_path, mode=mode) as page:
        wait_until_rendered(page)
        violations = axe_violations(page)
        handles = page.evaluate(JS_HANDLES)
    report = os.environ.get("GRADFLOW_AXE_REPORT")
    if report:  # one JSON line per page and mode: for measuring, not for the assert
        with open(report, "a", encoding="utf8") as f:
            f.write(json.dumps({"page": page_path, "mode": mode, "violations": violations}) + "\n")
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert not blocking, format_violations(page_path, mode, blocking)
    # axe wants a name; a reader also needs the value ("tanh"), not noUiSlider's index.
    unnamed = [h for h in handles if h["name"] != (h["label"] or "").strip()
               or h["valuetext"] != (h["readout"] or "").strip()]
    assert not unnamed, f"{page_path}: slider handles without their label and value: {unnamed}"
