"""FHIR's narrative rules on a ``Narrative.div`` a client sent: txt-1 (only the basic HTML
formatting elements and attributes, ``<a>``, images and internal style) and txt-2 (some
non-whitespace content), and the XHTML rules around them (well-formed XML, the root a ``div`` in
the XHTML namespace, no script, no event attributes, no ``javascript:`` URLs).

The allowed elements and attributes, the URL attributes and the schemes they may not use are data
(``mappings/narrative-xhtml.json``, with where each list comes from). :func:`div_problems` says
everything wrong with one div, in words a client can act on.

Why a cheap check first: what fhirstudy generates (and stores, and gets back through ``load`` of its
own NDJSON) is ``div p b ul li`` without attributes (:mod:`fhirstudy.narrative.xhtml`); one
regular expression (possessive, so it never backtracks) and the nesting of the tags recognise that
shape, and only a div of another shape is parsed. Parsing is the standard library's expat, with no
DTD: the div must begin with ``<div`` (so no ``<!DOCTYPE``, no entity declarations, no entity
expansion beyond XML's five), and a processing instruction anywhere is refused.

May import: the standard library and the foundation (``fhirstudy.terminology``).
"""
from __future__ import annotations

import re
from functools import lru_cache
from xml.parsers import expat

from ..terminology import load_mapping

XML_NS = "http://www.w3.org/XML/1998/namespace"
MAX_PROBLEMS = 10  # problems reported for one div at most
_SEP = "\x01"  # expat's separator of namespace and local name (a character no XML name holds)
_NOT_XML = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
# fhirstudy's own shape: <div xmlns=XHTML>, then only p b ul li (no attributes), text and XML's escapes
_OWN_SHAPE = re.compile(r'<div xmlns="http://www\.w3\.org/1999/xhtml">'
                        rf'(?:[^<&{_NOT_XML}]++|&(?:amp|lt|gt|quot|apos|#x27);|</?(?:p|b|ul|li)>)*+</div>')
_TEXT_RUN = re.compile(r">[^<]++<")  # a run of text between two tags
_EMPTY_PAIRS = ("<p></p>", "<b></b>", "<li></li>", "<ul></ul>")
_OWN_START = len('<div xmlns="http://www.w3.org/1999/xhtml">')
_SOME_TEXT = re.compile(r">\s*+[^<\s]")  # a non-whitespace character of text (it follows some tag)
_NO_SPACE = re.compile(r"[\x00-\x20]+")  # what a browser ignores in a URL's scheme or in CSS


class _Rules:
    """The lists of ``narrative-xhtml.json``, as sets."""

    def __init__(self, table: dict):
        self.namespace = table["namespace"]
        self.root = table["root"]
        self.elements = frozenset(table["elements"])
        self.attributes = frozenset(table["attributes"])
        self.xml_attributes = frozenset(table["xmlAttributes"])
        self.content_without_text = dict(table["contentWithoutText"])
        self.url_attributes = frozenset(table["urlAttributes"])
        self.schemes = tuple(f"{s}:" for s in table["forbiddenSchemes"])
        self.data_allowed_on = frozenset(table["dataUrls"]["allowedOn"])
        self.data_prefix = table["dataUrls"]["prefix"]
        self.style_forbidden = tuple(table["styleForbidden"])
        self.event_prefix = table["eventAttributePrefix"]


@lru_cache(maxsize=1)
def rules() -> _Rules:
    """The narrative rules, read once per process."""
    return _Rules(load_mapping("narrative-xhtml.json"))


def is_own_shape(div: str) -> bool:
    """True when ``div`` is well-formed and of the shape fhirstudy generates (then it keeps every
    rule): a regular expression and the nesting of the tags, no parsing."""
    if not _OWN_SHAPE.fullmatch(div) or not _SOME_TEXT.search(div):
        return False
    tags = _TEXT_RUN.sub("><", div)[_OWN_START:-6]  # the tags inside the root, in order
    while tags:  # well-nested exactly when taking away innermost pairs leaves nothing (a pass a level)
        inner = tags
        for pair in _EMPTY_PAIRS:
            inner = inner.replace(pair, "")
        if inner == tags:
            return False
        tags = inner
    return True


def div_problems(div: object) -> list[str]:
    """Every way ``div`` (a Narrative.div's value) breaks the narrative rules; none when it keeps them."""
    if not isinstance(div, str):
        return ["the div is not a string of XHTML"]
    if is_own_shape(div):
        return []
    if not div.lstrip().startswith("<div"):
        return ["the narrative must be one XHTML <div> element (no XML declaration, DOCTYPE or text before it)"]
    return _Checker(rules()).run(div)


class _Checker:
    """One parse of a div with expat, collecting what breaks the rules as it goes."""

    def __init__(self, rules: _Rules):
        self.rules = rules
        self.problems: list[str] = []
        self.depth = 0
        self.has_content = False

    def run(self, div: str) -> list[str]:
        parser = expat.ParserCreate(namespace_separator=_SEP)
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.ProcessingInstructionHandler = self._instruction
        parser.StartDoctypeDeclHandler = self._doctype
        try:
            parser.Parse(div, True)
        except expat.ExpatError as exc:
            return [f"the div is not well-formed XHTML: {expat.ErrorString(exc.code)} "
                    f"(line {exc.lineno}, column {exc.offset + 1})"]
        except _Refused as exc:
            self.problems.append(str(exc))
        if not self.has_content:
            self.problems.append("the narrative has no text: it SHALL have some non-whitespace content (txt-2)")
        return self.problems[:MAX_PROBLEMS]

    def _fail(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        namespace, _, local = name.rpartition(_SEP)
        r = self.rules
        if self.depth == 0 and (local != r.root or namespace != r.namespace):
            self._fail(f"the root element is <{local}>{_in(namespace)}, not a <div> in the XHTML namespace "
                       f"{r.namespace}")
        elif namespace != r.namespace:
            self._fail(f"<{local}>{_in(namespace)} is not an XHTML element")
        elif local not in r.elements:
            self._fail(f"<{local}> is not allowed in a narrative (txt-1: only the basic HTML formatting elements)")
        self.depth += 1
        for key, value in attributes.items():
            self._attribute(local, key, value)

    def _attribute(self, element: str, key: str, value: str) -> None:
        r = self.rules
        namespace, _, attribute = key.rpartition(_SEP)
        if namespace == XML_NS and attribute in r.xml_attributes:
            return
        shown = f"{attribute}{_in(namespace)}"
        if namespace:
            self._fail(f"the attribute {shown} of <{element}> is not allowed (txt-1)")
        elif attribute.lower().startswith(r.event_prefix):
            self._fail(f"the event attribute {attribute} of <{element}> is not allowed (no script in a narrative)")
        elif attribute not in r.attributes:
            self._fail(f"the attribute {attribute} of <{element}> is not allowed (txt-1)")
        elif attribute in r.url_attributes:
            self._url(element, attribute, value)
        elif attribute == "style":
            bare = _NO_SPACE.sub("", value).lower()
            found = next((f for f in r.style_forbidden if f in bare), None)
            if found:
                self._fail(f"the style of <{element}> holds {found!r}: only plain internal style is allowed")
        if element in r.content_without_text and attribute == r.content_without_text[element] and value.strip():
            self.has_content = True

    def _url(self, element: str, attribute: str, value: str) -> None:
        r = self.rules
        bare = _NO_SPACE.sub("", value).lower()
        scheme = next((s for s in r.schemes if bare.startswith(s)), None)
        if scheme:
            self._fail(f"the {attribute} of <{element}> is a {scheme} URL (no script in a narrative)")
        elif bare.startswith("data:") and not (f"{element}.{attribute}" in r.data_allowed_on
                                               and bare.startswith(r.data_prefix)):
            self._fail(f"the {attribute} of <{element}> is a data: URL; only an image's src may be one "
                       f"({r.data_prefix}...)")

    def _end(self, name: str) -> None:
        self.depth -= 1

    def _text(self, data: str) -> None:
        if not self.has_content and data.strip():
            self.has_content = True

    def _instruction(self, target: str, data: str) -> None:
        raise _Refused(f"the processing instruction <?{target}?> is not allowed in a narrative")

    def _doctype(self, *args) -> None:
        raise _Refused("a DOCTYPE is not allowed in a narrative")


class _Refused(Exception):
    """Stops the parse: something no narrative may hold, whatever follows."""


def _in(namespace: str) -> str:
    return f" (namespace {namespace})" if namespace else " (no namespace)"
