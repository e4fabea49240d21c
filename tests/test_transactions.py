"""Transaction and batch Bundles at ``POST /``: all-or-nothing, urn:uuid resolution, conditional
entries, per-entry batch answers, and reloading converted seed bundles (SQLite and PostgreSQL)."""
from __future__ import annotations

import copy

import orjson
import pytest
import requests

from _server_fixtures import (FHIR_HEADERS, WRITE_BASE, db_url, live_write_server, pg_server, pg_url,  # noqa: F401
                              write_app, write_client)
from fhirstudy.server import STORE_EXTENSION

NCT = "https://clinicaltrials.gov"
LOC_URN = "urn:uuid:0b7c2a8e-4d1f-4c55-9a51-3f0f2a1b9c01"
STUDY_URN = "urn:uuid:5e1f1d3a-2b6c-4f7e-8a9d-0c1b2a3d4e5f"


def _post(client, bundle: dict, **headers):
    return client.post("/", data=orjson.dumps(bundle), headers={**FHIR_HEADERS, **headers})


def _bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _location(name: str = "Institut Curie", rid: str | None = None) -> dict:
    return {"resourceType": "Location", **({"id": rid} if rid else {}), "status": "active", "name": name}


def _study(rid: str, **extra) -> dict:
    return {"resourceType": "ResearchStudy", "id": rid, "status": "active", "title": f"Study {rid}", **extra}


def _put(resource: dict, full_url: str | None = None) -> dict:
    entry = {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}
    return {"fullUrl": full_url, **entry} if full_url else entry


def _statuses(response) -> list[str]:
    return [e["response"]["status"] for e in response.get_json()["entry"]]


# --- urn:uuid ---------------------------------------------------------------------------------------

def test_urn_uuid_references_become_type_and_new_id(write_client):
    bundle = _bundle("transaction",
                     _put(_study("rs-new", site=[{"reference": LOC_URN}]), STUDY_URN),
                     {"fullUrl": LOC_URN, "resource": _location(),
                      "request": {"method": "POST", "url": "Location"}})
    response = _post(write_client, bundle)
    assert response.status_code == 200
    result = response.get_json()
    assert result["type"] == "transaction-response"
    study_entry, location_entry = result["entry"]
    assert location_entry["response"]["status"] == "201 Created"
    new_id = location_entry["response"]["location"].split("/")[1]
    assert location_entry["response"]["location"] == f"Location/{new_id}/_history/1"
    assert location_entry["response"]["etag"] == 'W/"1"'
    assert location_entry["fullUrl"] == f"{WRITE_BASE}/Location/{new_id}"
    assert study_entry["response"]["status"] == "201 Created"
    stored = write_client.get("/ResearchStudy/rs-new").get_json()
    assert stored["site"] == [{"reference": f"Location/{new_id}"}]
    assert write_client.get(f"/Location/{new_id}").get_json()["name"] == "Institut Curie"
    assert write_client.get(f"/ResearchStudy?site=Location/{new_id}").get_json()["total"] == 1


def test_unresolved_urn_uuid_fails_the_transaction(write_client):
    bundle = _bundle("transaction", _put(_study("rs-new", site=[{"reference": LOC_URN}])))
    response = _post(write_client, bundle)
    assert response.status_code == 400
    assert "Bundle.entry[0]" in response.get_json()["issue"][0]["diagnostics"]
    assert write_client.get("/ResearchStudy/rs-new").status_code == 404


def test_if_none_exist_entry_reuses_the_match_for_references(write_client):
    bundle = _bundle("transaction",
                     {"fullUrl": LOC_URN, "resource": _location("Elsewhere"),
                      "request": {"method": "POST", "url": "Location", "ifNoneExist": "name:exact=Mayo Clinic"}},
                     _put(_study("rs-new", site=[{"reference": LOC_URN}])))
    response = _post(write_client, bundle)
    assert response.status_code == 200
    assert _statuses(response) == ["200 OK", "201 Created"]
    assert write_client.get("/ResearchStudy/rs-new").get_json()["site"] == [{"reference": "Location/loc-2"}]
    assert write_client.get("/Location?name=elsewhere").get_json()["total"] == 0


# --- all or nothing -----------------------------------------------------------------------------------

FAILING_SECOND_ENTRIES = [
    # (second entry, status, expression of the entry's issue, words)
    (_put({**_study("rs-bad"), "status": "bogus"}), 422, "Bundle.entry[1].resource.status", "bogus"),
    ({"resource": _study("rs-1", title="X"), "request": {"method": "PUT", "url": "ResearchStudy/rs-1",
                                                          "ifMatch": 'W/"7"'}}, 412, "If-Match", "version 7"),
    ({"request": {"method": "DELETE", "url": "ResearchStudy/nope"}}, 404, "Bundle.entry[1]", "nope"),
    ({"resource": _study("rs-x"), "request": {"method": "PUT", "url": "ResearchStudy?status=active"}}, 412,
     "criteria", "more than one"),
    ({"resource": _study("rs-x"), "request": {"method": "PATCH", "url": "ResearchStudy/rs-x"}}, 400,
     "Bundle.entry[1].request.method", "PATCH"),
    (_put(_location("Twice", "loc-new")), 400, "Bundle.entry[1]", "more than one entry"),
]


@pytest.mark.parametrize("second,status,expression,words", FAILING_SECOND_ENTRIES)
def test_a_failing_entry_rolls_back_the_whole_transaction(write_client, write_app, second, status, expression,
                                                          words):
    before = write_app.extensions[STORE_EXTENSION].history(count=0).total
    bundle = _bundle("transaction", _put(_location("First", "loc-new")), second)
    response = _post(write_client, bundle)
    assert response.status_code == status
    issues = response.get_json()["issue"]
    assert issues[0]["expression"] == ["Bundle.entry[1]"] and "nothing was written" in issues[0]["diagnostics"]
    assert any(expression in i.get("expression", [""])[0] and words.lower() in i["diagnostics"].lower()
               for i in issues[1:])
    assert write_client.get("/Location/loc-new").status_code == 404
    assert write_client.get("/ResearchStudy/rs-1").headers["ETag"] == 'W/"1"'
    assert write_app.extensions[STORE_EXTENSION].history(count=0).total == before


# --- entries of every kind ------------------------------------------------------------------------------

def test_transaction_with_put_conditional_put_and_delete(write_client):
    bundle = _bundle(
        "transaction",
        _put(_location("Updated name", "loc-1")),
        {"resource": {k: v for k, v in _study("x", title="Conditional").items() if k != "id"},
         "request": {"method": "PUT", "url": f"ResearchStudy?identifier={NCT}|NCT06731140"}},
        {"request": {"method": "DELETE", "url": "ResearchStudy/rs-3"}},
        {"request": {"method": "GET", "url": "Organization/org-1"}},
    )
    response = _post(write_client, bundle, Prefer="return=representation")
    assert response.status_code == 200
    assert _statuses(response) == ["200 OK", "200 OK", "204 No Content", "200 OK"]
    entries = response.get_json()["entry"]
    assert entries[0]["resource"]["name"] == "Updated name" and entries[0]["response"]["etag"] == 'W/"2"'
    assert entries[1]["resource"]["id"] == "rs-1" and entries[1]["response"]["location"] == "ResearchStudy/rs-1/_history/2"
    assert entries[3]["resource"]["id"] == "org-1"
    assert write_client.get("/ResearchStudy/rs-1").get_json()["title"] == "Conditional"
    assert write_client.get("/ResearchStudy/rs-3").status_code == 410


def test_batch_answers_each_entry(write_client):
    bundle = _bundle(
        "batch",
        _put(_location("Good", "loc-new")),
        _put({**_study("rs-bad"), "status": "bogus"}),
        {"request": {"method": "DELETE", "url": "Location/nope"}},
        {"resource": _location("Posted"), "request": {"method": "POST", "url": "Location"}},
        {"request": {"method": "GET", "url": "Location/loc-1"}},
        {"request": {"method": "GET", "url": "Location/missing"}},
    )
    response = _post(write_client, bundle, Prefer="return=OperationOutcome")
    assert response.status_code == 200
    result = response.get_json()
    assert result["type"] == "batch-response"
    assert _statuses(response) == ["201 Created", "422 Unprocessable Entity", "404 Not Found", "201 Created",
                                   "200 OK", "404 Not Found"]
    bad = result["entry"][1]["response"]["outcome"]["issue"]
    assert bad[0]["expression"] == ["ResearchStudy.status"] and bad[0]["severity"] == "error"
    assert result["entry"][0]["response"]["outcome"]["issue"][0]["severity"] == "information"
    assert result["entry"][4]["resource"]["id"] == "loc-1"
    assert write_client.get("/Location/loc-new").status_code == 200
    assert write_client.get("/ResearchStudy/rs-bad").status_code == 404
    assert write_client.get("/Location?name=posted").get_json()["total"] == 1


@pytest.mark.parametrize("body,status,words", [
    ({"resourceType": "Bundle", "type": "collection", "entry": []}, 400, "transaction or batch"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": {}}, 400, "array"),
    ({"resourceType": "Location", "name": "x"}, 400, "Bundle"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": _location()}]}, 400, "request"),
])
def test_bad_bundles(write_client, body, status, words):
    response = _post(write_client, body)
    assert response.status_code == status
    assert words.lower() in " ".join(i["diagnostics"] for i in response.get_json()["issue"]).lower()


def test_empty_transaction(write_client):
    response = _post(write_client, _bundle("transaction"))
    assert response.status_code == 200 and response.get_json()["entry"] == []


# --- converted seed bundles -------------------------------------------------------------------------------

def test_converted_seed_bundles_load_and_reload_without_new_versions(write_client, write_app, seed_conversions):
    bundles = [c.bundle for c in seed_conversions.values() if c.ok]
    assert bundles
    store = write_app.extensions[STORE_EXTENSION]
    for bundle in bundles:
        response = _post(write_client, bundle)
        assert response.status_code == 200, response.get_json()
        assert set(_statuses(response)) == {"201 Created"}
    versions = store.history(count=0).total
    for bundle in bundles:
        response = _post(write_client, copy.deepcopy(bundle))
        assert response.status_code == 200
        assert set(_statuses(response)) == {"200 OK"}
        assert {e["response"]["etag"] for e in response.get_json()["entry"]} == {'W/"1"'}
    assert store.history(count=0).total == versions
    for bundle in bundles:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            stored = write_client.get(f"/{resource['resourceType']}/{resource['id']}").get_json()
            assert {k: v for k, v in stored.items() if k != "meta"} == \
                {k: v for k, v in resource.items() if k != "meta"}


def test_seed_bundle_over_real_http(live_write_server, seed_conversions):
    bundle = next(c.bundle for c in seed_conversions.values() if c.ok)
    with requests.Session() as session:
        first = session.post(f"{live_write_server}/", data=orjson.dumps(bundle), headers=FHIR_HEADERS, timeout=60)
        assert first.status_code == 200 and first.headers["Content-Type"] == "application/fhir+json"
        assert {e["response"]["status"] for e in first.json()["entry"]} == {"201 Created"}
        again = session.post(f"{live_write_server}/", data=orjson.dumps(bundle), headers=FHIR_HEADERS, timeout=60)
        assert {e["response"]["status"] for e in again.json()["entry"]} == {"200 OK"}
        study = bundle["entry"][0]["resource"]
        history = session.get(f"{live_write_server}/ResearchStudy/{study['id']}/_history", timeout=10).json()
        assert history["total"] == 1
