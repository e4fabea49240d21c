"""Running the Flask app under gunicorn, the production WSGI server.

Worker class: gunicorn's ``gthread`` (:data:`DEFAULT_THREADS` threads per worker process), so a
client that sends its request slowly holds one thread, not a whole worker: with the default two
workers, two clients trickling headers froze the ``sync`` server; now it takes
``workers * threads`` of them (and a reverse proxy that buffers requests, see the README, takes
that away too).  A connection that has sent nothing yet does not hold a thread at all (gthread
hands it back to its poller).

gunicorn's own limits sit generously above the app's (:mod:`fhirstudy.server.boundary`), so a long
URL or header is answered by the app, with 414/431 and an OperationOutcome.  What gunicorn still
refuses itself before the app sees it (a request line or header past its limits, a lowercase
method, a malformed request line or header) is answered by :class:`OutcomeThreadWorker` with an
OperationOutcome too, instead of gunicorn's HTML page.

Each worker process starts the app's Bulk Data export runner once it is forked
(``post_worker_init``: threads do not survive a fork), so queued and abandoned exports are taken
up after a restart without waiting for a client to ask.  Then the worker freezes what the app
made when it loaded (``gc.freeze``: the registry, terminology, templates, imported modules), so
the garbage collector's full collections no longer walk it: they had added about 90 ms to one
request in every sixteen or so (a page's p99 at 100,000 studies: 137 ms against a p50 of 25).
"""
from __future__ import annotations

import gc

import orjson
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

DEFAULT_WORKERS = 2
DEFAULT_THREADS = 32              # requests one worker process serves at once
GUNICORN_REQUEST_LINE = 0         # 0: gunicorn's own ceiling (1 MiB), far above limits.MAX_URL_BYTES
GUNICORN_FIELD_SIZE = 16 * 2**10  # one header line, twice limits.MAX_HEADER_BYTES
GUNICORN_FIELDS = 200             # header lines, twice limits.MAX_HEADER_FIELDS
KEEPALIVE_SECONDS = 5             # an idle kept-alive connection is closed after this
TIMEOUT_SECONDS = 60              # a worker that stops answering its arbiter this long is restarted
_ISSUE_CODES = {400: "invalid", 403: "forbidden", 414: "too-long", 417: "not-supported", 431: "too-long",
                500: "exception", 501: "not-supported"}


def write_outcome(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error`` with the body an OperationOutcome (FHIR JSON), not HTML."""
    body = orjson.dumps({"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": _ISSUE_CODES.get(status_int, "processing"),
        "diagnostics": f"{reason}: {mesg}" if mesg else reason}]})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/fhir+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class OutcomeThreadWorker(ThreadWorker):
    """gunicorn's gthread worker whose own error responses are OperationOutcomes."""

    def init_process(self) -> None:
        """Swap gunicorn's HTML error page writer for :func:`write_outcome` in this worker process
        (``Worker.handle_error``, the one place gunicorn writes them, looks it up on each call)."""
        util.write_error = write_outcome
        super().init_process()


class _Gunicorn(BaseApplication):
    def __init__(self, app, options: dict):
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._app


def _post_worker_init(worker) -> None:
    """Start the export runner of the worker's app in the worker process, then freeze the
    objects made so far out of the garbage collector's way (they live as long as the worker)."""
    from fhirstudy.server.bulk import start_runner

    start_runner(worker.wsgi)
    gc.freeze()


def gunicorn_options(host: str, port: int, workers: int = DEFAULT_WORKERS, threads: int = DEFAULT_THREADS) -> dict:
    """The gunicorn settings ``run_gunicorn`` uses (worker class, threads, limits, timeouts)."""
    return {"bind": f"{host}:{port}", "workers": workers, "threads": threads,
            "worker_class": f"{__name__}.{OutcomeThreadWorker.__name__}",
            "limit_request_line": GUNICORN_REQUEST_LINE, "limit_request_field_size": GUNICORN_FIELD_SIZE,
            "limit_request_fields": GUNICORN_FIELDS, "keepalive": KEEPALIVE_SECONDS,
            "timeout": TIMEOUT_SECONDS, "accesslog": None, "errorlog": "-", "loglevel": "warning",
            "post_worker_init": _post_worker_init}


def run_gunicorn(app, host: str, port: int, workers: int = DEFAULT_WORKERS, threads: int = DEFAULT_THREADS) -> None:
    """Serve ``app`` with gunicorn on host:port, ``workers`` processes of ``threads`` threads, until stopped."""
    _Gunicorn(app, gunicorn_options(host, port, workers, threads)).run()
