"""Pushing into real FHIR stores: the peer in R4 and R5 mode, and fhirstudy's own server.

Each test empties its target first; the peers are started once per session.
"""
from __future__ import annotations

import copy
import http.server
import json
import threading
import time
from collections import Counter
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from _peer_fixtures import WRITE_TOKEN, all_trials, free_port, own_server, peer_r4, peer_r5, sample_inputs  # noqa: F401
from fhirstudy import cli
from fhirstudy.errors import AuthenticationFailed
from fhirstudy.push import FhirClient, Journal, SmartBackendAuth, install_search_parameters, push_trials
from fhirstudy.push.push import prepare_trial, same_content

TARGETS = ["peer-r4", "peer-r5", "fhirstudy"]
FIXTURE = {"peer-r4": "peer_r4", "peer-r5": "peer_r5", "fhirstudy": "own_server"}


@pytest.fixture(params=TARGETS)
def target(request):
    """Each target, emptied."""
    t = request.getfixturevalue(FIXTURE[request.param])
    t.wipe()
    return t


@pytest.fixture
def client(target):
    c = FhirClient(target.url, token=target.token)
    yield c
    c.close()


def _everything(client: FhirClient, types) -> dict[str, list[dict]]:
    return {t: client.search(t, {"_count": "500"}) for t in types}


def _expected(trials, version) -> tuple[list, Counter]:
    prepared = [prepare_trial(t, version) for t in trials]
    return prepared, Counter(r["resourceType"] for p in prepared for r in p.resources)


def _resolved(resource: dict, server_ids: dict[str, str]) -> dict:
    """Our resource as the store should hold it: server ids in place of ours."""
    text = json.dumps({**resource, "id": server_ids[f"{resource['resourceType']}/{resource['id']}"].split("/")[1]})
    for ours, theirs in server_ids.items():
        text = text.replace(f'"{ours}"', f'"{theirs}"')
    return json.loads(text)


def test_version_detected(client, target):
    assert client.fhir_version() == target.fhir_version


def test_push_read_back_and_push_again(client, target, all_trials):
    prepared, per_type = _expected(all_trials, target.fhir_version)
    report = push_trials(client, all_trials)
    assert report.counts == {"created": len(all_trials), "updated": 0, "unchanged": 0, "failed": 0}
    assert report.resources["created"] == sum(per_type.values())

    # read back: every resource, by identifier, equal to the source (ids and references aside)
    stored = _everything(client, per_type)
    assert Counter({t: len(v) for t, v in stored.items()}) == per_type
    by_trial = {t.trial: t.server_ids for t in report.trials}
    for trial in prepared:
        study = trial.resources[0]
        ident = next(i for i in study["identifier"] if i.get("system"))
        found = client.search("ResearchStudy", {"identifier": f"{ident['system']}|{ident['value']}"})
        assert len(found) == 1
        assert same_content(found[0], _resolved(study, by_trial[trial.id]))
        for r in trial.resources[1:]:
            sid = by_trial[trial.id][f"{r['resourceType']}/{r['id']}"].split("/")[1]
            match = next(x for x in stored[r["resourceType"]] if x["id"] == sid)
            assert same_content(match, _resolved(r, by_trial[trial.id])), r["id"]

    # by condition (R4 needs the back-ported SearchParameter)
    if target.fhir_version == "4.0":
        assert install_search_parameters(client) != []
        assert install_search_parameters(client) == []  # once
    coded = next((t, c) for t in prepared for c in t.resources[0].get("condition", []) if c.get("coding"))
    coding = coded[1]["coding"][0]
    hits = client.search("ResearchStudy", {"condition": f"{coding['system']}|{coding['code']}"})
    assert by_trial[coded[0].id][f"ResearchStudy/{coded[0].id}"] in {f"ResearchStudy/{h['id']}" for h in hits}

    # again, with no journal: the first push's conditional creates meet what is there and write
    # nothing (one transaction per chunk), then the store is asked: nothing duplicated or re-versioned
    again = push_trials(client, all_trials)
    assert again.counts["unchanged"] == len(all_trials) and again.transactions == 2  # 23 trials, 20 a chunk
    after = _everything(client, per_type)
    assert Counter({t: len(v) for t, v in after.items()}) == per_type
    assert {r["meta"]["versionId"] for rs in after.values() for r in rs} == {"1"}


def test_journal_skips_unchanged_and_sends_changes(client, target, all_trials, tmp_path):
    journal = Journal(tmp_path / "push.sqlite")
    first = push_trials(client, all_trials, journal=journal)
    assert first.counts["created"] == len(all_trials)
    changed = copy.deepcopy(all_trials)
    changed[0][0]["title"] += " (amended)"
    second = push_trials(client, changed, journal=journal)
    assert second.counts == {"created": 0, "updated": 1, "unchanged": len(all_trials) - 1, "failed": 0}
    assert second.transactions == 1
    assert sum(t.from_journal for t in second.trials) == len(all_trials) - 1
    study_id = second.trials[[t.trial for t in second.trials].index(changed[0][0]["id"])].server_ids
    rtype, rid = study_id[f"ResearchStudy/{changed[0][0]['id']}"].split("/")
    stored = client.read(rtype, rid)
    assert stored["title"].endswith("(amended)") and stored["meta"]["versionId"] == "2"
    journal.close()


def test_interrupted_push_resumes(client, target, all_trials, tmp_path):
    path = tmp_path / "push.sqlite"
    sent: list[str] = []

    def crash_after_two_chunks(results):
        sent.extend(r.trial for r in results)
        if len(sent) >= 6:
            raise KeyboardInterrupt("killed")

    journal = Journal(path)
    with pytest.raises(KeyboardInterrupt):
        push_trials(client, all_trials, journal=journal, chunk_trials=3, after_chunk=crash_after_two_chunks)
    journal.close()
    assert 0 < len(sent) < len(all_trials)
    journal = Journal(path)
    resumed = push_trials(client, all_trials, journal=journal)
    journal.close()
    assert {t.trial for t in resumed.trials if t.from_journal} == set(sent)
    assert resumed.counts["created"] == len(all_trials) - len(sent) and resumed.counts["failed"] == 0
    _, per_type = _expected(all_trials, target.fhir_version)
    stored = _everything(client, per_type)
    assert Counter({t: len(v) for t, v in stored.items()}) == per_type


def test_rejected_trial_is_reported_and_the_run_goes_on(client, target, all_trials):
    bad = copy.deepcopy(all_trials[1])
    sid = bad[0]["id"]  # a Location whose status is not in the required value set, in R4 and R5
    bad.insert(1, {"resourceType": "Location", "id": f"{sid}-site-99", "status": "not-a-status", "name": "X"})
    trials = [all_trials[0], bad, *all_trials[2:5]]
    report = push_trials(client, trials)
    failed = [t for t in report.trials if t.outcome == "failed"]
    assert [t.trial for t in failed] == [bad[0]["id"]]
    assert failed[0].status and 400 <= failed[0].status < 500
    assert failed[0].operation_outcome["resourceType"] == "OperationOutcome"
    assert report.counts["created"] == 4


def test_dry_run_writes_nothing(client, target, all_trials):
    report = push_trials(client, all_trials[:4], dry_run=True)
    assert report.counts["created"] == 4 and report.transactions == 0
    assert client.search("ResearchStudy", {"_count": "50"}) == []


def test_cli_push_report_and_exit_code(target, tmp_path, capsys):
    report = tmp_path / "report.json"
    argv = ["push", *map(str, sample_inputs()), "-q", "--to", target.url, "--report", str(report),
            "--resume", str(tmp_path / "journal.sqlite")]
    if target.token:
        argv += ["--token", target.token]
    if target.fhir_version == "4.0":
        argv.append("--install-search-parameters")
    assert cli.main(argv) == 0
    data = json.loads(report.read_text())
    assert data["counts"]["failed"] == 0 and data["counts"]["created"] >= 10
    assert data["fhirVersion"] == target.fhir_version
    assert "created" in capsys.readouterr().err
    assert cli.main(argv) == 0
    assert json.loads(report.read_text())["counts"]["created"] == 0


def test_cli_push_from_db(own_server, peer_r5, tmp_path):
    """What fhirstudy's store holds goes to another server, grouped back into trials."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert cli.main(["load", str(sample_inputs()[0]), "--db", db, "-q"]) == 0
    peer_r5.wipe()
    out = tmp_path / "r.json"
    assert cli.main(["push", "--from-db", "--db", db, "--to", peer_r5.url, "--report", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["counts"]["created"] == len(list(sample_inputs()[0].glob("*.txt")))
    assert all(t["resources"]["created"] > 1 for t in data["trials"])


# ---------------------------------------------------------------------------------------------
# SMART Backend Services against a local token endpoint


def _token_endpoint(public_key, token: str, issued: list, expires_in: int = 3600):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            url = f"http://127.0.0.1:{self.server.server_port}/token"
            try:
                assert form["grant_type"] == "client_credentials"
                assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                claims = jwt.decode(form["client_assertion"], public_key, algorithms=["RS384", "ES384"],
                                    audience=url, options={"require": ["exp", "iss", "sub", "jti"]})
                assert claims["iss"] == claims["sub"] == "fhirstudy-test"
                issued.append((jwt.get_unverified_header(form["client_assertion"])["alg"], form["scope"]))
                body, status = {"access_token": token, "token_type": "bearer", "expires_in": expires_in,
                                "scope": form["scope"]}, 200
            except Exception as exc:  # noqa: BLE001 - any problem is the client's: 401
                body, status = {"error": "invalid_client", "error_description": str(exc)}, 401
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


KEYS = {"RS384": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES384": lambda: ec.generate_private_key(ec.SECP384R1())}


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_smart_backend_services(alg, own_server, all_trials, tmp_path):
    key = KEYS[alg]()
    issued: list = []
    endpoint = _token_endpoint(key.public_key(), WRITE_TOKEN, issued)
    token_url = f"http://127.0.0.1:{endpoint.server_port}/token"
    try:
        own_server.wipe()
        pem = tmp_path / "key.pem"
        pem.write_bytes(_pem(key))
        auth = SmartBackendAuth(token_url, "fhirstudy-test", pem)
        client = FhirClient(own_server.url, auth=auth)
        report = push_trials(client, all_trials[:5])
        assert report.counts["created"] == 5
        assert auth.tokens_fetched == 1 and issued == [(alg, "system/*.write")]  # cached across requests
        client.close()
        auth.session.close()

        wrong = SmartBackendAuth(token_url, "fhirstudy-test", _pem(KEYS[alg]()))
        with pytest.raises(AuthenticationFailed):
            wrong.token()
        wrong.session.close()
    finally:
        endpoint.shutdown()
        endpoint.server_close()


def test_smart_token_renewed_when_expired():
    key = KEYS["ES384"]()
    issued: list = []
    endpoint = _token_endpoint(key.public_key(), "t", issued, expires_in=31)  # renewed 30 s early: 1 s
    try:
        auth = SmartBackendAuth(f"http://127.0.0.1:{endpoint.server_port}/token", "fhirstudy-test", _pem(key),
                                scope="system/ResearchStudy.write")
        auth.token()
        auth.token()
        assert len(issued) == 1
        time.sleep(1.1)
        auth.token()
        assert len(issued) == 2 and issued[0][1] == "system/ResearchStudy.write"
        auth.session.close()
    finally:
        endpoint.shutdown()
        endpoint.server_close()


def test_killed_push_resumes_exactly_once(peer_r5, all_trials, tmp_path):
    """A real `fhirstudy push` process is killed (SIGKILL, no clean-up) part-way through; the same
    command with the same journal then completes the run, and the store holds every resource of
    every trial exactly once."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    peer_r5.wipe()
    journal = tmp_path / "journal.sqlite"
    argv = [sys.executable, "-m", "fhirstudy.cli", "push", *map(str, sample_inputs()), "--to", peer_r5.url,
            "--resume", str(journal), "--chunk", "1", "-q"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    arrived = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists():
                try:
                    with sqlite3.connect(journal) as db:
                        arrived = db.execute("SELECT count(*) FROM pushed").fetchone()[0]
                except sqlite3.Error:
                    arrived = 0
            if arrived >= 3:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert 3 <= arrived < len(all_trials), f"killed after {arrived} of {len(all_trials)} trials"
    assert cli.main(argv[3:]) == 0
    with sqlite3.connect(journal) as db:
        assert db.execute("SELECT count(*) FROM pushed").fetchone()[0] == len(all_trials)
    client = FhirClient(peer_r5.url)
    _, per_type = _expected(all_trials, peer_r5.fhir_version)
    stored = _everything(client, per_type)
    client.close()
    assert Counter({t: len(v) for t, v in stored.items()}) == per_type
    assert all(r["meta"]["versionId"] == "1" for v in stored.values() for r in v), "nothing re-versioned"


# ---------------------------------------------------------------------------------------------
# narratives (#17): kept by default, left out with --no-narrative


@pytest.mark.parametrize("peer", ["peer_r4", "peer_r5"])
def test_cli_push_no_narrative_sends_no_text_and_the_default_keeps_it(peer, request, tmp_path):
    target = request.getfixturevalue(peer)
    target.wipe()
    argv = ["push", str(sample_inputs()[0]), "-q", "--to", target.url, "--report", str(tmp_path / "r.json")]
    client = FhirClient(target.url)
    types = ["ResearchStudy", "PlanDefinition", "EvidenceVariable", "Location", "Provenance", "Group",
             "Organization"]
    try:
        assert cli.main([*argv, "--no-narrative"]) == 0
        stored = [r for rs in _everything(client, types).values() for r in rs]
        assert len(stored) > 20 and not [r["id"] for r in stored if "text" in r]

        assert cli.main(argv) == 0  # the default: every resource gets its text (an update)
        assert json.loads((tmp_path / "r.json").read_text())["counts"]["updated"] == 5
        stored = [r for rs in _everything(client, types).values() for r in rs]
        assert stored and [r["id"] for r in stored if r.get("text", {}).get("status") != "generated"] == []
        assert all(r["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">') for r in stored)
        assert {r["resourceType"] for r in stored} >= {"ResearchStudy", "Location", "Provenance"}
    finally:
        client.close()
