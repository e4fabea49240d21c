"""Reader of FHIR JSON input (``fhir-json``): resources and Bundles stored as they are, not trial
records (``fhirstudy load`` only; the other commands report such a file as not a record).

Told apart by content: a JSON object holding ``resourceType`` that no trial reader claims (a
ClinicalTrials.gov API v2 study starts with one of its sections, so it still goes to
``ctgov_json``). Two layouts:

    NDJSON     one JSON document a line (a Bulk Data export, ``fhirstudy convert -o x.ndjson``):
               each line is its own document, numbered by its line; a bad line costs only itself
    one file   the whole file is one document: a resource or a Bundle (``fhirstudy convert -o DIR``
               writes one transaction Bundle per file), numbered 1

A file is NDJSON when its name says so (``.ndjson``, ``.jsonl``, also inside ``.gz``) or when its
first line is a JSON object on its own.  Reading checks only that each document is a JSON object
with a ``resourceType`` string; what the document means (a Bundle's entries, validation) is the
importer's (:mod:`fhirstudy.importer`).  A document is yielded as ``(number, data, problems)``,
``data`` None when the document cannot be read.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePath
from typing import BinaryIO

import orjson

from ..errors import Problem
from . import ctgov_json

FORMAT = "fhir-json"
NDJSON_SUFFIXES = frozenset({".ndjson", ".jsonl"})
_BOM = b"\xef\xbb\xbf"
_OBJECT = re.compile(r'^\s*\{')
_RESOURCE_TYPE = re.compile(r'"resourceType"\s*:\s*"')

Document = tuple[int, dict | None, list[Problem]]


def detect(head: str) -> bool:
    """True when the text is a JSON object naming a ``resourceType`` and not a trial record."""
    text = head.lstrip("\ufeff")
    return bool(_OBJECT.match(text) and _RESOURCE_TYPE.search(text)) and not ctgov_json.detect(text)


def is_ndjson(file: str, first_line: bytes) -> bool:
    """Whether ``file`` is read a line at a time: its name says NDJSON, or its first line is a
    JSON object by itself."""
    suffixes = [s.lower() for s in PurePath(file).suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] in NDJSON_SUFFIXES:
        return True
    try:
        return isinstance(orjson.loads(first_line), dict)
    except orjson.JSONDecodeError:
        return False


def read_stream(stream: BinaryIO, file: str) -> tuple[bool, Iterator[Document]]:
    """Whether ``file`` is NDJSON, and its documents in order (one per line, or the whole file)."""
    first, blank = stream.readline(), 0
    while first and not first.strip():
        first, blank = stream.readline(), blank + 1
    first = first.removeprefix(_BOM)
    if is_ndjson(file, first):
        return True, _lines(first, blank + 1, stream)
    return False, iter([(1, *document(first + stream.read()))])


def _lines(first: bytes, number: int, stream: BinaryIO) -> Iterator[Document]:
    """The documents of an NDJSON stream whose first non-blank line (line ``number``) was read."""
    yield (number, *document(first))
    for number, line in enumerate(stream, start=number + 1):
        if line.strip():
            yield (number, *document(line))


def document(raw: bytes) -> tuple[dict | None, list[Problem]]:
    """One JSON document: the object, or None with the reason it is not a FHIR resource."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, [Problem(f"not JSON: {exc}", field="format")]
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        what = "an object without resourceType" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        return None, [Problem(f"not a FHIR resource (a JSON object with resourceType) but {what}",
                              field="resourceType")]
    return data, []
