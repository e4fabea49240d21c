"""What the server takes from a client, at the boundary: integers, Bundle entry types, nesting,
control characters, conditional criteria, ids, sizes, headers — each a 4xx with an
OperationOutcome naming the place, never a 500 (nor a 503), on SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import shutil

import orjson
import pytest

from _server_fixtures import (AUTH, FHIR_HEADERS, WRITE_BASE, db_url, pg_server, pg_url,  # noqa: F401
                              sample_resources, write_app, write_client)
from fhirstudy.errors import ValidationFailed
from fhirstudy.limits import MAX_BUNDLE_ENTRIES, MAX_HEADER_BYTES, MAX_HISTORY_OFFSET, MAX_URL_BYTES
from fhirstudy.server import close_store, create_app
from fhirstudy.server.cache import MAX_KEY_BYTES, ResponseCache
from fhirstudy.validation import validate_resource

FHIR_JSON = "application/fhir+json"
LOCATION = {"resourceType": "Location", "id": "loc-b", "status": "active", "name": "Boundary"}
NCT = "https://clinicaltrials.gov"
HUGE = "1" + "0" * 20  # 10^20, past 64 bits


def _send(client, method: str, url: str, body=None, headers=None):
    data = body if isinstance(body, (bytes, str)) or body is None else orjson.dumps(body)
    return client.open(url, method=method, data=data, headers={**FHIR_HEADERS, **(headers or {})})


def _issues(response) -> list[dict]:
    assert response.content_type == FHIR_JSON, response.data[:200]
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def _expressions(response) -> set[str]:
    return {e for issue in _issues(response) for e in issue.get("expression", [])}


# --- 1. integers past int() or 64 bits ------------------------------------------------------------

INTEGERS = [
    # (method, url, extra headers, status, expression)
    ("GET", "/Location/loc-1/_history/²", {}, 404, None),
    ("GET", f"/Location/loc-1/_history/{HUGE}", {}, 404, None),
    ("GET", "/Location/loc-1/_history/0", {}, 404, None),
    ("GET", f"/Location/loc-1/_history/{2**31}", {}, 404, None),  # past PostgreSQL's integer column
    ("GET", f"/Location/loc-1/_history/{2**63 - 1}", {}, 404, None),
    ("PUT", "/Location/loc-1", {"If-Match": f'W/"{2**31}"'}, 412, "If-Match"),
    ("PUT", "/Location/loc-1", {"If-Match": 'W/"²"'}, 400, "If-Match"),
    ("PUT", "/Location/loc-1", {"If-Match": f'W/"{HUGE}"'}, 400, "If-Match"),
    ("DELETE", "/Location/loc-1", {"If-Match": 'W/"²"'}, 400, "If-Match"),
    ("DELETE", "/Location/loc-1", {"If-Match": f'W/"{2**63 - 1}"'}, 412, "If-Match"),
    ("GET", "/_history?_count=²", {}, 400, "_count"),
    ("GET", f"/_history?_count={HUGE}", {}, 400, "_count"),
    ("GET", "/Location/_history?_offset=²", {}, 400, "_offset"),
    ("GET", f"/Location/loc-1/_history?_offset={HUGE}", {}, 400, "_offset"),
    ("GET", "/_history?_offset=-1", {}, 400, "_offset"),
]


@pytest.mark.parametrize("method,url,headers,status,expression", INTEGERS)
def test_integers_from_outside_go_through_the_one_parser(write_client, method, url, headers, status, expression):
    body = {"resourceType": "Location", "id": "loc-1", "status": "active", "name": "X"} if method == "PUT" else None
    response = _send(write_client, method, url, body, headers)
    assert response.status_code == status
    (issue,) = _issues(response)
    assert issue.get("expression") == ([expression] if expression else None)
    assert write_client.get("/Location/loc-1").headers["ETag"] == 'W/"1"'


def test_history_offset_is_capped_and_the_next_link_stops_there(write_client):
    response = write_client.get(f"/_history?_offset={MAX_HISTORY_OFFSET + 1}")
    assert response.status_code == 400
    (issue,) = _issues(response)
    assert issue["expression"] == ["_offset"] and "_since" in issue["diagnostics"]
    deepest = write_client.get(f"/_history?_count=5&_offset={MAX_HISTORY_OFFSET}")
    assert deepest.status_code == 200


# --- 7. the system history's self link -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/_history", "/Location/_history", "/Location/loc-1/_history"])
def test_history_self_link_has_one_slash(write_client, path):
    (link,) = [link for link in write_client.get(path).get_json()["link"] if link["relation"] == "self"]
    assert link["url"].startswith(f"{WRITE_BASE}{path}?")


# --- 2. Bundle entries: the JSON type of every element ------------------------------------------------

def _post_entry(**request) -> dict:
    return {"fullUrl": "urn:uuid:0b6a4f4e-3b4a-4d0e-9d55-111111111111", "resource": dict(LOCATION, id="x"),
            "request": {"method": "POST", "url": "Location", **request}}


ENTRY_TYPES = [
    # (entry, expression)
    (_post_entry(ifNoneExist={"identifier": "x"}), "Bundle.entry[0].request.ifNoneExist"),
    (_post_entry(ifNoneExist=["identifier=x"]), "Bundle.entry[0].request.ifNoneExist"),
    (_post_entry(ifMatch=1), "Bundle.entry[0].request.ifMatch"),
    (_post_entry(ifMatch={"v": 1}), "Bundle.entry[0].request.ifMatch"),
    (_post_entry(ifNoneMatch=7), "Bundle.entry[0].request.ifNoneMatch"),
    (_post_entry(ifModifiedSince=False), "Bundle.entry[0].request.ifModifiedSince"),
    (_post_entry(method=["POST"]), "Bundle.entry[0].request.method"),
    (_post_entry(url={"Location": 1}), "Bundle.entry[0].request.url"),
    ({**_post_entry(), "fullUrl": 5}, "Bundle.entry[0].fullUrl"),
    ({**_post_entry(), "resource": "Location"}, "Bundle.entry[0].resource"),
    ({**_post_entry(), "request": "POST Location"}, "Bundle.entry[0].request"),
    ("an entry", "Bundle.entry[0]"),
    (_post_entry(ifMatch='W/"²"'), "Bundle.entry[0].request.ifMatch"),
    (_post_entry(ifNoneExist="_count=1"), "Bundle.entry[0].request.ifNoneExist"),
    ({"request": {"method": "GET", "url": "Location/" + "x" * 65}}, "Bundle.entry[0].request.url"),
]


@pytest.mark.parametrize("entry,expression", ENTRY_TYPES)
def test_transaction_entry_of_the_wrong_json_type_is_400_naming_it(write_client, entry, expression):
    response = _send(write_client, "POST", "/", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    assert response.status_code == 400
    assert expression in _expressions(response)


@pytest.mark.parametrize("entry,expression", ENTRY_TYPES)
def test_batch_entry_of_the_wrong_json_type_is_answered_400_in_its_entry(write_client, entry, expression):
    read = {"request": {"method": "GET", "url": "Location/loc-1"}}
    response = _send(write_client, "POST", "/", {"resourceType": "Bundle", "type": "batch", "entry": [entry, read]})
    assert response.status_code == 200
    bad, good = response.get_json()["entry"]
    assert bad["response"]["status"] == "400 Bad Request"
    assert expression in {e for i in bad["response"]["outcome"]["issue"] for e in i.get("expression", [])}
    assert good["response"]["status"] == "200 OK"


@pytest.mark.parametrize("entries", [{}, "entries", 3, {"0": {}}])
def test_bundle_entry_not_a_list(write_client, entries):
    response = _send(write_client, "POST", "/", {"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert response.status_code == 400 and _expressions(response) == {"Bundle.entry"}


def test_too_many_entries_is_413_before_any_work(write_client):
    entry = {"request": {"method": "GET", "url": "Location/loc-1"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * (MAX_BUNDLE_ENTRIES + 1)}
    response = _send(write_client, "POST", "/", bundle)
    assert response.status_code == 413
    (issue,) = _issues(response)
    assert issue["code"] == "too-costly" and str(MAX_BUNDLE_ENTRIES) in issue["diagnostics"]


# --- 3. nesting -----------------------------------------------------------------------------------------

def _nested(key: str, depth: int) -> dict:
    node: dict = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(depth):
        node = {"url": "http://example.org/branch", key: [node]}
    return node


@pytest.mark.parametrize("body", [
    {"resourceType": "ResearchStudy", "status": "active", "extension": [_nested("extension", 200)]},
    {"resourceType": "ResearchStudy", "status": "active",
     "contained": [{"resourceType": "Location", "id": "l", "extension": [_nested("extension", 200)]}]},
])
def test_deep_nesting_is_400_without_a_token(write_client, body):
    response = write_client.post("/ResearchStudy/$validate", data=json.dumps(body),  # orjson stops at 254
                                 headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400
    (issue,) = _issues(response)
    assert "nests deeper" in issue["diagnostics"]


def test_validation_never_recurses_without_bound():
    deep = {"resourceType": "ResearchStudy", "status": "active", "extension": [_nested("extension", 5000)]}
    with pytest.raises(ValidationFailed) as failed:
        validate_resource(deep)
    (problem,) = failed.value.issues
    assert "nests deeper" in problem.reason


# --- 4. characters FHIR strings forbid --------------------------------------------------------------

CONTROL_CHARACTERS = [
    # (resource, expression of the issue)
    ({**LOCATION, "name": "Bound\u0000ary"}, "Location.name"),
    ({**LOCATION, "alias": ["ok", "bell\u0007"]}, "Location.alias[1]"),
    ({**LOCATION, "_name": {"extension": [{"url": "http://example.org/x", "valueString": "\u001b[2J"}]}},
     "Location._name.extension[0].valueString"),
    ({**LOCATION, "address": {"line": ["1 rue\u0000"]}}, "Location.address.line[0]"),
]


@pytest.mark.parametrize("resource,expression", CONTROL_CHARACTERS)
def test_control_characters_are_refused_by_validation(write_client, resource, expression):
    response = _send(write_client, "PUT", "/Location/loc-b", resource)
    assert response.status_code == 422
    assert expression in _expressions(response)
    assert write_client.get("/Location/loc-b").status_code == 404


def test_tab_cr_lf_are_allowed(write_client):
    response = _send(write_client, "PUT", "/Location/loc-b", {**LOCATION, "description": "a\tb\r\nc"})
    assert response.status_code == 201


@pytest.mark.parametrize("url", ["/Location?name=%00", "/Location?na%00me=x", "/Location/loc%00-1",
                                 "/Foo/a%00",  # an unknown type: the 404 hook must not look the id up
                                 "/Location?_format=json%01"])
def test_control_characters_in_the_url_are_400_not_a_database_error(write_client, url):
    response = write_client.get(url)
    assert response.status_code == 400
    assert "control character" in _issues(response)[0]["diagnostics"]


def test_control_characters_in_if_none_exist_are_400(write_client):
    response = _send(write_client, "POST", "/Location", LOCATION, {"If-None-Exist": "name=%00"})
    assert response.status_code == 400 and _expressions(response) == {"name"}  # parse_search names it


# --- 5. conditional interactions -------------------------------------------------------------------

def _conditional_create(identifier: str, urn: str) -> dict:
    resource = {"resourceType": "Location", "status": "active", "name": identifier,
                "identifier": [{"system": NCT, "value": identifier}]}
    return {"fullUrl": urn, "resource": resource,
            "request": {"method": "POST", "url": "Location", "ifNoneExist": f"identifier={NCT}|{identifier}"}}


def test_two_conditional_creates_of_one_new_identifier_create_one(write_client):
    first, second = "urn:uuid:00000000-0000-4000-8000-000000000001", "urn:uuid:00000000-0000-4000-8000-000000000002"
    study = {"resourceType": "ResearchStudy", "id": "rs-c", "status": "active",
             "site": [{"reference": first}, {"reference": second}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        _conditional_create("SITE-9", first), _conditional_create("SITE-9", second),
        {"resource": study, "request": {"method": "PUT", "url": "ResearchStudy/rs-c"}}]}
    response = _send(write_client, "POST", "/", bundle)
    assert response.status_code == 200, response.get_json()
    created, matched, _ = response.get_json()["entry"]
    assert created["response"]["status"] == "201 Created" and matched["response"]["status"] == "200 OK"
    assert created["fullUrl"] == matched["fullUrl"]
    found = write_client.get(f"/Location?identifier={NCT}|SITE-9").get_json()
    assert found["total"] == 1
    new_id = found["entry"][0]["resource"]["id"]
    sites = write_client.get("/ResearchStudy/rs-c").get_json()["site"]
    assert sites == [{"reference": f"Location/{new_id}"}] * 2


EMPTY_CRITERIA = [
    # (method, url, If-None-Exist, expression)
    ("DELETE", "/CodeSystem?_count=1", None, "criteria"),
    ("DELETE", "/CodeSystem?_sort=url&_offset=0&_summary=true&_elements=url", None, "criteria"),
    ("PUT", "/Location?_count=1&_format=json", None, "criteria"),
    ("POST", "/Location", "_count=1", "If-None-Exist"),
    ("POST", "/Location", "Location?_summary=count", "If-None-Exist"),
]


@pytest.mark.parametrize("method,url,if_none_exist,expression", EMPTY_CRITERIA)
def test_result_parameters_are_not_criteria(write_client, method, url, if_none_exist, expression):
    headers = {"If-None-Exist": if_none_exist} if if_none_exist else {}
    before = write_client.get("/_history").get_json()["total"]
    response = _send(write_client, method, url, {**LOCATION, "id": "loc-1"} if method == "PUT" else
                     LOCATION if method == "POST" else None, headers)
    assert response.status_code == 400
    assert _expressions(response) == {expression}
    assert write_client.get("/_history").get_json()["total"] == before  # nothing written
    assert write_client.get("/CodeSystem/cs-condition").status_code == 200


def test_result_parameters_beside_criteria_are_set_aside(write_client):
    response = _send(write_client, "DELETE", "/CodeSystem?url=https://nowhere.example/cs&_count=1")
    assert response.status_code == 204
    assert write_client.get("/CodeSystem/cs-condition").status_code == 200


# --- 12. ids, headers, formats, methods ----------------------------------------------------------------

REQUESTS = [
    # (method, url, extra headers, status, words in the diagnostics)
    ("GET", "/Location/" + "a" * 65, {}, 400, "not a FHIR id"),
    ("GET", "/Location/a_b", {}, 400, "not a FHIR id"),
    ("GET", "/Location/a%20b", {}, 400, "not a FHIR id"),
    ("GET", "/Location/%C3%A9", {}, 400, "not a FHIR id"),
    ("GET", "/Location/%FF", {}, 400, "not a FHIR id"),
    ("GET", "/Location/a$b/_history", {}, 400, "not a FHIR id"),
    ("DELETE", "/Location/" + "a" * 65, {}, 400, "not a FHIR id"),
    ("GET", "/Location/loc-1?_format=text/turtle", {}, 406, "_format"),
    ("GET", "/_history?_format=%FF", {}, 406, "_format"),
    ("GET", "/Location/loc-1", {"Accept": "image/png"}, 406, "image/png"),   # text/html is a page (test_pages)
    ("POST", "/Location", {"If-None-Exist": "&&=%%%"}, 400, ""),
    ("POST", "/Location", {"If-None-Exist": "bogus-param=1"}, 400, "bogus-param"),
    ("PATCH", "/Location/loc-1", {}, 405, "not allowed"),
    ("TRACE", "/", {}, 405, "not allowed"),
    ("GET", "/Location?name=" + "x" * MAX_URL_BYTES, {}, 414, "URL"),
    ("GET", "/metadata", {"X-Big": "x" * MAX_HEADER_BYTES}, 431, "X-Big"),
    ("GET", "/metadata", {f"X-{n}": "1" for n in range(120)}, 431, "header lines"),
]


@pytest.mark.parametrize("method,url,headers,status,words", REQUESTS)
def test_odd_requests_are_operation_outcomes(write_client, method, url, headers, status, words):
    response = _send(write_client, method, url, LOCATION if method == "POST" else None, headers)
    assert response.status_code == status
    (issue,) = _issues(response)
    assert words.lower() in issue["diagnostics"].lower()


GARBAGE_HEADERS = [
    {"Prefer": "return=%%%;;,=,handling=\u00e9"},
    {"Prefer": "return=" + "r" * 4000},
    {"If-None-Match": 'W/"²", , "', "Prefer": "respond-async"},
    {"If-None-Match": "*" * 4000},
]


@pytest.mark.parametrize("headers", GARBAGE_HEADERS)
def test_garbage_in_optional_headers_changes_nothing(write_client, headers):
    assert _send(write_client, "GET", "/Location/loc-1", None, headers).status_code in (200, 304)
    assert _send(write_client, "PUT", "/Location/loc-b", LOCATION, headers).status_code == 201
    assert write_client.get("/Location/loc-1?_pretty=maybe").status_code == 200


# --- 9. request body size -----------------------------------------------------------------------------

SMALL_BODY = 4096


@pytest.fixture
def small_client(tmp_path):
    """An app that takes bodies of SMALL_BODY bytes at most."""
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'small.db'}",
                      "WRITE_TOKEN": AUTH["Authorization"].split()[1], "MAX_BODY_BYTES": SMALL_BODY})
    yield app.test_client()
    close_store(app)


def _big_study() -> bytes:
    return orjson.dumps({"resourceType": "ResearchStudy", "status": "active", "title": "x" * SMALL_BODY})


@pytest.mark.parametrize("method,url,content_type,body", [
    ("POST", "/ResearchStudy/$validate", FHIR_JSON, _big_study()),
    ("POST", "/ResearchStudy", FHIR_JSON, _big_study()),
    ("POST", "/", FHIR_JSON, _big_study()),
    ("POST", "/ResearchStudy/_search", "application/x-www-form-urlencoded", b"title=" + b"x" * SMALL_BODY),
])
def test_a_body_over_the_limit_is_413(small_client, method, url, content_type, body):
    response = small_client.open(url, method=method, data=body, headers={**AUTH, "Content-Type": content_type})
    assert response.status_code == 413
    (issue,) = _issues(response)
    assert issue["code"] == "too-costly" and str(SMALL_BODY) in issue["diagnostics"]


def test_a_body_under_the_limit_is_taken(small_client):
    body = orjson.dumps({"resourceType": "ResearchStudy", "status": "active", "title": "x" * 100})
    response = small_client.post("/ResearchStudy/$validate", data=body, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200


@pytest.mark.parametrize("config", [{"MAX_BODY_BYTES": "lots"}, {"MAX_BODY_BYTES": 0}, {"MAX_URL_BYTES": "²"}])
def test_a_bad_limit_in_the_config_is_refused(tmp_path, config):
    with pytest.raises(Exception, match="MAX_"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", **config})


# --- 11. a database that cannot answer: 503 with Retry-After ----------------------------------------------

def test_store_error_is_503_with_retry_after(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite'}"})
    try:
        app.extensions["fhirstudy.store"].engine.dispose()
        shutil.rmtree(folder)
        response = app.test_client().get("/Location/loc-1")
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert _issues(response)[0]["code"] == "transient"
    finally:
        close_store(app)


# --- the search cache: keys count, long keys are not kept ------------------------------------------------

def test_cache_charges_keys_and_skips_long_ones():
    budget = 64 * 2**10
    cache = ResponseCache(budget)
    for n in range(1000):
        cache.put(("Location", (("name", f"{n}" + "x" * 2000),), False, "http://h"), 1, b"{}")
    assert 0 < cache.size <= budget
    long_key = ("Location", (("name", "x" * MAX_KEY_BYTES),), False, "http://h")
    cache.put(long_key, 1, b"{}")
    assert cache.get(long_key, 1) is None
    short_key = ("Location", (("name", "x"),), False, "http://h")
    cache.put(short_key, 1, b"{}")
    assert cache.get(short_key, 1) == b"{}"


@pytest.mark.parametrize("parameter", [5, "resource", {"name": "resource"}, [5, "x"]])
def test_validate_parameters_of_the_wrong_type_is_400(write_client, parameter):
    response = write_client.post("/Location/$validate", headers={"Content-Type": FHIR_JSON},
                                 data=orjson.dumps({"resourceType": "Parameters", "parameter": parameter}))
    assert response.status_code == 400 and _expressions(response) == {"Parameters.parameter"}


# --- 6. the Host header, echoed into links when no BASE_URL is configured ---------------------------------

@pytest.mark.parametrize("host,status", [("fhir.example.org", 200), ("127.0.0.1:8080", 200), ("[::1]:8080", 200),
                                         ('evil.example/"><x', 400), ("a b", 400), ("h@evil.example", 400)])
def test_host_header_without_base_url(tmp_path, host, status):
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}", "BASE_URL": None})
    try:
        response = app.test_client().get("/Location", headers={"Host": host})
        assert response.status_code == status
        if status == 200:
            assert response.get_json()["link"][0]["url"].startswith(f"http://{host}/Location")
        else:
            assert _expressions(response) == {"Host"}
    finally:
        close_store(app)
