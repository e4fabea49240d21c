"""Reader of ClinicalTrials.gov legacy XML: ``<clinical_study>`` records (the public.xsd layout of
AACT and TREC archives), one per file or many under any root element.

The file is streamed and cut at each ``<clinical_study`` start tag; each record is parsed on its
own (after the file's prolog, for its encoding and namespaces), turned into a nested dict
view (``element_view``: tag -> text or children, repeated tags -> lists, attributes as ``@name``,
an element's own text beside attributes or children as ``#text``), converted, and dropped, so a file
of any number of records runs in bounded memory. Display values ("Phase 1/Phase 2") become API v2
names through ``mappings/ctgov-legacy-values.json``; ``<clinical_results>`` is read by
``_ctgov_xml_results``; the view is read through ``Fields``, so every
element the reader does not carry into the Trial and that is not
on the ignore list (``mappings/ctgov-ignored-fields.json``, key ``ctgov-xml``) is reported as
unmapped. A record without ``<nct_id>`` is an error record; so is a record holding malformed XML
(the error names the line in the file), and reading goes on at the next ``<clinical_study>``.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ..errors import Problem, SourceError
from . import _ctgov_xml_study
from ._boundary import one_record
from ._ctgov_legacy import TEXT
from ._fields import ignored_fields
from ._text import error

FORMAT = "ctgov-xml"
RECORD_TAG = "clinical_study"
_DETECT = re.compile(r"<clinical_study[\s>/]")
_RECORD_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?clinical_study[\s>/]")
_TAG_BYTES = 64  # longer than any record start tag's name with a namespace prefix
READ_BYTES = 64 << 10
MAX_PROLOG_BYTES = 16 << 20  # no <clinical_study> in the first 16 MB: not a file of records


def detect(head: str) -> bool:
    """True when the text is XML holding a ``<clinical_study>`` element."""
    return head.lstrip("\ufeff \t\r\n").startswith("<") and _DETECT.search(head) is not None


def read_stream(stream: BinaryIO, file: str,
                accounting: bool = True) -> Iterator[tuple[dict | None, list[Problem], list[str]]]:
    """Each ``<clinical_study>`` of the stream, in order, as ``(data, problems, unmapped)``.

    Each record is parsed on its own (``_pieces``), so malformed XML costs only the record that
    holds it: that record is an error naming the line, and reading goes on at the next
    ``<clinical_study>``. Raises SourceError when the file holds no ``<clinical_study>`` at all.
    """
    for read, args in split_stream(stream, file, accounting):
        yield read(*args)


def split_stream(stream: BinaryIO, file: str, accounting: bool = True) -> Iterator[tuple[Callable, tuple]]:
    """:func:`read_stream` in two steps: each record as ``(read_piece, args)``, its bytes cut from
    the file (with the file's prolog and its place), parsed and converted when called, so that can
    happen in another process."""
    count = 0
    for prolog, piece, line, column in _pieces(stream):
        count += 1
        yield read_piece, (prolog, piece, line, column, accounting)
    if count == 0:
        raise SourceError(Problem(f"no <{RECORD_TAG}> element in the file", field="format"))


def read_piece(prolog: bytes, piece: bytes, line: int, column: int,
               accounting: bool = True) -> tuple[dict | None, list[Problem], list[str]]:
    """One record cut by ``_pieces``: parsed after the prolog, viewed and converted; malformed XML
    is this record's error, placed at its line in the file."""
    try:
        element = _parse_record(prolog, piece)
    except ET.ParseError as exc:
        return None, [error(_malformed(exc, prolog, line, column), "format")], []
    converted = convert_study(element_view(element), accounting)
    element.clear()
    return converted


def _malformed(exc: ET.ParseError, prolog: bytes, line: int, column: int) -> str:
    """The reason for a record whose XML is malformed, placed at its line in the file."""
    err_line, err_column = exc.position
    prolog_lines = prolog.count(b"\n")
    if err_line <= prolog_lines:
        where = "in the lines before the first record"
    else:
        file_line = line + err_line - 1 - prolog_lines
        if err_line == prolog_lines + 1:  # on the record's first line, after the prolog's last
            err_column = column + err_column - (len(prolog) - prolog.rfind(b"\n") - 1)
        where = f"at line {file_line}, column {err_column}"
    return (f"malformed XML {where} ({_parse_message(exc)}): this record is skipped, reading goes on "
            f"at the next <{RECORD_TAG}>")


def _parse_message(exc: ET.ParseError) -> str:
    return re.sub(r":\s*line \d+, column \d+$", "", str(exc))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _pieces(stream: BinaryIO) -> Iterator[tuple[bytes, bytes, int, int]]:
    """The stream cut at each ``<clinical_study`` start tag: ``(prolog, piece, line, column)``
    per record, where the prolog is everything before the first record (XML declaration,
    DOCTYPE, the wrapping elements and their namespaces), the piece runs from the record's start
    tag to the next one, and ``line``/``column`` place the piece's first byte in the file. One
    record (plus a read-ahead chunk) is in memory at a time."""
    buffer, eof, first = b"", False, None
    while first is None and not eof and len(buffer) < MAX_PROLOG_BYTES:
        chunk = stream.read(READ_BYTES)
        eof = not chunk
        buffer += chunk
        first = _RECORD_START.search(buffer)
    if first is None:
        return
    prolog, buffer = buffer[:first.start()], buffer[first.start():]
    line = prolog.count(b"\n") + 1
    column = len(prolog) - prolog.rfind(b"\n") - 1
    searched = 1  # the start tag at 0 is this piece's own
    while True:
        following = _RECORD_START.search(buffer, searched)
        if following is None and not eof:
            searched = max(1, len(buffer) - _TAG_BYTES)  # a start tag may straddle the next chunk
            chunk = stream.read(READ_BYTES)
            eof = not chunk
            buffer += chunk
            continue
        cut = following.start() if following else len(buffer)
        piece, buffer = buffer[:cut], buffer[cut:]
        yield prolog, piece, line, column
        if not buffer:
            return
        newlines = piece.count(b"\n")
        line += newlines
        column = len(piece) - piece.rfind(b"\n") - 1 if newlines else column + len(piece)
        searched = 1


def _parse_record(prolog: bytes, piece: bytes) -> ET.Element:
    """The ``<clinical_study>`` element of one piece, parsed after the prolog (for its encoding,
    entities and namespaces); what follows the record's end tag is not looked at. Raises
    ET.ParseError when the record is malformed or cut short."""
    parser = ET.XMLPullParser(events=("end",))
    for data in (prolog, piece):
        parser.feed(data)
        if (element := _record_end(parser)) is not None:
            return element
    parser.close()  # raises for a record cut short by the end of the file
    element = _record_end(parser)
    if element is None:
        raise ET.ParseError(f"no </{RECORD_TAG}> before the next record")
    return element


def _record_end(parser: ET.XMLPullParser) -> ET.Element | None:
    for _event, element in parser.read_events():
        tag = element.tag
        if tag.endswith(RECORD_TAG) and _local(tag) == RECORD_TAG:  # the cheap test first: one per element
            return element
    return None


def element_view(element: ET.Element) -> Any:
    """The nested dict view of an element: text for a leaf without attributes, else a dict of
    ``@attribute`` values, ``#text`` (its own non-blank text) and children by tag (a list when the
    tag repeats). Blank leaves are None and left out."""
    attrib = element.attrib
    node: dict[str, Any] = {f"@{_local(k)}": v for k, v in attrib.items()} if attrib else {}
    text = element.text
    if text is not None and not text.strip():
        text = None
    children: dict[str, list] = {}
    for child in element:
        tag = child.tag
        if not isinstance(tag, str):  # a comment or processing instruction
            continue
        value = element_view(child)
        if value is not None:
            name = tag if tag[0] != "{" else _local(tag)
            same = children.get(name)
            if same is None:
                children[name] = [value]
            else:
                same.append(value)
    if not node and not children:
        return text
    if text is not None:
        node[TEXT] = text
    node.update({k: v[0] if len(v) == 1 else v for k, v in children.items()})
    return node


@one_record
def convert_study(study: Any, accounting: bool = True) -> tuple[dict | None, list[Problem], list[str]]:
    """One ``<clinical_study>`` view (``element_view``) as a ``TrialSchema`` dict without
    provenance, the problems found, and the element paths left unmapped. ``data`` is None when
    the record has no NCT number."""
    return _ctgov_xml_study.convert(study if isinstance(study, dict) else {}, ignored_fields(FORMAT), accounting)
