"""Readers of trial records: one module per input format, and the entry point ``iter_records``.

A reader module has three names:

    FORMAT                  the format's name (``--format`` value, ``Provenance.format``)
    detect(text) -> bool    whether the text is in this format
    read(text, file)        yields ``(data, problems)`` per record: ``data`` a dict in the shape
                            of ``trial.TrialSchema`` without ``provenance``, ``problems`` a list of
                            ``errors.Problem`` (a record with an error Problem is not loaded)

Adding a format is one module and one line in ``READERS``. Readers are pure functions of the
text; file handling, record numbering, provenance and schema checking happen here, once.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import Problem, SourceError, TrialError
from ..trial import Trial, load_trial
from . import text_bulleted, text_registry_export, text_webpage

# Detection order: the most specific layout first; the first reader that recognises a file wins.
READERS: tuple[ModuleType, ...] = (text_webpage, text_bulleted, text_registry_export)
FORMATS: tuple[str, ...] = tuple(r.FORMAT for r in READERS)
_BY_FORMAT = {r.FORMAT: r for r in READERS}
ENCODING = "utf-8-sig"


@dataclass(frozen=True)
class Record:
    """One record read from a file: the Trial, or None when the record failed (``problems`` then
    holds at least one error); warnings report text that could not be placed or was inferred."""

    file: str
    record: int
    trial: Trial | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """True when the record gave a Trial."""
        return self.trial is not None


def iter_records(inputs: Iterable[str | Path], format: str | None = None) -> Iterator[Record]:
    """Read every record of the inputs, one at a time.

    An input is a file or a folder (its files, recursively, sorted by name, hidden files and
    folders skipped). Each file's format is detected from its content unless ``format`` (one of
    ``FORMATS``) is given. Problems with the input (unreadable, not text, no reader recognises
    it, a field that cannot be read) come back as error Records, never as exceptions; only an
    unknown ``format`` raises ValueError, at once.
    """
    if format is not None and format not in _BY_FORMAT:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    return _iter(inputs, format)


def _iter(inputs: Iterable[str | Path], format: str | None) -> Iterator[Record]:
    for item in inputs:
        for path in _files(Path(item)):
            yield from _read_file(path, format)


def _files(path: Path) -> Iterator[Path]:
    """The files of an input: itself, or a folder's files sorted by name, recursively."""
    if not path.is_dir():
        yield path  # a missing file is reported when it is read
        return
    with os.scandir(path) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _files(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)


def _failed(file: str, reason: str, field: str | None = None, record: int = 1) -> Record:
    return Record(file, record, None, (Problem(reason, field=field, file=file, record=record),))


def _decode(path: Path) -> str:
    """The file's text; raises SourceError when it cannot be read or is not UTF-8 text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(Problem(f"cannot read: {exc.strerror or exc}")) from None
    try:
        text = raw.decode(ENCODING)
    except UnicodeDecodeError as exc:
        raise SourceError(Problem(f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})")) from None
    if "\x00" in text:
        raise SourceError(Problem(f"binary data, not text (NUL byte at offset {text.index(chr(0))})"))
    return text


def _read_file(path: Path, format: str | None) -> Iterator[Record]:
    file = str(path)
    try:
        text = _decode(path)
    except SourceError as exc:
        yield _failed(file, exc.problems[0].reason)
        return
    if not text.strip():
        yield _failed(file, "empty file: no record (a record needs at least a title line)", "brief_title")
        return
    reader = _BY_FORMAT[format] if format else next((r for r in READERS if r.detect(text)), None)
    if reader is None:
        yield _failed(file, f"no reader recognises this file as any of: {', '.join(FORMATS)}", "format")
        return
    number = 0
    try:
        for number, (data, problems) in enumerate(reader.read(text, file), start=1):
            yield _record(file, number, reader.FORMAT, data, problems)
    except SourceError as exc:  # the reader gave up on the rest of the file
        yield Record(file, number + 1, None, tuple(_placed(p, file, number + 1) for p in exc.problems))


def _placed(problem: Problem, file: str, record: int) -> Problem:
    return dataclasses.replace(problem, file=problem.file or file, record=problem.record or record)


def _record(file: str, number: int, format: str, data: dict, problems: list[Problem]) -> Record:
    problems = [_placed(p, file, number) for p in problems]
    data = {**data, "provenance": {"file": file, "record": number, "format": format}}
    data["unplaced"] = list(data.get("unplaced") or [])
    if any(p.severity == "error" for p in problems):
        return Record(file, number, None, tuple(problems))
    try:
        trial = load_trial(data)
    except TrialError as exc:
        return Record(file, number, None, tuple(problems + [_placed(p, file, number) for p in exc.problems]))
    return Record(file, number, trial, tuple(problems))
