"""One export from one snapshot of the store, written as NDJSON files (being written)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .request import ExportRequest

MAX_FILE_BYTES = 64 * 2**20   # an output file is split past this many bytes (at a line's end)


@dataclass
class OutputFile:
    """One written file: its resource type (``OperationOutcome`` for errors), name in the
    directory and number of lines."""

    type: str
    name: str
    count: int


@dataclass
class ExportResult:
    """What an export wrote: the snapshot's ``transactionTime`` and the files of ``output``,
    ``error`` and ``deleted`` (``deleted``: Bundles of DELETE requests, one per line, for
    resources deleted after ``since``)."""

    transaction_time: str
    output: list[OutputFile] = field(default_factory=list)
    error: list[OutputFile] = field(default_factory=list)
    deleted: list[OutputFile] = field(default_factory=list)


class Cancelled(Exception):
    """The export was cancelled while it ran (``cancelled()`` said so)."""


def write_export(store, service, request: ExportRequest, directory: Path, *,
                 max_file_bytes: int = MAX_FILE_BYTES,
                 progress: Callable[[int, int | None], None] = lambda done, total: None,
                 cancelled: Callable[[], bool] = lambda: False) -> ExportResult:
    """Write the export ``request`` asks for into ``directory`` (created empty by the caller) from
    one snapshot of ``store``; ``service`` parses ``_typeFilter`` queries. ``progress(done,
    total)`` is called now and then (resources written, and the total when known);
    ``cancelled()`` is asked between pages and raises :class:`Cancelled` when true. Files are
    complete when this returns; on any exception the directory's content is to be discarded."""
    raise NotImplementedError("being written")
