"""Bulk Data export over HTTP (the Bulk Data Access IG's asynchronous pattern):

    GET|POST /$export                      kick-off: every served type
    GET|POST /ResearchStudy/$export        the studies, what they reference, their Provenance
    GET|POST /Group/{id}/$export           the same from the studies the Group lists
    GET      /$export-status/{job}         202 + X-Progress while running; 200 + the manifest
    DELETE   /$export-status/{job}         cancel (202; the status is then 404)
    GET      /$export-file/{job}/{name}    one NDJSON file (gzip when the client takes it)

A kick-off needs ``Prefer: respond-async``; its parameters (query string, or a ``Parameters``
body for POST) are read by :func:`fhirstudy.export.request.parse_kickoff`, so every mistake is a
400 OperationOutcome naming the parameter, unsupported ones too unless ``Prefer:
handling=lenient``. The job is kept in the database (:mod:`fhirstudy.export.jobs`) and run by the
export runner of whichever worker process claims it: one per process, started after the fork
(:func:`start_runner`, from gunicorn's ``post_worker_init`` or the first export request). With a
``WRITE_TOKEN`` configured, all of these routes need it and the manifest says
``requiresAccessToken: true``.

Config keys (:mod:`fhirstudy.config`): ``EXPORT_DIR``, ``EXPORT_RETENTION_SECONDS``,
``EXPORT_MAX_JOBS``, ``EXPORT_POLL_SECONDS``, ``EXPORT_STALE_SECONDS``, ``EXPORT_PAGE_PAUSE_MS``.
"""
from __future__ import annotations

import os
import tempfile
import threading
import zlib
from pathlib import Path

import orjson
from flask import Blueprint, Flask, Response, current_app, request, send_file
from werkzeug.http import http_date

from fhirstudy.errors import FhirError, InvalidRequest, NotFound, TooManyRequests
from fhirstudy.export.jobs import ACTIVE, Jobs, Runner
from fhirstudy.export.request import parameters_pairs, parse_kickoff
from fhirstudy.export.writer import write_export
from fhirstudy.server import SERVICE_EXTENSION, STORE_EXTENSION
from fhirstudy.server.auth import check_token_if_configured, token_configured
from fhirstudy.server.outcome import operation_outcome
from fhirstudy.server.routes import base_url, get_service, get_store
from fhirstudy.server.write import fhir_response, read_body

bp = Blueprint("fhir_bulk", __name__)
JOBS_EXTENSION = "fhirstudy.export_jobs"
RUNNER_EXTENSION = "fhirstudy.export_runner"
NDJSON = "application/fhir+ndjson"
DEFAULT_DIRECTORY = "fhirstudy-exports"   # under the working directory, for a database not in a file
CHUNK = 64 * 2**10                        # bytes of a file read (and compressed) at a time
_lock = threading.Lock()


def get_jobs(app: Flask | None = None) -> Jobs:
    """The export jobs of ``app`` (the current app), made on first use on the app's database."""
    app = app or current_app
    jobs = app.extensions.get(JOBS_EXTENSION)
    if jobs is None:
        with _lock:
            jobs = app.extensions.get(JOBS_EXTENSION)
            if jobs is None:
                jobs = app.extensions[JOBS_EXTENSION] = Jobs(
                    app.extensions[STORE_EXTENSION].engine, export_directory(app),
                    retention_seconds=app.config["EXPORT_RETENTION_SECONDS"], max_jobs=app.config["EXPORT_MAX_JOBS"],
                    poll_seconds=app.config["EXPORT_POLL_SECONDS"], stale_seconds=app.config["EXPORT_STALE_SECONDS"])
    return jobs


def export_directory(app: Flask) -> Path:
    """``EXPORT_DIR``, else ``<db file>.exports`` beside a SQLite file, a temporary directory for
    a database in memory, else :data:`DEFAULT_DIRECTORY` in the working directory."""
    if app.config.get("EXPORT_DIR"):
        return Path(app.config["EXPORT_DIR"])
    url = app.extensions[STORE_EXTENSION].engine.url
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            return Path(tempfile.mkdtemp(prefix="fhirstudy-exports-"))
        return Path(url.database + ".exports")
    return Path.cwd() / DEFAULT_DIRECTORY


def start_runner(app: Flask) -> Runner:
    """The export runner of ``app`` in this process, started if it is not running here yet (a
    forked worker starts its own: threads do not survive a fork)."""
    found = app.extensions.get(RUNNER_EXTENSION)
    if found is not None and found[0] == os.getpid():
        return found[1]
    jobs = get_jobs(app)
    with _lock:
        found = app.extensions.get(RUNNER_EXTENSION)
        if found is not None and found[0] == os.getpid():
            return found[1]
        store, service = app.extensions[STORE_EXTENSION], app.extensions[SERVICE_EXTENSION]

        def export(export_request, directory, progress, cancelled):
            return write_export(store, service, export_request, directory, progress=progress, cancelled=cancelled)

        runner = Runner(jobs, export, app.config["EXPORT_PAGE_PAUSE_MS"] / 1000).start()
        app.extensions[RUNNER_EXTENSION] = (os.getpid(), runner)
        return runner


def stop_runner(app: Flask) -> None:
    """Stop ``app``'s export runner in this process, if one runs (for tests and shutdown)."""
    found = app.extensions.pop(RUNNER_EXTENSION, None)
    if found is not None and found[0] == os.getpid():
        found[1].stop()


def _prefer() -> set[str]:
    """The ``Prefer`` header's preferences (``respond-async``, ``handling=lenient``), spaces removed."""
    return {item.replace(" ", "").lower() for value in request.headers.getlist("Prefer")
            for part in value.split(";") for item in part.split(",") if item.strip()}


@bp.route("/$export", methods=["GET", "POST"], defaults={"level": "system"})
@bp.route("/ResearchStudy/$export", methods=["GET", "POST"], defaults={"level": "ResearchStudy"})
@bp.route("/Group/<group_id>/$export", methods=["GET", "POST"], defaults={"level": "Group"})
def kickoff(level: str, group_id: str | None = None) -> Response:
    """Queue an export; 202 with the status URL in ``Content-Location``."""
    check_token_if_configured()
    prefer = _prefer()
    if "respond-async" not in prefer:
        raise InvalidRequest("A Bulk Data kick-off needs the header 'Prefer: respond-async'", expression="Prefer")
    pairs = list(request.args.items(multi=True))
    if request.method == "POST":
        pairs += parameters_pairs(read_body("Parameters"))
    store, base = get_store(), base_url()
    if level == "Group":
        get_service().require_served("Group")
        if store.read_entry("Group", group_id) is None:
            raise NotFound(f"Group/{group_id} is not known")
    query = request.query_string.decode("utf-8", "replace")
    url = f"{base}{request.path}" + (f"?{query}" if query and request.method == "GET" else "")
    export_request = parse_kickoff(level, pairs, store.registry.served_types, get_service(), group_id=group_id,
                                   lenient="handling=lenient" in prefer, request_url=url)
    jobs = get_jobs()
    job_id = jobs.submit(export_request, base, token_configured())
    start_runner(current_app._get_current_object()).wake()
    status_url = f"{base}/$export-status/{job_id}"
    return fhir_response(operation_outcome(f"The export is queued; poll {status_url}", "informational",
                                           severity="information"), 202, {"Content-Location": status_url})


@bp.get("/$export-status/<job_id>")
def status(job_id: str) -> Response:
    """202 with ``X-Progress`` and ``Retry-After`` while the export runs; 200 with the manifest
    and ``Expires`` once done; the failure's OperationOutcome (500) if it failed."""
    check_token_if_configured()
    jobs = get_jobs()
    start_runner(current_app._get_current_object())
    job, too_soon = jobs.poll(job_id)
    if job is None:
        raise NotFound(f"No export {job_id} (unknown, cancelled or expired)")
    retry = {"Retry-After": str(jobs.retry_after())}
    if too_soon:
        raise TooManyRequests(f"Poll this export at most every {jobs.poll_seconds} seconds", headers=retry)
    if job.status in ACTIVE:
        return Response(status=202, headers={**retry, "X-Progress": _progress(job)})
    if job.status == "failed":
        raise FhirError(job.error or "the export failed", status=500, code="exception")
    return Response(orjson.dumps(job.manifest), status=200, content_type="application/json",
                    headers={"Expires": http_date(job.expires)})


def _progress(job) -> str:
    if job.status == "queued":
        return "queued" + (f" (attempt {job.attempt + 1})" if job.attempt else "")
    if job.total:
        return f"{min(100, job.done * 100 // job.total)}% ({job.done} of {job.total} resources)"
    return f"{job.done} resources written"


@bp.delete("/$export-status/<job_id>")
def cancel(job_id: str) -> Response:
    """Cancel the export (its files are removed); 202, and its status is 404 from then on."""
    check_token_if_configured()
    if not get_jobs().cancel(job_id):
        raise NotFound(f"No export {job_id} (unknown, cancelled or expired)")
    return fhir_response(operation_outcome(f"Export {job_id} is cancelled", "informational",
                                           severity="information"), 202)


@bp.get("/$export-file/<job_id>/<name>")
def download(job_id: str, name: str) -> Response:
    """One file of a done export as ``application/fhir+ndjson``; gzip-encoded when the client's
    ``Accept-Encoding`` takes it."""
    check_token_if_configured()
    jobs = get_jobs()
    job = jobs.get(job_id)
    path = jobs.file_path(job, name) if job is not None else None
    try:
        if path is None:
            raise FileNotFoundError(name)
        if request.accept_encodings["gzip"] > 0:
            handle = open(path, "rb")
            response = Response(_gzipped(handle), status=200, mimetype=NDJSON, direct_passthrough=True)
            response.headers["Content-Encoding"] = "gzip"
        else:
            response = send_file(path, mimetype=NDJSON, conditional=True, etag=True, max_age=0)
    except FileNotFoundError:
        raise NotFound(f"No file {name} in export {job_id}") from None
    response.headers["Vary"] = "Accept-Encoding"
    return response


def _gzipped(handle):
    """The bytes of ``handle`` gzip-compressed, a chunk at a time (the file is closed at the end)."""
    with handle:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        while chunk := handle.read(CHUNK):
            out = compressor.compress(chunk)
            if out:
                yield out
        yield compressor.flush()
