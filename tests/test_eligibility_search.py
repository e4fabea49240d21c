"""Searching studies by their eligibility: eligible-age, eligible-sex and eligibility-criterion walk
from the ResearchStudy into its eligibility EvidenceVariable, indexed at write and kept up to date
when either changes (SQLite and PostgreSQL)."""
from __future__ import annotations

import copy
import json
import subprocess

import pytest
import requests

from _server_fixtures import db_url, fixed_clock, pg_server, pg_url, serve_in_thread  # noqa: F401
from conftest import SAMPLES, SEEDS
from fhirstudy import mappings
from fhirstudy.pipeline import convert
from fhirstudy.server import STORE_EXTENSION, close_store, create_app
from fhirstudy.search import load_registry, parse_search
from fhirstudy.search.fhirpath import Item
from fhirstudy.search.index import index_rows
from fhirstudy.store import open_store

FILES = [*sorted(SEEDS.iterdir()), *(SAMPLES / n for n in (
    "NCT00763412.json", "NCT03630471.json", "NCT00055081.xml", "NCT01065844.xml", "NCT02513394.xml"))]
NO_AGE = {"fs-f47a11d1330d2b15", "fs-fcfad87e0c6488bd", "fs-73c0b5f8e9f8767a", "fs-4853c9b87ff2f7c7", "nct06731140"}
ECOG = "http://loinc.org|89247-1"
ANC = "http://loinc.org|751-8"


@pytest.fixture(scope="module")
def resources() -> list[dict]:
    return [e["resource"] for c in convert(FILES) for e in c.bundle["entry"]]


@pytest.fixture
def store(db_url):
    """An empty store on SQLite and on PostgreSQL (``db_url``)."""
    opened = open_store(db_url, clock=fixed_clock)
    yield opened
    opened.close()


def _ids(store, query: str) -> set[str]:
    pairs = [tuple(part.split("=", 1)) for part in query.split("&")]
    return {e.id for e in store.search(parse_search("ResearchStudy", [*pairs, ("_count", "100")],
                                                    load_registry())).entries}


CASES = [  # query -> the studies it finds (seeds without an age limit admit every age)
    ("eligible-age=67", NO_AGE | {"nct01065844", "nct02513394"}),
    ("eligible-age=10", NO_AGE | {"nct00055081"}),  # "18 Months" to "16 Years"
    ("eligible-age=1", NO_AGE),  # 18 months is 1.5 years: 1 is too young
    ("eligible-age=1.5", NO_AGE | {"nct00055081"}),
    ("eligible-age=24", NO_AGE | {"nct00763412", "nct01065844", "nct02513394"}),
    ("eligible-age=lt13", NO_AGE | {"nct00763412", "nct00055081"}),  # some admitted age below 13
    ("eligible-sex=male", NO_AGE - {"nct06731140"} | {"nct00763412", "nct03630471", "nct00055081", "nct01065844",
                                                      "nct02513394"}),
    ("eligible-sex=female", NO_AGE | {"nct00763412", "nct03630471", "nct00055081", "nct01065844", "nct02513394"}),
    (f"eligibility-criterion={ECOG}$1", {"nct06731140", "fs-73c0b5f8e9f8767a", "nct02513394"}),
    (f"eligibility-criterion={ECOG}$2", {"nct06731140"}),  # seed 002: "ECOG 0, 1, or 2"
    (f"eligibility-criterion={ECOG}$3", set()),
    (f"eligibility-criterion={ANC}$1.5", {"fs-73c0b5f8e9f8767a", "nct01065844", "nct02513394"}),  # 1,500/mm3 too
    (f"eligibility-criterion={ANC}$1.4", set()),
    (f"eligibility-criterion={ECOG}$3,{ECOG}$2", {"nct06731140"}),
    (f"eligibility-criterion-type={ECOG}", {"nct06731140", "fs-73c0b5f8e9f8767a", "nct02513394"}),
    (f"eligible-age=67&eligible-sex=male&eligibility-criterion={ECOG}$1", {"fs-73c0b5f8e9f8767a", "nct02513394"}),
]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_search_by_eligibility(store, resources, query, expected):
    store.put_many(resources)
    assert _ids(store, query) == expected


def _eligibility(resources, sid):
    return next(r for r in resources if r["id"] == f"{sid}-eligibility")


def _with_age(ev: dict, low: int, high: int | None = None) -> dict:
    ev = copy.deepcopy(ev)
    age = next(c for c in ev["characteristic"] if c["linkId"] == "age")
    age["definitionByTypeAndValue"]["valueRange"] = {k: {"value": v, "unit": "years", "system": "http://unitsofmeasure.org",
                                                         "code": "a"} for k, v in (("low", low), ("high", high)) if v}
    return ev


def test_a_changed_eligibility_changes_what_finds_the_study(store, resources):
    store.put_many(resources)
    assert "nct02513394" in _ids(store, "eligible-age=67")
    store.update(_with_age(_eligibility(resources, "nct02513394"), 18, 65))  # the EvidenceVariable alone
    assert "nct02513394" not in _ids(store, "eligible-age=67")
    assert "nct02513394" in _ids(store, "eligible-age=65")
    store.delete("EvidenceVariable", "nct02513394-eligibility")  # no eligibility stated: admits every age
    assert "nct02513394" in _ids(store, "eligible-age=67") and "nct02513394" in _ids(store, "eligible-age=5")
    assert "nct02513394" not in _ids(store, f"eligibility-criterion={ECOG}$1")


def test_a_study_stored_before_its_eligibility_is_indexed_when_it_arrives(store, resources):
    study = next(r for r in resources if r["id"] == "nct02513394")
    store.update(study)
    assert "nct02513394" not in _ids(store, f"eligibility-criterion={ECOG}$1")
    store.update(_eligibility(resources, "nct02513394"))
    assert "nct02513394" in _ids(store, f"eligibility-criterion={ECOG}$1")
    assert "nct02513394" not in _ids(store, "eligible-age=10")


def test_reindexing_keeps_linked_rows(store, resources):
    store.put_many(resources)
    study = next(r for r in resources if r["id"] == "nct02513394")
    rows = store.index_rows_of(study)
    assert any(r["value"] is None and r["low"] == 18 for r in rows["number"])  # eligible-age
    assert any(r["num_low"] == 1.5 for r in rows["composite"])  # ANC >= 1,500/uL in 10*9/L


@pytest.mark.parametrize(("value", "rows"), [
    ({"low": {"value": 18, "system": "http://unitsofmeasure.org", "code": "mo"}}, [(None, 1.5, None)]),
    ({"value": 1500, "comparator": ">=", "system": "http://unitsofmeasure.org", "code": "/mm3"}, [(None, 1.5, None)]),
    ({"value": 10, "comparator": ">=", "system": "http://unitsofmeasure.org", "code": "g/dL"}, [(None, 100, None)]),
    ({"value": 2.5, "comparator": "<=", "system": "http://unitsofmeasure.org", "code": "{ULN}"}, [(None, None, 2.5)]),
    ({"value": 7, "system": "http://unitsofmeasure.org", "code": "%"}, [(7, None, None)]),
    ({"value": 2, "comparator": ">"}, [(None, 2.0000000000000004, None)]),  # strictly above: one float step
    ({"low": {"value": 0}, "high": {"value": 1}}, [(None, 0, 1)]),
    ({"unit": "years"}, []),
])
def test_number_rows_of_ranges_and_quantities(value, rows):
    param = load_registry().get("ResearchStudy", "eligible-age")

    class One:  # a parameter that yields the value as its item
        code, type, components = "x", "number", ()

        @staticmethod
        def evaluate(resource):
            return [Item(value, "Range" if "low" in value or "high" in value else "Quantity")]
    assert param is not None
    got = index_rows({"resourceType": "ResearchStudy", "id": "x"}, [One])["number"]
    assert [(r["value"], r.get("low"), r.get("high")) for r in got] == rows


@pytest.fixture
def live_server(tmp_path, resources):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}"})
    app.extensions[STORE_EXTENSION].put_many(resources)
    with serve_in_thread(app) as url:
        yield url
    close_store(app)


def test_the_clinicians_question_over_http(live_server):
    query = {"condition": "breast-cancer", "biomarker": "her2-negative", "eligible-age": "67", "eligible-sex": "female",
             "eligibility-criterion": f"{ECOG}$1", "_include": "ResearchStudy:eligibility"}
    with requests.Session() as session:
        bundle = session.get(f"{live_server}/ResearchStudy", params=query, timeout=10).json()
        found = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]}
        assert ("ResearchStudy", "nct02513394") in found
        assert ("EvidenceVariable", "nct02513394-eligibility") in found
        assert ("ResearchStudy", "nct00763412") not in found  # not breast cancer, 12 to 24 years
        readme = ("/ResearchStudy?condition=breast-cancer&biomarker=her2-positive&recruitment-status=recruiting"
                  "&eligible-age=67&eligible-sex=female")
        answer = session.get(live_server + readme, timeout=10)
        assert answer.status_code == 200 and answer.json()["type"] == "searchset"
        assert ("ResearchStudy", "nct02513394") not in {  # HER2-negative
            (e["resource"]["resourceType"], e["resource"]["id"]) for e in answer.json().get("entry", [])}
        bad = session.get(f"{live_server}/ResearchStudy", params={"eligible-age": "sixty"}, timeout=10)
        assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
        assert "eligible-age" in bad.text
        metadata = session.get(f"{live_server}/metadata", timeout=10).json()
        study = next(r for r in metadata["rest"][0]["resource"] if r["type"] == "ResearchStudy")
        assert {"eligible-age", "eligible-sex", "eligibility-criterion", "eligibility"} <= {
            p["name"] for p in study["searchParam"]}


@pytest.mark.peer
def test_the_published_search_parameters_are_valid_r5(peer_validate, tmp_path):
    files = []
    for definition in json.loads((mappings.folder() / "search-parameters-local.json").read_text())["parameters"]:
        path = tmp_path / f"{definition['id']}.json"
        path.write_text(json.dumps(definition))
        files.append(str(path))
    run = subprocess.run([str(peer_validate), "r5", *files], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.count("valid ") == len(files), run.stdout + run.stderr[-2000:]
