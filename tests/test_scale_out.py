"""Scale-out: two ``fhirstudy serve`` processes on two ports over one PostgreSQL (as on two
machines) give the same answers, before and after a write through either of them; each worker's
search cache is keyed on the database's commit-ordered write generation, so no server answers from
a cache older than the last write another one committed."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from _server_fixtures import pg_server, pg_url, sample_resources  # noqa: F401
from fhirstudy.store import open_store

pytestmark = pytest.mark.postgres
TOKEN = "scale-out-token"
WRITE = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/fhir+json"}
SEARCHES = [
    ("ResearchStudy", {"condition": "breast-cancer"}),
    ("ResearchStudy", {"_sort": "-_lastUpdated", "_count": "3"}),
    ("ResearchStudy", {"phase": "phase-2", "_include": "ResearchStudy:site"}),
    ("Location", {}),
    ("ResearchStudy", {"_id": "rs-new"}),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(db: str, log) -> tuple[subprocess.Popen, str]:
    port = _port()
    env = {**os.environ, "FHIRSTUDY_WRITE_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "fhirstudy.cli", "serve", "--port", str(port), "--db", db,
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{base}/metadata", timeout=1)
            return proc, base
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("fhirstudy serve did not start")
            time.sleep(0.1)


@pytest.fixture
def two_servers(pg_url, tmp_path):
    store = open_store(pg_url)
    store.put_many(sample_resources())
    store.close()
    started = []
    with open(tmp_path / "serve.log", "ab") as log:
        try:
            for _ in range(2):
                started.append(_serve(pg_url, log))
            yield [base for _, base in started]
        finally:
            for proc, _ in started:
                proc.terminate()
                proc.wait(30)


def _answer(base: str, resource_type: str, params: dict) -> list[tuple[str, str]]:
    """The search's matches and includes, in order (type, id, version), with the total."""
    bundle = requests.get(f"{base}/{resource_type}", params=params, timeout=10).json()
    return [bundle.get("total")] + [(e["resource"]["resourceType"], e["resource"]["id"],
                                     e["resource"]["meta"]["versionId"]) for e in bundle.get("entry", [])]


def _all(base: str) -> list:
    return [_answer(base, t, p) for t, p in SEARCHES for _ in range(2)]   # twice: the second may be cached


def test_two_servers_over_one_postgresql_answer_alike_across_writes(two_servers):
    one, two = two_servers
    assert _all(one) == _all(two)
    before = _all(one)
    study = {"resourceType": "ResearchStudy", "id": "rs-new", "status": "active", "title": "Added via one",
             "condition": [{"coding": [{"system": "https://fhirstudy.org/fhir/CodeSystem/condition",
                                        "code": "breast-cancer"}]}]}
    assert requests.put(f"{one}/ResearchStudy/rs-new", json=study, headers=WRITE, timeout=10).status_code == 201
    after_two, after_one = _all(two), _all(one)                 # the other server first: its cache is stale
    assert after_two == after_one != before
    assert ("ResearchStudy", "rs-new", "1") in after_two[1] and after_two[0][0] == before[0][0] + 1
    changed = {**study, "title": "Changed via two"}
    assert requests.put(f"{two}/ResearchStudy/rs-new", json=changed, headers=WRITE, timeout=10).status_code == 200
    assert requests.get(f"{one}/ResearchStudy/rs-new", timeout=10).json()["title"] == "Changed via two"
    assert _all(one) == _all(two)
    assert requests.delete(f"{one}/ResearchStudy/rs-new", headers=WRITE, timeout=10).status_code in (200, 204)
    assert _all(two) == _all(one) == before
