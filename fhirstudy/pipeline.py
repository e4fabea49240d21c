"""The conversion pipeline, one record at a time: source record -> Trial -> resources -> validation.

``convert(inputs)`` yields one ``Converted`` per source record: the validated transaction Bundle,
or the problems that stopped it. Nothing here writes files or touches a database; the CLI and the
loader consume the stream.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import Problem, ValidationFailed
from .mappers import map_trial
from .sources import Record, iter_records
from .validation import validate_bundle


@dataclass(frozen=True)
class Converted:
    """One source record's outcome: ``bundle`` when it converted, ``problems`` either way
    (warnings on success, at least one error on failure)."""

    file: str
    record: int
    bundle: dict | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return self.bundle is not None

    @property
    def study_id(self) -> str | None:
        return self.bundle["entry"][0]["resource"]["id"] if self.bundle else None


def convert_record(record: Record) -> Converted:
    """Map and validate one record read by a source."""
    if record.trial is None:
        return Converted(record.file, record.record, None, record.problems)
    bundle = map_trial(record.trial)
    try:
        validate_bundle(bundle)
    except ValidationFailed as exc:
        placed = tuple(Problem(reason=i.reason, field=i.field, file=record.file, record=record.record)
                       for i in exc.issues)
        return Converted(record.file, record.record, None, record.problems + placed)
    return Converted(record.file, record.record, bundle, record.problems)


def convert(inputs: Iterable[str | Path], format: str | None = None) -> Iterator[Converted]:
    """Convert every record of the inputs (files or folders), in order, streaming."""
    for record in iter_records(inputs, format=format):
        yield convert_record(record)
