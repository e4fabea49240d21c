"""The search service used without Flask: searchset Bundles, keyset paging, the response cache
(per store generation) and errors, on a real SQLite store."""
from __future__ import annotations

import subprocess
import sys
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from _server_fixtures import sample_resources
from fhirstudy.errors import InvalidRequest, NotFound
from fhirstudy.service import SearchService
from fhirstudy.store import open_store

BASE = "https://fhir.example.org/r5"


@pytest.fixture
def store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'service.db'}")
    store.put_many(sample_resources())
    yield store
    store.close()


@pytest.fixture
def service(store):
    return SearchService(store, store.registry)


def _bundle(service: SearchService, rtype: str, params: list[tuple[str, str]]) -> dict:
    return orjson.loads(service.searchset(rtype, params, BASE))


def _link(bundle: dict, relation: str) -> list[tuple[str, str]] | None:
    url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == relation), None)
    return parse_qsl(urlsplit(url).query) if url else None


DOWNSTREAM = ("flask", "werkzeug", "requests", "fhirstudy.server", "fhirstudy.push", "fhirstudy.cli",
              "fhirstudy.sources", "fhirstudy.mappers")


def test_service_imports_nothing_downstream():
    """The service room imports no Flask, werkzeug or requests, nor server/, push/, the CLI, the
    readers or the mappers (it sits between the store and them; see tests/test_imports.py)."""
    code = ("import json, sys, fhirstudy.service; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({DOWNSTREAM!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert orjson.loads(out) == []


def test_searchset_has_total_links_and_entries(service, store):
    bundle = _bundle(service, "ResearchStudy", [("title", "breast")])
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset" and bundle["total"] == 1
    assert bundle["link"][0]["relation"] == "self"
    assert bundle["link"][0]["url"].startswith(f"{BASE}/ResearchStudy?title=breast")
    ids = sorted(e["resource"]["id"] for e in bundle["entry"])
    assert ids == ["rs-3"]
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"{BASE}/ResearchStudy/{entry['resource']['id']}"
        assert entry["search"] == {"mode": "match"}
        assert orjson.dumps(entry["resource"]) == store.read("ResearchStudy", entry["resource"]["id"])


def test_include_entries_have_mode_include(service):
    bundle = _bundle(service, "ResearchStudy", [("_id", "rs-1"), ("_include", "ResearchStudy:site")])
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert ("ResearchStudy", "match") in modes and ("Location", "include") in modes


def test_paging_forward_and_back_visits_every_match_once(service):
    everything = _bundle(service, "ResearchStudy", [("_count", "500")])
    seen, page, pages = [], _bundle(service, "ResearchStudy", [("_count", "5")]), []
    while True:
        pages.append(page)
        seen += [e["resource"]["id"] for e in page["entry"]]
        params = _link(page, "next")
        if params is None:
            break
        page = _bundle(service, "ResearchStudy", params)
    assert sorted(seen) == sorted(e["resource"]["id"] for e in everything["entry"]) and len(set(seen)) == len(seen)
    assert len(pages) > 2 and _link(pages[0], "previous") is None
    back = _bundle(service, "ResearchStudy", _link(pages[2], "previous"))
    assert [e["resource"]["id"] for e in back["entry"]] == [e["resource"]["id"] for e in pages[1]["entry"]]
    assert _link(pages[1], "first") == [("_count", "5")]


def test_pages_follows_the_cursor(service):
    ids = [e.id for page in service.pages("ResearchStudy", count=4) for e in page.entries]
    assert len(ids) == len(set(ids)) == _bundle(service, "ResearchStudy", [("_count", "500")])["total"]


@pytest.mark.parametrize("cache_bytes,searches", [(2**20, 1), (0, 3)])
def test_cache_answers_repeats_until_a_write(store, monkeypatch, cache_bytes, searches):
    service = SearchService(store, store.registry, cache_bytes=cache_bytes)
    calls = []
    real = store.search
    monkeypatch.setattr(store, "search", lambda query: calls.append(query) or real(query))
    bodies = [service.searchset("ResearchStudy", [("title", "breast")], BASE) for _ in range(3)]
    assert len(calls) == searches and bodies[0] == bodies[1] == bodies[2]
    store.put_many([{"resourceType": "ResearchStudy", "id": "rs-new", "status": "active", "title": "Breast again"}])
    assert _bundle(service, "ResearchStudy", [("title", "breast")])["total"] == 2
    assert len(calls) == searches + 1


def test_cache_key_includes_the_base(service):
    other = "http://localhost:5000"
    assert orjson.loads(service.searchset("ResearchStudy", [("_id", "rs-1")], other))["entry"][0]["fullUrl"] == \
        f"{other}/ResearchStudy/rs-1"
    assert _bundle(service, "ResearchStudy", [("_id", "rs-1")])["entry"][0]["fullUrl"] == f"{BASE}/ResearchStudy/rs-1"


ERRORS = [
    ("ResearchStudy", [("bogus", "1")], InvalidRequest, "bogus"),
    ("ResearchStudy", [("_count", "many")], InvalidRequest, "_count"),
    ("ResearchStudy", [("_sort", "nothing-here")], InvalidRequest, "_sort"),
    ("Patient", [], NotFound, None),
]


@pytest.mark.parametrize("rtype,params,error,expression", ERRORS)
def test_errors_are_domain_errors(service, rtype, params, error, expression):
    with pytest.raises(error) as caught:
        service.searchset(rtype, params, BASE)
    if expression is not None:
        assert caught.value.expression == expression
    with pytest.raises(error):
        service.parse(rtype, params)


def test_lenient_ignores_unknown_parameters(service):
    bundle = orjson.loads(service.searchset("ResearchStudy", [("bogus", "1"), ("title", "breast")], BASE, lenient=True))
    assert bundle["total"] == 1


def test_one_registry_injected(store):
    """The service answers with the registry it is given (the store's, in the server)."""
    service = SearchService(store, store.registry)
    assert service.registry is store.registry
    assert {d["resourceType"] for d in service.search_parameters()} == {"SearchParameter"}
    service.require_served("ResearchStudy")
