"""REST writes: create, update, delete, conditional ones, preconditions, Prefer, auth, $validate —
on a SQLite file and on a real PostgreSQL server, and through a real HTTP server."""
from __future__ import annotations

import threading
import uuid

import orjson
import pytest
import requests

from _server_fixtures import (AUTH, FHIR_HEADERS, WRITE_BASE, WRITE_TOKEN, db_url, live_write_server,  # noqa: F401
                              pg_server, pg_url, sample_resources, write_app, write_client)
from fhirstudy.server import STORE_EXTENSION, close_store, create_app
from fhirstudy.validation import validate_resource

FHIR_JSON = "application/fhir+json"
LOCATION = {"resourceType": "Location", "id": "loc-new", "status": "active", "name": "Institut Curie"}
NCT = "https://clinicaltrials.gov"


def _study(rid: str = "rs-1", **changes) -> dict:
    study = next(r for r in sample_resources() if r["id"] == rid)
    return {**study, "status": "active", **changes}  # "completed" is not an R5 ResearchStudy.status


def _send(client, method: str, url: str, body=None, headers=None):
    data = body if isinstance(body, (bytes, str)) or body is None else orjson.dumps(body)
    return client.open(url, method=method, data=data, headers={**FHIR_HEADERS, **(headers or {})})


def _store(app):
    return app.extensions[STORE_EXTENSION]


# --- errors: status, issue code, expression, words ---------------------------------------------------

WRITE_ERRORS = [
    # (method, url, body, extra headers, status, issue code, expression, words in diagnostics)
    ("PUT", "/ResearchStudy/rs-1", _study("rs-2"), {}, 400, "invalid", "ResearchStudy.id", "does not match"),
    ("PUT", "/ResearchStudy/rs-9", {k: v for k, v in _study().items() if k != "id"}, {}, 400, "invalid",
     "ResearchStudy.id", "does not match"),
    ("PUT", "/ResearchStudy/loc-new", LOCATION, {}, 400, "invalid", "resourceType", "not a ResearchStudy"),
    ("POST", "/ResearchStudy", b"{not json", {}, 400, "invalid", None, "not JSON"),
    ("POST", "/ResearchStudy", b"[1, 2]", {}, 400, "invalid", None, "resourceType"),
    ("POST", "/ResearchStudy", orjson.dumps(_study()), {"Content-Type": "text/plain"}, 415, "not-supported",
     None, "text/plain"),
    ("POST", "/ResearchStudy", orjson.dumps(_study()), {"Content-Type": "application/fhir+xml"}, 415,
     "not-supported", None, "xml"),
    ("PUT", "/Patient/p1", {"resourceType": "Patient", "id": "p1"}, {}, 404, "not-found", None, "Patient"),
    ("PUT", "/ResearchStudy/rs-1", _study(title="X"), {"If-Match": 'W/"9"'}, 412, "conflict", "If-Match",
     "version 9"),
    ("PUT", "/ResearchStudy/rs-1", _study(title="X"), {"If-Match": "banana"}, 400, "invalid", "If-Match", "banana"),
    ("PUT", "/ResearchStudy/rs-new", _study("rs-1", id="rs-new"), {"If-Match": 'W/"1"'}, 412, "conflict",
     "If-Match", "no current version"),
    ("DELETE", "/ResearchStudy/rs-1", None, {"If-Match": 'W/"2"'}, 412, "conflict", "If-Match", "version 1"),
    ("DELETE", "/ResearchStudy/nope", None, {}, 404, "not-found", None, "ResearchStudy/nope"),
    ("POST", "/ResearchStudy", _study(), {"If-None-Exist": "status=active"}, 412, "conflict", "If-None-Exist",
     "more than one"),
    ("PUT", "/ResearchStudy?status=active", _study(), {}, 412, "conflict", "criteria", "more than one"),
    ("PUT", "/ResearchStudy", _study(), {}, 400, "invalid", None, "criteria"),
    ("PUT", "/ResearchStudy?unknown=1", _study(), {}, 400, "invalid", "unknown", "unknown"),
    ("PUT", f"/ResearchStudy?identifier={NCT}|NCT06731140", _study("rs-2"), {}, 400, "invalid",
     "ResearchStudy.id", "rs-1"),
    ("PUT", f"/ResearchStudy?identifier={NCT}|NCT-none", _study("rs-2"), {}, 409, "conflict",
     "ResearchStudy.id", "rs-2"),
    ("DELETE", "/ResearchStudy?status=active", None, {}, 412, "conflict", "criteria", "more than one"),
    ("PATCH", "/ResearchStudy/rs-1", _study(), {}, 405, "not-supported", None, "not allowed"),
    ("PUT", "/ResearchStudy/rs-1?_format=xml", _study(), {}, 406, "not-supported", "_format", "xml"),
]


@pytest.mark.parametrize("method,url,body,headers,status,code,expression,words", WRITE_ERRORS)
def test_write_errors_are_operation_outcomes(write_client, method, url, body, headers, status, code,
                                             expression, words):
    response = _send(write_client, method, url, body, headers)
    assert response.status_code == status
    assert response.content_type == FHIR_JSON
    (issue,) = response.get_json()["issue"]
    assert issue["severity"] == "error"
    assert issue["code"] == code
    assert issue.get("expression") == ([expression] if expression else None)
    assert words.lower() in issue["diagnostics"].lower()
    # nothing changed
    assert write_client.get("/ResearchStudy/rs-1").headers["ETag"] == 'W/"1"'


def test_invalid_resource_lists_every_issue_with_its_expression(write_client):
    bad = _study(status="bogus", title=5, unknownElement=True)
    response = _send(write_client, "PUT", "/ResearchStudy/rs-1", bad)
    assert response.status_code == 422
    issues = response.get_json()["issue"]
    assert {(i["severity"], i["code"], i["expression"][0]) for i in issues} == {
        ("error", "invalid", "ResearchStudy.status"), ("error", "invalid", "ResearchStudy.title"),
        ("error", "invalid", "ResearchStudy.unknownElement")}
    assert write_client.get("/ResearchStudy/rs-1").get_json()["status"] == "active"


# --- create, update, delete ------------------------------------------------------------------------

def test_post_creates_with_a_server_assigned_id(write_client, write_app):
    response = _send(write_client, "POST", "/Location", LOCATION)
    assert response.status_code == 201
    created = response.get_json()
    new_id = created["id"]
    assert new_id != "loc-new" and uuid.UUID(new_id).version == 4
    assert response.headers["Location"] == f"{WRITE_BASE}/Location/{new_id}/_history/1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Last-Modified"] == "Sat, 01 Feb 2025 00:00:00 GMT"
    assert created["meta"] == {"versionId": "1", "lastUpdated": "2025-02-01T00:00:00.000Z"}
    read = write_client.get(f"/Location/{new_id}")
    assert read.status_code == 200 and read.data == response.data == _store(write_app).read("Location", new_id)
    assert write_client.get("/Location?name=institut").get_json()["total"] == 1


def test_put_creates_updates_and_keeps_unchanged_versions(write_client, write_app):
    created = _send(write_client, "PUT", "/Location/loc-new", LOCATION)
    assert created.status_code == 201 and created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"] == f"{WRITE_BASE}/Location/loc-new/_history/1"
    same = _send(write_client, "PUT", "/Location/loc-new", LOCATION)
    assert same.status_code == 200 and same.headers["ETag"] == 'W/"1"'
    updated = _send(write_client, "PUT", "/Location/loc-new", {**LOCATION, "name": "Curie"},
                    {"If-Match": 'W/"1"'})
    assert updated.status_code == 200 and updated.headers["ETag"] == 'W/"2"'
    assert updated.get_json()["name"] == "Curie"
    assert write_client.get("/Location/loc-new").data == _store(write_app).read("Location", "loc-new")
    assert _store(write_app).history("Location", "loc-new").total == 2
    assert write_client.get("/Location?name=institut").get_json()["total"] == 0


def test_application_json_is_accepted(write_client):
    response = _send(write_client, "PUT", "/Location/loc-new", LOCATION, {"Content-Type": "application/json"})
    assert response.status_code == 201


@pytest.mark.parametrize("prefer,status,check", [
    ("return=minimal", 201, lambda r: r.data == b""),
    ("return=representation", 201, lambda r: r.get_json()["name"] == "Institut Curie"),
    (None, 201, lambda r: r.get_json()["id"] == "loc-new"),
    ("return=OperationOutcome", 201, lambda r: r.get_json()["issue"][0]["severity"] == "information"
     and "Created Location/loc-new" in r.get_json()["issue"][0]["diagnostics"]),
])
def test_prefer_return(write_client, prefer, status, check):
    response = _send(write_client, "PUT", "/Location/loc-new", LOCATION, {"Prefer": prefer} if prefer else {})
    assert response.status_code == status
    assert response.headers["ETag"] == 'W/"1"' and "Location" in response.headers
    assert check(response)


def test_delete_then_read_is_gone_and_search_forgets(write_client, write_app):
    response = _send(write_client, "DELETE", "/ResearchStudy/rs-2", headers={"If-Match": 'W/"1"'})
    assert response.status_code == 204 and response.data == b""
    assert response.headers["ETag"] == 'W/"2"'
    gone = write_client.get("/ResearchStudy/rs-2")
    assert gone.status_code == 410
    assert gone.get_json()["issue"][0]["code"] == "deleted"
    assert write_client.get("/ResearchStudy?_id=rs-2").get_json()["total"] == 0
    assert write_client.get("/ResearchStudy?identifier=NCT00000002").get_json()["total"] == 0
    again = _send(write_client, "DELETE", "/ResearchStudy/rs-2")
    assert again.status_code == 204 and again.headers["ETag"] == 'W/"2"'  # no new version
    recreated = _send(write_client, "PUT", "/ResearchStudy/rs-2", _study("rs-2"))
    assert recreated.status_code == 201 and recreated.headers["ETag"] == 'W/"3"'
    assert write_client.get("/ResearchStudy?identifier=NCT00000002").get_json()["total"] == 1


def test_delete_with_prefer_outcome(write_client):
    response = _send(write_client, "DELETE", "/Location/loc-1", headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 200
    assert "Deleted Location/loc-1" in response.get_json()["issue"][0]["diagnostics"]


# --- conditional interactions ----------------------------------------------------------------------

def test_conditional_create_returns_the_one_match(write_client, write_app):
    response = _send(write_client, "POST", "/ResearchStudy", _study(title="Other"),
                     {"If-None-Exist": f"identifier={NCT}|NCT06731140"})
    assert response.status_code == 200
    assert response.get_json()["id"] == "rs-1" and response.get_json()["title"] != "Other"
    assert response.headers["ETag"] == 'W/"1"'
    assert write_client.get("/ResearchStudy?_count=0").get_json()["total"] == 25


def test_conditional_create_creates_when_nothing_matches(write_client):
    response = _send(write_client, "POST", "/ResearchStudy", _study(identifier=[{"system": NCT, "value": "NCT-NEW"}]),
                     {"If-None-Exist": f"identifier={NCT}|NCT-NEW"})
    assert response.status_code == 201
    assert write_client.get("/ResearchStudy?identifier=NCT-NEW").get_json()["total"] == 1


def test_conditional_update_updates_the_match(write_client):
    body = {k: v for k, v in _study(title="Renamed").items() if k != "id"}
    response = _send(write_client, "PUT", f"/ResearchStudy?identifier={NCT}|NCT06731140", body)
    assert response.status_code == 200
    assert response.get_json()["id"] == "rs-1" and response.headers["ETag"] == 'W/"2"'
    assert write_client.get("/ResearchStudy/rs-1").get_json()["title"] == "Renamed"


def test_conditional_update_creates_when_nothing_matches(write_client):
    body = {k: v for k, v in _study(identifier=[{"system": NCT, "value": "NCT-NEW"}]).items() if k != "id"}
    response = _send(write_client, "PUT", f"/ResearchStudy?identifier={NCT}|NCT-NEW", body)
    assert response.status_code == 201
    new_id = response.get_json()["id"]
    assert response.headers["Location"] == f"{WRITE_BASE}/ResearchStudy/{new_id}/_history/1"
    again = _send(write_client, "PUT", f"/ResearchStudy?identifier={NCT}|NCT-NEW", body)
    assert again.status_code == 200 and again.get_json()["id"] == new_id and again.headers["ETag"] == 'W/"1"'


def test_conditional_delete(write_client):
    response = _send(write_client, "DELETE", f"/ResearchStudy?identifier={NCT}|NCT00000002")
    assert response.status_code == 204
    assert write_client.get("/ResearchStudy/rs-2").status_code == 410
    nothing = _send(write_client, "DELETE", f"/ResearchStudy?identifier={NCT}|NCT00000002")
    assert nothing.status_code == 204


# --- auth ----------------------------------------------------------------------------------------

WRITES = [
    ("PUT", "/Location/loc-new", LOCATION),
    ("POST", "/Location", LOCATION),
    ("DELETE", "/Location/loc-1", None),
    ("PUT", "/Location?name=x", LOCATION),
    ("POST", "/", {"resourceType": "Bundle", "type": "batch"}),
]


@pytest.mark.parametrize("method,url,body", WRITES)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Basic {WRITE_TOKEN}", "Bearer "])
def test_writes_need_the_token(write_client, method, url, body, authorization):
    headers = {"Content-Type": FHIR_JSON, **({"Authorization": authorization} if authorization else {})}
    response = write_client.open(url, method=method, data=orjson.dumps(body) if body else None, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    (issue,) = response.get_json()["issue"]
    assert issue["code"] == "login" and "token" in issue["diagnostics"].lower()
    assert write_client.get("/Location/loc-1").status_code == 200


@pytest.fixture
def read_only_client(tmp_path, monkeypatch):
    monkeypatch.delenv("FHIRSTUDY_WRITE_TOKEN", raising=False)
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'ro.db'}"})
    _store(app).put_many(sample_resources())
    yield app.test_client()
    close_store(app)


@pytest.mark.parametrize("method,url,body", WRITES)
def test_writes_are_forbidden_without_a_configured_token(read_only_client, method, url, body):
    response = read_only_client.open(url, method=method, data=orjson.dumps(body) if body else None,
                                     headers=FHIR_HEADERS)
    assert response.status_code == 403
    (issue,) = response.get_json()["issue"]
    assert issue["code"] == "forbidden" and "writes are disabled" in issue["diagnostics"].lower()
    assert read_only_client.get("/Location/loc-1").status_code == 200


def test_token_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FHIRSTUDY_WRITE_TOKEN", "from-env")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}"})
    try:
        client = app.test_client()
        headers = {"Content-Type": FHIR_JSON, "Authorization": "Bearer from-env"}
        assert client.put("/Location/loc-new", data=orjson.dumps(LOCATION), headers=headers).status_code == 201
    finally:
        close_store(app)


# --- $validate -------------------------------------------------------------------------------------

VALIDATE_CASES = [
    # (url, body, expected issues as (severity, expression))
    ("/Location/$validate", LOCATION, [("information", None)]),
    ("/Location/loc-1/$validate", LOCATION, [("information", None)]),
    ("/Location/$validate", {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": LOCATION}]},
     [("information", None)]),
    ("/Location/$validate", {**LOCATION, "status": "bogus", "name": 3},
     [("error", "Location.status"), ("error", "Location.name")]),
    ("/ResearchStudy/$validate", {"resourceType": "ResearchStudy", "id": "x"}, [("error", "ResearchStudy.status")]),
]


@pytest.mark.parametrize("url,body,expected", VALIDATE_CASES)
def test_validate_operation_needs_no_token(read_only_client, url, body, expected):
    response = read_only_client.post(url, data=orjson.dumps(body), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert sorted((i["severity"], (i.get("expression") or [None])[0]) for i in outcome["issue"]) == \
        sorted(expected, key=lambda e: (e[0], e[1] or ""))
    assert read_only_client.get("/Location?_count=0").get_json()["total"] == 2  # nothing written


@pytest.mark.parametrize("body,headers,status", [
    (LOCATION, {"Content-Type": "text/plain"}, 415),
    ({"resourceType": "Parameters", "parameter": []}, {"Content-Type": FHIR_JSON}, 400),
    ({**LOCATION, "resourceType": "Organization"}, {"Content-Type": FHIR_JSON}, 400),
])
def test_validate_operation_errors(read_only_client, body, headers, status):
    response = read_only_client.post("/Location/$validate", data=orjson.dumps(body), headers=headers)
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"


# --- formats and metadata --------------------------------------------------------------------------

def test_pretty(write_client):
    response = _send(write_client, "PUT", "/Location/loc-new?_pretty=true", LOCATION)
    assert response.status_code == 201
    assert response.data.startswith(b'{\n  "resourceType": "Location"')
    error = _send(write_client, "PUT", "/Location/other?_pretty=true", LOCATION)
    assert error.status_code == 400 and b'\n  "issue"' in error.data


def test_capability_statement_declares_writes_only_when_enabled(write_client, read_only_client):
    writable = write_client.get("/metadata").get_json()
    read_only = read_only_client.get("/metadata").get_json()
    for statement in (writable, read_only):
        validate_resource(statement)
    codes = {r["type"]: [i["code"] for i in r["interaction"]] for r in writable["rest"][0]["resource"]}
    assert codes["ResearchStudy"] == ["read", "vread", "history-instance", "history-type", "search-type",
                                      "create", "update", "delete"]
    assert [i["code"] for i in writable["rest"][0]["interaction"]] == ["transaction", "batch", "history-system"]
    study = next(r for r in writable["rest"][0]["resource"] if r["type"] == "ResearchStudy")
    assert study["conditionalCreate"] and study["conditionalUpdate"] and study["updateCreate"]
    assert study["operation"][0]["name"] == "validate"
    ro_codes = [i["code"] for i in read_only["rest"][0]["resource"][0]["interaction"]]
    assert ro_codes == ["read", "vread", "history-instance", "history-type", "search-type"]
    assert [i["code"] for i in read_only["rest"][0]["interaction"]] == ["history-system"]


# --- concurrency and real HTTP -----------------------------------------------------------------------

WRITERS = 8


def test_racing_writers_on_one_id_do_not_corrupt(live_write_server, write_app):
    barrier = threading.Barrier(WRITERS)
    statuses: list[int] = []

    def write(n: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            response = session.put(f"{live_write_server}/Location/raced", timeout=60, headers=FHIR_HEADERS,
                                   data=orjson.dumps({**LOCATION, "id": "raced", "name": f"Writer {n}"}))
            statuses.append(response.status_code)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * (WRITERS - 1) + [201]
    store = _store(write_app)
    history = store.history("Location", "raced", count=100)
    assert sorted(e.version for e in history.entries) == list(range(1, WRITERS + 1))
    current = store.read_entry("Location", "raced")
    assert current.version == WRITERS
    assert orjson.loads(current.json)["name"] == orjson.loads(history.entries[0].json)["name"]
    found = requests.get(f"{live_write_server}/Location", params={"_id": "raced"}, timeout=10).json()
    assert found["total"] == 1


def test_write_read_delete_over_real_http(live_write_server):
    with requests.Session() as session:
        created = session.post(f"{live_write_server}/Location", data=orjson.dumps(LOCATION), headers=FHIR_HEADERS,
                               timeout=10)
        assert created.status_code == 201
        new_id = created.json()["id"]
        assert created.headers["Location"].endswith(f"/Location/{new_id}/_history/1")
        read = session.get(f"{live_write_server}/Location/{new_id}", timeout=10)
        assert read.content == created.content
        assert session.get(f"{live_write_server}/Location/{new_id}", headers={"If-None-Match": 'W/"1"'},
                           timeout=10).status_code == 304
        refused = session.delete(f"{live_write_server}/Location/{new_id}", timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        deleted = session.delete(f"{live_write_server}/Location/{new_id}", headers=AUTH, timeout=10)
        assert deleted.status_code == 204
        assert session.get(f"{live_write_server}/Location/{new_id}", timeout=10).status_code == 410
