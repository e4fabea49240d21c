"""Reader of ClinicalTrials.gov API v2 JSON (``ctgov-json``): study records as the registry's REST
API and website give them.

Four containers, told apart from the first bytes of the file:

    a single study      {"protocolSection": ..., "derivedSection": ..., "hasResults": ...}
    an API page         {"studies": [...], "nextPageToken": ...}   (/api/v2/studies)
    a website download  [{study}, {study}, ...]
    NDJSON              one study object a line

Pages and arrays are streamed with ijson (one study in memory at a time), NDJSON line by line;
only a single study is parsed whole. Every ``protocolSection`` field is carried into the Trial or
is on the documented ignore list (``mappings/ctgov-ignored-fields.json``, key ``ctgov-json``);
``derivedSection`` gives the MeSH terms of the conditions and interventions and the MeSH ancestors of the
conditions (ids in NLM's form, ``mappings/mesh.json``); ``resultsSection`` becomes ``Trial.results``
(``_ctgov_json_results``); everything else left over (``annotationSection``, ``documentSection``)
is reported as unmapped. Field names in this module are
the API's own (``overallStatus``), so they can be looked up in its documentation.

Design choices:

- ``armGroups[].interventionNames`` ("Drug: Palbociclib") lose their type label, so an arm names its
  interventions exactly as ``Intervention.name`` does.
- ``Intervention.components`` stay empty: the registry already lists one intervention per product.
- Central and facility contacts get the FHIR role ``recruitment-contact`` (ClinicalTrials.gov
  defines them as the people who answer enrollment questions).
- ``references[].retractions`` become references of type ``retraction`` (the retraction notice's
  PMID and source), so a retracted citation does not look sound downstream.
- ``availIpds`` become references of type ``ipd``, ``seeAlsoLinks`` of type ``link``.
- Wrong JSON types (``enrollmentInfo.count: "abc"``) are errors naming the source path and the
  Trial field; enumerated values are checked by the Trial schema.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import ijson
import orjson

from ..errors import Problem
from ._boundary import given, one_record
from ._ctgov_json_study import Study
from ._ctgov_json_values import error as _error
from ._ctgov_json_values import json_type as _json_type
from ._fields import ignored_fields

FORMAT = "ctgov-json"

_STUDY_KEYS = frozenset({"protocolSection", "resultsSection", "annotationSection", "documentSection",
                         "derivedSection", "hasResults"})
_PAGE_KEYS = frozenset({"studies", "nextPageToken", "totalCount"})
_FIRST_KEY = re.compile(r'^\s*(\[\s*)?\{\s*"([^"\\]+)"\s*:')
_FIRST_KEY_BYTES = re.compile(rb'^\s*(\[\s*)?\{\s*"([^"\\]+)"\s*:')
_BOM = b"\xef\xbb\xbf"
HEAD_BYTES = 65536  # bytes read to tell the container apart


def detect(head: str) -> bool:
    """True when the text is a JSON object or array whose first key is one of an API v2 study's
    sections (``protocolSection``, ...) or of an ``/api/v2/studies`` page (``studies``, ...)."""
    match = _FIRST_KEY.match(head)
    if not match:
        return False
    key = match[2]
    return key in _STUDY_KEYS or (not match[1] and key in _PAGE_KEYS)


def read_stream(stream: BinaryIO, file: str,
                accounting: bool = True) -> Iterator[tuple[dict | None, list[Problem], list[str]]]:
    """The studies of an API v2 JSON file, one at a time, each as a ``TrialSchema`` dict (without
    provenance), the problems found, and the source fields that did not reach the Trial.

    A study that cannot be parsed is yielded as ``(None, [error], [])``: an NDJSON line on its own
    (the next lines go on), or in an array or page the break itself, after which the rest of the
    file cannot be read. ``accounting=False`` skips listing the unmapped source fields.
    """
    for read, args in split_stream(stream, file, accounting):
        yield read(*args)


def split_stream(stream: BinaryIO, file: str, accounting: bool = True) -> Iterator[tuple[Callable, tuple]]:
    """:func:`read_stream` in two steps: each study as ``(read, args)``, where ``read(*args)`` is
    what read_stream yields for it, so the reading can happen in another process. An NDJSON line
    travels as its bytes; a study of an array or page, or a single study, is parsed here."""
    head = stream.read(HEAD_BYTES).removeprefix(_BOM)
    replay = _Replay(head, stream)
    match = _FIRST_KEY_BYTES.match(head)
    if match and match[1]:
        yield from _stream_items(replay, "item", "JSON array", accounting)
    elif match and match[2].decode() in _PAGE_KEYS:
        yield from _stream_items(replay, "studies.item", "API page", accounting)
    else:
        yield from _objects(replay, accounting)


@one_record
def convert(study: Any, accounting: bool = True) -> tuple[dict | None, list[Problem], list[str]]:
    """One API v2 study object -> (``TrialSchema`` dict without provenance, problems, unmapped
    source paths). Never raises for bad input: a study it cannot convert gives ``None`` data with
    an error problem."""
    if not isinstance(study, dict):
        return None, [_error(f"a study must be a JSON object, not {_json_type(study)}", None)], []
    return Study(study, accounting).convert(ignored_fields(FORMAT))


class _Replay:
    """A binary stream whose first bytes were read already: serves them again, then the rest."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size is None or size < 0:
            out, self._head = self._head + self._stream.read(), b""
        else:
            out, self._head = self._head[:size], self._head[size:]
        return out

    def readline(self) -> bytes:
        if not self._head:
            return self._stream.readline()
        end = self._head.find(b"\n")
        if end >= 0:
            out, self._head = self._head[:end + 1], self._head[end + 1:]
            return out
        out, self._head = self._head, b""
        return out + self._stream.readline()


def _stream_items(stream: _Replay, prefix: str, container: str, accounting: bool) -> Iterator[tuple]:
    count = 0
    items = ijson.items(stream, prefix, use_float=True, multiple_values=True)
    while True:
        try:
            study = next(items)
        except StopIteration:
            break
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            yield given, (None, [_error(f"invalid JSON after study {count} of the {container} "
                                        f"({_ijson_reason(exc)}): the rest of the file cannot be read", None)], [])
            return
        count += 1
        yield convert, (study, accounting)
    if count == 0:
        yield given, (None, [_error(f"the {container} holds no study", None)], [])


def _objects(stream: _Replay, accounting: bool) -> Iterator[tuple]:
    """A single study object (possibly pretty-printed), or NDJSON (one study a line)."""
    lineno, first = _next_line(stream, 0)
    if first is None:
        yield given, (None, [_error("no JSON study in this file", None)], [])
        return
    study, exc = _loads(first)
    if exc is None and isinstance(study, dict):
        yield read_line, (lineno, first, accounting)  # a study on its own line: NDJSON (a one-line file too)
        yield from _ndjson(stream, lineno, accounting)
        return
    second_lineno, second = _next_line(stream, lineno)
    if second is not None and second.lstrip().startswith(b"{"):  # a bad first line of NDJSON
        yield read_line, (lineno, first, accounting)
        yield read_line, (second_lineno, second, accounting)
        yield from _ndjson(stream, second_lineno, accounting)
        return
    study, exc = _loads(first + (second or b"") + stream.read())  # one study, pretty-printed
    yield (convert, (study, accounting)) if exc is None else (given, (None, [_error(f"not valid JSON: {exc}", None)], []))


def _ndjson(stream: _Replay, lineno: int, accounting: bool) -> Iterator[tuple]:
    while True:
        lineno, line = _next_line(stream, lineno)
        if line is None:
            return
        yield read_line, (lineno, line, accounting)


def read_line(lineno: int, line: bytes, accounting: bool = True) -> tuple[dict | None, list[Problem], list[str]]:
    """The record of NDJSON line ``lineno`` (its bytes): the study converted, or why it is not."""
    return _from_line(lineno, *_loads(line), functools.partial(convert, accounting=accounting))


def _next_line(stream: _Replay, lineno: int) -> tuple[int, bytes | None]:
    """The next non-blank line after line ``lineno`` and its number, or None at the end."""
    while True:
        line = stream.readline()
        if not line:
            return lineno, None
        lineno += 1
        if line.strip():
            return lineno, line


def _from_line(lineno: int, study: Any, exc: Exception | None, convert: Callable) -> tuple:
    """The record of one NDJSON line (parsed, or the parse error)."""
    if exc is not None:
        return None, [_error(f"line {lineno}: not valid JSON ({exc}); the next lines are read on", None)], []
    data, problems, unmapped = convert(study)
    if data is None:
        problems = [Problem(f"line {lineno}: {p.reason}", p.field, severity=p.severity) for p in problems]
    return data, problems, unmapped


def _loads(raw: bytes) -> tuple[Any, Exception | None]:
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        return None, exc


def _ijson_reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and "(right here)" not in line]
    if len(lines) > 1:
        return f"{lines[0]} near {lines[1]!r}"
    return lines[0] if lines else type(exc).__name__
