"""The one error handler: every error leaving a request becomes an OperationOutcome.

Routes raise :class:`fhirstudy.errors.FhirError` (or let werkzeug raise 404/405, or let
validation raise :class:`ValidationFailed`); this module maps each exception to an HTTP status, the
OperationOutcome issues and any headers (``WWW-Authenticate``, ``Allow``).  No route builds an
error body of its own, and no client input gets a stack trace back.  The bundle processor uses
:func:`describe` too, for the outcome of each failed batch entry.
"""
from __future__ import annotations

import orjson
from flask import Flask, Response, current_app
from werkzeug.exceptions import HTTPException

from fhirstudy.errors import (BundleEntryFailed, FhirError, IndexOutdated, StoreError, ValidationFailed,
                              WriteConflict)

FHIR_JSON = "application/fhir+json"
# werkzeug HTTP errors -> OperationOutcome issue codes (others: "processing")
HTTP_ISSUE_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 406: "not-supported",
                    413: "too-costly", 414: "too-long", 415: "not-supported", 431: "too-long"}
VALIDATION_STATUS = 422  # a well-formed resource that breaks FHIR rules
RETRY_AFTER_SECONDS = 5  # what a 503 (the database could not answer) asks the client to wait


def operation_outcome(diagnostics: str, code: str, expression: str | None = None,
                      severity: str = "error") -> dict:
    """An OperationOutcome with one issue."""
    issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def validation_issues(error: ValidationFailed, at: str | None = None) -> list[dict]:
    """One error issue per validation problem, with its expression (re-rooted at ``at``, e.g.
    ``Bundle.entry[2].resource``, when the resource sits inside a Bundle)."""
    issues = []
    for problem in error.issues:
        issue = {"severity": problem.severity, "code": "invalid", "diagnostics": problem.reason}
        if problem.field:
            field = problem.field
            if at:
                field = at + field[field.index("."):] if "." in field else at
            issue["expression"] = [field]
        issues.append(issue)
    return issues


def describe(error: Exception) -> tuple[int, dict, dict[str, str]]:
    """HTTP status, OperationOutcome and extra headers for ``error``."""
    status, issues, headers = _describe(error)
    return status, {"resourceType": "OperationOutcome", "issue": issues}, headers


def _describe(error: Exception) -> tuple[int, list[dict], dict[str, str]]:
    if isinstance(error, BundleEntryFailed):
        where = f"Bundle.entry[{error.index}]"
        status, issues, _ = _describe(error.cause)
        if isinstance(error.cause, ValidationFailed):
            issues = validation_issues(error.cause, f"{where}.resource")
        for issue in issues:
            issue["diagnostics"] = f"{where}: {issue['diagnostics']}"
            issue.setdefault("expression", [where])
        return status, [_issue(error.diagnostics, issues[0]["code"], error.expression), *issues], {}
    if isinstance(error, FhirError):
        return error.status, [_issue(error.diagnostics, error.code, error.expression)], dict(error.headers)
    if isinstance(error, ValidationFailed):
        return VALIDATION_STATUS, validation_issues(error), {}
    if isinstance(error, HTTPException):
        status = error.code or 500
        headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else {}
        description = error.description or error.name
        if status == 413 and current_app.config.get("MAX_BODY_BYTES"):
            description = (f"The request body is larger than this server takes "
                           f"({current_app.config['MAX_BODY_BYTES']} bytes)")
        return status, [_issue(description, HTTP_ISSUE_CODES.get(status, "processing"))], headers
    if isinstance(error, WriteConflict):
        return 409, [_issue("A concurrent write changed the same resource; try again", "conflict")], {}
    if isinstance(error, IndexOutdated):  # an operator's matter: say it, not just "try again"
        current_app.logger.error("index outdated: %s", error)
        return 503, [_issue(f"The search index is not usable now: {error}", "transient")], {
            "Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(error, StoreError):
        current_app.logger.error("store error: %s", error)
        return 503, [_issue("The database could not answer; try again later", "transient")], {
            "Retry-After": str(RETRY_AFTER_SECONDS)}
    current_app.logger.exception("unexpected error")
    return 500, [_issue("Internal server error", "exception")], {}


def _issue(diagnostics: str, code: str, expression: str | None = None) -> dict:
    return operation_outcome(diagnostics, code, expression)["issue"][0]


def handle_error(error: Exception) -> Response:
    """Turn ``error`` into an OperationOutcome response with the matching HTTP status."""
    status, body, headers = describe(error)
    response = Response(orjson.dumps(body), status=status, content_type=FHIR_JSON)
    response.headers.update(headers)
    return response


def init_app(app: Flask) -> None:
    """Register :func:`handle_error` for our errors, werkzeug HTTP errors and anything else."""
    for kind in (FhirError, HTTPException, Exception):
        app.register_error_handler(kind, handle_error)
