"""Errors raised by fhirstudy, one tree for every stage.

    FhirStudyError                      base of everything below
    +-- SourceError                     a record could not be read (file, record number, field)
    |   +-- FormatDetectionError        no reader recognises the input
    +-- TrialError                      a Trial failed its schema (field path -> messages)
    +-- ValidationFailed                FHIR output failed validation (list of issues)
    +-- StoreError                      the database refused or failed an operation
    |   +-- WriteConflict               a concurrent write won the race for the same rows, and
    |   |                               running the write again did not help (HTTP 409)
    |   +-- IndexOutdated               the search index was built for other search parameters:
    |   |                               run ``fhirstudy reindex`` (or a reindex is running)
    |   +-- StoreValueRejected          also InvalidRequest (400): a value the database cannot
    |   |                               take (a NUL character, an id past 64 characters, an
    |   |                               integer past 64 bits): the caller's mistake, not the store's
    |   +-- QueryTooCostly              also a FhirError (400, ``too-costly``): a search or history
    |                                   request ran past the statement time limit
    +-- FhirError                       a FHIR REST problem with an HTTP status and an
        |                               OperationOutcome issue code (client mistakes are 4xx)
        +-- InvalidRequest              400: bad parameter, bad body
        |   +-- ConfigError             a FHIRSTUDY_* setting not of its type (fhirstudy.config)
        |   +-- UnknownPlace            a ZIP code that is malformed or has no known position
        |                               (``zip_code``; fhirstudy.search.places)
        +-- Unauthorized                401: no or wrong bearer token (``headers``: WWW-Authenticate)
        +-- Forbidden                   403: the server refuses (writes disabled)
        +-- NotFound                    404: unknown type, id or version
        +-- MethodNotAllowed            405: the interaction is not offered here
        +-- NotAcceptable               406: a format we do not produce
        +-- Conflict                    409: the request contradicts the stored state
        +-- Gone                        410: the resource was deleted
        +-- PreconditionFailed          412: If-Match or a conditional operation's criteria failed
        +-- UnsupportedMediaType        415: a body that is not FHIR JSON
        +-- TooManyRequests             429: too many export jobs, or a status polled too often
                                        (``headers``: Retry-After)
        +-- BundleEntryFailed           an entry of a transaction failed: the entry's status, and
                                        ``index`` and ``cause`` (the entry's own error)
    +-- PushError                       pushing to another FHIR server failed (``url``)
        +-- TransportError              the server could not be reached or dropped the connection,
        |                               and retrying did not help (``cause``: the requests error)
        +-- RemoteError                 the server answered with an error status: ``status``,
        |   |                           ``outcome`` (its OperationOutcome, when it sent one),
        |   |                           ``response`` (the requests.Response)
        |   +-- RemoteRejected          4xx: the server refused this request (do not send it again)
        |   +-- AuthenticationFailed    no access token: the token endpoint refused the client, or
        |                               the server refused the token (401/403)
        +-- UnsupportedServer           /metadata is missing or names a FHIR version we do not send
        +-- JournalError                the push journal cannot be read or written (``path``)

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


class WriteConflict(StoreError):
    """A concurrent write changed the same resource and retrying did not get past it."""


class IndexOutdated(StoreError):
    """The search index rows were built for other search parameters (or index code) than this
    process serves, or a ``fhirstudy reindex`` is rebuilding them: searching would answer wrongly."""


class FhirError(FhirStudyError):
    """A FHIR REST problem: ``status`` is the HTTP status, ``code`` the OperationOutcome issue type,
    ``expression`` where in the request the problem is."""

    status = 500
    code = "exception"

    headers: dict[str, str] = {}

    def __init__(self, diagnostics: str, expression: str | None = None, status: int | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression
        if headers is not None:
            self.headers = headers
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


class UnknownPlace(InvalidRequest):
    """A ZIP code that is not one (five digits, or ZIP+4) or that the ZIP table does not hold;
    ``zip_code`` is the code as given."""

    def __init__(self, diagnostics: str, zip_code: str, expression: str | None = None):
        super().__init__(diagnostics, expression=expression)
        self.zip_code = zip_code


class StoreValueRejected(InvalidRequest, StoreError):
    """A value the store will not send to the database (a NUL character, an over-long id, an
    integer past 64 bits): the request's mistake, answered as 400, never as 503."""


class QueryTooCostly(FhirError, StoreError):
    """A search or history request ran past the store's statement time limit (400 ``too-costly``:
    repeating it unchanged would not help)."""

    status = 400
    code = "too-costly"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Unauthorized(FhirError):
    status = 401
    code = "login"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class TooManyRequests(FhirError):
    status = 429
    code = "throttled"


class BundleEntryFailed(FhirError):
    """Entry ``index`` of a transaction failed with ``cause``; the transaction wrote nothing."""

    def __init__(self, index: int, cause: FhirStudyError, request: str = ""):
        super().__init__(f"Transaction failed at Bundle.entry[{index}] {request}; nothing was written".replace(" ;", ";"),
                         expression=f"Bundle.entry[{index}]",
                         status=cause.status if isinstance(cause, FhirError) else None,
                         code=cause.code if isinstance(cause, FhirError) else None)
        self.index = index
        self.cause = cause


class PushError(FhirStudyError):
    """Pushing to another FHIR server failed; ``url`` is the request's URL when there was one."""

    def __init__(self, message: str, url: str | None = None):
        super().__init__(message)
        self.url = url


class TransportError(PushError):
    """The server could not be reached, timed out or dropped the connection, after the retries."""

    def __init__(self, message: str, url: str | None = None, cause: Exception | None = None):
        super().__init__(message, url)
        self.cause = cause


class RemoteError(PushError):
    """The server answered with an error status (after the retries, for 429/502/503/504)."""

    def __init__(self, message: str, url: str | None = None, status: int = 0, outcome: dict | None = None,
                 response=None):
        super().__init__(message, url)
        self.status = status
        self.outcome = outcome
        self.response = response


class RemoteRejected(RemoteError):
    """4xx: the server refused the request as it is; sending it again would not help."""


class AuthenticationFailed(RemoteError):
    """No access token: the token endpoint refused the client, or the server refused the token."""


class UnsupportedServer(PushError):
    """The server's /metadata is missing or names a FHIR version fhirstudy does not send."""


class JournalError(PushError):
    """The push journal at ``path`` cannot be read or written."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path
