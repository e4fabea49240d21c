"""The one error handler: every error leaving a request becomes an OperationOutcome.

Routes raise :class:`fhirstudy.errors.FhirError` (or let werkzeug raise 404/405); this module maps
each exception to an HTTP status and an issue code and builds the body.  No route builds an error
body of its own, and no client input gets a stack trace back.
"""
from __future__ import annotations

import orjson
from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from fhirstudy.errors import FhirError, StoreError

FHIR_JSON = "application/fhir+json"
# werkzeug HTTP errors -> OperationOutcome issue codes (others: "processing")
HTTP_ISSUE_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 406: "not-supported",
                    413: "too-costly", 415: "not-supported"}


def operation_outcome(diagnostics: str, code: str, expression: str | None = None,
                      severity: str = "error") -> dict:
    """An OperationOutcome with one issue."""
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _describe(error: Exception) -> tuple[int, str, str, str | None]:
    """HTTP status, issue code, diagnostics and expression for ``error``."""
    if isinstance(error, FhirError):
        return error.status, error.code, error.diagnostics, error.expression
    if isinstance(error, HTTPException):
        status = error.code or 500
        return status, HTTP_ISSUE_CODES.get(status, "processing"), error.description or error.name, None
    if isinstance(error, StoreError):
        current_app.logger.error("store error: %s", error)
        return 503, "transient", "The database could not answer; try again later", None
    current_app.logger.exception("unexpected error")
    return 500, "exception", "Internal server error", None


def handle_error(error: Exception) -> Response:
    """Turn ``error`` into an OperationOutcome response with the matching HTTP status."""
    status, code, diagnostics, expression = _describe(error)
    body = orjson.dumps(operation_outcome(diagnostics, code, expression))
    response = Response(body, status=status, content_type=FHIR_JSON)
    if getattr(error, "valid_methods", None):  # 405 says what is allowed
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def init_app(app: Flask) -> None:
    """Register :func:`handle_error` for our errors, werkzeug HTTP errors and anything else."""
    for kind in (FhirError, HTTPException, Exception):
        app.register_error_handler(kind, handle_error)
