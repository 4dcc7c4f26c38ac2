"""Small fixes to the generated HTML of the book (loaded via `sphinx: local_extensions`).

- Drop scripts that are registered twice (an inline script may be registered with filename None and again with ""). sphinx-thebe adds its inline configuration
  (`const THEBE_JS_URL = ...`) once per read phase; when Sphinx also keeps the copy from the
  builder's initialisation the page declares the constant twice and the browser reports a
  SyntaxError on every page.
"""

from __future__ import annotations

from typing import Any


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


def setup(app):
    # Run late, after every extension has added its scripts for this page.
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
