"""Every page at a phone's width (390 px): nothing cut off, explorer handles big enough.

Per page: the page does not scroll sideways, no typeset formula is cut off by a box that
cannot scroll, and every slider handle is at least 24 x 24 px (WCAG 2.2 target size). A
full-page screenshot of each page (its top 30,000 px) goes to _build/screenshots/phone/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from site_helpers import (PHONE, is_redirect, open_page, save_screenshot, screenshot_name,
                          wait_until_rendered)

MIN_TARGET_PX = 24

# Formulas that stick out of an ancestor which hides its overflow, and would only be readable
# if that ancestor scrolled. An ancestor that scrolls sideways (overflow-x auto/scroll) makes
# the rest readable, so the search stops there.
JS_CLIPPED_MATH = """() => {
    const clipped = [];
    for (const m of document.querySelectorAll('mjx-container')) {
        if (m.getClientRects().length === 0) continue;        // hidden (a closed dropdown)
        const r = m.getBoundingClientRect();
        let hidden = null, scrolls = false;
        for (let a = m; a && a !== document.documentElement; a = a.parentElement) {
            const ox = getComputedStyle(a).overflowX;
            if (ox === 'auto' || ox === 'scroll') {
                const b = a.getBoundingClientRect();
                if (r.width > b.width + 1 && !(a.scrollWidth > a.clientWidth)) hidden = a;
                scrolls = true;
                break;
            }
            if (a !== m && (ox === 'hidden' || ox === 'clip')) {
                const b = a.getBoundingClientRect();
                if (r.left < b.left - 1 || r.right > b.right + 1) { hidden = a; break; }
            }
        }
        if (!hidden && !scrolls && r.right > window.innerWidth + 1
            && getComputedStyle(document.documentElement).overflowX !== 'auto') {
            hidden = document.documentElement;
        }
        if (hidden) {
            const tex = m.closest('.math') ? m.closest('.math').getAttribute('data-tex') : null;
            const ann = m.querySelector('annotation');
            clipped.push(((ann && ann.textContent) || tex || m.textContent || '?').trim().slice(0, 80)
                         + ` (${Math.round(r.width)} px wide, in ${hidden.tagName.toLowerCase()}`
                         + `.${String(hidden.className).split(' ')[0]})`);
        }
    }
    return clipped;
}"""

JS_HANDLES = """() => Array.from(document.querySelectorAll('.widget-slider .noUi-handle'))
    .filter(h => h.getClientRects().length > 0)
    .map(h => { const r = h.getBoundingClientRect();
                return {name: h.getAttribute('aria-label'), w: r.width, h: r.height}; })"""


def test_phone_width(page_path: str, site_url: str, browser, screenshot_dir: Path) -> None:
    if is_redirect(page_path):
        pytest.skip("redirect page (its target is tested)")
    problems: list[str] = []
    with open_page(browser, site_url, page_path, viewport=PHONE) as page:
        wait_until_rendered(page)
        page.wait_for_timeout(300)  # the wide-math check in gradflow-a11y.js runs after MathJax
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > PHONE["width"] + 1:
            problems.append(f"the page scrolls sideways: {width} px wide at {PHONE['width']} px")
        clipped = page.evaluate(JS_CLIPPED_MATH)
        if clipped:
            problems.append(f"{len(clipped)} formula(s) cut off: {clipped[:5]}")
        small = [h for h in page.evaluate(JS_HANDLES)
                 if h["w"] < MIN_TARGET_PX - 0.5 or h["h"] < MIN_TARGET_PX - 0.5]
        if small:
            problems.append(f"slider handles under {MIN_TARGET_PX} px: {small[:5]}")
        if page.console_errors:
            problems.append(f"console errors: {page.console_errors[:5]}")
        page.evaluate("() => window.scrollTo(0, 0)")
        phone_dir = screenshot_dir / "phone"
        phone_dir.mkdir(exist_ok=True)
        save_screenshot(page, phone_dir / screenshot_name(page_path))
    assert not problems, f"{page_path} at {PHONE['width']} px:\n  - " + "\n  - ".join(problems)
