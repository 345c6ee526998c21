"""Plain text from what sources send: an HTML fragment or entity-laden text to plain text (`clean_text`), and
@- or comma-joined values to a list (`split_list`). `UNENCODABLE_OR_CONTROL` matches the characters no stored
text may keep (lone surrogates, C0 controls other than tab / newline / CR, DEL). Pure; imports the standard
library and bs4.
"""

from __future__ import annotations

import re
import warnings

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning

# --- lists -------------------------------------------------------------------------------


def split_list(text: str | None, separator: str = "@") -> list[str]:
    """Split ``"서울@부산@@ 대구 @서울"`` into ``["서울", "부산", "대구"]``.

    Items are trimmed, empty items dropped and repeats removed, keeping the first occurrence's
    position. ``None`` and blank give ``[]``. ``separator`` defaults to ``"@"`` and must not be
    empty.
    """
    if not separator:
        raise ValueError("separator must not be empty")
    if text is None:
        return []
    items = (item.strip() for item in text.split(separator))
    return list(dict.fromkeys(item for item in items if item))


# --- HTML text ---------------------------------------------------------------------------

_DROPPED_ELEMENTS = ["script", "style", "template"]
_BLOCK_ELEMENTS = [
    "p", "div", "li", "tr", "table", "ul", "ol", "dl", "dt", "dd", "blockquote", "pre",
    "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer",
]  # fmt: skip
_CELL_ELEMENTS = ["td", "th"]
_MARKUP_AFTER_DECODING = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]*>|&(?:[a-zA-Z][a-zA-Z0-9]*|#[0-9]+|#[xX][0-9a-fA-F]+);")
_SCRIPT_OPENER = re.compile(r"<\s*/?\s*(?:script|style)", re.IGNORECASE)
# Surrogates cannot be encoded (bs4 and Kafka both fail on them); C0 controls other than
# tab/newline/CR are never meaningful text and PostgreSQL rejects NUL.
UNENCODABLE_OR_CONTROL = re.compile(r"[\ud800-\udfff\x00-\x08\x0e-\x1f\x7f]")
_INVISIBLE = re.compile(r"[\u200b-\u200d\u2060\ufeff\u00ad]")
_LINE_BREAK = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n[\n ]*")


def clean_text(value: str | None) -> str:
    """Turn an HTML fragment or entity-laden text into plain text.

    - Tags are removed; ``<script>``, ``<style>`` and ``<template>`` lose their contents too.
    - Entities are decoded, named and numeric (``&#40;`` -> ``(``, ``&nbsp;`` -> space).
    - Escaped HTML is decoded a second time: sources such as bizinfo escape their markup, so
      ``&lt;p&gt;지원&lt;/p&gt;`` gives ``지원`` and ``&amp;lt;`` gives ``<``. If text still
      looks like a tag or entity after the first pass it is parsed once more; a third layer of
      escaping is left as it is. Literal ``a < b`` survives.
    - ``<br>`` and the end of block elements (``p``, ``div``, ``li``, ``tr``, headings ...)
      become line breaks; table cells are separated by a space.
    - ``\\r\\n`` and ``\\r`` become ``\\n``; runs of spaces, tabs, ``&nbsp;`` and the
      ideographic space become one space; spaces around line breaks and blank lines are
      removed; zero-width characters and control characters are dropped; the result is trimmed.
    - Korean text is left as it is (no Unicode normalisation).

    Never raises for a string; ``None`` gives ``""``. The output never contains ``<script``
    or ``<style`` in any letter case.
    """
    if value is None:
        return ""
    text = _html_to_text(value)
    if _MARKUP_AFTER_DECODING.search(text):
        text = _html_to_text(text)
    while _SCRIPT_OPENER.search(text):
        # Only text that was escaped three times or left unclosed gets here; removing the
        # opener keeps downstream HTML renderers from ever seeing a script tag.
        text = _SCRIPT_OPENER.sub("", text)
    return _normalise_whitespace(text)


def _html_to_text(markup: str) -> str:
    markup = UNENCODABLE_OR_CONTROL.sub("", markup)
    with warnings.catch_warnings():
        # Short values that look like a URL or an XML declaration are still just text to us.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(markup, "lxml")
    for element in soup.find_all(_DROPPED_ELEMENTS):
        element.decompose()
    for line_break in soup.find_all("br"):
        line_break.replace_with("\n")
    for block in soup.find_all(_BLOCK_ELEMENTS):
        block.append("\n")
    for cell in soup.find_all(_CELL_ELEMENTS):
        cell.append(" ")
    return soup.get_text()


def _normalise_whitespace(text: str) -> str:
    text = UNENCODABLE_OR_CONTROL.sub("", text)
    text = _INVISIBLE.sub("", text)
    text = _LINE_BREAK.sub("\n", text)
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return text.strip()
