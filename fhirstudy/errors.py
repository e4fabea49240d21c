"""Errors raised by fhirstudy, one tree for every stage.

    FhirStudyError                      base of everything below
    +-- SourceError                     a record could not be read (file, record number, field)
    |   +-- FormatDetectionError        no reader recognises the input
    +-- TrialError                      a Trial failed its schema (field path -> messages)
    +-- ValidationFailed                FHIR output failed validation (list of issues)
    +-- StoreError                      the database refused or failed an operation
    +-- FhirError                       a FHIR REST problem with an HTTP status and an
        |                               OperationOutcome issue code (client mistakes are 4xx)
        +-- NotFound                    404: unknown type or id
        +-- InvalidRequest              400: bad parameter, bad body
        +-- NotAcceptable               406: a format we do not produce

Each error carries what a caller needs to report it: where it happened (``file``, ``record``,
``field``/``expression``) and why (``reason``), never a stack trace.
"""
from __future__ import annotations

from dataclasses import dataclass


class FhirStudyError(Exception):
    """Base of all fhirstudy errors."""


@dataclass
class Problem:
    """One thing wrong, with its place: a record of a file and a field of that record."""

    reason: str
    field: str | None = None
    file: str | None = None
    record: int | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.record) if p is not None)
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.reason}" if where else f"{field.strip()} {self.reason}".strip()


class SourceError(FhirStudyError):
    """A record could not be read. ``problems`` lists every problem found, each with its place."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = problems if isinstance(problems, list) else [problems]
        super().__init__("; ".join(str(p) for p in self.problems))


class FormatDetectionError(SourceError):
    """No reader recognises the input."""


class TrialError(FhirStudyError):
    """A Trial failed its schema. ``messages`` maps field paths to what is wrong with them."""

    def __init__(self, messages: dict[str, list[str]], file: str | None = None, record: int | None = None):
        self.messages = messages
        self.problems = [Problem(reason="; ".join(m), field=f, file=file, record=record)
                         for f, m in sorted(messages.items())]
        super().__init__("; ".join(str(p) for p in self.problems))


class ValidationFailed(FhirStudyError):
    """FHIR output failed validation. ``issues`` holds every issue found, not only the first."""

    def __init__(self, issues: list[Problem]):
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues))


class StoreError(FhirStudyError):
    """The database refused or failed an operation."""


class FhirError(FhirStudyError):
    """A FHIR REST problem: ``status`` is the HTTP status, ``code`` the OperationOutcome issue type,
    ``expression`` where in the request the problem is."""

    status = 500
    code = "exception"

    def __init__(self, diagnostics: str, expression: str | None = None, status: int | None = None,
                 code: str | None = None):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class NotFound(FhirError):
    status = 404
    code = "not-found"


class InvalidRequest(FhirError):
    status = 400
    code = "invalid"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"
