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
    # Run late, after every extension has added its scripts for this page.
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
