"""``fhirstudy sync`` against the local stand-in for the ClinicalTrials.gov API: a first sync, the
registry changing (an update, a new study, one withdrawn, one gone), the next syncs doing exactly
what they should and asking only for what changed; a sync killed with SIGKILL and resumed; and
pushes into the peer FHIR server that send only the changed trials."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
import sqlalchemy as sa

from _peer_fixtures import own_server, peer_r4, peer_r5  # noqa: F401
from ctgov_standin import Registry, serve
from fhirstudy.cli import EXIT_OK, EXIT_USAGE, main
from fhirstudy.store import open_store

FHIRSTUDY = [sys.executable, "-m", "fhirstudy.cli"]
FAST = ["--interval", "0.001"]
CONDITION = "cystic fibrosis"


def _matches(study: dict) -> bool:
    p = study["protocolSection"]
    text = " ".join(p.get("conditionsModule", {}).get("conditions", []) + p.get("conditionsModule", {}).get("keywords", [])
                    + [p["identificationModule"].get("briefTitle", ""), p["identificationModule"].get("officialTitle", "")]
                    + [m["term"] for k in ("meshes", "ancestors")
                       for m in study.get("derivedSection", {}).get("conditionBrowseModule", {}).get(k, [])])
    return CONDITION in text.lower()


def _sync(capsys, tmp_path, *args) -> tuple[int, str, dict]:
    """``fhirstudy sync`` in this process: exit code, stderr, the --report."""
    report = tmp_path / f"sync-report-{time.monotonic_ns()}.json"
    code = main(["sync", *FAST, *args, "--report", str(report)])
    err = capsys.readouterr().err
    return code, err, orjson.loads(report.read_bytes()) if report.exists() else {}


def _studies(db: str) -> dict[str, dict]:
    store = open_store(db)
    try:
        with store.snapshot() as snapshot:
            return {r.id: orjson.loads(r.json) for page in snapshot.pages("ResearchStudy") for r in page}
    finally:
        store.close()


@pytest.fixture
def registry() -> Registry:
    return Registry.replicated(200, seed=7)


@pytest.fixture
def few() -> Registry:
    """A smaller registry where the size does not matter: 60 studies, 12 of them on cystic fibrosis
    (pushing the 40 trials of ``registry`` into the peer took most of a minute per test)."""
    return Registry.replicated(60, seed=7)


def _changes(registry: Registry, wanted: list[str]) -> dict[str, str]:
    """An update, a new study, a withdrawal and a removal, the day after; which is which."""
    updated, withdrawn, gone = wanted[0], wanted[1], wanted[2]
    registry.advance("2026-12-01T08:00:00")
    registry.update(updated, lambda s: s["protocolSection"]["identificationModule"].update(briefTitle="A new title"))
    registry.withdraw(withdrawn)
    registry.remove(gone)
    new = registry.get(wanted[3])
    new["protocolSection"]["identificationModule"]["nctId"] = "NCT99999999"
    new["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"] = {"date": "2026-12-01", "type": "ACTUAL"}
    registry.add(new)
    return {"updated": updated, "withdrawn": withdrawn, "gone": gone, "new": "NCT99999999"}


def test_sync_then_changes_then_sync_does_exactly_the_right_thing(registry, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 's.db'}"
    wanted = sorted(n for n in registry.ids() if _matches(registry.get(n)))
    assert len(wanted) > 20
    with serve(registry) as api:
        args = ["--api", api, "--condition", CONDITION, "--db", db, "--page-size", "20", "-q"]
        code, err, first = _sync(capsys, tmp_path, *args)
        assert code == EXIT_OK, err
        [q] = first["queries"]
        assert q["mode"] == "first" and q["counts"]["new"] == len(wanted) and q["counts"]["failed"] == 0
        assert q["requests"] == 1 + math.ceil(len(wanted) / 20)          # /version, then the pages
        assert set(_studies(db)) == {n.lower() for n in wanted}

        # nothing changed at the source: one request, nothing stored
        code, err, again = _sync(capsys, tmp_path, *args)
        assert code == EXIT_OK and again["queries"][0]["registryUnchanged"] and again["queries"][0]["requests"] == 1
        assert "has not changed since the last run" in err

        what = _changes(registry, wanted)
        asked = len(registry.requests)
        code, err, second = _sync(capsys, tmp_path, *args, "--full")
        assert code == EXIT_OK, err
        [q] = second["queries"]
        assert q["mode"] == "full" and q["since"] is not None
        assert q["counts"]["new"] == 1 and q["counts"]["updated"] == 2 and q["counts"]["gone"] == 1
        assert q["gone"] == [what["gone"]] and q["counts"]["pruned"] == 0 and q["counts"]["failed"] == 0
        since = q["since"]
        changed = [n for n in registry.ids() if _matches(registry.get(n)) and
                   registry.get(n)["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] >= since]
        listed = [n for n in registry.ids() if _matches(registry.get(n))]
        # /version, the changed studies 20 a page, the query's NCT ids 1,000 a page, the one gone by id
        assert q["requests"] == 1 + max(1, math.ceil(len(changed) / 20)) + math.ceil(len(listed) / 1000) + 1
        assert q["counts"]["unchanged"] == len(changed) - 3              # all but the updated, withdrawn and new
        incremental = [p for path, p in registry.requests[asked:] if path == "/studies" and "fields" not in p]
        assert all("AREA[LastUpdatePostDate]RANGE[" in p["filter.advanced"] for p in incremental)
        stored = _studies(db)
        assert stored[what["updated"].lower()]["title"] == "A new title"
        assert "withdrawn" in orjson.dumps(stored[what["withdrawn"].lower()]).decode().lower()
        assert what["new"].lower() in stored
        assert what["gone"].lower() in stored                            # reported, not deleted

        code, err, pruned = _sync(capsys, tmp_path, *args, "--full", "--prune")
        assert code == EXIT_OK, err
        assert pruned["queries"][0]["counts"]["pruned"] == 1
    assert what["gone"].lower() not in _studies(db)
    store = open_store(db)
    try:
        assert store.head("ResearchStudy", what["gone"].lower()).version == 2       # history kept: a deleted version
        assert store.read("Provenance", f"{what['gone'].lower()}-provenance") is None
    finally:
        store.close()

    done = subprocess.run([*FHIRSTUDY, "sync", "--status", "--db", db], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_OK and len(done.stdout.splitlines()) == 4 and "pruned 1" in done.stdout


def test_a_study_that_leaves_a_status_filtered_query_is_found_by_the_full_check(registry, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    recruiting = sorted(n for n in registry.ids() if _matches(registry.get(n))
                        and registry.get(n)["protocolSection"]["statusModule"]["overallStatus"] == "RECRUITING")
    assert recruiting
    with serve(registry) as api:
        args = ["--api", api, "--condition", CONDITION, "--overall-status", "RECRUITING", "--db", db, "-q"]
        assert _sync(capsys, tmp_path, *args)[0] == EXIT_OK
        registry.advance("2026-12-01T08:00:00")
        registry.withdraw(recruiting[0])
        code, err, update = _sync(capsys, tmp_path, *args)
        assert update["queries"][0]["mode"] == "update" and update["queries"][0]["counts"]["left"] == 0
        code, err, full = _sync(capsys, tmp_path, *args, "--full")
        assert code == EXIT_OK, err
        assert full["queries"][0]["left"] == [recruiting[0]] and "left the query 1" in err
    assert "withdrawn" in orjson.dumps(_studies(db)[recruiting[0].lower()]).decode().lower()


def test_a_sync_killed_mid_way_resumes_from_its_last_page(few, tmp_path, capsys):
    registry = few
    db_path = tmp_path / "k.db"
    db = f"sqlite:///{db_path}"
    with serve(registry) as api:
        argv = [*FHIRSTUDY, "sync", "--api", api, "--interval", "0.3", "--page-size", "10", "--db", db, "-q"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        engine = sa.create_engine(db)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.2)
                try:
                    with engine.connect() as conn:
                        row = conn.execute(sa.text("SELECT page_token, counts FROM fhirstudy_sync_run")).first()
                except sa.exc.OperationalError:
                    continue
                if row and row.page_token and orjson.loads(row.counts).get("new", 0) >= 30:
                    break
            else:
                pytest.fail("the sync never got three pages in")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()
            engine.dispose()
        stored_before = len(_studies(db))
        asked = len(registry.requests)
        code, err, resumed = _sync(capsys, tmp_path, "--api", api, "--page-size", "10", "--db", db, "-q")
        assert code == EXIT_OK, err
        [q] = resumed["queries"]
        assert q["resumed"] and q["mode"] == "first"
        pages = [p for path, p in registry.requests[asked:] if path == "/studies"]
        assert pages and "pageToken" in pages[0]                        # it went on, not from the start
        assert len(pages) <= math.ceil((len(registry.ids()) - stored_before) / 10) + 2
    assert set(_studies(db)) == {n.lower() for n in registry.ids()}
    c = q["counts"]
    assert c["new"] + c["unchanged"] == len(registry.ids()) and c["unchanged"] <= 10 and c["failed"] == 0


def test_usage_mistakes_exit_2(tmp_path):
    toml = tmp_path / "q.toml"
    toml.write_text('condition = "x"\n')
    for args, says in ((["--query-file", str(toml), "--condition", "y"], "not both"),
                       (["--query-file", str(tmp_path / "none.toml")], "cannot read the query file"),
                       (["--overall-status", "NOPE"], "'NOPE' is not a ClinicalTrials.gov status")):
        done = subprocess.run([*FHIRSTUDY, "sync", *args, "--db", f"sqlite:///{tmp_path / 'u.db'}"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == EXIT_USAGE and says in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("peer", ["peer_r4", "peer_r5"])
def test_sync_pushes_only_the_trials_that_changed(few, tmp_path, capsys, request, peer):
    from fhirstudy.push import FhirClient

    registry = few
    target = request.getfixturevalue(peer)
    target.wipe()
    db = f"sqlite:///{tmp_path / 'p.db'}"
    wanted = sorted(n for n in registry.ids() if _matches(registry.get(n)))
    with serve(registry) as api:
        args = ["--api", api, "--condition", CONDITION, "--db", db, "-q", "--push-to", target.url,
                "--journal", str(tmp_path / "journal.sqlite")]
        code, err, first = _sync(capsys, tmp_path, *args)
        assert code == EXIT_OK, err
        assert first["queries"][0]["pushed"][target.url]["created"] == len(wanted)
        registry.advance("2026-12-01T08:00:00")
        registry.update(wanted[0], lambda s: s["protocolSection"]["identificationModule"].update(briefTitle="Pushed title"))
        registry.withdraw(wanted[1])
        code, err, second = _sync(capsys, tmp_path, *args)
        assert code == EXIT_OK, err
    [q] = second["queries"]
    assert q["counts"]["updated"] == 2 and q["counts"]["unchanged"] >= 0
    assert q["pushed"][target.url] == {"sent": 2, "arrived": 2, "created": 0, "updated": 2, "unchanged": 0, "failed": 0}
    client = FhirClient(target.url)
    try:
        [study] = client.search("ResearchStudy", {"identifier": f"https://clinicaltrials.gov|{wanted[0]}"})
        assert study["title"] == "Pushed title"
        assert study["text"]["status"] == "generated"  # the defaults: narratives kept, R4 results omitted
        assert len(client.search("ResearchStudy", {"_count": "500"})) == len(wanted)
        if target.fhir_version == "4.0":
            assert client.search("Evidence", {"_count": "10"}) == []
    finally:
        client.close()


@pytest.mark.parametrize("peer", ["peer_r4"])
def test_sync_pushes_as_push_does_with_no_narrative_and_r4_results(few, tmp_path, capsys, request, peer):
    """``sync --push-to`` takes push's ``--no-narrative`` and ``--r4-results``, meaning the same (an R4
    store, where both options matter; push's own tests cover ``--no-narrative`` into R5 stores)."""
    from fhirstudy.push import FhirClient

    registry = few
    target = request.getfixturevalue(peer)
    target.wipe()
    wanted = sorted(n for n in registry.ids() if _matches(registry.get(n)))
    with serve(registry) as api:
        code, err, report = _sync(capsys, tmp_path, "--api", api, "--condition", CONDITION, "-q",
                                  "--db", f"sqlite:///{tmp_path / 'n.db'}", "--journal", str(tmp_path / "j.sqlite"),
                                  "--push-to", target.url, *(["--token", target.token] if target.token else []),
                                  "--no-narrative", "--r4-results", "extensions")
    assert code == EXIT_OK, err
    assert report["queries"][0]["pushed"][target.url]["created"] == len(wanted)
    client = FhirClient(target.url, token=target.token)
    try:
        studies = client.search("ResearchStudy", {"_count": "500"})
        sites = client.search("Location", {"_count": "500"})
        evidence = client.search("Evidence", {"_count": "500"})
    finally:
        client.close()
    assert len(studies) == len(wanted) and sites and evidence  # the replicated sample has results
    assert [r["id"] for r in studies + sites + evidence if "text" in r] == []
    if target.fhir_version == "4.0":  # sent in the R5 cross-version extensions
        assert b"http://hl7.org/fhir/5.0/StructureDefinition/extension-" in orjson.dumps(evidence)


@pytest.mark.parametrize("option", [["--no-narrative"], ["--r4-results", "omit"], ["--r4-results", "extensions"]])
def test_push_options_without_push_to_are_a_usage_error(tmp_path, option):
    """What --push-to sends means nothing without it: a usage error naming the option, not ignored."""
    done = subprocess.run([*FHIRSTUDY, "sync", "--condition", "x", *option,
                           "--db", f"sqlite:///{tmp_path / 'u.db'}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_USAGE and "Traceback" not in done.stderr
    assert f"{option[0]} says what --push-to sends: give --push-to too" in done.stderr
    assert not (tmp_path / "u.db").exists()
