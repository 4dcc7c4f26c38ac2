"""Small fixes to the generated HTML of the book (loaded via `sphinx: local_extensions`).

- Drop scripts that are registered twice (an inline script may be registered with filename None and again with ""). sphinx-thebe adds its inline configuration
  (`const THEBE_JS_URL = ...`) once per read phase; when Sphinx also keeps the copy from the
  builder's initialisation the page declares the constant twice and the browser reports a
  SyntaxError on every page.
- Drop one spurious warning: myst-parser 3 reports "No footnote definitions found for label:
  'footcite-...'" for every ``{footcite}`` of sphinxcontrib-bibtex, although the footnotes are
  created (by ``{footbibliography}``) and render correctly. Only labels starting with
  ``footcite-`` are dropped; a missing Markdown footnote ``[^x]`` still fails the build.
- Glued NumPy scalars: since NumPy 2 their text/plain is ``np.float64(0.25)``, which MyST-NB
  1.4 can neither format (``{glue:text}`x:.2f``` warns) nor show plainly (``{glue:text}`x```
  prints ``np.float64(0.25)``). The text is unwrapped to ``0.25`` before formatting. Gluing a
  plain ``float(x)`` in the lesson needs no help.
- Speed: pybtex plugin lookups are cached (see ``_cache_pybtex_entry_points``); the cached
  book build went from 20 s to 16 s.
- Accessibility (axe-core runs over every page in tests/site/test_accessibility.py):
  figures get their caption as alt text instead of the hashed file name
  (``_set_image_alt``); the generated HTML loses three markup faults (``_fix_body_markup``);
  the theme starts in "auto" colour mode (``_default_colour_mode``); and
  ``_static/gradflow-a11y.js`` names the explorers' sliders and the theme's buttons in the
  browser, where those elements are created (the explorers' frames carry their own alt text,
  see ``gradflowkit.explorer``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

_NUMPY_SCALAR = re.compile(r"^np\.(?:float|int|uint|bool|complex|str|bytes|longdouble|clongdouble)\w*\((.*)\)$", re.S)


def _unwrap_numpy_scalar(text: str) -> str:
    match = _NUMPY_SCALAR.match(text.strip())
    return match.group(1) if match else text


def _patch_glue_formatting() -> None:
    from myst_nb.core import variables
    from myst_nb.ext.glue import crossref, roles

    original = variables.format_plain_text
    if getattr(original, "_gradflow", False):
        return

    def format_plain_text(text: str, fmt_spec: str) -> str:
        return original(_unwrap_numpy_scalar(text), fmt_spec)

    format_plain_text._gradflow = True  # type: ignore[attr-defined]
    for module in (variables, crossref, roles):
        module.format_plain_text = format_plain_text

_FOOTCITE_MESSAGE = "No footnote definitions found for label: 'footcite-"


class _DropFootciteWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _FOOTCITE_MESSAGE not in str(record.getMessage())


def _asset_key(asset: Any) -> tuple:
    filename = getattr(asset, "filename", asset)
    attributes = getattr(asset, "attributes", {}) or {}
    return (str(filename or ""), tuple(sorted((str(k), str(v)) for k, v in attributes.items())))


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _asset_key(script)
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    scripts[:] = unique


def _caption_text(figure: Any) -> str:
    """The caption as plain text; its inline math read as text (``\\sqrt{c/2}`` -> ``√c/2``),
    since a screen reader would spell raw TeX out."""
    from docutils import nodes

    from gradflowkit.explorer import plain_math   # the explorers' alt text reads math the same way

    caption = next(iter(figure.findall(nodes.caption)), None)
    if caption is None:
        return ""
    parts = []
    for node in caption.findall(lambda n: isinstance(n, (nodes.math, nodes.Text))):
        if isinstance(node, nodes.math):
            parts.append(plain_math(node.astext()))
        elif not isinstance(node.parent, nodes.math):
            parts.append(node.astext())
    return " ".join("".join(parts).split())


def _section_title(node: Any) -> str:
    from docutils import nodes

    parent = node.parent
    while parent is not None and not isinstance(parent, nodes.section):
        parent = parent.parent
    if parent is None or not isinstance(parent[0], nodes.title):
        return ""
    return " ".join(parent[0].astext().split())


def _set_image_alt(app, doctree, docname) -> None:
    """Give every image without alt text a description instead of its file name.

    The HTML writer uses an image's URI as its alt text when it has none, so a screen reader
    reads "../_images/4fac....png". A figure's alt text becomes its caption (what the
    author wrote about it); an image without a caption (a cell output that is not declared
    as a figure) is named after its section, which at least says where it belongs.
    An alt text set by the author (``mystnb: image: alt:``, ``:alt:``) is kept.
    """
    from docutils import nodes

    title = app.env.titles.get(docname)
    page = " ".join(title.astext().split()) if title is not None else docname
    for image in doctree.findall(nodes.image):
        if image.get("alt"):
            continue
        figure = image.parent
        while figure is not None and not isinstance(figure, nodes.figure):
            figure = figure.parent
        text = _caption_text(figure) if figure is not None else ""
        if not text:
            section = _section_title(image)
            text = f"Figure in “{section}”, {page}" if section and section != page else \
                f"Figure in {page}"
        image["alt"] = text


# (pattern, replacement) applied to the HTML body of every page.
_BODY_FIXES = [
    # MyST-NB names the hide-input toggle "Toggle hidden content" while it shows "Show code
    # cell source": a speech-input user who says what they see cannot activate it (axe
    # label-content-name-mismatch). Without the aria-label the visible text is the name.
    (re.compile(r'<summary aria-label="Toggle hidden content">'), "<summary>"),
    # docutils puts role="doc-biblioentry" (deprecated in ARIA 1.3) inside role="list",
    # which may only hold list items (axe aria-required-children, critical).
    (re.compile(r'(<div class="citation" id="[^"]*" role=")doc-biblioentry(")'),
     r"\1listitem\2"),
    # An empty corner cell of a Markdown table is a header with no text (axe
    # empty-table-header); an empty data cell says the same without announcing a header.
    (re.compile(r'<th class="head">(?:<p></p>)?</th>'), '<td class="head"></td>'),
]


def _fix_body_markup(app, pagename, templatename, context, doctree) -> None:
    body = context.get("body")
    if not body:
        return
    for pattern, replacement in _BODY_FIXES:
        body = pattern.sub(replacement, body)
    context["body"] = body


def _default_colour_mode(app, pagename, templatename, context, doctree) -> None:
    """Start in the "auto" colour mode on a first visit.

    pydata-sphinx-theme reads the mode from localStorage, else from ``default_mode`` of the
    HTML context, which is empty unless configured: a first visit then logs "Got invalid
    theme mode" and falls back to "auto". Setting "auto" here gives the same page, quietly.
    """
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def _cache_pybtex_entry_points() -> None:
    """Look each pybtex plugin up once per build instead of once per citation.

    sphinxcontrib-bibtex builds a new pybtex style for every ``{footcite}`` role, and each
    build finds its plugins by scanning the installed packages' entry points (~20 ms a
    lookup, ~4 s of the book's build). The entry-point result depends only on the
    arguments, so it is cached; plugins registered at run time (``register_plugin``) are
    still looked up the original way, every time.
    """
    import pybtex.plugin as plugin

    original = plugin._load_entry_point
    if getattr(original, "gradflow_cached", False):
        return
    cache: dict[tuple, type] = {}

    def load_entry_point(group, name, use_aliases=False):
        groups = [group, group + ".aliases"] if use_aliases else [group]
        if any(plugin._RUNTIME_PLUGINS.get(g, {}).get(name) is not None for g in groups):
            return original(group, name, use_aliases)
        key = (group, name, use_aliases)
        if key not in cache:
            cache[key] = original(group, name, use_aliases)
        return cache[key]

    load_entry_point.gradflow_cached = True
    plugin._load_entry_point = load_entry_point


def setup(app):
    _patch_glue_formatting()
    _cache_pybtex_entry_points()
    # Sphinx logs docutils reporter messages (which myst-parser uses) through this logger.
    for name in ("sphinx.sphinx.util.docutils", "sphinx.myst_parser"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropFootciteWarning) for f in logger.filters):
            logger.addFilter(_DropFootciteWarning())
    app.connect("doctree-resolved", _set_image_alt)
    app.connect("html-page-context", _fix_body_markup)
    app.connect("html-page-context", _default_colour_mode)
    # Deferred: runs once the page is parsed; it watches for widgets rendered later.
    app.add_js_file("gradflow-a11y.js", loading_method="defer")
    # Run late, after every extension has added its scripts for this page.
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
