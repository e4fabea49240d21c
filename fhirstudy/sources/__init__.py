"""Readers of trial records: one module per input format, and the entry point ``iter_records``.

A reader module has these names:

    FORMAT                  the format's name (``--format`` value, ``Provenance.format``)
    detect(head) -> bool    whether a file whose first characters are ``head`` is in this format
    read(text, file)        for small text layouts: yields per record ``(data, problems)``
      or
    read_stream(stream, file, accounting)  for registry files of any size: the same, from a
                            binary stream, one record at a time (never the whole file in memory);
                            ``accounting=False`` skips listing the unmapped source fields
    split_stream(...)       optionally, read_stream in two steps: per record ``(read, args)``,
                            ``read(*args)`` giving what read_stream yields, so that the parsing can
                            happen in another process (``iter_raw(..., deferred=True)``)

``data`` is a dict in the shape of ``trial.TrialSchema`` without ``provenance``; ``problems`` a list
of ``errors.Problem`` (a record with an error Problem is not loaded). A reader may yield a third
item, ``unmapped``: the source field paths present in the record that it did not carry into the
Trial and that are not on the documented ignore list (``mappings/ctgov-ignored-fields.json``).

Adding a format is one module and one line in ``READERS``.

FHIR JSON (``fhir_json``: resources, Bundles, NDJSON of them) is not a trial format and has no
place in ``READERS``: it is detected before them, by content, and only ``iter_raw(..., fhir=True)``
(``fhirstudy load``) yields it, as ``FhirDocument`` items that go straight to the store through
:mod:`fhirstudy.importer`; elsewhere such a file is reported (or, in a folder, skipped) as not a
trial record. Readers are pure functions of their
input; file handling (folders, ``.gz``, ``.zip``), record numbering, provenance and schema checking
happen here, once.

May import: ``fhirstudy.trial``, ``fhirstudy.errors``, ``fhirstudy.terminology``,
``fhirstudy.mappings``, the standard library, ijson and orjson; never mappers, validation, store,
search, server, push or cli.
"""
from __future__ import annotations

import dataclasses
import gzip
import importlib
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from ..errors import Problem, SourceError, TrialError
from ..trial import Trial, load_trial
from . import fhir_json
from ._boundary import failure_reason

# The readers, one line each, in detection order: the most specific layout first; the first reader
# that recognises a file wins. Adding a format: one reader module and one line here.
READER_MODULES = (
    ".ctgov_json",
    ".ctgov_csv",
    ".ctgov_xml",
    ".text_webpage",
    ".text_bulleted",
    ".text_registry_export",
)
READERS: tuple[ModuleType, ...] = tuple(importlib.import_module(m, __name__) for m in READER_MODULES)
FORMATS: tuple[str, ...] = tuple(r.FORMAT for r in READERS)
_BY_FORMAT = {r.FORMAT: r for r in READERS}
ENCODING = "utf-8-sig"
# What a record file is called, in a folder scan (after .gz); other files there are skipped. An
# archive (.zip) is read member by member under the same rule.
RECORD_SUFFIXES = frozenset({".json", ".ndjson", ".jsonl", ".xml", ".csv", ".txt"})
COMPRESSED_SUFFIXES = frozenset({".gz"})
ARCHIVE_SUFFIXES = frozenset({".zip"})


@dataclass(frozen=True)
class Record:
    """One record read from a file: the Trial, or None when the record failed (``problems`` then
    holds at least one error); warnings report text that could not be placed or was inferred."""

    file: str
    record: int
    trial: Trial | None
    problems: tuple[Problem, ...]
    unmapped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the record gave a Trial."""
        return self.trial is not None


@dataclass(frozen=True)
class Skipped:
    """A file of a folder that is not a record (a README, a picture): left out and counted, not an
    error. A file named on its own is always read, and reported when it is not a record."""

    file: str
    reason: str


@dataclass(frozen=True)
class FhirDocument:
    """One FHIR JSON document of a file (``fhir_json``): a resource or a Bundle, as it is; None
    when it could not be read (``problems`` then says why). ``record`` is its line in NDJSON
    (``ndjson``), 1 for a file that is one document."""

    file: str
    record: int
    data: dict | None
    problems: tuple[Problem, ...]
    ndjson: bool

    @property
    def ok(self) -> bool:
        """True when the document was read."""
        return self.data is not None


@dataclass(frozen=True)
class PendingRecord:
    """A record cut from its file but not read yet (``iter_raw(..., deferred=True)``): the reader's
    ``read(*args)`` gives what its ``read_stream`` would have; cheap to send to another process
    (an NDJSON line, an XML record's bytes, a CSV row's cells). :func:`read_pending` finishes it."""

    file: str
    record: int
    format: str
    read: Callable
    args: tuple


@dataclass(frozen=True)
class RawRecord:
    """A record as a reader gave it, before the Trial schema: cheap to pass to another process."""

    file: str
    record: int
    format: str
    data: dict | None
    problems: tuple[Problem, ...]
    unmapped: tuple[str, ...] = ()


def iter_raw(inputs: Iterable[str | Path], format: str | None = None, unmapped: bool = True,
             fhir: bool = False, deferred: bool = False) -> Iterator[Record | RawRecord | Skipped | FhirDocument
                                                                     | PendingRecord]:
    """Like ``iter_records`` but stops before the schema: yields ``RawRecord`` for what a reader
    read, ``Record`` for what failed before that, and ``Skipped`` for a file of a folder that is
    not a record. ``load_record`` finishes the work, in this process or another. ``unmapped=False`` skips listing the source fields not carried into the
    Trial (only ``convert --report`` needs them; on results-heavy records it is most of the read).
    ``fhir=True`` yields the documents of FHIR JSON files as ``FhirDocument`` (unless ``format``
    is given); otherwise such a file is reported as not a trial record. ``deferred=True`` yields
    the records of readers with ``split_stream`` as ``PendingRecord``, cut but not parsed."""
    if format is not None and format not in _BY_FORMAT:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    return _iter(inputs, format, unmapped, fhir, deferred)


def read_pending(item: PendingRecord) -> tuple[RawRecord | Record, bool]:
    """What ``iter_raw`` without deferral gives for the record, and whether its reading ended the
    file: a reader that fails past a record's boundary stops its file there, so the caller drops
    the records of that file after this one (as the reading, in one step, would have stopped)."""
    file, number = item.file, item.record
    try:
        return _raw(file, number, item.format, *item.read(*item.args)), False
    except SourceError as exc:  # the reader gave up on the rest of the file
        return Record(file, number, None, tuple(_placed(p, file, number) for p in exc.problems)), True
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        return _failed(file, f"cannot read past record {number - 1}: {exc}", record=number), True
    except Exception as exc:  # noqa: BLE001 - a reader's bug ends its file, never the run
        return _failed(file, f"{failure_reason(exc)}; the file is not read past record {number - 1}",
                       record=number), True


def load_record(item: Record | RawRecord | PendingRecord) -> Record:
    """A RawRecord checked by the Trial schema (a Record passes through; a PendingRecord is read
    first)."""
    if isinstance(item, PendingRecord):
        item = read_pending(item)[0]
    if isinstance(item, Record):
        return item
    return _record(item.file, item.record, item.format, item.data, list(item.problems), item.unmapped)


def iter_records(inputs: Iterable[str | Path], format: str | None = None) -> Iterator[Record]:
    """Read every record of the inputs, one at a time.

    An input is a file or a folder (its files, recursively, sorted by name, hidden files and
    folders skipped; in a folder, files whose extension is not in ``RECORD_SUFFIXES`` and files no
    reader recognises are not records and are left out). Each file's format is detected from its
    content unless ``format`` (one of ``FORMATS``) is given. Problems with the input (unreadable, not text, no reader recognises
    it, a field that cannot be read) come back as error Records, never as exceptions; only an
    unknown ``format`` raises ValueError, at once.
    """
    return (load_record(r) for r in iter_raw(inputs, format) if not isinstance(r, Skipped))


def _iter(inputs: Iterable[str | Path], format: str | None, accounting: bool = True,
          fhir: bool = False, deferred: bool = False) -> Iterator[Record | RawRecord | Skipped | FhirDocument]:
    for item in inputs:
        scanned = Path(item).is_dir()  # a file found in a folder, not one named on its own
        for path in _files(Path(item)):
            if isinstance(path, Record):  # a folder that cannot be listed
                yield path
                continue
            if scanned and _suffix(path.name) not in RECORD_SUFFIXES | ARCHIVE_SUFFIXES:
                yield Skipped(str(path), f"its extension is not one of {', '.join(sorted(RECORD_SUFFIXES))}")
                continue
            yield from _read_file(path, format, scanned, accounting, fhir, deferred)


def _suffix(name: str) -> str:
    """The extension that says what a file holds: ``.json`` for ``a.json.gz`` too."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    while suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _files(path: Path) -> Iterator[Path | Record]:
    """The files of an input: itself, or a folder's files sorted by name, recursively (an error
    Record for a folder that cannot be listed)."""
    if not path.is_dir():
        yield path  # a missing file is reported when it is read
        return
    try:
        with os.scandir(path) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        yield _failed(str(path), f"cannot list this folder: {exc.strerror or exc}")
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _files(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)


def _failed(file: str, reason: str, field: str | None = None, record: int = 1) -> Record:
    return Record(file, record, None, (Problem(reason, field=field, file=file, record=record),))


HEAD_BYTES = 65536


def _members(path: Path) -> Iterator[tuple[str, Callable[[], BinaryIO]]]:
    """The byte streams inside one input file: itself, its gzip content, or each zip member
    (named ``archive.zip!member``), each with an opener."""
    name = str(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = sorted(i.filename for i in archive.infolist()
                             if not i.is_dir() and not i.filename.rsplit("/", 1)[-1].startswith("."))
        for member in members:
            yield f"{name}!{member}", lambda member=member: _zip_member(path, member)
        return
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        yield name, lambda: gzip.open(path, "rb")
    else:
        yield name, lambda: open(path, "rb")


def _zip_member(path: Path, member: str) -> BinaryIO:
    archive = zipfile.ZipFile(path)
    stream = archive.open(member)
    stream._fhirstudy_archive = archive  # keep the archive open as long as the member stream
    return stream


def _decode(opener: Callable[[], BinaryIO]) -> str:
    """The stream's whole text; raises SourceError when it cannot be read or is not UTF-8 text."""
    try:
        with opener() as stream:
            raw = stream.read()
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SourceError(Problem(f"cannot read: {getattr(exc, 'strerror', None) or exc}")) from None
    try:
        text = raw.decode(ENCODING)
    except UnicodeDecodeError as exc:
        raise SourceError(Problem(f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})")) from None
    if "\x00" in text:
        raise SourceError(Problem(f"binary data, not text (NUL byte at offset {text.index(chr(0))})"))
    return text


def _head(opener: Callable[[], BinaryIO]) -> str:
    """The first characters of a stream, for detection; raises SourceError when unreadable."""
    try:
        with opener() as stream:
            raw = stream.read(HEAD_BYTES)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SourceError(Problem(f"cannot read: {getattr(exc, 'strerror', None) or exc}")) from None
    try:
        raw.decode(ENCODING)
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 4:  # not just a character cut at the end of the head
            raise SourceError(Problem(f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})")) from None
    if b"\x00" in raw:
        raise SourceError(Problem(f"binary data, not text (NUL byte at offset {raw.index(0)})"))
    return raw.decode(ENCODING, errors="ignore")


def _read_file(path: Path, format: str | None, scanned: bool = False, accounting: bool = True,
               fhir: bool = False, deferred: bool = False) -> Iterator[Record | RawRecord | Skipped | FhirDocument]:
    if not path.exists():
        yield _failed(str(path), "cannot read: No such file or directory")
        return
    try:
        members = list(_members(path))
    except (OSError, zipfile.BadZipFile) as exc:
        yield _failed(str(path), f"cannot read: {getattr(exc, 'strerror', None) or exc}")
        return
    in_archive = len(members) != 1 or members[0][0] != str(path)
    for file, opener in members:
        if in_archive and _suffix(file) not in RECORD_SUFFIXES:
            yield Skipped(file, f"its extension is not one of {', '.join(sorted(RECORD_SUFFIXES))}")
            continue
        yield from _read_member(file, opener, format, scanned or in_archive, accounting, fhir, deferred)


def _read_member(file: str, opener: Callable[[], BinaryIO], format: str | None, scanned: bool = False,
                 accounting: bool = True, fhir: bool = False,
                 deferred: bool = False) -> Iterator[Record | RawRecord | Skipped | FhirDocument | PendingRecord]:
    try:
        head = _head(opener)
    except SourceError as exc:
        yield _failed(file, exc.problems[0].reason)
        return
    if not head.strip():
        yield _failed(file, "empty file: no record (a record needs at least a title line)", "brief_title")
        return
    if format is None and fhir_json.detect(head):
        yield from _read_fhir(file, opener) if fhir else _not_a_record(file, scanned)
        return
    reader = _BY_FORMAT[format] if format else next((r for r in READERS if r.detect(head)), None)
    if reader is None and scanned:
        yield Skipped(file, "no reader recognises its content")
        return
    if reader is None:
        also = "FHIR JSON (an object with resourceType) or " if fhir else ""
        yield _failed(file, f"no reader recognises this file as {also}any of: {', '.join(FORMATS)}", "format")
        return
    number = 0
    try:
        if deferred and hasattr(reader, "split_stream"):
            with opener() as stream:
                for number, (read, args) in enumerate(reader.split_stream(stream, file, accounting), start=1):
                    yield PendingRecord(file, number, reader.FORMAT, read, args)
        elif hasattr(reader, "read_stream"):
            with opener() as stream:
                for number, item in enumerate(reader.read_stream(stream, file, accounting), start=1):
                    yield _raw(file, number, reader.FORMAT, *item)
        else:
            text = _decode(opener)
            for number, item in enumerate(reader.read(text, file), start=1):
                yield _raw(file, number, reader.FORMAT, *item)
    except SourceError as exc:  # the reader gave up on the rest of the file
        yield Record(file, number + 1, None, tuple(_placed(p, file, number + 1) for p in exc.problems))
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # a truncated .gz or a failing disk
        yield _failed(file, f"cannot read past record {number}: {exc}", record=number + 1)
    except Exception as exc:  # noqa: BLE001 - a reader's bug ends its file, never the run
        yield _failed(file, f"{failure_reason(exc)}; the file is not read past record {number}",
                      record=number + 1)


def _not_a_record(file: str, scanned: bool) -> Iterator[Record | Skipped]:
    reason = "FHIR JSON, not a trial record"
    yield Skipped(file, reason) if scanned else _failed(
        file, f"{reason}: fhirstudy load stores FHIR resources and Bundles as they are", "format")


def _read_fhir(file: str, opener: Callable[[], BinaryIO]) -> Iterator[FhirDocument | Record]:
    """The documents of a FHIR JSON file, each placed; a file that breaks off is one error more."""
    number = 0
    try:
        with opener() as stream:
            ndjson, documents = fhir_json.read_stream(stream, file)
            for number, data, problems in documents:
                yield FhirDocument(file, number, data, tuple(_placed(p, file, number) for p in problems), ndjson)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # a truncated .gz or a failing disk
        yield _failed(file, f"cannot read past line {number}: {exc}", record=number + 1)


def _placed(problem: Problem, file: str, record: int) -> Problem:
    return dataclasses.replace(problem, file=problem.file or file, record=problem.record or record)


def _raw(file: str, number: int, format: str, data: dict | None, problems: list[Problem],
         unmapped: Iterable[str] = ()) -> RawRecord:
    return RawRecord(file, number, format, data, tuple(problems), tuple(unmapped))


def _record(file: str, number: int, format: str, data: dict | None, problems: list[Problem],
            unmapped: Iterable[str] = ()) -> Record:
    problems = [_placed(p, file, number) for p in problems]
    unmapped = tuple(unmapped)
    if data is None or any(p.severity == "error" for p in problems):
        return Record(file, number, None, tuple(problems), unmapped)
    source_date = data.pop("_source_date", None)
    data = {**data, "provenance": {"file": file, "record": number, "format": format, "source_date": source_date}}
    data["unplaced"] = list(data.get("unplaced") or [])
    try:
        trial = load_trial(data)
    except TrialError as exc:
        return Record(file, number, None, tuple(problems + [_placed(p, file, number) for p in exc.problems]), unmapped)
    return Record(file, number, trial, tuple(problems), unmapped)
