"""The conversion pipeline, one record at a time: source record -> Trial -> resources -> narratives
-> validation.

``convert(inputs)`` yields one ``Converted`` per source record: the validated transaction Bundle,
or the problems that stopped it. Nothing here writes files or touches a database; the CLI and the
loader consume the stream.

With ``jobs`` > 1 this process only cuts the input into records (``PendingRecord``: a line, an
XML record's bytes, a CSV row) and hands chunks of them to worker processes, which read, check,
map, validate and (given ``encode``) serialise each record; results come back in input order, as
bytes when they were encoded, so little but bytes crosses between processes. The options a worker
needs (``encode``, ``narrative``) travel with each chunk, as arguments of :func:`_convert_chunk`.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import Problem, ValidationFailed
from .mappers import map_trial
from .narrative import add_bundle_narratives
from .sources import FhirDocument, PendingRecord, RawRecord, Record, Skipped, iter_raw, load_record, read_pending
from .sources._boundary import failure_reason
from .validation import validate_bundle


CHUNK = 32  # records per task sent to a worker process
IN_FLIGHT = 4  # chunks per worker queued at most: bounds memory whatever the input size


@dataclass(frozen=True)
class Converted:
    """One source record's outcome: ``bundle`` when it converted (or, when the conversion was
    asked to encode, ``encoded``: the bytes of it, and ``study``: its ResearchStudy id),
    ``problems`` either way (warnings on success, at least one error on failure); or, with
    ``skipped``, a file of a folder that is not a record."""

    file: str
    record: int
    bundle: dict | None
    problems: tuple[Problem, ...]
    unmapped: tuple[str, ...] = ()
    skipped: str | None = None  # why a file of a folder is not a record (then nothing else is set)
    encoded: bytes | None = None
    study: str | None = None
    ends_file: bool = False  # the reader failed here: the records after it in its file are not read

    @property
    def ok(self) -> bool:
        """True when the record converted (``bundle`` or ``encoded`` is set)."""
        return self.bundle is not None or self.encoded is not None

    @property
    def study_id(self) -> str | None:
        """The id of the trial's ResearchStudy, when it converted."""
        if self.study is not None:
            return self.study
        return self.bundle["entry"][0]["resource"]["id"] if self.bundle else None


Encode = Callable[[dict], bytes]  # a Bundle -> the bytes an output writes (a module-level function)


def convert_record(record: Record | RawRecord | PendingRecord | Skipped | FhirDocument,
                   encode: Encode | None = None, narrative: bool = True) -> Converted | FhirDocument:
    """Read (a PendingRecord), check (schema), map and validate one record, and with ``encode``
    serialise its Bundle; ``narrative=False`` leaves every resource without its ``text``. Never raises: whatever goes wrong inside one record (a bug, a value no
    rule foresaw) is that record's error Problem, so the other records still convert, in this
    process or a worker.  A FHIR document (read with ``fhir=True``) is passed on as it is: it is
    validated where it is written, like every write."""
    if isinstance(record, FhirDocument):
        return record
    if isinstance(record, Skipped):
        return Converted(record.file, 0, None, (), skipped=record.reason)
    ends_file = False
    if isinstance(record, PendingRecord):
        record, ends_file = read_pending(record)
    try:
        converted = _convert(record, encode, narrative)
    except Exception as exc:  # noqa: BLE001 - the boundary of one record: nothing may escape it
        problems = [*record.problems, Problem(failure_reason(exc))]
        converted = Converted(record.file, record.record, None, tuple(
            dataclasses.replace(p, file=p.file or record.file, record=p.record or record.record) for p in problems))
    return dataclasses.replace(converted, ends_file=True) if ends_file else converted


def _convert(record: Record | RawRecord, encode: Encode | None, narrative: bool = True) -> Converted:
    record = load_record(record)
    if record.trial is None:
        return Converted(record.file, record.record, None, record.problems, record.unmapped)
    bundle = map_trial(record.trial)
    if narrative:  # every resource written has its text, unless asked for none (convert --no-narrative)
        bundle = add_bundle_narratives(bundle)
    try:
        validate_bundle(bundle)
    except ValidationFailed as exc:
        placed = tuple(Problem(reason=i.reason, field=i.field, file=record.file, record=record.record)
                       for i in exc.issues)
        return Converted(record.file, record.record, None, record.problems + placed, record.unmapped)
    if encode is not None:
        return Converted(record.file, record.record, None, record.problems, record.unmapped,
                         encoded=encode(bundle), study=bundle["entry"][0]["resource"]["id"])
    return Converted(record.file, record.record, bundle, record.problems, record.unmapped)


def convert(inputs: Iterable[str | Path], format: str | None = None, jobs: int = 1,
            unmapped: bool = True, fhir: bool = False, encode: Encode | None = None,
            narrative: bool = True) -> Iterator[Converted | FhirDocument]:
    """Convert every record of the inputs (files or folders), in order, streaming.

    The input is cut into records in this process (one pass, bounded memory); with ``jobs`` > 1
    each record is read (parsed), checked, mapped and validated in one of ``jobs`` worker
    processes, and results come back in input order. ``unmapped=False`` skips the (costly)
    listing of source fields not mapped. ``fhir=True`` passes the documents of FHIR JSON files on
    as ``FhirDocument`` (``load``). With ``encode`` (e.g. an output's ``encode``) each converted
    record carries its Bundle as those bytes (``Converted.encoded``) instead of the dict.
    ``narrative=False`` writes the resources without their generated ``text``.
    """
    return convert_records(iter_raw(inputs, format=format, unmapped=unmapped, fhir=fhir, deferred=True), jobs,
                           encode, narrative)


def convert_records(records: Iterable[Record | RawRecord | PendingRecord | Skipped | FhirDocument],
                    jobs: int = 1, encode: Encode | None = None,
                    narrative: bool = True) -> Iterator[Converted | FhirDocument]:
    """Convert records read elsewhere (``fhirstudy.ctgov`` reads them from the API), in order,
    streaming, in ``jobs`` processes as :func:`convert` does."""
    return _until_files_end(_converted(records, jobs, encode, narrative))


def _converted(records: Iterable, jobs: int, encode: Encode | None,
               narrative: bool = True) -> Iterator[Converted | FhirDocument]:
    if jobs <= 1:
        yield from (convert_record(r, encode, narrative) for r in records)
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ctx.Pool(jobs) as pool:
        # Pool.imap would read the whole input ahead; a window of chunks in flight bounds memory.
        pending: deque = deque()
        for chunk in _chunks(records, CHUNK):
            pending.append(pool.apply_async(_convert_chunk, (chunk, encode, narrative)))
            if len(pending) >= jobs * IN_FLIGHT:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def _until_files_end(results: Iterator[Converted | FhirDocument]) -> Iterator[Converted | FhirDocument]:
    """The results, less those a reader would not have reached: after a record whose reading
    ended its file (``Converted.ends_file``), the following records of that file (cut from it
    ahead of the reading) are dropped, as reading in one step would have stopped there."""
    ended: tuple[str, int] | None = None
    for item in results:
        if ended is not None:
            if isinstance(item, Converted) and item.file == ended[0] and item.record > ended[1]:
                continue
            ended = None
        if isinstance(item, Converted) and item.ends_file:
            ended = (item.file, item.record)
        yield item


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _convert_chunk(records: list[Record | RawRecord | PendingRecord | Skipped | FhirDocument],
                   encode: Encode | None = None, narrative: bool = True) -> list[Converted | FhirDocument]:
    return [convert_record(r, encode, narrative) for r in records]
