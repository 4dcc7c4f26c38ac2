"""Shared steps of the browser tests: open a page offline, wait until it is rendered."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from conftest import SITE

WAIT_MS = 30_000
# Screenshots stop this far down (CSS px). The API page is over 250,000 px tall at a phone's
# width; a picture of all of it takes Chromium 13 s and nobody reads it. The checks of the
# tests read the whole page; only the picture is cut.
SCREENSHOT_MAX_PX = 30_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
REFRESH = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)


def is_local(url: str) -> bool:
    """True for URLs the site may load: data/blob/about and the test server on 127.0.0.1."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.hostname == "127.0.0.1"


def is_redirect(page_path: str) -> bool:
    """True for Jupyter Book's index.html, which only redirects to the root page."""
    return bool(REFRESH.search((SITE / page_path).read_text(encoding="utf-8")[:500]))


@contextlib.contextmanager
def open_page(browser, site_url: str, page_path: str, *, mode: str = "light",
              viewport: dict | None = None) -> Iterator:
    """Open one page of the site in a fresh browser context, with the network blocked.

    Args:
        browser: the session's Playwright browser.
        site_url: base URL of the local server.
        page_path: the page, relative to _build/html.
        mode: "light" (a first visit: nothing stored, the system prefers light) or "dark"
            (the reader chose dark with the theme's switch, stored in localStorage).
        viewport: the window size (default: 1280 x 900).

    Yields:
        The loaded page. Requests that leave the machine are aborted; the page's console
        errors are collected in ``page.console_errors``.
    """
    if mode not in ("light", "dark"):
        raise ValueError(f"mode must be 'light' or 'dark', got {mode!r}")
    context = browser.new_context(viewport=viewport or DESKTOP, color_scheme=mode)
    if mode == "dark":
        # What the theme's switch stores; read by the theme before the page is painted.
        context.add_init_script(
            "localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark');")
    page = context.new_page()
    page.console_errors = []
    page.route("**/*", lambda r: r.continue_() if is_local(r.request.url) else r.abort())
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    try:
        page.goto(f"{site_url}/{page_path}", wait_until="load", timeout=WAIT_MS)
        yield page
    finally:
        context.close()


# True once every embedded widget view has been rendered by the widget manager.
JS_WIDGETS_RENDERED = """() => Array.from(document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]'))
    .every(s => s.parentElement.querySelector('.jupyter-widgets'))"""

# True once MathJax has typeset every formula (at once on a page without any).
JS_MATH_TYPESET = """async () => {
    if (!document.querySelector('.math')) return true;
    if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return false;
    await MathJax.startup.promise;
    return Array.from(document.querySelectorAll('.math'))
        .every(m => m.querySelector('mjx-container'));
}"""


def screenshot_name(page_path: str) -> str:
    """The file name of a page's screenshot: ``lessons/05-x.html`` -> ``lessons__05-x.png``."""
    return page_path.removesuffix(".html").replace("/", "__") + ".png"


def save_screenshot(page, path) -> None:
    """A full-page screenshot, cut at ``SCREENSHOT_MAX_PX`` from the top of a taller page."""
    size = page.evaluate("() => [document.documentElement.scrollWidth,"
                         " document.documentElement.scrollHeight]")
    clip = None
    if size[1] > SCREENSHOT_MAX_PX:
        clip = {"x": 0, "y": 0, "width": size[0], "height": SCREENSHOT_MAX_PX}
    page.screenshot(path=str(path), full_page=True, clip=clip)


def wait_until_rendered(page) -> None:
    """Wait until every widget view is rendered and MathJax has typeset the page.

    Failures to render are not raised here; test_site.py reports them.
    """
    for script in (JS_WIDGETS_RENDERED, JS_MATH_TYPESET):
        with contextlib.suppress(Exception):
            page.wait_for_function(script, timeout=WAIT_MS)
