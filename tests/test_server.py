"""The FHIR REST server: Flask test client on a real SQLite file, and one real HTTP server."""
from __future__ import annotations

import threading
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
import requests
from werkzeug.serving import make_server

from _server_fixtures import FILLER_STUDIES, fixed_clock, sample_resources
from fhirstudy.search import load_registry
from fhirstudy.server import STORE_EXTENSION, close_store, create_app

BASE = "https://fhir.example.org/r5"
FHIR_JSON = "application/fhir+json"


@pytest.fixture
def app(tmp_path):
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}", "BASE_URL": BASE})
    store = app.extensions[STORE_EXTENSION]
    store.clock = fixed_clock
    store.put_many(sample_resources())
    yield app
    close_store(app)


@pytest.fixture
def client(app):
    return app.test_client()


def _ids(bundle: dict) -> set[str]:
    return {entry["resource"]["id"] for entry in bundle.get("entry", [])}


def _links(bundle: dict) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


# --- metadata --------------------------------------------------------------------------------------

def test_capability_statement_tells_what_works(client):
    response = client.get("/metadata")
    assert response.status_code == 200
    assert response.content_type == FHIR_JSON
    statement = response.get_json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "5.0.0"
    assert "json" in statement["format"]
    rest = statement["rest"][0]
    assert rest["mode"] == "server"
    resources = {r["type"]: r for r in rest["resource"]}
    assert set(resources) == set(load_registry().served_types)
    for resource in resources.values():
        assert [i["code"] for i in resource["interaction"]] == [
            "read", "vread", "history-instance", "history-type", "search-type"]
    study = {p["name"]: p for p in resources["ResearchStudy"]["searchParam"]}
    assert study["condition"] == {"name": "condition", "type": "token",
                                  "definition": "http://hl7.org/fhir/SearchParameter/ResearchStudy-condition"}
    assert study["recruitment-status"]["definition"] == \
        "https://fhirstudy.org/fhir/SearchParameter/ResearchStudy-recruitment-status"
    assert "progress-status-state-actual" not in study  # composite: not supported, not claimed
    assert "near" not in {p["name"] for p in resources["Location"]["searchParam"]}
    assert set(study) == set(load_registry().params("ResearchStudy"))


# --- read ----------------------------------------------------------------------------------------

def test_read_returns_stored_bytes(client, app):
    response = client.get("/ResearchStudy/rs-1")
    assert response.status_code == 200
    assert response.content_type == FHIR_JSON
    assert response.data == app.extensions[STORE_EXTENSION].read("ResearchStudy", "rs-1")
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Last-Modified"] == "Thu, 02 Jan 2025 03:04:05 GMT"
    assert response.get_json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize("path", ["/CodeSystem/cs-condition", "/Location/loc-1", "/PlanDefinition/pd-1",
                                  "/EvidenceVariable/ev-1", "/Organization/org-1"])
def test_read_other_types(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json()["id"] == path.rsplit("/", 1)[1]


# --- search --------------------------------------------------------------------------------------

SEARCHES = [
    # ResearchStudy
    ("ResearchStudy", "_id=rs-2", {"rs-2"}),
    ("ResearchStudy", "_id=rs-2,rs-3", {"rs-2", "rs-3"}),
    ("ResearchStudy", "identifier=NCT06731140", {"rs-1"}),
    ("ResearchStudy", "identifier=https://clinicaltrials.gov|NCT00000002", {"rs-2"}),
    ("ResearchStudy", "identifier=urn:other|", {"rs-2"}),
    ("ResearchStudy", "identifier=|NCT06731140", set()),
    ("ResearchStudy", "condition=breast-cancer", {"rs-1", "rs-3"}),
    ("ResearchStudy", "condition=https://fhirstudy.org/fhir/CodeSystem/condition|breast-cancer", {"rs-1", "rs-3"}),
    ("ResearchStudy", "condition=https://www.nlm.nih.gov/mesh|D001943", {"rs-1"}),
    ("ResearchStudy", "condition=breast-cancer,lung-cancer", {"rs-1", "rs-2", "rs-3"}),
    ("ResearchStudy", "condition=breast-cancer&condition=diabetes", {"rs-3"}),
    ("ResearchStudy", "condition:text=her2", {"rs-1"}),
    ("ResearchStudy", "condition:text=breast", {"rs-1", "rs-3"}),
    ("ResearchStudy", "condition:not=asthma", {"rs-1", "rs-2", "rs-3"}),
    ("ResearchStudy", "condition:missing=true", set()),
    ("ResearchStudy", "phase=phase-2", {"rs-1"}),
    ("ResearchStudy", "phase=http://hl7.org/fhir/research-study-phase|phase-3", {"rs-2"}),
    ("ResearchStudy", "phase:missing=false", {"rs-1", "rs-2", "rs-3"}),
    ("ResearchStudy", "status=active", {"rs-1", "rs-3"}),
    ("ResearchStudy", "status=active&condition=breast-cancer&phase=phase-1", {"rs-3"}),
    ("ResearchStudy", "title=her2", {"rs-1"}),
    ("ResearchStudy", "title=HER2 NEG", {"rs-1"}),
    ("ResearchStudy", "title=etude du", {"rs-2"}),
    ("ResearchStudy", "title=cancer", set()),
    ("ResearchStudy", "title:contains=cancer", {"rs-1", "rs-2"}),
    ("ResearchStudy", "title:exact=Breast imaging trial", {"rs-3"}),
    ("ResearchStudy", "title:exact=breast imaging trial", set()),
    ("ResearchStudy", "date=2024", set()),
    ("ResearchStudy", "date=ap2024", {"rs-1"}),
    ("ResearchStudy", "date=ge2026-06", {"rs-1"}),
    ("ResearchStudy", "date=le2019-01-15", {"rs-2"}),
    ("ResearchStudy", "date=sa2022", {"rs-1"}),
    ("ResearchStudy", "date=eb2022", {"rs-2"}),
    ("ResearchStudy", "recruitment-target=120", {"rs-1"}),
    ("ResearchStudy", "recruitment-target=ge120", {"rs-1", "rs-2"}),
    ("ResearchStudy", "recruitment-target=lt100", {"rs-3"}),
    ("ResearchStudy", "recruitment-target=ne120", {"rs-2", "rs-3"}),
    ("ResearchStudy", "recruitment-actual=ap290", {"rs-2"}),
    ("ResearchStudy", "site=Location/loc-1", {"rs-1"}),
    ("ResearchStudy", "site=loc-2", {"rs-2"}),
    ("ResearchStudy", "site:Organization=org-1", {"rs-2"}),
    ("ResearchStudy", "protocol=PlanDefinition/pd-1", {"rs-1"}),
    ("ResearchStudy", "eligibility=EvidenceVariable/ev-1", {"rs-1"}),
    ("ResearchStudy", "recruitment-status=recruiting", {"rs-1"}),
    ("ResearchStudy", "keyword:text=her", {"rs-1"}),
    ("ResearchStudy", "_lastUpdated=2025-01-02", {"rs-1", "rs-2", "rs-3"} | {f"rs-filler-{n:02d}" for n in range(FILLER_STUDIES)}),
    ("ResearchStudy", "_lastUpdated=lt2025", set()),
    # PlanDefinition
    ("PlanDefinition", "_id=pd-2", {"pd-2"}),
    ("PlanDefinition", "identifier=NCT06731140-protocol", {"pd-1"}),
    ("PlanDefinition", "status=draft", {"pd-2"}),
    ("PlanDefinition", "title=protocol", {"pd-1"}),
    ("PlanDefinition", "title:contains=protocol", {"pd-1", "pd-2"}),
    ("PlanDefinition", "type=clinical-protocol", {"pd-1"}),
    ("PlanDefinition", "definition=https://fhirstudy.org/fhir/ActivityDefinition/drug-a", {"pd-1"}),
    # EvidenceVariable
    ("EvidenceVariable", "_id=ev-1", {"ev-1"}),
    ("EvidenceVariable", "identifier=https://clinicaltrials.gov|NCT06731140-eligibility", {"ev-1"}),
    ("EvidenceVariable", "status=retired", {"ev-2"}),
    ("EvidenceVariable", "title=eligibility", {"ev-1"}),
    ("EvidenceVariable", "name:exact=EligibilityNCT06731140", {"ev-1"}),
    # CodeSystem, Location, Organization
    ("CodeSystem", "url=https://fhirstudy.org/fhir/CodeSystem/condition", {"cs-condition"}),
    ("CodeSystem", "system=https://fhirstudy.org/fhir/CodeSystem/condition", {"cs-condition"}),
    ("CodeSystem", "code=asthma", {"cs-condition"}),
    ("CodeSystem", "content-mode=complete", set()),
    ("Location", "name=hopital saint", {"loc-1"}),
    ("Location", "name=mayo roch", {"loc-2"}),
    ("Location", "address-city=paris", {"loc-1"}),
    ("Location", "address=mn", {"loc-2"}),
    ("Location", "organization=Organization/org-1", {"loc-2"}),
    ("Organization", "active=true", {"org-1"}),
]


@pytest.mark.parametrize("rtype,query,expected", SEARCHES)
def test_search(client, rtype, query, expected):
    response = client.get(f"/{rtype}?{query}&_count=100")
    assert response.status_code == 200, response.get_json()
    assert response.content_type == FHIR_JSON
    bundle = response.get_json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == len(expected)
    assert _ids(bundle) == expected


def test_entries_carry_full_url_and_stored_resource(client, app):
    bundle = client.get("/ResearchStudy?_id=rs-1").get_json()
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == f"{BASE}/ResearchStudy/rs-1"
    assert entry["search"] == {"mode": "match"}
    assert orjson.dumps(entry["resource"]) == app.extensions[STORE_EXTENSION].read("ResearchStudy", "rs-1")


def test_paging_links_walk_every_result_once(client):
    total = 3 + FILLER_STUDIES
    url = "/ResearchStudy?_count=10"
    seen, pages = [], 0
    while url:
        bundle = client.get(url).get_json()
        assert bundle["total"] == total
        seen += [entry["resource"]["id"] for entry in bundle["entry"]]
        links = _links(bundle)
        pages += 1
        url = links.get("next", "").replace(BASE, "") or None
        if pages > 1:
            assert "previous" in links
    assert pages == 3
    assert seen == sorted(seen) and len(set(seen)) == total


def test_link_urls(client):
    bundle = client.get("/ResearchStudy?condition=asthma&_count=5&_offset=5").get_json()
    links = _links(bundle)
    assert set(links) == {"self", "next", "previous"}
    for relation, offset in (("self", "5"), ("next", "10"), ("previous", "0")):
        parts = urlsplit(links[relation])
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{BASE}/ResearchStudy"
        assert parse_qsl(parts.query) == [("condition", "asthma"), ("_count", "5"), ("_offset", offset)]
    last = client.get("/ResearchStudy?condition=asthma&_count=5&_offset=20").get_json()
    assert "next" not in _links(last) and len(last["entry"]) == 2


def test_count_zero_gives_the_total_only(client):
    bundle = client.get("/ResearchStudy?condition=breast-cancer&_count=0").get_json()
    assert bundle["total"] == 2
    assert "entry" not in bundle
    assert set(_links(bundle)) == {"self"}


def test_default_page_size_is_20(client):
    bundle = client.get("/ResearchStudy").get_json()
    assert bundle["total"] == 25 and len(bundle["entry"]) == 20


def test_sort_descending(client):
    bundle = client.get("/ResearchStudy?_sort=-_id&_count=2").get_json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["rs-filler-21", "rs-filler-20"]


def test_base_url_comes_from_the_request_when_not_configured(tmp_path):
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}"})
    try:
        app.extensions[STORE_EXTENSION].put_many(sample_resources()[:1])
        bundle = app.test_client().get("/ResearchStudy", base_url="http://host.test:8080/fhir").get_json()
        assert bundle["entry"][0]["fullUrl"] == "http://host.test:8080/fhir/ResearchStudy/rs-1"
    finally:
        close_store(app)


# --- formats -------------------------------------------------------------------------------------

@pytest.mark.parametrize("query,headers", [
    ("_format=json", {}),
    ("_format=application/fhir%2Bjson", {}),
    ("_format=application/json", {}),
    ("", {"Accept": "application/fhir+json"}),
    ("", {"Accept": "application/json"}),
    ("", {"Accept": "*/*"}),
    ("_format=json", {"Accept": "application/fhir+xml"}),
])
def test_json_formats_are_accepted(client, query, headers):
    assert client.get(f"/ResearchStudy/rs-1?{query}", headers=headers).status_code == 200


# --- errors --------------------------------------------------------------------------------------

ERRORS = [
    # (method, url, headers, status, issue code, expression, words in diagnostics)
    ("GET", "/ResearchStudy?unknown=1", {}, 400, "invalid", "unknown", "unknown"),
    ("GET", "/ResearchStudy?title:fuzzy=x", {}, 400, "invalid", "title:fuzzy", "modifier"),
    ("GET", "/ResearchStudy?_count=abc", {}, 400, "invalid", "_count", "abc"),
    ("GET", "/ResearchStudy?date=notadate", {}, 400, "invalid", "date", "notadate"),
    ("GET", "/ResearchStudy?recruitment-target=lots", {}, 400, "invalid", "recruitment-target", "lots"),
    ("GET", "/ResearchStudy?_include=ResearchStudy:site", {}, 400, "invalid", "_include", "_include"),
    ("GET", "/ResearchStudy/nope", {}, 404, "not-found", None, "ResearchStudy/nope"),
    ("GET", "/Patient/1", {}, 404, "not-found", None, "Patient"),
    ("GET", "/Patient?name=x", {}, 404, "not-found", None, "Patient"),
    ("GET", "/a/b/c", {}, 404, "not-found", None, "not found"),
    ("PATCH", "/ResearchStudy/rs-1", {}, 405, "not-supported", None, "not allowed"),
    ("POST", "/ResearchStudy/rs-1", {}, 405, "not-supported", None, "not allowed"),
    ("DELETE", "/ResearchStudy/rs-1", {}, 403, "forbidden", None, "disabled"),
    ("GET", "/ResearchStudy?_format=xml", {}, 406, "not-supported", "_format", "xml"),
    ("GET", "/metadata?_format=application/fhir%2Bxml", {}, 406, "not-supported", "_format", "xml"),
    ("GET", "/ResearchStudy/rs-1", {"Accept": "application/fhir+xml"}, 406, "not-supported", None, "xml"),
]


@pytest.mark.parametrize("method,url,headers,status,code,expression,words", ERRORS)
def test_errors_are_operation_outcomes(client, method, url, headers, status, code, expression, words):
    response = client.open(url, method=method, headers=headers)
    assert response.status_code == status
    assert response.content_type == FHIR_JSON
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert issue["severity"] == "error"
    assert issue["code"] == code
    assert issue.get("expression") == ([expression] if expression else None)
    assert words.lower() in issue["diagnostics"].lower()
    assert "Traceback" not in response.get_data(as_text=True)


def test_lenient_handling_ignores_unknown_parameters(client):
    response = client.get("/ResearchStudy?unknown=1&status=completed&_count=50",
                          headers={"Prefer": "handling=lenient"})
    assert response.status_code == 200
    bundle = response.get_json()
    assert bundle["total"] == 1 + FILLER_STUDIES
    assert "unknown" not in _links(bundle)["self"]


@pytest.mark.parametrize("query", ["date=2024-02-30", "_offset=1e3", "title=%00", "_id=" + "x" * 5000,
                                   "condition=a\\,b", "_sort=-", "recruitment-target=1e400"])
def test_odd_input_never_gives_a_500(client, query):
    assert client.get(f"/ResearchStudy?{query}").status_code < 500


# --- real HTTP -----------------------------------------------------------------------------------

@pytest.fixture
def live_server(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}"})
    app.extensions[STORE_EXTENSION].put_many(sample_resources())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()
    close_store(app)


def test_real_http_server(live_server):
    with requests.Session() as session:
        metadata = session.get(f"{live_server}/metadata", timeout=10)
        assert metadata.status_code == 200 and metadata.json()["fhirVersion"] == "5.0.0"
        found = session.get(f"{live_server}/ResearchStudy", params={"condition": "breast-cancer", "_count": 1},
                            headers={"Accept": FHIR_JSON}, timeout=10)
        assert found.status_code == 200
        assert found.headers["Content-Type"] == FHIR_JSON
        bundle = found.json()
        assert bundle["total"] == 2
        assert bundle["entry"][0]["fullUrl"] == f"{live_server}/ResearchStudy/rs-1"
        next_page = session.get(_links(bundle)["next"], timeout=10).json()
        assert [e["resource"]["id"] for e in next_page["entry"]] == ["rs-3"]
        read = session.get(f"{live_server}/ResearchStudy/rs-2", timeout=10)
        assert read.headers["ETag"] == 'W/"1"' and read.json()["title"] == "Étude du cancer du poumon"
        missing = session.get(f"{live_server}/ResearchStudy?bogus=1", timeout=10)
        assert missing.status_code == 400 and missing.json()["issue"][0]["expression"] == ["bogus"]
