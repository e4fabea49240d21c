"""Property-based fuzzing (Hypothesis) of the running app over real HTTP, loaded with the seeds.

Requests come from :mod:`_fuzz_strategies`, generated from the registry and the loaded data:
searches of every served parameter with modifiers and prefixes, any method on any path, writes of
mutated resources, batch and transaction Bundles, each with and without the write token.  Every
answer must hold these properties:

- the status is below 500, and no body carries a traceback;
- every 4xx/5xx body is a JSON OperationOutcome whose issues all have a severity and a code (a
  request that asks for HTML gets it as a page, fhirstudy.pages, saying what went wrong);
  so is the outcome of every failed entry of a batch-response, whose status is below 500 too;
- a refused request (4xx) leaves the store as it was (write generation and history count);
- a request without the write token never changes the store, whatever it asks.

Beside the random search, :func:`test_edge_sweep` sends every edge value (dates, integers,
cursors, Bundle request fields) once in every place the registry and the routes take one.

Budget: ``FHIRSTUDY_FUZZ_EXAMPLES`` examples per property (default :data:`DEFAULT_EXAMPLES`,
derandomized so CI is repeatable), on SQLite and PostgreSQL.  ``make fuzz`` sets it high: the run
is random then, and shrinks failures to minimal examples.  Hypothesis keeps no database (``database=None``) and puts its caches under
``.pytest_cache/``: nothing lands in the repo.
"""
from __future__ import annotations

import http.client
import logging
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from _fuzz_strategies import (TOKEN, WRITE_METHODS, Corpus, Request, any_requests, bundle_requests,
                              edge_sweep, search_requests, write_requests)
from _server_fixtures import pg_server, serve_in_thread  # noqa: F401
from fhirstudy.loader import load_reference_resources, store_bundle
from fhirstudy.search import load_registry
from fhirstudy.server import STORE_EXTENSION, close_store, create_app

# Hypothesis keeps no example database here, and its caches go under the ignored .pytest_cache/
set_hypothesis_home_dir(Path(__file__).resolve().parent.parent / ".pytest_cache" / "hypothesis")
DEFAULT_EXAMPLES = 150
SWEEP_FAMILIES = ("dates", "numbers", "integers", "bundle fields", "cursors")
SHOWN_FAILURES = 12  # of a sweep, in its message
EXAMPLES = int(os.environ.get("FHIRSTUDY_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
LONG = "FHIRSTUDY_FUZZ_EXAMPLES" in os.environ
TIMEOUT_SECONDS = 60  # for one request; a hang is a failure too
# The short run reports the first failing request as found: shrinking one over real HTTP can take
# Hypothesis's five minutes per failure.  The long run shrinks, to report minimal examples.
PHASES = tuple(Phase) if LONG else (Phase.explicit, Phase.reuse, Phase.generate)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None, print_blob=LONG,
                phases=PHASES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.filter_too_much])

pytestmark = pytest.mark.fuzz


class Target:
    """The app under test: its base URL, its store, what it logged, and one HTTP connection."""

    def __init__(self, url: str, app, corpus: Corpus, log: list[logging.LogRecord]):
        self.url, self.app, self.corpus, self.log = url, app, corpus, log
        self.store = app.extensions[STORE_EXTENSION]
        self._connection: http.client.HTTPConnection | None = None

    def state(self) -> tuple[int, int]:
        """What a write changes: the write generation and the number of versions."""
        return self.store.generation(), self.store.history(count=0).total

    def send(self, request: Request, retry: bool = True) -> tuple[int, dict[str, str], bytes]:
        """Send ``request`` as it is (target, headers and body unchanged): status, headers, body.
        A server may answer (413, say) before reading the whole body: its answer still counts."""
        reused = self._connection is not None
        if self._connection is None:
            self._connection = http.client.HTTPConnection(urlsplit(self.url).netloc, timeout=TIMEOUT_SECONDS)
        connection = self._connection
        connection.putrequest(request.method, request.target, skip_accept_encoding=True)
        for name, value in request.headers:
            connection.putheader(name, value.encode("utf-8"))
        if request.body is not None:
            connection.putheader("Content-Length", str(len(request.body)))
        try:
            connection.endheaders(request.body)
        except ConnectionError:
            pass  # the server stopped reading: read what it answered
        try:
            response = connection.getresponse()
            body = response.read()
        except (ConnectionError, http.client.HTTPException) as exc:
            self.close()
            if reused and retry:  # a kept-alive connection the server had closed
                return self.send(request, retry=False)
            raise AssertionError(f"the server closed the connection without an answer ({exc!r})") from None
        if response.will_close:
            self.close()
        return response.status, dict(response.getheaders()), body

    def close(self) -> None:
        """Close the HTTP connection (a new one opens on the next request)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _Collect(logging.Handler):
    def __init__(self, records: list):
        super().__init__(logging.ERROR)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _database(kind: str, request, tmp_path_factory) -> tuple[str, object]:
    """A fresh database URL of ``kind`` and a callable that drops it."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}", lambda: None
    import psycopg

    admin = request.getfixturevalue("pg_server").get_uri()
    name = "fhirstudy_fuzz_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    return admin.replace("/postgres?", f"/{name}?"), drop


@pytest.fixture(scope="module", params=[
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
])
def target(request, tmp_path_factory, seed_conversions):
    """The app with writes enabled, loaded with the converted seeds, served over real HTTP."""
    url, drop = _database(request.param, request, tmp_path_factory)
    app = create_app({"DATABASE_URL": url, "WRITE_TOKEN": TOKEN})
    store = app.extensions[STORE_EXTENSION]
    load_reference_resources(store)
    bundles = [c.bundle for c in seed_conversions.values() if c.ok]
    for bundle in bundles:
        store_bundle(store, bundle)
    resources = [e["resource"] for b in bundles for e in b["entry"]]
    log: list[logging.LogRecord] = []
    handler = _Collect(log)
    app.logger.addHandler(handler)
    quiet = logging.getLogger("werkzeug")  # one access-log line per request would drown the report
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    with serve_in_thread(app) as base:
        fuzzed = Target(base, app, Corpus.build(load_registry(), resources), log)
        yield fuzzed
        fuzzed.close()
    quiet.setLevel(level)
    app.logger.removeHandler(handler)
    close_store(app)
    drop()


def check(target: Target, request: Request) -> None:
    """Send ``request`` and assert every property of the answer (see the module docstring)."""
    before, logged = target.state(), len(target.log)
    status, headers, body = target.send(request)
    after = target.state()
    where = f"\n{request.curl(target.url)}\n-> {status} {body[:600]!r}"
    for record in target.log[logged:]:
        where += f"\nserver logged: {record.getMessage()}\n{logging.Formatter().formatException(record.exc_info) if record.exc_info else ''}"
    assert status < 500, f"server error{where}"
    assert b"Traceback (most recent call last)" not in body, f"a traceback in the body{where}"
    page = {k.lower(): v for k, v in headers.items()}.get("content-type", "").startswith("text/html")
    if status >= 400 and request.method != "HEAD" and page:   # asked for HTML: the outcome as a page
        assert b'role="alert"' in body, f"an error page that does not say what went wrong{where}"
    elif status >= 400 and request.method != "HEAD":
        _assert_outcome(body, where)
    if status >= 400:
        assert after == before, f"a refused request changed the store {before} -> {after}{where}"
    if not request.authorized:
        assert after == before, f"a request without the write token changed the store {before} -> {after}{where}"
    if status == 200 and request.method == "POST" and request.target == "/" and request.authorized:
        _assert_batch_entries(body, where)


def _assert_outcome(body: bytes, where: str) -> None:
    try:
        outcome = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AssertionError(f"an error whose body is not JSON{where}") from None
    assert isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome", \
        f"an error whose body is not an OperationOutcome{where}"
    issues = outcome.get("issue")
    assert isinstance(issues, list) and issues, f"an OperationOutcome without issues{where}"
    assert all(isinstance(i, dict) and i.get("severity") and i.get("code") for i in issues), \
        f"an issue without severity or code{where}"


def _assert_batch_entries(body: bytes, where: str) -> None:
    bundle = orjson.loads(body)
    for n, entry in enumerate(bundle.get("entry", [])):
        status = entry["response"]["status"]
        assert int(status.split()[0]) < 500, f"entry {n} answered {status}{where}"
        if int(status.split()[0]) >= 400:
            _assert_outcome(orjson.dumps(entry["response"].get("outcome")), f" (entry {n}){where}")


@FUZZ
@given(data=st.data())
def test_searches(target, data):
    """Searches with every served parameter, modifier, prefix and result parameter of the registry."""
    check(target, data.draw(search_requests(target.corpus), label="request"))


@FUZZ
@given(data=st.data())
def test_any_request(target, data):
    """Any method on any path, with any headers, query string and body, with or without the token."""
    check(target, data.draw(any_requests(target.corpus), label="request"))


@FUZZ
@given(data=st.data())
def test_writes(target, data):
    """Create, update, delete and the conditional ones, of mutated resources from the data."""
    request = data.draw(write_requests(target.corpus), label="request")
    assert request.method in WRITE_METHODS
    check(target, request)


@FUZZ
@given(data=st.data())
def test_bundles(target, data):
    """Batch and transaction Bundles whose entries' request fields have wrong JSON types."""
    check(target, data.draw(bundle_requests(target.corpus), label="request"))


@pytest.mark.parametrize("family", SWEEP_FAMILIES)
def test_edge_sweep(target, family):
    """Every edge value in every place that takes one (from :func:`edge_sweep`), each request once;
    the message lists every request that broke a property, not only the first."""
    requests = edge_sweep(target.corpus)[family]
    assert requests, f"no {family} in the registry and data"
    failures = []
    for request in requests:
        try:
            check(target, request)
        except AssertionError as exc:
            failures.append(str(exc).split("\nserver logged")[0][:1500])
    if failures:  # pytest.fail: the assertion rewriter would print the whole list again
        pytest.fail(f"{len(failures)} of {len(requests)} {family} requests failed:\n\n"
                    + "\n\n".join(failures[:SHOWN_FAILURES]), pytrace=False)


def test_the_store_probe_sees_a_write(target):
    """The probe behind "unchanged" moves with a write that succeeds, and not with a refused one
    (else the properties above could not fail)."""
    study = dict(next(r for r in target.corpus.resources if r["resourceType"] == "ResearchStudy"))
    study["title"] = f"{study.get('title', '')} (probe {uuid.uuid4().hex[:8]})"
    put = Request("PUT", f"/ResearchStudy/{study['id']}", (("Content-Type", "application/fhir+json"),),
                  orjson.dumps(study))
    before = target.state()
    assert target.send(put)[0] == 401 and target.state() == before
    status = target.send(Request(put.method, put.target, put.headers + (("Authorization", f"Bearer {TOKEN}"),),
                                 put.body))[0]
    assert status in (200, 201) and target.state() != before  # 201: a fuzzed DELETE removed it
