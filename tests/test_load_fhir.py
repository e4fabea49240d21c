"""``fhirstudy load`` of FHIR input: Bundles (transaction, batch, collection, searchset), single
resources and NDJSON (.ndjson, .ndjson.gz), validated like every write, on a real SQLite store (and
PostgreSQL where it runs), through the command line in this process; every problem one line with
file, record (the NDJSON line, the entry's position in a Bundle file) and field."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from _server_fixtures import db_url, pg_server, pg_url  # noqa: F401
from conftest import SAMPLES
from fhirstudy.cli.main import main
from fhirstudy.search import parse_search
from fhirstudy.store import open_store
from fhirstudy.store.schema import history, resource

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ORG = {"resourceType": "Organization", "id": "org-1", "name": "Acme Research"}
STUDY = {"resourceType": "ResearchStudy", "id": "rs-1", "status": "active", "title": "A study"}
SITE = {"resourceType": "Location", "id": "loc-1", "name": "Main site",
        "managingOrganization": {"reference": "Organization/org-1"}}
BAD_STUDY = {"resourceType": "ResearchStudy", "id": "rs-bad", "status": "bogus"}
URN_ORG, URN_SITE = "urn:uuid:4f0a7c1e-0b9e-4d3b-9a57-2d1c2a0e6c11", "urn:uuid:9b2e4f6a-3c1d-4e5f-8a7b-6c5d4e3f2a10"


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'load.db'}"


def load(capsys, *args: str) -> tuple[int, list[str]]:
    """Run ``fhirstudy load ARGS`` here: the exit code and the lines on stderr (summary last)."""
    code = main(["load", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.splitlines()


def stored(url: str, rtype: str, rid: str) -> dict | None:
    store = open_store(url)
    try:
        raw = store.read(rtype, rid)
    finally:
        store.close()
    return None if raw is None else orjson.loads(raw)


def contents(url: str) -> dict[tuple[str, str], dict]:
    """Every current resource of the store, without meta (versions and instants differ by run)."""
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(resource.c.type, resource.c.id, resource.c.content)
                                .where(resource.c.deleted.is_(False))).all()
        return {(t, i): {k: v for k, v in orjson.loads(store.codec.decode(c)).items() if k != "meta"}
                for t, i, c in rows}
    finally:
        store.close()


def versions(url: str) -> int:
    store = open_store(url)
    try:
        with store.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(history)).scalar()
    finally:
        store.close()


def bundle(kind: str, entries: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def put(r: dict) -> dict:
    return {"fullUrl": f"https://example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}


def write_json(path: Path, doc: dict, pretty: bool = True) -> Path:
    path.write_text(json.dumps(doc, indent=2 if pretty else None), encoding="utf-8")
    return path


def write_ndjson(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


# --- each Bundle type ------------------------------------------------------------------------

LISTED = [ORG, STUDY, SITE]
BUNDLES = [
    ("transaction", bundle("transaction", [put(r) for r in LISTED])),
    ("batch", bundle("batch", [put(r) for r in LISTED])),
    ("collection", bundle("collection", [{"fullUrl": f"urn:uuid:{n}", "resource": r} for n, r in zip(
        ("1b4e28ba-2fa1-11d2-883f-0016d3cca427", "2b4e28ba-2fa1-11d2-883f-0016d3cca427",
         "3b4e28ba-2fa1-11d2-883f-0016d3cca427"), LISTED)])),
    ("searchset", {**bundle("searchset", [
        {"resource": ORG, "search": {"mode": "match"}},
        {"resource": STUDY, "search": {"mode": "match"}},
        {"resource": SITE, "search": {"mode": "include"}},
        {"resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational", "diagnostics": "ok"}]},
         "search": {"mode": "outcome"}}]), "total": 2}),
]


@pytest.mark.parametrize("kind,doc", BUNDLES, ids=[k for k, _ in BUNDLES])
def test_each_bundle_type_stores_its_entries_resources(capsys, tmp_path, db_url, kind, doc):
    code, err = load(capsys, str(write_json(tmp_path / f"{kind}.json", doc)), "--db", db_url)
    assert code == EXIT_OK, err
    assert err[-1].startswith("loaded 0 trials (0 resources) and 3 FHIR resources, failed 0")
    for r in LISTED:
        got = stored(db_url, r["resourceType"], r["id"])
        assert {k: v for k, v in got.items() if k != "meta"} == r


def test_transaction_rewrites_urn_uuid_references_and_honours_post_and_delete(capsys, tmp_path, db):
    write_json(tmp_path / "first.json", bundle("transaction", [put(STUDY)]))
    assert load(capsys, str(tmp_path / "first.json"), "--db", db)[0] == EXIT_OK
    site = {"resourceType": "Location", "name": "Main site", "managingOrganization": {"reference": URN_ORG}}
    doc = bundle("transaction", [
        {"fullUrl": URN_SITE, "resource": site, "request": {"method": "POST", "url": "Location"}},
        {"fullUrl": URN_ORG, "resource": {k: v for k, v in ORG.items() if k != "id"},
         "request": {"method": "POST", "url": "Organization"}},
        {"request": {"method": "DELETE", "url": "ResearchStudy/rs-1"}},
    ])
    code, err = load(capsys, str(write_json(tmp_path / "tx.json", doc)), "--db", db)
    assert code == EXIT_OK, err
    assert "and 2 FHIR resources, deleted 1, failed 0" in err[-1]
    assert stored(db, "ResearchStudy", "rs-1") is None
    rows = contents(db)
    [site] = [r for (t, _), r in rows.items() if t == "Location"]
    [org_id] = [i for (t, i), r in rows.items() if t == "Organization"]
    assert site["managingOrganization"] == {"reference": f"Organization/{org_id}"}


def test_a_transaction_with_one_bad_entry_stores_nothing(capsys, tmp_path, db):
    doc = bundle("transaction", [put(ORG), put(BAD_STUDY), put(SITE)])
    code, err = load(capsys, str(write_json(tmp_path / "tx.json", doc)), "--db", db)
    assert code == EXIT_FAILED
    assert any(line.startswith(f"error: {tmp_path / 'tx.json'}:2 [Bundle.entry[1].resource.status]:")
               for line in err), err
    assert any("the transaction Bundle is not stored" in line and "3 entries not loaded" in line for line in err)
    assert "failed 3" in err[-1]
    assert stored(db, "Organization", "org-1") is None and stored(db, "Location", "loc-1") is None


def test_a_transaction_whose_urn_uuid_resolves_nowhere_stores_nothing(capsys, tmp_path, db):
    doc = bundle("transaction", [put(ORG), put({**SITE, "managingOrganization": {"reference": URN_ORG}})])
    code, err = load(capsys, str(write_json(tmp_path / "tx.json", doc)), "--db", db)
    assert code == EXIT_FAILED
    assert any(":2 [Bundle.entry[1].resource.reference]:" in line and "does not resolve" in line for line in err)
    assert stored(db, "Organization", "org-1") is None


def test_a_batch_reports_its_bad_entries_and_stores_the_others(capsys, tmp_path, db):
    doc = bundle("batch", [put(ORG), put(BAD_STUDY), {"request": {"method": "GET", "url": "Organization/org-1"}},
                           {"resource": SITE, "request": {"method": "PATCH", "url": "Location/loc-1"}}, put(SITE)])
    path = write_json(tmp_path / "batch.json", doc)
    code, err = load(capsys, str(path), "--db", db)
    assert code == EXIT_FAILED
    assert any(line.startswith(f"error: {path}:2 [Bundle.entry[1].resource.status]:") for line in err), err
    assert any(line.startswith(f"warning: {path}:3 [Bundle.entry[2].request]:") for line in err), err
    assert any(line.startswith(f"error: {path}:4 [Bundle.entry[3].request.method]:") for line in err), err
    assert "and 2 FHIR resources, failed 2, warnings 1" in err[-1]
    assert stored(db, "Organization", "org-1") and stored(db, "Location", "loc-1")


# --- single resources and NDJSON -------------------------------------------------------------


def test_a_single_resource_file_is_stored(capsys, tmp_path, db):
    code, err = load(capsys, str(write_json(tmp_path / "org.json", ORG)), "--db", db)
    assert code == EXIT_OK, err
    assert stored(db, "Organization", "org-1")["name"] == "Acme Research"


@pytest.mark.parametrize("name", ["export.ndjson", "export.ndjson.gz", "no-suffix.json"])
def test_ndjson_a_bad_line_in_the_middle_costs_only_itself(capsys, tmp_path, db_url, name):
    lines = [json.dumps(ORG), json.dumps(STUDY), "{not json", "", json.dumps(BAD_STUDY),
             json.dumps({"resourceType": "Frobnicator", "id": "f1"}), json.dumps({"name": "no type"}),
             json.dumps({k: v for k, v in SITE.items() if k != "id"}), json.dumps(SITE)]
    path = write_ndjson(tmp_path / name, lines)
    code, err = load(capsys, str(path), "--db", db_url)
    assert code == EXIT_FAILED
    assert any(line.startswith(f"error: {path}:3 [format]: not JSON") for line in err), err
    assert any(line.startswith(f"error: {path}:5 [ResearchStudy.status]:") for line in err), err
    assert any(line.startswith(f"error: {path}:6") and "'Frobnicator' is not served" in line for line in err), err
    assert any(line.startswith(f"error: {path}:7 [resourceType]: not a FHIR resource") for line in err), err
    assert any(line.startswith(f"error: {path}:8 [Location.id]:") for line in err), err
    assert err[-1].startswith("loaded 0 trials (0 resources) and 3 FHIR resources, failed 5")
    assert stored(db_url, "Organization", "org-1") and stored(db_url, "ResearchStudy", "rs-1")
    assert stored(db_url, "Location", "loc-1")


def test_ndjson_of_more_lines_than_a_group_keeps_every_good_one(capsys, tmp_path, db):
    from fhirstudy.importer import GROUP_SIZE

    lines = [json.dumps({**ORG, "id": f"org-{n}"}) for n in range(GROUP_SIZE + 50)]
    lines[GROUP_SIZE // 2] = json.dumps({**ORG, "id": "x" * 65})  # an id no store takes
    code, err = load(capsys, str(write_ndjson(tmp_path / "orgs.ndjson", lines)), "--db", db)
    assert code == EXIT_FAILED
    assert any(f":{GROUP_SIZE // 2 + 1} [Organization.id]" in line for line in err), err
    assert f"and {GROUP_SIZE + 49} FHIR resources, failed 1" in err[-1]
    assert stored(db, "Organization", f"org-{GROUP_SIZE + 49}")


def test_loading_fhir_input_twice_makes_no_new_versions(capsys, tmp_path, db):
    path = write_ndjson(tmp_path / "x.ndjson", [json.dumps(r) for r in LISTED])
    assert load(capsys, str(path), "--db", db)[0] == EXIT_OK
    before = versions(db)
    assert load(capsys, str(path), "--db", db)[0] == EXIT_OK
    assert versions(db) == before


# --- fhirstudy's own output, round trip ------------------------------------------------------


@pytest.fixture(scope="module")
def samples_loaded(tmp_path_factory):
    """The samples loaded as trial records, and converted (-o DIR and -o x.ndjson)."""
    if not (SAMPLES / "NCT05594173.json").exists():
        pytest.skip(f"registry samples not found at {SAMPLES} (set FHIRSTUDY_SHARED_DIR)")
    where = tmp_path_factory.mktemp("round-trip")
    direct = f"sqlite:///{where / 'direct.db'}"
    assert main(["load", str(SAMPLES), "--db", direct, "-q"]) == EXIT_OK
    assert main(["convert", str(SAMPLES), "-o", str(where / "out"), "-q"]) == EXIT_OK
    assert main(["convert", str(SAMPLES), "-o", str(where / "all.ndjson"), "-q"]) == EXIT_OK
    return where, direct


@pytest.mark.parametrize("output", ["out", "all.ndjson"])
def test_convert_output_loads_as_the_same_resources_as_the_records(capsys, samples_loaded, output):
    where, direct = samples_loaded
    again = f"sqlite:///{where / (output + '.db')}"
    capsys.readouterr()
    code, err = load(capsys, str(where / output), "--db", again)
    assert code == EXIT_OK, err
    expected = contents(direct)
    assert contents(again) == expected
    assert f"and {len(expected) - 2} FHIR resources, failed 0" in err[-1]  # the 2 CodeSystems come anyway
    for rtype, query in [("ResearchStudy", [("status", "active,completed")]),
                         ("Location", [("address-country", "United States")]),
                         ("ResearchStudy", [("condition", "breast-cancer")])]:
        totals = []
        for url in (direct, again):
            store = open_store(url)
            try:
                totals.append(store.search(parse_search(rtype, [*query, ("_count", "1")], store.registry)).total)
            finally:
                store.close()
        assert totals[0] == totals[1]


def test_convert_output_loaded_over_the_records_changes_nothing(capsys, samples_loaded, tmp_path):
    where, direct = samples_loaded
    copy = tmp_path / "copy.db"
    copy.write_bytes(Path(direct.removeprefix("sqlite:///")).read_bytes())
    url = f"sqlite:///{copy}"
    before = versions(url)
    code, err = load(capsys, str(where / "out"), "--db", url)
    assert code == EXIT_OK, err
    assert versions(url) == before


def test_trial_records_and_fhir_input_load_together(capsys, tmp_path, db):
    if not (SAMPLES / "NCT05594173.json").exists():
        pytest.skip(f"registry samples not found at {SAMPLES}")
    code, err = load(capsys, str(SAMPLES / "NCT05594173.json"), str(write_json(tmp_path / "org.json", ORG)),
                     "--db", db)
    assert code == EXIT_OK, err
    assert err[-1].startswith("loaded 1 trials (") and "and 1 FHIR resources, failed 0" in err[-1]
    assert stored(db, "ResearchStudy", "nct05594173") and stored(db, "Organization", "org-1")


# --- what is not FHIR, or not loadable -------------------------------------------------------

REFUSED = [
    ("invalid JSON", "broken.json", '{"resourceType": "Organization", "id": ', "not JSON"),
    ("non-FHIR JSON", "other.json", '{"hello": "world"}', "no reader recognises this file as FHIR JSON"),
    ("unknown type", "odd.json", '{"resourceType": "Frobnicator", "id": "f1"}', "'Frobnicator' is not served"),
    ("failing validation", "bad.json", json.dumps(BAD_STUDY, indent=1), "ResearchStudy.status"),
    ("a Bundle type not loaded", "doc.json", json.dumps(bundle("document", [{"resource": ORG}])),
     "Bundle.type 'document' is not loaded"),
    ("a resource without id", "noid.json", json.dumps({"resourceType": "Organization", "name": "x"}),
     "needs an id"),
    ("entries not an array", "entries.json", json.dumps({"resourceType": "Bundle", "type": "batch", "entry": {}}),
     "Bundle.entry must be an array"),
]


@pytest.mark.parametrize("name,text,expected", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_what_cannot_be_loaded_is_a_reported_error_never_a_traceback(capsys, tmp_path, db, name, text, expected):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    code, err = load(capsys, str(path), "--db", db)
    assert code == EXIT_FAILED
    assert any(line.startswith(f"error: {path}") and expected in line for line in err), err
    assert err[-1].startswith("loaded 0 trials") and "failed 1" in err[-1]


def test_convert_says_a_fhir_file_is_not_a_trial_record(capsys, tmp_path):
    path = write_json(tmp_path / "org.json", ORG)
    assert main(["convert", str(path), "-o", "-"]) == EXIT_FAILED
    assert "FHIR JSON, not a trial record: fhirstudy load stores" in capsys.readouterr().err


def test_usage_errors_exit_2_before_any_work(tmp_path):
    with pytest.raises(SystemExit) as missing:
        main(["load", str(tmp_path / "nowhere.ndjson"), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert missing.value.code == EXIT_USAGE
    path = write_json(tmp_path / "org.json", ORG)
    assert main(["load", str(path), "--db", "sqlite:////nonexistent/dir/x.db"]) == EXIT_USAGE


def test_a_bulk_export_loads_into_another_store_as_it_was(capsys, samples_loaded, tmp_path):
    """fhirstudy's own Bulk Data export (NDJSON files per type, as ``$export`` writes them) of the
    loaded samples, loaded into an empty store, gives the same resources."""
    from fhirstudy.export.request import ExportRequest
    from fhirstudy.export.writer import write_export
    from fhirstudy.service import SearchService

    _, direct = samples_loaded
    (tmp_path / "bulk").mkdir()
    store = open_store(direct)
    try:
        write_export(store, SearchService(store, store.registry, 0), ExportRequest(), tmp_path / "bulk")
    finally:
        store.close()
    (tmp_path / "bulk" / "manifest.json").write_text('{"transactionTime": "2025-01-01T00:00:00Z", "output": []}')
    again = f"sqlite:///{tmp_path / 'again.db'}"
    capsys.readouterr()
    code, err = load(capsys, str(tmp_path / "bulk"), "--db", again)
    assert code == EXIT_OK, err
    assert contents(again) == contents(direct)
    assert "skipped 1 file that is not a record" in err[-1] and "manifest.json" in err[-1]


def test_what_is_not_data_or_already_gone_is_a_warning(capsys, tmp_path, db):
    lines = [json.dumps(bundle("transaction", [{"request": {"method": "DELETE", "url": "Organization/gone"}}])),
             json.dumps({"resourceType": "OperationOutcome", "issue": [
                 {"severity": "error", "code": "processing", "diagnostics": "an export's error line"}]}),
             json.dumps(ORG)]
    path = write_ndjson(tmp_path / "mixed.ndjson", lines)
    code, err = load(capsys, str(path), "--db", db)
    assert code == EXIT_OK, err
    gone = "nothing to delete: Organization/gone is not stored"
    assert any(line == f"warning: {path}:1 [Bundle.entry[0].request]: {gone}"
               for line in err), err
    assert any(line.startswith(f"warning: {path}:2 [resourceType]: an OperationOutcome") for line in err), err
    assert "and 1 FHIR resources, failed 0, warnings 2" in err[-1]
    assert load(capsys, str(path), "-q", "--db", db)[1][:-1] == []  # -q: no warning lines


# --- the database refusing, on PostgreSQL (a trigger) ----------------------------------------


def _refuse_inserts(url: str, pattern: str) -> None:
    import psycopg

    open_store(url).close()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"""CREATE OR REPLACE FUNCTION refuse() RETURNS trigger AS $$
            BEGIN IF NEW.id LIKE '%{pattern}%' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF;
            RETURN NEW; END $$ LANGUAGE plpgsql""")
        conn.execute("DROP TRIGGER IF EXISTS refuse ON resource")
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON resource FOR EACH ROW EXECUTE FUNCTION refuse()")


@pytest.mark.postgres
def test_a_line_the_database_refuses_is_reported_and_the_others_land(capsys, tmp_path, pg_url):
    _refuse_inserts(pg_url, "refuse-me")
    lines = [json.dumps({**ORG, "id": f"org-{n}"}) for n in range(10)]
    lines[4] = json.dumps({**ORG, "id": "refuse-me"})
    path = write_ndjson(tmp_path / "orgs.ndjson", lines)
    code, err = load(capsys, str(path), "--db", pg_url)
    assert code == EXIT_FAILED
    assert [line for line in err if line.startswith("error:")] == [
        next(line for line in err if line.startswith(f"error: {path}:5: not stored:"))]
    assert "and 9 FHIR resources, failed 1" in err[-1]
    assert stored(pg_url, "Organization", "org-9") and stored(pg_url, "Organization", "org-0")


@pytest.mark.postgres
def test_load_stops_when_the_database_refuses_fhir_write_after_write(capsys, tmp_path, pg_url):
    _refuse_inserts(pg_url, "org-")
    path = write_ndjson(tmp_path / "orgs.ndjson", [json.dumps({**ORG, "id": f"org-{n}"}) for n in range(60)])
    code, err = load(capsys, str(path), "--db", pg_url)
    assert code == EXIT_FAILED
    assert err[-2] == "error: stopping: the database refused 20 FHIR writes in a row"
    assert err[-1].startswith("loaded 0 trials (0 resources) and 0 FHIR resources")
