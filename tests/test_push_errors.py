"""``fhirstudy push`` when things go wrong: nothing listening, a URL without a scheme, refused
credentials, links and redirects to another origin, servers that are not FHIR servers, bad
options. Each is one line on stderr (never a traceback, never urllib3's text) and the right exit
code; and the ids pushed resources keep where the store takes them.

Real parts: local HTTP servers (``http.server`` in a thread) that answer what each case needs
and record what they were sent, fhirstudy's own server, and the peer FHIR server.
"""
from __future__ import annotations

import http.server
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from _peer_fixtures import WRITE_TOKEN, all_trials, free_port, own_server, peer_r5, sample_inputs  # noqa: F401
from _server_fixtures import serve_in_thread
from fhirstudy import cli
from fhirstudy.push import FhirClient, Journal, SmartBackendAuth, make_session, push_trials
from fhirstudy.push.push import prepare_trial

SEEDS = str(sample_inputs()[0])
CAPABILITY = {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
              "fhirVersion": "5.0.0", "format": ["json"], "rest": [{"mode": "server"}]}
EMPTY_PAGE = {"resourceType": "Bundle", "type": "searchset", "entry": []}
URLLIB3_WORDS = ("HTTPConnectionPool", "Max retries", "urllib3", "NewConnectionError", "Traceback", "object at 0x")

Answer = tuple[int, dict, bytes]   # status, headers, body


class _QuietServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server that does not print a client's hang-up to stderr (the tests read it)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


class Recorder:
    """A local HTTP server answering with ``answer(method, path)`` (an Answer, or None to close
    the connection without answering) and recording (method, path, Authorization) of each request."""

    def __init__(self, answer: Callable[[str, str], Answer | None], host: str = "127.0.0.1", delay: float = 0.0):
        self.seen: list[tuple[str, str, str | None]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.seen.append((self.command, self.path, self.headers.get("Authorization")))
                if delay:
                    time.sleep(delay)
                reply = answer(self.command, self.path)
                if reply is None:
                    self.close_connection = True
                    return
                status, headers, body = reply
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args):
                pass

        self.server = _QuietServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://{host}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorizations(self, path_prefix: str = "") -> list[str | None]:
        """The Authorization header of each request whose path starts with ``path_prefix``."""
        return [auth for _, path, auth in self.seen if path.startswith(path_prefix)]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def fhir(body: dict, status: int = 200, **headers: str) -> Answer:
    """A FHIR JSON answer."""
    return status, {"Content-Type": "application/fhir+json", **headers}, json.dumps(body).encode()


@pytest.fixture
def recorders():
    """Make Recorder servers; each is shut down after the test."""
    made: list[Recorder] = []

    def make(answer, **kw) -> Recorder:
        made.append(Recorder(answer, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _push(argv: list[str], capsys) -> tuple[int, list[str]]:
    """Run ``fhirstudy push ARGV``; the exit code and stderr's lines (argparse's exit too)."""
    try:
        code = cli.main(["push", *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert not any(word in err for word in URLLIB3_WORDS), err
    return code, err.splitlines()


def _push_process(argv: list[str]) -> tuple[int, list[str]]:
    """Run ``fhirstudy push ARGV`` as its own process (for targets served from this process,
    whose threads may write to this process's stderr); the exit code and stderr's lines."""
    done = subprocess.run([sys.executable, "-m", "fhirstudy.cli", "push", *argv], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "FHIRSTUDY_PUSH_TOKEN": ""})
    assert not any(word in done.stderr for word in URLLIB3_WORDS), done.stderr
    return done.returncode, done.stderr.splitlines()


def _errors(lines: list[str]) -> list[str]:
    return [ln for ln in lines if "error:" in ln]


# ---------------------------------------------------------------------------------------------
# 1. nothing listening, a server that drops or stalls: one line, retries bounded


TRANSPORT_CASES = {
    # name: (answer of the local server or None for nothing listening, extra argv, expected line)
    "refused": (None, [], "cannot reach http://127.0.0.1:{port}/: connection refused (tried 3 times)"),
    "refused, 1 connect retry": (None, ["--connect-retries", "1"],
                                 "cannot reach http://127.0.0.1:{port}/: connection refused (tried 2 times)"),
    "closes without answering": (lambda m, p: None, ["--retries", "1"],
                                 "{url}/metadata: the server closed the connection without answering (tried 2 times)"),
    "stalls": ("stall", ["--retries", "0", "--timeout", "0.2"],
               "{url}/metadata: timed out waiting for the answer (tried 1 time)"),
}


@pytest.mark.parametrize("name", list(TRANSPORT_CASES))
def test_transport_failure_is_one_line(name, recorders, capsys):
    answer, extra, expected = TRANSPORT_CASES[name]
    if answer is None:
        port = free_port()   # nothing listens there
        url = f"http://127.0.0.1:{port}"
    else:
        server = (recorders(lambda m, p: fhir(CAPABILITY), delay=1.0) if answer == "stall"
                  else recorders(answer))
        url, port = server.url, server.server.server_port
    code, lines = _push([SEEDS, "-q", "--to", url + "/", *extra], capsys)
    assert code == cli.EXIT_FAILED
    assert lines == [f"error: {expected.format(port=port, url=url)}"]


def test_unknown_host_is_one_line(capsys):
    code, lines = _push([SEEDS, "-q", "--to", "http://no-such-host.invalid/fhir", "--connect-retries", "0"], capsys)
    assert code == cli.EXIT_FAILED
    assert lines == ["error: cannot reach http://no-such-host.invalid:80/: unknown host (tried 1 time)"]


# ---------------------------------------------------------------------------------------------
# 2. a URL without http:// or https://, and other bad options: usage errors (exit 2)


USAGE_CASES = [
    (["--to", "localhost:8080/fhir"], "needs http:// or https://"),
    (["--to", "ftp://example.org/fhir"], "needs http:// or https://"),
    (["--to", "http://"], "needs http:// or https://"),
    (["--to", "http://127.0.0.1:99999/fhir"], "must be from 1 to 65535"),
    (["--to", "http://127.0.0.1:8080", "--chunk", "²"], "--chunk must be a whole number"),
    (["--to", "http://127.0.0.1:8080", "--retries", "-1"], "--retries must be a whole number"),
    (["--to", "http://127.0.0.1:8080", "--timeout", "nan"], "number of seconds above 0"),
    (["--to", "http://127.0.0.1:8080", "--client-id", "c", "--private-key", "/no/such/key.pem",
      "--token-url", "http://127.0.0.1:8080/token"], "cannot read the private key '/no/such/key.pem'"),
    (["--to", "http://127.0.0.1:8080", "--client-id", "c", "--private-key", SEEDS,
      "--token-url", "http://127.0.0.1:8080/token"], "cannot read the private key"),
    (["--to", "http://127.0.0.1:8080", "--client-id", "c", "--private-key", __file__,
      "--token-url", "http://127.0.0.1:8080/token"], "is not an unencrypted PEM private key"),
    (["--to", "http://127.0.0.1:8080", "--client-id", "c", "--private-key", __file__,
      "--token-url", "127.0.0.1:8080/token"], "argument --token-url: the URL '127.0.0.1:8080/token' needs http://"),
]


@pytest.mark.parametrize("argv, says", USAGE_CASES, ids=[" ".join(a[1:]) for a, _ in USAGE_CASES])
def test_usage_errors_exit_2(argv, says, capsys):
    code, lines = _push([SEEDS, "-q", *argv], capsys)
    assert code == cli.EXIT_USAGE
    assert says in _errors(lines)[-1]


# ---------------------------------------------------------------------------------------------
# 3. refused credentials: stop at the first, say what to do, then the summary


@pytest.fixture(scope="module")
def read_only_server(tmp_path_factory):
    """fhirstudy's server with no write token: every write is refused with 403."""
    from fhirstudy.server import close_store, create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('ro') / 'ro.db'}", "TESTING": True})
    with serve_in_thread(app) as url:
        yield url
    close_store(app)


AUTH_CASES = {
    "no token": ([], 401, "no credentials were given"),
    "wrong token": (["--token", "not-the-token"], 401, "the token was refused"),
    "wrong token, 3 jobs": (["--token", "not-the-token", "-j", "3"], 401, "the token was refused"),
    "writes disabled": (["--token", "any"], 403, "the credentials were refused for this request"),
}


@pytest.mark.parametrize("name", list(AUTH_CASES))
def test_refused_credentials_stop_the_run(name, own_server, read_only_server, tmp_path):
    extra, status, advice = AUTH_CASES[name]
    own_server.wipe()
    url = read_only_server if status == 403 else own_server.url
    report = tmp_path / "report.json"
    code, lines = _push_process([*map(str, sample_inputs()), "-q", "--to", url, "--chunk", "1",
                                 "--report", str(report), *extra])
    assert code == cli.EXIT_FAILED
    errors = _errors(lines)
    assert len(errors) == 2, lines                      # the refusal, and what to do: not one per trial
    assert f" {status} " in errors[0]
    assert advice in errors[1] and "--token" in errors[1] and "FHIRSTUDY_PUSH_TOKEN" in errors[1]
    assert lines[-1].startswith(f"pushed to {url} (FHIR 5.0): created 0,") and "stopped" in lines[-1]
    data = json.loads(report.read_text())
    assert data["stopped"] and data["counts"]["failed"] == 0
    assert FhirClient(own_server.url).search("ResearchStudy", {"_count": "5"}) == []


def test_refused_at_metadata_says_what_to_do(recorders, capsys):
    """A server that wants credentials even for /metadata: the same two lines and the summary."""
    server = recorders(lambda m, p: fhir({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "login", "diagnostics": "Authentication required"}]}, 401))
    code, lines = _push([SEEDS, "-q", "--to", server.url], capsys)
    assert code == cli.EXIT_FAILED
    assert _errors(lines) == [f"error: GET {server.url}/metadata: 401 Unauthorized: Authentication required",
                              "error: stopped at the first authentication failure; no credentials were given: "
                              + cli.PUSH_AUTH_HINT]
    assert lines[-1].startswith(f"pushed to {server.url} (FHIR ?): created 0, updated 0, unchanged 0, failed 0")
    assert len(server.seen) == 1


def test_refused_by_the_token_endpoint_stops_the_run(own_server, tmp_path, recorders):
    token = recorders(lambda m, p: (401, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}'))
    key = tmp_path / "key.pem"
    key.write_bytes(_pem())
    code, lines = _push_process([SEEDS, "-q", "--to", own_server.url, "--client-id", "c", "--private-key",
                                 str(key), "--token-url", f"{token.url}/token"])
    assert code == cli.EXIT_FAILED
    errors = _errors(lines)
    assert len(errors) == 2 and "the token endpoint refused client 'c'" in errors[0]
    assert "--client-id" in errors[1] and "stopped" in lines[-1]
    assert len(token.seen) == 1


# ---------------------------------------------------------------------------------------------
# 4. credentials stay with the origin of --to


def _pem() -> bytes:
    return ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


ORIGIN_CASES = ["next link", "302", "307", "308", "same-origin redirect", "next link, 401 elsewhere",
                "302, 401 elsewhere"]


@pytest.mark.parametrize("auth_kind", ["bearer", "smart"])
@pytest.mark.parametrize("case", ORIGIN_CASES)
def test_credentials_never_leave_the_origin(case, auth_kind, recorders):
    # "other" is the same host by another name and port: another origin all the same
    other = recorders(lambda m, p: fhir({"resourceType": "OperationOutcome", "issue": []}, 401)
                      if "401" in case else fhir(EMPTY_PAGE), host="localhost")
    state: dict = {}

    def origin_answer(method: str, path: str) -> Answer:
        if path == "/token":
            return 200, {"Content-Type": "application/json"}, b'{"access_token": "secret", "expires_in": 300}'
        if path.startswith("/ResearchStudy") and case.startswith("next link"):
            return fhir({**EMPTY_PAGE, "link": [{"relation": "next", "url": f"{other.url}/ResearchStudy?page=2"}]})
        if path.startswith("/ResearchStudy") and case == "same-origin redirect":
            return 302, {"Location": f"{state['url']}/moved/ResearchStudy"}, b""
        if path.startswith("/ResearchStudy"):
            return int(case.split(",")[0]), {"Location": f"{other.url}/ResearchStudy"}, b""
        return fhir(EMPTY_PAGE)

    origin = recorders(origin_answer)
    state["url"] = origin.url
    auth = (SmartBackendAuth(f"{origin.url}/token", "c", _pem()) if auth_kind == "smart" else None)
    client = FhirClient(origin.url, token="secret" if auth is None else None, auth=auth,
                        session=make_session(retries=0))
    try:
        if "401" in case:
            with pytest.raises(Exception) as caught:
                client.search("ResearchStudy", {"title": "x"})
            assert getattr(caught.value, "status", None) == 401
        else:
            assert client.search("ResearchStudy", {"title": "x"}) == []
    finally:
        client.close()
        if auth is not None:
            auth.session.close()
    assert origin.authorizations("/ResearchStudy") == ["Bearer secret"]
    if case == "same-origin redirect":
        assert origin.authorizations("/moved/") == ["Bearer secret"] and other.seen == []
    else:
        assert other.seen and other.authorizations() == [None] * len(other.seen)


# ---------------------------------------------------------------------------------------------
# 6. servers that are not FHIR servers, a journal that cannot be used: one line each


NOT_FHIR_CASES = {
    "HTML page": ((200, {"Content-Type": "text/html"}, b"<html><body>Welcome</body></html>"),
                  "GET {url}/metadata: the answer is not JSON (text/html); is {url}/ the FHIR base URL?"),
    "JSON array": ((200, {"Content-Type": "application/json"}, b"[]"),
                   "GET {url}/metadata: the answer is JSON that is not a FHIR resource, not a CapabilityStatement; "
                   "is {url}/ the FHIR base URL?"),
    "plain JSON": ((200, {"Content-Type": "application/json"}, b'{"status": "ok"}'),
                   "GET {url}/metadata: the answer is JSON that is not a FHIR resource, not a CapabilityStatement; "
                   "is {url}/ the FHIR base URL?"),
    "another resource": (fhir({"resourceType": "Patient", "id": "p"}),
                         "GET {url}/metadata: the answer is a Patient, not a CapabilityStatement; is {url}/ the FHIR base URL?"),
    "no /metadata": (fhir({"resourceType": "OperationOutcome", "issue": []}, 404),
                     "{url}/ has no usable /metadata (404): is this the FHIR base URL?"),
    "HTML error page": ((500, {"Content-Type": "text/html"}, b"<html>\n<h1>Oops</h1>\n</html>"),
                        "GET {url}/metadata: 500 Internal Server Error: (an HTML page)"),
    "statement without rest": (fhir({"resourceType": "CapabilityStatement", "fhirVersion": "5.0.0",
                                     "rest": "nonsense"}), None),
}


@pytest.mark.parametrize("name", list(NOT_FHIR_CASES))
def test_server_that_is_not_fhir_is_one_line(name, recorders, capsys):
    reply, says = NOT_FHIR_CASES[name]
    server = recorders(lambda m, p: reply if p.startswith("/metadata") else
                       (200, {"Content-Type": "text/html"}, b"<html></html>"))
    code, lines = _push([SEEDS, "-q", "--to", server.url, "--retries", "0"], capsys)
    assert code == cli.EXIT_FAILED
    if says is None:  # metadata is fine; the first search answers HTML: each trial says so, no traceback
        assert lines and all("the answer is not JSON (text/html)" in ln for ln in _errors(lines)), lines
        return
    assert lines == [f"error: {says.format(url=server.url)}"]


def _other_schema(path, url):
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE pushed (something TEXT)")
    return "no such column: trial"


def _corrupt_row(path, url):
    from fhirstudy.pipeline import convert

    journal = Journal(path)
    first = next(c for c in convert([SEEDS]) if c.ok)
    journal.record(url + "/", first.study_id, "hash", "5.0", {}, "created")
    journal.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE pushed SET server_ids = '{not json'")
    return f"holds an entry that is not readable (trial {first.study_id!r}); remove the file to start a new journal"


JOURNAL_CASES = {
    "a folder": (lambda path, url: None, "cannot open the push journal {path}: unable to open database file"),
    "not SQLite": (lambda path, url: path.write_text("not a database\n" * 100), "cannot open the push journal {path}: "
                                                                       "file is not a database"),
    "another schema": (_other_schema, "push journal {path}: {says}"),
    "a corrupt row": (_corrupt_row, "push journal {path}: {says}"),
}


@pytest.mark.parametrize("name", list(JOURNAL_CASES))
def test_unusable_journal_is_one_line(name, own_server, tmp_path):
    make, expected = JOURNAL_CASES[name]
    path = tmp_path / "journal.sqlite"
    says = make(path, own_server.url)
    path = path.parent if name == "a folder" else path
    code, lines = _push_process([SEEDS, "-q", "--to", own_server.url, "--resume", str(path)])
    assert code == cli.EXIT_FAILED
    assert lines == ["error: " + expected.format(path=path, says=says)]


# ---------------------------------------------------------------------------------------------
# 5. ids: kept where the store takes them, picked by the store where it does not


def _nct(trial: list[dict]) -> dict | None:
    return next((i for i in trial[0].get("identifier", []) if i.get("system") == "https://clinicaltrials.gov"), None)


def test_fhirstudy_keeps_the_converted_ids(own_server, all_trials):
    own_server.wipe()
    client = FhirClient(own_server.url, token=own_server.token)
    report = push_trials(client, all_trials)
    assert report.ids_kept and report.counts["created"] == len(all_trials)
    for trial, result in zip(all_trials, report.trials, strict=True):
        assert result.server_ids == {f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{r['id']}"
                                     for r in prepare_trial(trial, "5.0").resources}
        assert client.read("ResearchStudy", trial[0]["id"])["id"] == trial[0]["id"]

    again = push_trials(client, all_trials)     # pushing again writes nothing
    assert again.counts["unchanged"] == len(all_trials)
    types = Counter(r["resourceType"] for t in all_trials for r in t)
    stored = {t: client.search(t, {"_count": "500"}) for t in types}
    assert {r["meta"]["versionId"] for v in stored.values() for r in v} == {"1"}

    # the converted bundles POSTed as they are (PUT Type/id): the same resources, no second copy
    # (a new version where push added its matching identifier, which the bundles do not carry)
    from fhirstudy.pipeline import convert

    for converted in convert(sample_inputs()):
        if converted.ok:
            client.transaction(converted.bundle)
    stored = {t: client.search(t, {"_count": "500"}) for t in types}
    assert Counter({t: len(v) for t, v in stored.items()}) == types
    assert {r["id"] for v in stored.values() for r in v} == {r["id"] for t in all_trials for r in t}
    client.close()


def test_a_store_filled_with_store_picked_ids_gets_no_second_copy(own_server, all_trials):
    own_server.wipe()
    client = FhirClient(own_server.url, token=own_server.token)
    first = push_trials(client, all_trials, client_ids=False)
    assert not first.ids_kept and first.counts["created"] == len(all_trials)
    study = first.trials[0].server_ids[f"ResearchStudy/{all_trials[0][0]['id']}"]
    assert study != f"ResearchStudy/{all_trials[0][0]['id']}"        # a uuid the store picked

    again = push_trials(client, all_trials)                          # client ids now: matched by identifier
    assert again.counts == {"created": 0, "updated": 0, "unchanged": len(all_trials), "failed": 0}
    for trial in all_trials:
        if (nct := _nct(trial)) is not None:
            assert len(client.search("ResearchStudy", {"identifier": f"{nct['system']}|{nct['value']}"})) == 1
    client.close()


@pytest.mark.parametrize("ids", ["auto", "keep"])
def test_peer_picks_the_ids_and_nothing_is_written_twice(ids, peer_r5, all_trials, capsys, tmp_path):
    """The Medplum engine refuses a conditional update carrying an id ("Cannot provide ID for create
    by update") and makes a new version on every PUT: its resources get ids it picks."""
    peer_r5.wipe()
    out = tmp_path / "r.json"
    argv = [*map(str, sample_inputs()), "-q", "--to", peer_r5.url, "--ids", ids, "--report", str(out)]
    code, _ = _push(argv, capsys)
    assert code == cli.EXIT_OK
    data = json.loads(out.read_text())
    assert data["idsKept"] is False and data["counts"]["created"] == len(all_trials)
    if ids == "auto":  # "keep" asks for client ids again, which this store would re-version
        code, _ = _push(argv, capsys)
        assert code == cli.EXIT_OK and json.loads(out.read_text())["counts"]["unchanged"] == len(all_trials)
    client = FhirClient(peer_r5.url)
    stored = client.search("ResearchStudy", {"_count": "500"})
    assert len(stored) == len(all_trials) and {r["meta"]["versionId"] for r in stored} == {"1"}
    assert all_trials[0][0]["id"] not in {r["id"] for r in stored}
    client.close()

