"""The few XHTML pieces a narrative is made of, and the one place source text is escaped.

A narrative's ``div`` uses only elements FHIR's txt-1 allows (``div p b ul li``), no attributes
but the root's ``xmlns``, and always some text (txt-2). The functions that take raw text
(``text``, ``bold``, ``para``, ``heading``, ``labelled``) escape it; ``items`` and ``narrative``
take fragments already built by them. Escaping is ``html.escape`` (``& < >``); no attribute carries source text.
"""
from __future__ import annotations

import re
from html import escape as _escape

XHTML_NS = "http://www.w3.org/1999/xhtml"
_OPEN = f'<div xmlns="{XHTML_NS}">'
# characters XML 1.0 cannot hold (FHIR strings already exclude most of them; a narrative never has them)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def text(value: object) -> str:
    """Source text (or a number) as XHTML character data: ``&``, ``<`` and ``>`` escaped."""
    return _escape(str(value), quote=False)


def bold(value: object) -> str:
    """Source text in ``<b>``."""
    return f"<b>{_escape(str(value), quote=False)}</b>"


def para(value: object) -> str:
    """Source text as one paragraph."""
    return f"<p>{_escape(str(value), quote=False)}</p>"


def heading(value: object) -> str:
    """Source text as a paragraph in bold: the first line of a narrative."""
    return f"<p><b>{_escape(str(value), quote=False)}</b></p>"


def labelled(label: str, value: object | None) -> str:
    """``<p><b>Label:</b> value</p>``, or nothing when there is no value."""
    if value is None or value == "":
        return ""
    return f"<p><b>{label}:</b> {_escape(str(value), quote=False)}</p>"


def items(fragments: list[str]) -> str:
    """A ``<ul>`` of already-built fragments, or nothing for none."""
    if not fragments:
        return ""
    return "<ul>" + "".join(f"<li>{f}</li>" for f in fragments) + "</ul>"


def narrative(body: str) -> dict:
    """The ``text`` of a resource: status ``generated`` and ``body`` inside the XHTML ``div``."""
    div = f"{_OPEN}{body}</div>"
    if _NOT_XML.search(div):
        div = _NOT_XML.sub("", div)
    return {"status": "generated", "div": div}


def concept_text(concept: dict | None) -> str | None:
    """A CodeableConcept in words: its text, else its first coding's display, else its code."""
    if not concept:
        return None
    if concept.get("text"):
        return concept["text"]
    for coding in concept.get("coding", ()):
        if coding.get("display") or coding.get("code"):
            return coding.get("display") or coding.get("code")
    return None


def number(value: int | float) -> str:
    """A number as a reader writes it (``12``, ``0.366``; no ``12.0``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def quantity(q: dict | None) -> str | None:
    """A Quantity in words: comparator, value and unit (``<0.0001``, ``27 participants``)."""
    if not q or q.get("value") is None:
        return None
    unit = q.get("unit") or q.get("code")
    return f"{q.get('comparator', '')}{number(q['value'])}" + (f" {unit}" if unit else "")
