"""The accessibility fixes of book/_ext/gradflow_site.py, on small inputs (no build, no browser)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

from conftest import REPO

sys.path.insert(0, str(REPO / "book" / "_ext"))
import gradflow_site  # noqa: E402 - found through the path above, like Sphinx does


def _doctree(images_in_figure: bool, caption: str | None) -> nodes.document:
    document = new_document("<test>", get_default_settings(Parser))
    section = nodes.section("", nodes.title("", "Deep nets"))
    image = nodes.image(uri="../_images/abc123.png")
    if images_in_figure:
        figure = nodes.figure("", image)
        if caption is not None:
            figure += nodes.caption("", caption)
        section += figure
    else:
        section += nodes.container("", image)
    document += section
    return document


def _app(title: str = "3. Weight-norm growth"):
    return SimpleNamespace(env=SimpleNamespace(titles={"doc": nodes.title("", title)}))


def _alts(doctree) -> list[str]:
    return [image["alt"] for image in doctree.findall(nodes.image)]


def test_figure_alt_is_its_caption():
    doctree = _doctree(True, "Gradient norm per layer,\n  median of 16 nets.")
    gradflow_site._set_image_alt(_app(), doctree, "doc")
    assert _alts(doctree) == ["Gradient norm per layer, median of 16 nets."]


@pytest.mark.parametrize("in_figure", [True, False])
def test_image_without_caption_is_named_after_its_section(in_figure):
    doctree = _doctree(in_figure, None)
    gradflow_site._set_image_alt(_app(), doctree, "doc")
    assert _alts(doctree) == ["Figure in “Deep nets”, 3. Weight-norm growth"]


def test_an_authors_alt_is_kept():
    doctree = _doctree(True, "A caption")
    next(iter(doctree.findall(nodes.image)))["alt"] = "What the author wrote"
    gradflow_site._set_image_alt(_app(), doctree, "doc")
    assert _alts(doctree) == ["What the author wrote"]


@pytest.mark.parametrize("before, after", [
    ('<summary aria-label="Toggle hidden content">\n<p>Show code cell source</p>',
     "<summary>\n<p>Show code cell source</p>"),
    ('<div role="list" class="citation-list">\n<div class="citation" id="id7" role="doc-biblioentry">',
     '<div role="list" class="citation-list">\n<div class="citation" id="id7" role="listitem">'),
    ('<tr><th class="head"><p></p></th><th class="head"><p>rate</p></th>',
     '<tr><td class="head"></td><th class="head"><p>rate</p></th>'),
])
def test_body_markup_fixes(before, after):
    context = {"body": before}
    gradflow_site._fix_body_markup(None, "page", "page.html", context, None)
    assert context["body"] == after


@pytest.mark.parametrize("given, expected", [("", "auto"), (None, "auto"), ("dark", "dark")])
def test_default_colour_mode(given, expected):
    context = {} if given is None else {"default_mode": given}
    gradflow_site._default_colour_mode(None, "page", "page.html", context, None)
    assert context["default_mode"] == expected


def test_math_in_a_caption_is_read_as_text():
    doctree = _doctree(True, None)
    figure = next(iter(doctree.findall(nodes.figure)))
    figure += nodes.caption("", "", nodes.Text("Ratio against the prediction "),
                            nodes.math("", r"\sqrt{c/2}^{\,L}"), nodes.Text(" (dashed)."))
    gradflow_site._set_image_alt(_app(), doctree, "doc")
    assert _alts(doctree) == ["Ratio against the prediction √c/2^ L (dashed)."]
