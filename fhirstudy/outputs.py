"""Where ``fhirstudy convert`` writes, chosen by the ``-o`` value, checked before any work:

    -o -            NDJSON on stdout: one transaction Bundle per trial, one a line, nothing else
    -o NAME.ndjson  the same NDJSON in a file (also ``.jsonl``)
    -o NAME.json    one transaction Bundle holding the entries of every trial converted, in order
                    (for one trial: exactly that trial's Bundle), one entry a line
    -o DIR          a folder (created) of ``<ResearchStudy id>.json`` files, one Bundle each

A file (the output or ``--report``) is written beside its final name and put in place when the run
ends, so an existing file is replaced whole or not at all, and a run that cannot write finds out
before it converts anything. Problems are :class:`OutputError` with one line saying what and where.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

import orjson

from .errors import FhirStudyError

STDOUT = "-"
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
BUNDLE_SUFFIX = ".json"


class OutputError(FhirStudyError):
    """An output cannot be written (a usage error: exit 2)."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class AtomicFile:
    """A file written under a temporary name in its folder and renamed over ``path`` by
    ``commit``; ``discard`` leaves ``path`` as it was. Opening it proves the folder writable."""

    def __init__(self, path: str | Path, what: str):
        self.path = Path(path)
        if self.path.is_dir():
            raise OutputError(f"{what} {self.path} is a folder, not a file")
        folder = self.path.parent
        if not folder.is_dir():
            raise OutputError(f"cannot write {what} {self.path}: the folder {folder} does not exist")
        try:
            fd, self._temp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".partial")
        except OSError as exc:
            raise OutputError(f"cannot write {what} {self.path}: {_reason(exc)}") from None
        self.stream: BinaryIO = os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Put the written file in place of ``path``."""
        self.stream.close()
        try:
            os.chmod(self._temp, 0o666 & ~_umask())
            os.replace(self._temp, self.path)
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from None

    def discard(self) -> None:
        """Drop what was written; ``path`` stays as it was."""
        self.stream.close()
        try:
            os.unlink(self._temp)
        except FileNotFoundError:
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def compact_line(bundle: dict) -> bytes:
    """A Bundle as one NDJSON line."""
    return orjson.dumps(bundle) + b"\n"


def indented(bundle: dict) -> bytes:
    """A Bundle as a file of its own: indented JSON."""
    return orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n"


def entry_lines(bundle: dict) -> bytes:
    """A Bundle's entries, one compact entry a line (for :class:`_OneBundle`)."""
    return b",\n".join(orjson.dumps(entry) for entry in bundle["entry"])


class Output:
    """Where converted Bundles go: ``write(study_id, bundle)`` for each, then ``close(ok)``.

    ``encode`` (a module-level function, so another process can run it) turns a Bundle into the
    bytes this output writes for it, and ``write_encoded`` writes such bytes: conversion workers
    encode, the process that owns the output only writes. ``write`` is the two in one."""

    where = ""
    encode = staticmethod(compact_line)

    def write(self, study_id: str, bundle: dict) -> None:
        """Write one trial's transaction Bundle."""
        self.write_encoded(study_id, self.encode(bundle))

    def write_encoded(self, study_id: str, data: bytes) -> None:
        """Write one trial's Bundle as ``encode`` gave it."""
        raise NotImplementedError

    def close(self, commit: bool = True) -> None:
        """Finish: put a file in place (``commit``), or leave things as they were."""


class _Stdout(Output):
    where = "stdout"

    def write_encoded(self, study_id: str, data: bytes) -> None:
        sys.stdout.buffer.write(data)

    def close(self, commit: bool = True) -> None:
        sys.stdout.flush()


class _Ndjson(Output):
    def __init__(self, path: Path):
        self.file = AtomicFile(path, "the output")
        self.where = str(path)

    def write_encoded(self, study_id: str, data: bytes) -> None:
        self.file.stream.write(data)

    def close(self, commit: bool = True) -> None:
        self.file.commit() if commit else self.file.discard()


class _OneBundle(Output):
    """Every trial's entries in one transaction Bundle, streamed one entry a line."""

    HEAD = b'{"resourceType":"Bundle","type":"transaction"'
    encode = staticmethod(entry_lines)

    def __init__(self, path: Path):
        self.file = AtomicFile(path, "the output")
        self.where = str(path)
        self.file.stream.write(self.HEAD)
        self.entries = 0

    def write_encoded(self, study_id: str, data: bytes) -> None:
        if data:
            self.file.stream.write((b",\n" if self.entries else b',"entry":[\n') + data)
            self.entries += data.count(b",\n") + 1  # compact JSON holds no line break of its own

    def close(self, commit: bool = True) -> None:
        if not commit:
            self.file.discard()
            return
        self.file.stream.write(b"\n]}\n" if self.entries else b"}\n")  # FHIR has no empty arrays
        self.file.commit()


class _Folder(Output):
    def __init__(self, path: Path):
        if path.exists() and not path.is_dir():
            raise OutputError(f"the output {path} is a file, not a folder (name it .ndjson or .json to write one "
                              "file)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {path}: {_reason(exc)}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write in the output folder {path}: Permission denied")
        self.path = path
        self.where = str(path)

    encode = staticmethod(indented)

    def write_encoded(self, study_id: str, data: bytes) -> None:
        target = self.path / f"{study_id}.json"
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {_reason(exc)}") from None


def open_output(spec: str, inputs: list[str] = ()) -> Output:
    """The output named by ``-o``; OutputError when it cannot be written, or is one of the inputs."""
    if spec == STDOUT:
        return _Stdout()
    path = Path(spec)
    for name in inputs:
        if path.exists() and Path(name).exists() and os.path.samefile(path, name):
            raise OutputError(f"the output {spec} is also an input: it would be overwritten")
    if path.suffix.lower() in NDJSON_SUFFIXES:
        return _Ndjson(path)
    if path.suffix.lower() == BUNDLE_SUFFIX:
        return _OneBundle(path)
    return _Folder(path)
