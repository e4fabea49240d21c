"""The conversion pipeline, one record at a time: source record -> Trial -> resources -> validation.

``convert(inputs)`` yields one ``Converted`` per source record: the validated transaction Bundle,
or the problems that stopped it. Nothing here writes files or touches a database; the CLI and the
loader consume the stream.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import Problem, ValidationFailed
from .mappers import map_trial
from .sources import FhirDocument, RawRecord, Record, Skipped, iter_raw, load_record
from .sources._boundary import failure_reason
from .validation import validate_bundle


CHUNK = 32  # records per task sent to a worker process
IN_FLIGHT = 4  # chunks per worker queued at most: bounds memory whatever the input size


@dataclass(frozen=True)
class Converted:
    """One source record's outcome: ``bundle`` when it converted, ``problems`` either way
    (warnings on success, at least one error on failure); or, with ``skipped``, a file of a folder
    that is not a record."""

    file: str
    record: int
    bundle: dict | None
    problems: tuple[Problem, ...]
    unmapped: tuple[str, ...] = ()
    skipped: str | None = None  # why a file of a folder is not a record (then nothing else is set)

    @property
    def ok(self) -> bool:
        """True when the record converted (``bundle`` is set)."""
        return self.bundle is not None

    @property
    def study_id(self) -> str | None:
        """The id of the trial's ResearchStudy, when it converted."""
        return self.bundle["entry"][0]["resource"]["id"] if self.bundle else None


def convert_record(record: Record | RawRecord | Skipped | FhirDocument) -> Converted | FhirDocument:
    """Check (schema), map and validate one record read by a source. Never raises: whatever goes
    wrong inside one record (a bug, a value no rule foresaw) is that record's error Problem, so
    the other records still convert, in this process or a worker.  A FHIR document (read with
    ``fhir=True``) is passed on as it is: it is validated where it is written, like every write."""
    if isinstance(record, FhirDocument):
        return record
    if isinstance(record, Skipped):
        return Converted(record.file, 0, None, (), skipped=record.reason)
    try:
        return _convert(record)
    except Exception as exc:  # noqa: BLE001 - the boundary of one record: nothing may escape it
        problems = [*record.problems, Problem(failure_reason(exc))]
        return Converted(record.file, record.record, None, tuple(
            dataclasses.replace(p, file=p.file or record.file, record=p.record or record.record) for p in problems))


def _convert(record: Record | RawRecord) -> Converted:
    record = load_record(record)
    if record.trial is None:
        return Converted(record.file, record.record, None, record.problems, record.unmapped)
    bundle = map_trial(record.trial)
    try:
        validate_bundle(bundle)
    except ValidationFailed as exc:
        placed = tuple(Problem(reason=i.reason, field=i.field, file=record.file, record=record.record)
                       for i in exc.issues)
        return Converted(record.file, record.record, None, record.problems + placed, record.unmapped)
    return Converted(record.file, record.record, bundle, record.problems, record.unmapped)


def convert(inputs: Iterable[str | Path], format: str | None = None, jobs: int = 1,
            unmapped: bool = True, fhir: bool = False) -> Iterator[Converted | FhirDocument]:
    """Convert every record of the inputs (files or folders), in order, streaming.

    With ``jobs`` > 1, reading stays in this process (one pass over the input, bounded memory) and
    the schema check, mapping and validation run in ``jobs`` worker processes; results come back
    in input order. ``unmapped=False`` skips the (costly) listing of source fields not mapped.
    ``fhir=True`` passes the documents of FHIR JSON files on as ``FhirDocument`` (``load``).
    """
    return convert_records(iter_raw(inputs, format=format, unmapped=unmapped, fhir=fhir), jobs)


def convert_records(records: Iterable[Record | RawRecord | Skipped | FhirDocument],
                    jobs: int = 1) -> Iterator[Converted | FhirDocument]:
    """Convert records read elsewhere (``fhirstudy.ctgov`` reads them from the API), in order,
    streaming, in ``jobs`` processes as :func:`convert` does."""
    if jobs <= 1:
        yield from map(convert_record, records)
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(jobs) as pool:
        # Pool.imap would read the whole input ahead; a window of chunks in flight bounds memory.
        pending: deque = deque()
        for chunk in _chunks(records, CHUNK):
            pending.append(pool.apply_async(_convert_chunk, (chunk,)))
            if len(pending) >= jobs * IN_FLIGHT:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _convert_chunk(records: list[Record | RawRecord | Skipped | FhirDocument]) -> list[Converted | FhirDocument]:
    return [convert_record(r) for r in records]
