"""Bulk Data export over real HTTP against the real `fhirstudy serve` (gunicorn, two worker
processes), on SQLite and PostgreSQL: kick-off (GET and POST), poll, download (plain and gzip),
cancel, expiry, throttling, restart, SIGKILL mid-export, tokens; every exported resource is
compared with the store, byte for byte, and read back over HTTP."""
from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import requests

from _server_fixtures import db_url, pg_server, pg_url, sample_resources  # noqa: F401
from fhirstudy.store import open_store

FHIRSTUDY = [sys.executable, "-m", "fhirstudy.cli"]
ASYNC = {"Prefer": "respond-async"}
TOKEN = "export-token"
STARTUP_SECONDS = 30
DONE_SECONDS = 60
EXTRA = [
    {"resourceType": "Group", "id": "grp-1", "type": "person", "membership": "definitional",
     "characteristic": [{"code": {"text": "studies"}, "valueReference": {"reference": "ResearchStudy/rs-1"},
                         "exclude": False}]},
    {"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Curie"}]},
    {"resourceType": "Provenance", "id": "prov-1", "recorded": "2025-01-02T03:04:05Z",
     "target": [{"reference": "ResearchStudy/rs-1"}],
     "agent": [{"who": {"reference": "Organization/org-1"}}]},
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`fhirstudy serve` on ``url`` (a process group of its own, so that it can be killed whole)."""

    def __init__(self, db: str, export_dir: Path, **settings):
        self.db, self.export_dir = db, export_dir
        self.settings = {"EXPORT_DIR": str(export_dir), "EXPORT_POLL_SECONDS": "0", "EXPORT_STALE_SECONDS": "2",
                         **{k: str(v) for k, v in settings.items()}}
        self.proc = None
        self.base = None
        self.log: Path | None = None

    def start(self, port: int | None = None) -> "Server":
        port = port or _free_port()
        env = {**os.environ, **{f"FHIRSTUDY_{k}": v for k, v in self.settings.items()}}
        self.log = self.export_dir.parent / f"serve-{port}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*FHIRSTUDY, "serve", "--port", str(port), "--db", self.db, "--workers", "2"],
                                         stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)
        self.port, self.base = port, f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                requests.get(f"{self.base}/metadata", timeout=1)
                return self
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.kill()
                    pytest.fail(f"fhirstudy serve did not start: {self.said()}")
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop as an operator would (SIGTERM: gunicorn stops its workers)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL the server and its workers at once."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def said(self) -> str:
        """The end of what the server wrote to stderr (shown when a test fails on its answer)."""
        return self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""


@pytest.fixture
def loaded(db_url):
    """``db_url`` holding the sample resources, a Group listing rs-1, a Practitioner and a Provenance."""
    store = open_store(db_url)
    store.put_many(sample_resources() + EXTRA)
    store.close()
    return db_url


@pytest.fixture
def serve(loaded, tmp_path):
    """Start servers on the loaded database: ``serve(**settings)``; all stopped at the end."""
    started = []

    def start(port=None, **settings):
        server = Server(loaded, tmp_path / "exports", **settings).start(port)
        started.append(server)
        return server
    yield start
    for server in started:
        server.kill()


def _stored(db: str) -> dict[tuple[str, str], bytes]:
    """Every live resource of the store, by (type, id): its stored bytes."""
    store = open_store(db)
    try:
        with store.snapshot() as snapshot:
            return {(r.type, r.id): r.json for t in sorted(store.registry.served_types) for page in snapshot.pages(t)
                    for r in page}
    finally:
        store.close()


def _kickoff(server: Server, path: str, headers=None, **kwargs) -> str:
    response = requests.request(kwargs.pop("method", "GET"), server.url(path), headers={**ASYNC, **(headers or {})},
                                timeout=10, **kwargs)
    assert response.status_code == 202, (response.text, server.said())
    assert response.json()["resourceType"] == "OperationOutcome"
    return response.headers["Content-Location"]


def _wait(status_url: str, headers=None, honour_retry_after=False) -> requests.Response:
    deadline = time.monotonic() + DONE_SECONDS
    while time.monotonic() < deadline:
        response = requests.get(status_url, headers=headers, timeout=10)
        if response.status_code != 202:
            return response
        assert response.headers["X-Progress"] and int(response.headers["Retry-After"]) >= 1
        time.sleep(int(response.headers["Retry-After"]) if honour_retry_after else 0.1)
    pytest.fail(f"{status_url} did not finish")


def _files(manifest: dict, kind: str = "output", headers=None) -> dict[tuple[str, str], bytes]:
    """Every line of the manifest's ``kind`` files, by (type, id), each checked against its entry."""
    lines = {}
    for entry in manifest[kind]:
        response = requests.get(entry["url"], headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "application/fhir+ndjson"
        body = response.content.splitlines()
        assert len(body) == entry["count"] and body, entry
        for line in body:
            resource = orjson.loads(line)
            assert resource["resourceType"] == entry["type"]
            key = (entry["type"], resource.get("id", str(len(lines))))
            assert key not in lines, f"{key} exported twice"
            lines[key] = line
    return lines


def test_system_export_over_http_is_the_store(serve, loaded):
    server = serve()
    status_url = _kickoff(server, "/$export")
    assert status_url.startswith(server.url("/$export-status/"))
    done = _wait(status_url)
    assert done.status_code == 200 and done.headers["Content-Type"] == "application/json"
    assert done.headers["Expires"]
    manifest = done.json()
    assert manifest["request"] == server.url("/$export") and manifest["requiresAccessToken"] is False
    assert manifest["transactionTime"] and manifest["error"] == [] and "deleted" not in manifest
    assert len({e["type"] for e in manifest["output"]}) == len(manifest["output"])   # one type per file
    lines = _files(manifest)
    assert lines == _stored(loaded)   # every resource, each as stored
    for (rtype, rid), line in lines.items():   # and as the server reads it back
        assert requests.get(server.url(f"/{rtype}/{rid}"), timeout=10).content == line
    entry = manifest["output"][0]
    zipped = requests.get(entry["url"], headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.raw.read()) == requests.get(entry["url"], headers={"Accept-Encoding": "identity"},
                                                              timeout=10).content
    assert requests.get(server.url(status_url.rsplit("/", 1)[1].join(["/$export-file/", "/nope.ndjson"])),
                        timeout=10).status_code == 404


def test_study_and_group_exports_follow_references(serve, loaded):
    server = serve()
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_typeFilter", "valueString": "ResearchStudy?_id=rs-1"},
        {"name": "_outputFormat", "valueString": "application/ndjson"}]}
    manifest = _wait(_kickoff(server, "/ResearchStudy/$export", method="POST", json=body,
                              headers={"Content-Type": "application/fhir+json"})).json()
    assert manifest["request"] == server.url("/ResearchStudy/$export")   # a POST's parameters are not in it
    stored = _stored(loaded)
    expected = {("ResearchStudy", "rs-1"), ("EvidenceVariable", "ev-1"), ("Location", "loc-1"),
                ("PlanDefinition", "pd-1"), ("Provenance", "prov-1")}
    assert _files(manifest) == {key: stored[key] for key in expected}
    group = _wait(_kickoff(server, "/Group/grp-1/$export?_type=ResearchStudy,Location")).json()
    assert set(_files(group)) == {("ResearchStudy", "rs-1"), ("Location", "loc-1")}
    missing = requests.get(server.url("/Group/nope/$export"), headers=ASYNC, timeout=10)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


KICKOFF_MISTAKES = [   # path, Prefer, the expression the OperationOutcome names
    ("/$export", None, "Prefer"),
    ("/$export?_type=Patient", ASYNC, "_type"),
    ("/ResearchStudy/$export?_type=CodeSystem", ASYNC, "_type"),
    ("/$export?patient=Patient/1", ASYNC, "patient"),
    ("/$export?_typeQuery=x", ASYNC, "_typeQuery"),
    ("/$export?_outputFormat=text/csv", ASYNC, "_outputFormat"),
    ("/$export?_since=2025-01-02", ASYNC, "_since"),
    ("/$export?_since=2025-01-02T00:00:00Z&_since=2025-01-03T00:00:00Z", ASYNC, "_since"),
    ("/$export?_since=2025-02-01T00:00:00Z&_until=2025-01-01T00:00:00Z", ASYNC, "_since"),
    ("/$export?_typeFilter=ResearchStudy%3Fnope%3D1", ASYNC, "_typeFilter"),
    ("/$export?_typeFilter=ResearchStudy%3Fstatus%3Dactive%26_sort%3Dtitle", ASYNC, "_typeFilter"),
    ("/$export?_typeFilter=status%3Dactive", ASYNC, "_typeFilter"),
    ("/$export?_type=Location&_typeFilter=ResearchStudy%3Fstatus%3Dactive", ASYNC, "_typeFilter"),
    ("/$export?_elements=ResearchStudy.status.code", ASYNC, "_elements"),
    ("/$export?includeAssociatedData=_customProvenance", ASYNC, "includeAssociatedData"),
]


def test_kickoff_mistakes_are_400_outcomes_naming_the_parameter(serve):
    server = serve()
    for path, prefer, expression in KICKOFF_MISTAKES:
        response = requests.get(server.url(path), headers=prefer or {}, timeout=10)
        assert response.status_code == 400, (path, response.text)
        issue = response.json()["issue"][0]
        assert issue["expression"] == [expression], (path, issue)
    posted = requests.post(server.url("/$export"), headers={**ASYNC, "Content-Type": "application/fhir+json"},
                           data=json.dumps({"resourceType": "Bundle"}), timeout=10)
    assert posted.status_code == 400 and posted.json()["resourceType"] == "OperationOutcome"
    bad = {"resourceType": "Parameters", "parameter": [{"name": "_type"}]}
    posted = requests.post(server.url("/$export"), headers=ASYNC, json=bad, timeout=10)
    assert posted.status_code == 400 and posted.json()["issue"][0]["expression"] == ["Parameters.parameter[0]"]


def test_lenient_kickoff_ignores_what_it_does_not_support_and_says_so(serve, loaded):
    server = serve()
    manifest = _wait(_kickoff(server, "/$export?_type=Location,Patient&patient=Patient/1",
                              headers={"Prefer": "respond-async, handling=lenient"})).json()
    assert set(_files(manifest)) == {("Location", "loc-1"), ("Location", "loc-2")}
    warnings = [orjson.loads(line) for line in _files(manifest, "error").values()]
    said = " ".join(i["diagnostics"] for outcome in warnings for i in outcome["issue"])
    assert "'patient'" in said and "'Patient'" in said


def test_since_until_and_deleted(serve, loaded):
    store = open_store(loaded)
    before = store.read_entry("Location", "loc-1").last_updated
    time.sleep(0.01)
    store.update({**orjson.loads(store.read("Location", "loc-2")), "name": "Mayo Clinic Rochester"})
    store.delete("PlanDefinition", "pd-2")
    store.close()
    server = serve()
    manifest = _wait(_kickoff(server, f"/$export?_since={before}")).json()
    assert set(_files(manifest)) == {("Location", "loc-2")}
    deleted = [orjson.loads(line) for line in _files(manifest, "deleted").values()]
    assert [b["entry"][0]["request"] for b in deleted] == [{"method": "DELETE", "url": "PlanDefinition/pd-2"}]
    assert manifest["deleted"][0]["type"] == "Bundle"
    old = _wait(_kickoff(server, f"/$export?_until={before}&_type=Location")).json()
    assert set(_files(old)) == {("Location", "loc-1")}


def test_cancel_removes_the_job_and_its_files(serve):
    server = serve(EXPORT_PAGE_PAUSE_MS=400)
    status_url = _kickoff(server, "/$export")
    job = status_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + DONE_SECONDS
    while not any((server.export_dir / job).glob("*/*.ndjson")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert requests.delete(status_url, timeout=10).status_code == 202
    assert requests.get(status_url, timeout=10).status_code == 404
    assert requests.delete(status_url, timeout=10).status_code == 404
    while (server.export_dir / job).exists():
        assert time.monotonic() < deadline, "the cancelled job's files are still there"
        time.sleep(0.1)


def test_polling_too_often_and_too_many_jobs_get_429(serve):
    server = serve(EXPORT_PAGE_PAUSE_MS=300, EXPORT_POLL_SECONDS=1, EXPORT_MAX_JOBS=2)
    first = _kickoff(server, "/$export")
    assert requests.get(first, timeout=10).status_code == 202
    again = requests.get(first, timeout=10)
    assert again.status_code == 429 and again.headers["Retry-After"] == "1"
    assert again.json()["issue"][0]["code"] == "throttled"
    second = _kickoff(server, "/$export?_type=Location")
    refused = requests.get(server.url("/$export"), headers=ASYNC, timeout=10)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    time.sleep(int(again.headers["Retry-After"]))
    assert _wait(first, honour_retry_after=True).status_code == 200
    assert _wait(second, honour_retry_after=True).status_code == 200
    _kickoff(server, "/$export?_type=Group")   # room again


def test_expired_exports_are_gone_with_their_files(serve):
    server = serve(EXPORT_RETENTION_SECONDS=1)
    status_url = _kickoff(server, "/$export?_type=Location")
    manifest = _wait(status_url).json()
    job = status_url.rsplit("/", 1)[1]
    assert (server.export_dir / job).is_dir()
    time.sleep(1.1)
    assert requests.get(status_url, timeout=10).status_code == 404
    assert requests.get(manifest["output"][0]["url"], timeout=10).status_code == 404
    deadline = time.monotonic() + 10
    while (server.export_dir / job).exists():
        assert time.monotonic() < deadline, "the expired job's files are still there"
        time.sleep(0.1)


def test_a_job_survives_a_restart(serve, loaded):
    server = serve(EXPORT_PAGE_PAUSE_MS=300)
    status_url = _kickoff(server, "/$export")
    job = status_url.rsplit("/", 1)[1]
    assert requests.get(status_url, timeout=10).status_code == 202
    server.stop()
    serve(port=server.port, EXPORT_PAGE_PAUSE_MS=0)   # the same server started again
    manifest = _wait(status_url).json()
    assert _files(manifest) == _stored(loaded)
    assert all(f"/$export-file/{job}/" in e["url"] for e in manifest["output"])


def test_a_worker_killed_mid_export_is_run_again_and_only_complete_files_are_published(serve, loaded):
    server = serve(EXPORT_PAGE_PAUSE_MS=400)
    status_url = _kickoff(server, "/$export")
    job = status_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + DONE_SECONDS
    while not any((server.export_dir / job).glob("1/*.ndjson")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.kill()
    half = sorted(p.name for p in (server.export_dir / job / "1").iterdir())
    serve(port=server.port)
    manifest = _wait(status_url).json()
    assert not (server.export_dir / job / "1").exists()   # the killed attempt's half files are gone
    assert sorted(p.name for p in (server.export_dir / job).iterdir()) == ["2"]
    assert half and set(half) <= {e["url"].rsplit("/", 1)[1] for e in manifest["output"]}
    assert _files(manifest) == _stored(loaded)


def test_with_a_token_exports_need_it(serve):
    server = serve(WRITE_TOKEN=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    refused = requests.get(server.url("/$export"), headers=ASYNC, timeout=10)
    assert refused.status_code == 401 and refused.json()["resourceType"] == "OperationOutcome"
    wrong = requests.get(server.url("/$export"), headers={**ASYNC, "Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    status_url = _kickoff(server, "/$export?_type=Organization", headers=auth)
    assert requests.get(status_url, timeout=10).status_code == 401
    manifest = _wait(status_url, headers=auth).json()
    assert manifest["requiresAccessToken"] is True
    assert requests.get(manifest["output"][0]["url"], timeout=10).status_code == 401
    assert set(_files(manifest, headers=auth)) == {("Organization", "org-1")}
    assert requests.delete(status_url, timeout=10).status_code == 401
    assert requests.delete(status_url, headers=auth, timeout=10).status_code == 202


def test_the_capability_statement_says_bulk_data(serve):
    server = serve()
    statement = requests.get(server.url("/metadata"), timeout=10).json()
    assert statement["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    rest = statement["rest"][0]
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}.items() \
        <= rest["operation"][0].items()
    by_type = {r["type"]: {o["definition"] for o in r["operation"] if o["name"] == "export"} for r in rest["resource"]}
    assert by_type["Group"] == {"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}
    (study,) = by_type["ResearchStudy"]
    definition = requests.get(server.url("/OperationDefinition/ResearchStudy-export"), timeout=10).json()
    assert definition["url"] == study and definition["code"] == "export"
