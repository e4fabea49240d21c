"""The error boundary of one record, and the one integer reading the readers share.

A reader turns each record into ``(data, problems, unmapped)`` with one conversion function
(``ctgov_json.convert``, ``ctgov_csv.convert_row``, ``ctgov_xml.convert_study``). Decorated with
``one_record``, that function never raises: whatever goes wrong inside one record (a bug, a value
no rule foresaw) becomes that record's error, and the reader goes on with the next record.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..errors import FhirStudyError, Problem
from ..limits import parse_integer
from ..trial import MAX_COUNT as FHIR_UNSIGNED_INT_MAX

Converted = tuple[dict | None, list[Problem], list[str]]


def failure_reason(exc: BaseException, doing: str = "converting") -> str:
    """The one-line reason reported for an unexpected exception inside one record."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"internal error while {doing} this record ({type(exc).__name__}: {message}); the record is skipped"


def one_record(convert: Callable[..., Converted]) -> Callable[..., Converted]:
    """``convert`` made total: an exception inside it is that record's error Problem."""
    @functools.wraps(convert)
    def guarded(*args: Any, **kwargs: Any) -> Converted:
        try:
            return convert(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the boundary of one record: nothing may escape it
            return None, [Problem(failure_reason(exc))], []
    return guarded


def given(data: dict | None, problems: list[Problem], unmapped: list[str]) -> Converted:
    """A record already read (an error found while cutting a file into records): the ``read``
    of a reader's ``split_stream`` item that has nothing left to do."""
    return data, problems, unmapped


def whole_number(text: str, maximum: int = FHIR_UNSIGNED_INT_MAX) -> int | None:
    """``text`` as a whole number from 0 to ``maximum`` (ASCII digits only: ``str.isdigit``
    takes ``1²``, ``int`` does not), or None when it is not one."""
    try:
        return parse_integer(text, "value", maximum=maximum)
    except FhirStudyError:
        return None


def is_whole_number(text: str) -> bool:
    """True when ``text`` reads as a whole number (``whole_number``)."""
    return whole_number(text) is not None
