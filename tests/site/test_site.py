"""Every page of the built book, opened in headless Chromium with the network blocked.

Per page: no error output from the executed cells, every image loaded, all math typeset by
MathJax, every explorer slider switches the visible frame, no JavaScript errors, no missing
local files, and not a single request leaves the machine. A full-page screenshot of each page
(1280 px wide, its top 30,000 px) goes to _build/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from conftest import REPO
from site_helpers import (JS_MATH_TYPESET, JS_WIDGETS_RENDERED, REFRESH, WAIT_MS, is_local,
                          save_screenshot, screenshot_name)

# Text in a cell's output that means a cell failed, even when it was printed to stdout.
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(Error|Exception): ", re.M)

# The frame an explorer shows: the src of every visible <img> inside it.
JS_FRAME = """(root) => Array.from(root.querySelectorAll('img'))
    .filter(i => i.getClientRects().length > 0 && getComputedStyle(i).visibility !== 'hidden')
    .map(i => i.src)"""


def _binder_url(source: str) -> str:
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    repo = config["repository"]["url"].rstrip("/").split("github.com/")[1]
    branch = config["repository"]["branch"]
    hub = config["launch_buttons"]["binderhub_url"].rstrip("/")
    return f"{hub}/v2/gh/{repo}/{branch}?urlpath=lab/tree/{source}"


def test_page(page_path: str, site_url: str, browser, screenshot_dir: Path) -> None:
    html_file = REPO / "_build" / "html" / page_path
    redirect = REFRESH.search(html_file.read_text(encoding="utf-8")[:500])
    if redirect:
        # Jupyter Book's index.html only redirects to the root page, which is tested itself.
        target = (html_file.parent / redirect.group(1)).resolve()
        assert target.is_file(), f"{page_path} redirects to a missing page {redirect.group(1)}"
        return
    problems: list[str] = []
    left_machine: list[str] = []
    js_errors: list[str] = []
    missing: list[str] = []

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    def route(route):
        url = route.request.url
        if is_local(url):
            route.continue_()
        else:
            left_machine.append(url)
            route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda err: js_errors.append(str(err)))
    page.on(
        "response",
        lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico") and missing.append(
            f"{r.status} {r.url}"
        ),
    )
    try:
        page.goto(f"{site_url}/{page_path}", wait_until="load", timeout=WAIT_MS)

        # -- explorers (ipywidgets rendered from the embedded widget state) ------------------
        n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
        if n_views:
            try:
                page.wait_for_function(JS_WIDGETS_RENDERED, timeout=WAIT_MS)
            except Exception:  # noqa: BLE001 - reported as a problem below
                problems.append(f"{n_views} widget view(s) in the page, not all rendered")

        # -- MathJax --------------------------------------------------------------------------
        n_math = page.locator(".math").count()
        if n_math:
            try:
                page.wait_for_function(JS_MATH_TYPESET, timeout=WAIT_MS)
            except Exception:  # noqa: BLE001
                untyped = page.evaluate(
                    """() => Array.from(document.querySelectorAll('.math'))
                        .filter(m => !m.querySelector('mjx-container'))
                        .map(m => m.textContent.trim().slice(0, 60))"""
                )
                problems.append(f"math not typeset by MathJax ({len(untyped)}/{n_math}): {untyped[:5]}")
            merrors = page.locator("mjx-merror").count()
            if merrors:
                problems.append(f"{merrors} MathJax error(s) (mjx-merror) in the page")

        # -- images ---------------------------------------------------------------------------
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        try:
            page.wait_for_function(
                "() => Array.from(document.images).every(i => i.complete)", timeout=WAIT_MS
            )
        except Exception:  # noqa: BLE001
            pass
        page.evaluate("window.scrollTo(0, 0)")
        broken = page.evaluate(
            """() => Array.from(document.images)
                .filter(i => !i.complete || i.naturalWidth === 0)
                .map(i => i.getAttribute('src').slice(0, 120))"""
        )
        if broken:
            problems.append(f"images not loaded: {broken}")

        # -- error output of executed cells ---------------------------------------------------
        bad_outputs = page.evaluate(
            """() => Array.from(document.querySelectorAll(
                    '.cell_output .output.stderr, .cell_output .output.traceback, .cell_output .output.error'))
                .filter(o => !o.closest('.tag_raises-exception'))
                .map(o => o.className + ': ' + o.textContent.trim().slice(0, 200))"""
        )
        if bad_outputs:
            problems.append(f"error/stderr output in cells: {bad_outputs}")
        output_texts = page.evaluate(
            """() => Array.from(document.querySelectorAll('.cell_output'))
                .filter(o => !o.closest('.tag_raises-exception'))
                .map(o => o.innerText)"""
        )
        for text in output_texts:
            if match := ERROR_TEXT.search(text):
                problems.append(f"error text in a cell output: {text[match.start():][:200]!r}")
        # Glued numbers in the prose must read as numbers, not as NumPy reprs.
        prose_reprs = page.evaluate(
            """() => {
                const main = document.querySelector('main') || document.body;
                const copy = main.cloneNode(true);
                copy.querySelectorAll('.cell, pre, code, script').forEach(e => e.remove());
                return (copy.textContent.match(/np\\.[a-z]+[0-9]*\\([^)]{0,40}\\)/g) || []).slice(0, 5);
            }"""
        )
        if prose_reprs:
            problems.append(f"NumPy reprs in the prose (glue a float instead): {prose_reprs}")
        sysmsgs = page.locator(".system-message, .problematic").count()
        if sysmsgs:
            problems.append(f"{sysmsgs} docutils system message(s) / problematic node(s) in the page")

        # -- every explorer slider switches the visible frame ---------------------------------
        sliders = page.locator(".widget-slider")
        for i in range(sliders.count()):
            slider = sliders.nth(i)
            root = slider.locator("xpath=ancestor::div[contains(@class,'cell_output')][1]")
            if root.count() == 0:
                problems.append(f"slider {i} is not inside a cell output")
                continue
            handle = slider.locator(".noUi-handle").first
            label = slider.locator(".widget-label").first.inner_text() if slider.locator(
                ".widget-label").count() else f"#{i}"
            before = root.evaluate(JS_FRAME)
            if not before:
                problems.append(f"explorer slider {label!r}: no visible image frame")
                continue
            now = handle.get_attribute("aria-valuenow")
            top = handle.get_attribute("aria-valuemax")
            key = "ArrowLeft" if now is not None and now == top else "ArrowRight"
            handle.scroll_into_view_if_needed()
            handle.focus()
            page.keyboard.press(key)
            try:
                page.wait_for_function(
                    f"([root, before]) => JSON.stringify(({JS_FRAME})(root)) !== JSON.stringify(before)",
                    arg=[root.element_handle(), before],
                    timeout=5_000,
                )
            except Exception:  # noqa: BLE001
                problems.append(f"explorer slider {label!r}: {key} did not change the visible frame")
            page.keyboard.press("ArrowLeft" if key == "ArrowRight" else "ArrowRight")
            page.wait_for_timeout(100)

        # -- Binder button opens the lesson's .md in JupyterLab -------------------------------
        binder_links = page.evaluate(
            """() => Array.from(document.querySelectorAll('a[href*="/v2/gh/"]')).map(a => a.href)"""
        )
        if binder_links:
            source = page_path.removesuffix(".html") + ".md"
            if not (REPO / source).exists():
                problems.append(f"Binder link on a page whose source is not {source}")
            expected = _binder_url(source)
            if expected not in binder_links:
                problems.append(f"Binder link is {binder_links}, expected {expected}")

        # Screenshot from the top with nothing focused, so that sticky headers and the
        # "skip to main content" link are not painted in the middle of the page.
        page.evaluate("() => { if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0); }")
        page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        save_screenshot(page, screenshot_dir / screenshot_name(page_path))
    finally:
        context.close()

    if js_errors:
        problems.append(f"JavaScript errors: {js_errors}")
    if missing:
        problems.append(f"missing local files: {missing}")
    if left_machine:
        problems.append(f"{len(left_machine)} request(s) tried to leave the machine: {left_machine[:10]}")
    assert not problems, f"{page_path}:\n  - " + "\n  - ".join(problems)


def test_widget_javascript_is_served_locally() -> None:
    """The offline widget manager and its license files are in the repository."""
    widgets = REPO / "book" / "_static" / "widgets"
    for name in ("require.js", "embed-amd.js", "widgets-config.js", "LICENSE-requirejs.txt",
                 "LICENSE-html-manager.txt"):
        assert (widgets / name).is_file(), f"book/_static/widgets/{name} is missing"


def test_every_toc_file_was_built() -> None:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    site = REPO / "_build" / "html"
    missing = [f for f in files if not (site / f"{f}.html").exists()]
    assert not missing, f"pages not built (run make book): {missing}"
