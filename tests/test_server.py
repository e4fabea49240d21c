"""The FHIR REST server: Flask test client on a real SQLite file, and one real HTTP server."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit


import orjson
import pytest
import requests

from _server_fixtures import FILLER_STUDIES, fixed_clock, sample_resources, serve_in_thread
from fhirstudy.search import load_registry
from fhirstudy.search.registry import DEFINITION_FILES, read_definitions
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
    assert study["progress-status-state-actual"] == {  # composite: defined locally, with working components
        "name": "progress-status-state-actual", "type": "composite",
        "definition": "https://fhirstudy.org/fhir/SearchParameter/ResearchStudy-progress-status-state-actual"}
    assert "ResearchStudy:protocol" in resources["ResearchStudy"]["searchInclude"]
    assert "ResearchStudy:protocol" in resources["PlanDefinition"]["searchRevInclude"]
    assert "ResearchStudy:outcome-measure" in resources["EvidenceVariable"]["searchRevInclude"]
    location = {p["name"]: p for p in resources["Location"]["searchParam"]}
    assert location["near"] == {"name": "near", "type": "special",
                                "definition": "http://hl7.org/fhir/SearchParameter/Location-near"}
    assert "contains" not in location  # the other special parameter of Location is not served
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
    ("ResearchStudy", "condition:below=https://www.nlm.nih.gov/mesh|D009369", {"rs-1", "rs-2"}),
    ("ResearchStudy", "condition=D000001943", {"rs-1"}),
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


def _walk(client, url: str) -> tuple[list[str], int]:
    seen, pages = [], 0
    while url:
        bundle = client.get(url).get_json()
        seen += [entry["resource"]["id"] for entry in bundle.get("entry", [])]
        pages += 1
        url = _links(bundle).get("next", "").replace(BASE, "") or None
    return seen, pages


def test_paging_links_walk_every_result_once(client):
    total = 3 + FILLER_STUDIES
    seen, pages = _walk(client, "/ResearchStudy?_count=10")
    assert pages == 3
    assert seen == sorted(seen) and len(set(seen)) == total


@pytest.mark.parametrize("sort", ["", "&_sort=-title", "&_sort=status,-_id", "&_sort=recruitment-target,title"])
def test_paging_survives_concurrent_writes(client, app, sort):
    """A match created before the next page, or one deleted from the first page, shifts no other
    match: every resource that did not change is seen exactly once (keyset paging)."""
    store = app.extensions[STORE_EXTENSION]
    url = f"/ResearchStudy?_count=5{sort}"
    before, _ = _walk(client, url)
    first = client.get(url).get_json()
    on_first_page = [e["resource"]["id"] for e in first["entry"]]
    store.put_many([{"resourceType": "ResearchStudy", "id": "rs-0", "status": "active", "title": "A new one"}])
    store.write(lambda tx: tx.delete("ResearchStudy", on_first_page[0]))
    seen, _ = _walk(client, _links(first)["next"].replace(BASE, ""))
    seen = on_first_page + [i for i in seen if i != "rs-0"]
    assert seen == before


@pytest.mark.parametrize("sort", ["", "&_sort=-title", "&_sort=status,-_id", "&_sort=recruitment-target,title"])
def test_previous_links_walk_back_through_the_same_pages(client, sort):
    """From the last page, ``previous`` links give the pages ``next`` gave, in reverse (keyset
    paging backwards, ``_before``); the first page has no ``previous``."""
    url, forward = f"/ResearchStudy?_count=5{sort}", []
    while url:
        bundle = client.get(url).get_json()
        forward.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        last = bundle
        url = _links(bundle).get("next", "").replace(BASE, "") or None
    assert len(forward) >= 3 and "previous" not in _links(client.get(f"/ResearchStudy?_count=5{sort}").get_json())
    backward, bundle = [], last
    while "previous" in _links(bundle):
        bundle = client.get(_links(bundle)["previous"].replace(BASE, "")).get_json()
        backward.append([e["resource"]["id"] for e in bundle["entry"]])
        assert "next" in _links(bundle) and "first" in _links(bundle)
    assert backward == forward[-2::-1]


def test_cursor_and_before_do_not_go_together(client):
    first = client.get("/ResearchStudy?_count=2").get_json()
    cursor = parse_qsl(urlsplit(_links(first)["next"]).query)[-1][1]
    response = client.get(f"/ResearchStudy?_count=2&_cursor={cursor}&_before={cursor}")
    assert response.status_code == 400 and "_before" in response.get_json()["issue"][0]["diagnostics"]
    bad = client.get("/ResearchStudy?_before=not-ours")
    assert bad.status_code == 400 and bad.get_json()["issue"][0]["expression"] == ["_before"]


def test_link_urls(client):
    bundle = client.get("/ResearchStudy?condition=asthma&_count=5").get_json()
    links = _links(bundle)
    assert set(links) == {"self", "next"}
    parts = urlsplit(links["next"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{BASE}/ResearchStudy"
    query = parse_qsl(parts.query)
    assert query[:2] == [("condition", "asthma"), ("_count", "5")] and query[2][0] == "_cursor"
    second = client.get(links["next"].replace(BASE, "")).get_json()
    assert set(_links(second)) == {"self", "first", "previous", "next"}
    assert _links(second)["first"] == f"{BASE}/ResearchStudy?condition=asthma&_count=5"
    last = client.get("/ResearchStudy?condition=asthma&_count=5&_offset=20").get_json()
    assert "next" not in _links(last) and len(last["entry"]) == 2


def test_count_has_a_maximum(client):
    from fhirstudy.search.query import MAX_COUNT
    bundle = client.get("/ResearchStudy?_count=100000").get_json()
    assert parse_qsl(urlsplit(_links(bundle)["self"]).query) == [("_count", str(MAX_COUNT))]


def test_total_none_and_accurate(client):
    none = client.get("/ResearchStudy?status=completed&_total=none&_count=2").get_json()
    assert "total" not in none and len(none["entry"]) == 2 and "next" in _links(none)
    accurate = client.get("/ResearchStudy?status=completed&_total=accurate&_count=2").get_json()
    assert accurate["total"] == 1 + FILLER_STUDIES


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


@pytest.mark.parametrize("sort,expected", [
    ("status,-title", ["rs-1", "rs-3", "rs-2"]),
    ("-status,title", ["rs-2", "rs-3", "rs-1"]),
    ("-recruitment-target", ["rs-2", "rs-1", "rs-3"]),
    ("phase", ["rs-3", "rs-1", "rs-2"]),
    ("-date,_id", ["rs-1", "rs-2", "rs-3"]),  # rs-3 has no period: missing values sort last
])
def test_sort_several_keys(client, sort, expected):
    bundle = client.get(f"/ResearchStudy?_id=rs-1,rs-2,rs-3&_sort={sort}").get_json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == expected


# --- _include, _revinclude, _summary, _elements, POST ---------------------------------------------

def _modes(bundle: dict) -> dict[str, str]:
    return {f'{e["resource"]["resourceType"]}/{e["resource"]["id"]}': e["search"]["mode"]
            for e in bundle.get("entry", [])}


INCLUDES = [
    ("ResearchStudy?_id=rs-1&_include=ResearchStudy:protocol",
     {"ResearchStudy/rs-1": "match", "PlanDefinition/pd-1": "include"}),
    ("ResearchStudy?_id=rs-1,rs-2&_include=ResearchStudy:site&_include=ResearchStudy:eligibility",
     {"ResearchStudy/rs-1": "match", "ResearchStudy/rs-2": "match", "Location/loc-1": "include",
      "Location/loc-2": "include", "Organization/org-1": "include", "EvidenceVariable/ev-1": "include"}),
    ("ResearchStudy?_id=rs-2&_include=ResearchStudy:site:Location",
     {"ResearchStudy/rs-2": "match", "Location/loc-2": "include"}),
    ("ResearchStudy?_id=rs-1&_include=ResearchStudy:*",
     {"ResearchStudy/rs-1": "match", "PlanDefinition/pd-1": "include", "Location/loc-1": "include",
      "EvidenceVariable/ev-1": "include"}),
    ("PlanDefinition?_revinclude=ResearchStudy:protocol",
     {"PlanDefinition/pd-1": "match", "PlanDefinition/pd-2": "match", "ResearchStudy/rs-1": "include"}),
    ("EvidenceVariable?_id=ev-1&_revinclude=ResearchStudy:eligibility",
     {"EvidenceVariable/ev-1": "match", "ResearchStudy/rs-1": "include"}),
    ("Location?_id=loc-2&_revinclude=ResearchStudy:site&_include:iterate=ResearchStudy:protocol",
     {"Location/loc-2": "match", "ResearchStudy/rs-2": "include"}),
    ("Location?_id=loc-1&_revinclude=ResearchStudy:site&_include:iterate=ResearchStudy:protocol",
     {"Location/loc-1": "match", "ResearchStudy/rs-1": "include", "PlanDefinition/pd-1": "include"}),
    ("ResearchStudy?_id=rs-3&_include=ResearchStudy:protocol", {"ResearchStudy/rs-3": "match"}),
]


@pytest.mark.parametrize("query,expected", INCLUDES)
def test_include_and_revinclude(client, query, expected):
    bundle = client.get(f"/{query}").get_json()
    assert _modes(bundle) == expected
    assert bundle["total"] == sum(1 for mode in expected.values() if mode == "match")
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == sorted(modes, key=["match", "include"].index)  # matches first


def test_outcome_measure_include(client, app):
    store = app.extensions[STORE_EXTENSION]
    study = next(r for r in sample_resources() if r["id"] == "rs-1")
    study["outcomeMeasure"][0]["reference"] = {"reference": "EvidenceVariable/ev-2"}
    store.put_many([study])
    forward = client.get("/ResearchStudy?_id=rs-1&_include=ResearchStudy:outcome-measure").get_json()
    assert _modes(forward) == {"ResearchStudy/rs-1": "match", "EvidenceVariable/ev-2": "include"}
    back = client.get("/EvidenceVariable?_id=ev-2&_revinclude=ResearchStudy:outcome-measure").get_json()
    assert _modes(back) == {"EvidenceVariable/ev-2": "match", "ResearchStudy/rs-1": "include"}


SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


@pytest.mark.parametrize("query,keys", [
    ("_summary=true", {"resourceType", "id", "meta", "identifier", "title", "status", "phase", "condition",
                       "period", "site", "protocol", "recruitment", "keyword"}),
    ("_summary=text", {"resourceType", "id", "meta", "status"}),
    ("_elements=title,keyword", {"resourceType", "id", "meta", "status", "title", "keyword"}),
])
def test_subsets_are_tagged(client, query, keys):
    bundle = client.get(f"/ResearchStudy?_id=rs-1&{query}").get_json()
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == keys
    assert any(tag.items() >= SUBSETTED.items() for tag in resource["meta"]["tag"])


def test_summary_data_drops_text_and_false_keeps_all(client, app):
    store = app.extensions[STORE_EXTENSION]
    study = next(r for r in sample_resources() if r["id"] == "rs-2")
    study["text"] = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
    store.put_many([study])
    data = client.get("/ResearchStudy?_id=rs-2&_summary=data").get_json()["entry"][0]["resource"]
    assert "text" not in data and data["title"] and data["meta"]["tag"][-1]["code"] == "SUBSETTED"
    full = client.get("/ResearchStudy?_id=rs-2&_summary=false").get_json()["entry"][0]["resource"]
    assert full["text"]["status"] == "generated" and "tag" not in full["meta"]


def test_summary_count(client):
    bundle = client.get("/ResearchStudy?condition=breast-cancer&_summary=count&_count=10").get_json()
    assert bundle["total"] == 2 and "entry" not in bundle


def test_post_search_takes_a_form_body(client):
    response = client.post("/ResearchStudy/_search?status=active",
                           data={"condition": "breast-cancer", "_count": "1"})
    assert response.status_code == 200
    bundle = response.get_json()
    assert bundle["total"] == 2 and [e["resource"]["id"] for e in bundle["entry"]] == ["rs-1"]
    assert client.post("/ResearchStudy/_search", data={"bogus": "1"}).status_code == 400


COMPOSITES = [
    ("progress-status-state-actual=recruiting$true", {"rs-1"}),
    ("progress-status-state-actual=recruiting$false", {"rs-p"}),
    ("progress-status-state-actual=http://hl7.org/fhir/research-study-status|recruiting$true,x$true", {"rs-1"}),
    ("progress-status-state-period=overall-study$ge2020", {"rs-p"}),
    ("progress-status-state-period=overall-study$lt2020", set()),
    ("progress-status-state-period=recruiting$ge2020", set()),  # the period is on another state
    ("progress-status-state-period-actual=overall-study$2021$false", {"rs-p"}),
    ("progress-status-state-period-actual=overall-study$2021$true", set()),
]


@pytest.mark.parametrize("query,expected", COMPOSITES)
def test_composite_search(client, app, query, expected):
    app.extensions[STORE_EXTENSION].put_many([{
        "resourceType": "ResearchStudy", "id": "rs-p", "status": "active",
        "progressStatus": [
            {"state": {"coding": [{"system": "http://hl7.org/fhir/research-study-status", "code": "recruiting"}]},
             "actual": False},
            {"state": {"coding": [{"system": "http://hl7.org/fhir/research-study-status",
                                   "code": "overall-study"}]},
             "actual": False, "period": {"start": "2021-01-01", "end": "2021-12-31"}}]}])
    bundle = client.get(f"/ResearchStudy?{query.replace('|', '%7C').replace('$', '%24')}").get_json()
    assert _ids(bundle) == expected


def test_local_search_parameters_are_published(client):
    resource = client.get("/SearchParameter/ResearchStudy-progress-status-state-actual").get_json()
    assert resource["resourceType"] == "SearchParameter" and resource["type"] == "composite"
    assert [c["definition"] for c in resource["component"]] == [
        "https://fhirstudy.org/fhir/SearchParameter/ResearchStudy-recruitment-status",
        "https://fhirstudy.org/fhir/SearchParameter/ResearchStudy-progress-status-actual"]
    listed = client.get("/SearchParameter").get_json()
    urls = {e["resource"]["url"] for e in listed["entry"]}
    for component in resource["component"]:
        assert component["definition"] in urls
    assert client.get("/SearchParameter/nope").status_code == 404


# --- the CapabilityStatement is the truth: every declared parameter works, nothing else does ---

_VALUES = {"token": "x", "string": "x", "date": "ge2024-01-01", "number": "gt1", "uri": "http://x.org/y",
           "reference": "x", "special": "42.36|-71.06|50|km"}


def _statement() -> dict:
    from fhirstudy.server.capability import capability_statement
    return capability_statement(load_registry(), BASE, writable=False)


def _value_for(rtype: str, code: str, kind: str) -> str:
    if kind == "composite":
        param = load_registry().get(rtype, code)
        return "$".join(_VALUES[c.type].replace("ge", "") for c in param.components)
    return _VALUES[kind]


DECLARED = [(r["type"], p["name"], p["type"]) for r in _statement()["rest"][0]["resource"] for p in r["searchParam"]]


def test_every_declared_parameter_works(client):
    for rtype, code, kind in DECLARED:
        response = client.get(f"/{rtype}", query_string={code: _value_for(rtype, code, kind)})
        assert response.status_code == 200, (rtype, code, response.get_json())
        for modifier in load_registry().get(rtype, code).modifiers:
            value = "true" if modifier == "missing" else _value_for(rtype, code, kind)
            response = client.get(f"/{rtype}", query_string={f"{code}:{modifier}": value})
            assert response.status_code == 200, (rtype, code, modifier, response.get_json())
    for resource in _statement()["rest"][0]["resource"]:
        for include in resource["searchInclude"]:
            assert client.get(f"/{resource['type']}?_include={include}").status_code == 200, include
        for include in resource["searchRevInclude"]:
            assert client.get(f"/{resource['type']}?_revinclude={include}").status_code == 200, include


def _undeclared() -> list[tuple[str, str]]:
    official = read_definitions(DEFINITION_FILES[:1])
    declared = {(rtype, code) for rtype, code, _ in DECLARED}
    out = set()
    for definition in official:
        for base in definition["base"]:
            types = load_registry().served_types if base == "Resource" else [base]
            out.update((t, definition["code"]) for t in types if t in load_registry().served_types)
    return sorted(out - declared) + [("ResearchStudy", "_has:Group:member:_id"), ("ResearchStudy", "site.nope"),
                                     ("ResearchStudy", "site:Group.name"), ("ResearchStudy", "site.name.family"),
                                     ("ResearchStudy", "status.name"), ("Location", "_has:ResearchStudy:site:nope")]


def test_nothing_undeclared_is_accepted(client):
    undeclared = _undeclared()
    assert ("Location", "contains") in undeclared and ("ResearchStudy", "_text") in undeclared
    for rtype, code in undeclared:
        response = client.get(f"/{rtype}", query_string={code: "x"})
        assert response.status_code == 400, (rtype, code)
        assert response.get_json()["issue"][0]["expression"] == [code]


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
    ("GET", "/ResearchStudy?_include=ResearchStudy:title", {}, 400, "invalid", "_include", "_include"),
    ("GET", "/ResearchStudy?_revinclude=ResearchStudy:site:Patient", {}, 400, "invalid", "_revinclude", "Patient"),
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
    with serve_in_thread(app) as url:
        yield url
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


def test_search_cache_never_serves_a_stale_answer(tmp_path):
    """Repeated searches are served from the per-app cache only while nothing was written: a write
    by another process (another store on the same database file) is seen by the next search."""
    from fhirstudy.server import create_app
    from fhirstudy.store import open_store

    url = f"sqlite:///{tmp_path / 'cache.db'}"
    app = create_app({"DATABASE_URL": url, "TESTING": True})
    client = app.test_client()
    other = open_store(url)  # stands in for another gunicorn worker or a loader
    study = {"resourceType": "ResearchStudy", "id": "c1", "status": "active", "title": "Cache one"}
    other.put_many([study])
    first = client.get("/ResearchStudy?title=cache").get_json()
    assert first["total"] == 1
    assert client.get("/ResearchStudy?title=cache").get_json() == first
    other.put_many([{**study, "id": "c2", "title": "Cache two"}])
    assert client.get("/ResearchStudy?title=cache").get_json()["total"] == 2
    other.put_many([{**study, "title": "Renamed"}])
    assert client.get("/ResearchStudy?title=cache").get_json()["total"] == 1
    other.close()


@pytest.mark.parametrize("cache_bytes,searches", [(2**20, 1), (0, 3)])
def test_search_cache_answers_repeats_without_searching_unless_turned_off(tmp_path, monkeypatch, cache_bytes,
                                                                         searches):
    """The same search three times: with the cache, the store is searched once; with
    ``SEARCH_CACHE_BYTES=0`` (``serve --cache-mb 0``) every time, and the answers are the same."""
    from fhirstudy.server import STORE_EXTENSION, create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "TESTING": True,
                      "SEARCH_CACHE_BYTES": cache_bytes})
    store = app.extensions[STORE_EXTENSION]
    store.put_many([{"resourceType": "ResearchStudy", "id": "c1", "status": "active", "title": "Cache one"}])
    calls = []
    real_search = store.search
    monkeypatch.setattr(store, "search", lambda query: calls.append(query) or real_search(query))
    client = app.test_client()
    bodies = [client.get("/ResearchStudy?title=cache").data for _ in range(3)]
    assert len(calls) == searches and bodies[0] == bodies[1] == bodies[2]
    assert b'"total":1' in bodies[0]
