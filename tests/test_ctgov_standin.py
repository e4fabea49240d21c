"""The ClinicalTrials.gov API v2 stand-in (tests/ctgov_standin.py) behaves as the OpenAPI says, over real HTTP."""
from __future__ import annotations

import math
import re

import orjson
import pytest
import requests

from ctgov_standin import STATUSES, Registry, serve

BOSTON = (42.36, -71.06)
BIG = 2500   # studies in the shared registry: 3 pages of 1000


def get(session: requests.Session, url: str, path: str = "/studies", params: dict | None = None):
    """(status, headers, JSON or text) of one GET; the response is closed."""
    with session.get(url + path, params=params, timeout=60) as r:
        json = r.headers.get("Content-Type", "").startswith("application/json")
        return r.status_code, r.headers, orjson.loads(r.content) if json else r.text


def ids_of(body: dict) -> list[str]:
    return [s["protocolSection"]["identificationModule"]["nctId"] for s in body["studies"]]


def miles(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance in miles, written apart from the stand-in's."""
    (la1, lo1), (la2, lo2) = [(math.radians(x), math.radians(y)) for x, y in (a, b)]
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 3958.8 * math.asin(math.sqrt(h))


@pytest.fixture(scope="module")
def big() -> Registry:
    return Registry.replicated(BIG, seed=0)


@pytest.fixture(scope="module")
def facts(big) -> dict[str, dict]:
    """What the tests check answers against, read from the records themselves."""
    out = {}
    for nct in big.ids():
        ps = big.get(nct)["protocolSection"]
        sites = ps.get("contactsLocationsModule", {}).get("locations", [])
        out[nct] = {"status": ps["statusModule"]["overallStatus"],
                    "updated": ps["statusModule"]["lastUpdatePostDateStruct"]["date"],
                    "geos": [(s["geoPoint"]["lat"], s["geoPoint"]["lon"]) for s in sites if "geoPoint" in s],
                    "cities": {s.get("city") for s in sites}}
    return out


@pytest.fixture(scope="module")
def url(big):
    with serve(big) as base:
        yield base


@pytest.fixture
def s():
    with requests.Session() as session:
        yield session


def page_through(s, url, params: dict) -> tuple[list[str], int]:
    """Every NCT id of a search, following nextPageToken; and the number of pages."""
    ids, pages, token = [], 0, None
    while True:
        status, _, body = get(s, url, params=params | ({"pageToken": token} if token else {}))
        assert status == 200, body
        ids, pages, token = ids + ids_of(body), pages + 1, body.get("nextPageToken")
        if token is None:
            return ids, pages


def test_replicas_are_deterministic_new_studies(big):
    again = Registry.replicated(40, seed=0)
    assert again.ids() == big.ids()[:40] and again.get(again.ids()[7]) == big.get(big.ids()[7])
    samples = {"NCT00763412", "NCT02210780", "NCT03064438", "NCT03630471", "NCT05594173"}
    for nct in again.ids():
        text = orjson.dumps(again.get(nct)).decode()
        assert re.match(r"^NCT9\d{7}$", nct) and not samples & set(re.findall(r"NCT\d{8}", text))
        assert again.get(nct)["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"] < "2026-11-30"
    assert Registry.replicated(3, seed=1).ids() != again.ids()[:3]


def test_replicas_vary_status_and_dates(facts):
    statuses = {f["status"] for f in facts.values()}
    assert sum(f["status"] == "COMPLETED" for f in facts.values()) > BIG / 2 and len(statuses) >= 6
    years = {f["updated"][:4] for f in facts.values()}
    assert {"2024", "2025", "2026"} <= years and max(f["updated"] for f in facts.values()) < "2026-11-30"


def test_paging_gives_every_id_once_in_three_pages(s, url, big):
    ids, pages = page_through(s, url, {"pageSize": 1000, "fields": "NCTId"})
    assert pages == 3 and len(ids) == len(set(ids)) == BIG and set(ids) == set(big.ids())


def test_a_page_of_1000_whole_records_holds_1000_studies(s, url):
    with s.get(url + "/studies", params={"pageSize": 1000}, timeout=60) as r:
        body = r.content
    # about 40 MB; parsing it here would take longer than serving it, so count the records instead
    assert body.count(b'"hasResults":') == 1000


@pytest.mark.parametrize(("size", "expected"), [("5000", 1000), ("0", 10), (None, 10), ("7", 7)])
def test_page_size(s, url, size, expected):
    status, _, body = get(s, url, params={"fields": "NCTId"} | ({"pageSize": size} if size else {}))
    assert status == 200 and len(body["studies"]) == expected


@pytest.mark.parametrize("params", [
    {"pageSize": "-1"}, {"pageSize": "ten"}, {"countTotal": "maybe"}, {"pageToken": "not-a-token"},
    {"pageToken": "eyJzIjo5OTk5LCJvIjoxMCwiaCI6IngifQ"}, {"nonsense": "1"}, {"format": "csv"},
    {"filter.overallStatus": "recruiting"}, {"filter.overallStatus": "RECRUITING|OPEN"},
    {"filter.geo": "distance(42.36,-71.06)"}, {"filter.geo": "distance(42.36,-71.06,50 miles)"},
    {"filter.ids": "NCT123"}, {"filter.advanced": "AREA[LastUpdatePostDate]RANGE[yesterday,MAX]"},
    {"filter.advanced": "AREA[NoSuchField]x"}, {"filter.advanced": "SEARCH[Location](AREA[LocationCity]Boston)"},
    {"query.cond": "(breast"}, {"query.cond": '"breast'}, {"sort": "BriefTitle"}, {"sort": "LastUpdatePostDate:up"},
    {"fields": "NoSuchPiece"}, {"geoDecay": "func:exp,scale:300mi,offset:0mi,decay:0.5"},
])
def test_bad_requests_are_400_text(s, url, params):
    status, headers, body = get(s, url, params=params)
    assert status == 400 and headers["Content-Type"].startswith("text/plain") and body


def test_count_total_only_on_first_page(s, url):
    _, _, first = get(s, url, params={"pageSize": 1000, "countTotal": "true", "fields": "NCTId"})
    _, _, second = get(s, url, params={"pageSize": 1000, "countTotal": "true", "fields": "NCTId",
                                       "pageToken": first["nextPageToken"]})
    assert first["totalCount"] == BIG and "totalCount" not in second
    _, _, plain = get(s, url, params={"pageSize": 5})
    assert "totalCount" not in plain


def test_token_needs_the_first_pages_parameters(s, url):
    params = {"query.cond": "dermatitis", "pageSize": 10, "fields": "NCTId"}
    _, _, first = get(s, url, params=params)
    token = first["nextPageToken"]
    status, headers, body = get(s, url, params=params | {"query.cond": "rosacea", "pageToken": token})
    assert status == 400 and headers["Content-Type"].startswith("text/plain") and "parameters" in body
    status, _, body = get(s, url, params=params | {"pageSize": 3, "countTotal": "true", "pageToken": token})
    assert status == 200 and len(body["studies"]) == 3 and not set(ids_of(body)) & set(ids_of(first))


def test_paging_is_consistent_while_the_registry_changes(s):
    registry = Registry.replicated(30, seed=2)
    ids = registry.ids()
    with serve(registry) as url:
        _, _, first = get(s, url, params={"pageSize": 10})
        registry.remove(ids[15])
        registry.update(ids[12], lambda st: st["protocolSection"]["conditionsModule"].update(keywords=["changed"]))
        added = registry.get(ids[0])
        added["protocolSection"]["identificationModule"]["nctId"] = "NCT00000001"   # first in NCT order
        registry.add(added)
        seen, token = ids_of(first), first["nextPageToken"]
        while token:
            _, _, body = get(s, url, params={"pageSize": 10, "pageToken": token})
            seen, token = seen + ids_of(body), body.get("nextPageToken")
            if ids[12] in ids_of(body):
                changed = body["studies"][ids_of(body).index(ids[12])]
                assert changed["protocolSection"]["conditionsModule"]["keywords"] == ["changed"]
        assert seen == [i for i in ids if i != ids[15]]
        _, _, fresh = get(s, url, params={"pageSize": 1, "countTotal": "true"})
        assert fresh["totalCount"] == 30 and ids_of(fresh) == ["NCT00000001"]


def _make_condition(conditions: list[str], keywords: list[str] = (), meshes: list[str] = (), criteria: str = ""):
    def change(study: dict) -> None:
        ps = study["protocolSection"]
        ps["conditionsModule"] = {"conditions": conditions, "keywords": list(keywords)}
        ps["identificationModule"].update(briefTitle="A Study", officialTitle="A Study of Something")
        ps["identificationModule"].pop("acronym", None)
        ps["eligibilityModule"]["eligibilityCriteria"] = criteria or "Adults."
        study["derivedSection"]["conditionBrowseModule"] = {"meshes": [{"id": "D0", "term": t} for t in meshes]}
    return change


@pytest.fixture(scope="module")
def conditions():
    """A small registry where some replicas are made breast-cancer studies (no JSON sample is one)."""
    registry = Registry.replicated(40, seed=3)
    ids = registry.ids()
    roles = {"breast": ids[0:4], "mesh": ids[4:5], "apart": ids[5:6], "criteria": ids[6:7]}
    for nct in roles["breast"]:
        registry.update(nct, _make_condition(["HER2-negative Breast Cancer"], ["breast neoplasm"]))
    registry.update(ids[4], _make_condition(["HR+ tumour"], meshes=["Breast Neoplasms"]))
    registry.update(ids[5], _make_condition(["Breast Feeding"], ["Lung Cancer"]))
    registry.update(ids[6], _make_condition(["Healthy"], criteria="No history of breast cancer."))
    with serve(registry) as url:
        yield url, roles


@pytest.mark.parametrize(("param", "query", "expected"), [
    ("query.cond", "breast cancer", ("breast", "apart")),   # every word, anywhere in the area
    ("query.cond", '"breast cancer"', ("breast",)),   # a phrase
    ("query.cond", "BREAST neoplasms", ("mesh",)),   # condition MeSH terms are in ConditionSearch
    ("query.cond", '"breast cancer" OR "breast neoplasms"', ("breast", "mesh")),
    ("query.cond", "breast NOT (neoplasm OR neoplasms)", ("apart",)),
    ("query.term", '"breast cancer"', ("breast", "criteria")),   # BasicSearch reads every text
    ("query.term", "AREA[Condition]breast AND AREA[Keyword]lung", ("apart",)),
    ("query.titles", "breast", ()),
])
def test_text_search(s, conditions, param, query, expected):
    url, roles = conditions
    _, _, body = get(s, url, params={param: query, "pageSize": 100})
    assert sorted(ids_of(body)) == sorted(i for role in expected for i in roles[role])


def test_location_search_reads_sites(s, url, facts):
    ids, _ = page_through(s, url, {"query.locn": "Toronto", "fields": "NCTId", "pageSize": 1000})
    assert ids and set(ids) == {n for n, f in facts.items() if "Toronto" in f["cities"]}
    ids, _ = page_through(s, url, {"query.locn": '"new delhi" india', "fields": "NCTId", "pageSize": 1000})
    assert ids and set(ids) == {n for n, f in facts.items() if "New Delhi" in f["cities"]}


def test_filter_overall_status(s, url, facts):
    wanted = {"RECRUITING", "NOT_YET_RECRUITING"}
    ids, _ = page_through(s, url, {"filter.overallStatus": "RECRUITING|NOT_YET_RECRUITING", "pageSize": 1000,
                                   "fields": "NCTId"})
    assert ids and sorted(ids) == sorted(n for n, f in facts.items() if f["status"] in wanted)
    _, _, body = get(s, url, params={"filter.overallStatus": ",".join(STATUSES), "countTotal": "true"})
    assert body["totalCount"] == BIG


@pytest.mark.parametrize("distance", ["50mi", "80.4672km"])
def test_filter_geo_around_boston(s, url, facts, distance):
    ids, _ = page_through(s, url, {"filter.geo": f"distance({BOSTON[0]},{BOSTON[1]},{distance})",
                                   "pageSize": 1000, "fields": "NCTId"})
    near = {n for n, f in facts.items() if any(miles(BOSTON, g) <= 50 for g in f["geos"])}
    assert ids and set(ids) == near and len(ids) == len(near)


def test_filter_geo_edges(s):
    sites = {"Worcester": (42.2626, -71.8023), "Providence": (41.824, -71.4128), "Hartford": (41.7658, -72.6734)}
    registry = Registry.replicated(3, seed=4)
    for nct, (city, geo) in zip(registry.ids(), sites.items()):
        registry.update(nct, lambda st, c=city, g=geo: st["protocolSection"]["contactsLocationsModule"].update(
            locations=[{"city": c, "geoPoint": {"lat": g[0], "lon": g[1]}}]))
    with serve(registry) as url:
        _, _, body = get(s, url, params={"filter.geo": "distance(42.36,-71.06,50mi)", "fields": "LocationCity"})
    cities = [st["protocolSection"]["contactsLocationsModule"]["locations"][0]["city"] for st in body["studies"]]
    assert sorted(cities) == ["Providence", "Worcester"]
    assert [miles(BOSTON, g) < 50 for g in sites.values()] == [True, True, False]


def test_filter_ids_and_nct_only_queries(s, url, big):
    some = big.ids()[10:13]
    _, _, body = get(s, url, params={"filter.ids": f"{some[0].lower()}|{some[1]},{some[2]}"})
    assert ids_of(body) == some
    _, _, body = get(s, url, params={"query.term": f"{some[0]}, {some[1]} {some[2]}", "filter.ids": big.ids()[0]})
    assert ids_of(body) == some   # a query of NCT ids only: the filters are ignored


def test_filter_advanced(s, url, facts):
    since = "2026-06-01"
    _, _, body = get(s, url, params={"filter.advanced": f"AREA[LastUpdatePostDate]RANGE[{since},MAX]",
                                     "pageSize": 1000, "fields": "NCTId", "countTotal": "true"})
    recent = {n for n, f in facts.items() if f["updated"] >= since}
    assert 0 < body["totalCount"] < BIG and set(ids_of(body)) == recent
    _, _, body = get(s, url, params={"filter.advanced": f"AREA[LastUpdatePostDate]RANGE[MIN,{since}] AND "
                                     "AREA[OverallStatus]RECRUITING", "pageSize": 1000, "fields": "NCTId"})
    assert set(ids_of(body)) == {n for n, f in facts.items() if f["updated"] <= since and f["status"] == "RECRUITING"}
    _, _, body = get(s, url, params={"query.term": "AREA[LastUpdatePostDate]RANGE[2026-06,2026-06]",
                                     "pageSize": 1000, "fields": "NCTId"})
    assert set(ids_of(body)) == {n for n, f in facts.items() if f["updated"][:7] == "2026-06"}


@pytest.mark.parametrize(("sort", "descending"), [("LastUpdatePostDate", True), ("LastUpdatePostDate:asc", False),
                                                  ("LastUpdatePostDate:desc", True)])
def test_sort_by_last_update(s, url, facts, sort, descending):
    _, _, body = get(s, url, params={"sort": sort, "pageSize": 1000, "fields": "NCTId"})
    dates = [facts[n]["updated"] for n in ids_of(body)]
    assert dates == sorted(dates, reverse=descending) and len(set(dates)) > 100
    if not descending:
        assert dates[0] == min(f["updated"] for f in facts.values())


def test_default_order_is_by_nct_id(s, url, big):
    _, _, body = get(s, url, params={"pageSize": 50, "sort": "@relevance"})
    assert ids_of(body) == big.ids()[:50]


def test_fields(s, url, big):
    _, _, body = get(s, url, params={"fields": "NCTId", "pageSize": 20})
    assert body["studies"] == [{"protocolSection": {"identificationModule": {"nctId": n}}} for n in big.ids()[:20]]
    _, _, body = get(s, url, params={"fields": "NCTId|OverallStatus,LastUpdatePostDate", "pageSize": 1})
    status = big.get(big.ids()[0])["protocolSection"]["statusModule"]
    assert body["studies"][0]["protocolSection"]["statusModule"] == {
        "overallStatus": status["overallStatus"],
        "lastUpdatePostDateStruct": {"date": status["lastUpdatePostDateStruct"]["date"]}}
    _, _, body = get(s, url, params={"fields": "protocolSection.identificationModule.nctId,HasResults", "pageSize": 1})
    assert set(body["studies"][0]) == {"protocolSection", "hasResults"}


def test_single_study(s, url, big):
    nct = big.ids()[3]
    status, headers, body = get(s, url, f"/studies/{nct}")
    assert status == 200 and headers["Content-Type"] == "application/json" and body == big.get(nct)
    assert get(s, url, f"/studies/{nct.lower()}")[2] == body
    assert get(s, url, f"/studies/{nct}", {"fields": "NCTId"})[2] == {
        "protocolSection": {"identificationModule": {"nctId": nct}}}
    status, headers, body = get(s, url, "/studies/NCT00000000")
    assert status == 404 and headers["Content-Type"].startswith("text/plain") and "NCT00000000" in body
    assert get(s, url, "/studies/NCT123")[0] == 400
    assert get(s, url, f"/studies/{nct}", {"format": "fhir.json"})[0] == 400


def test_version(s, url, big):
    status, _, body = get(s, url, "/version")
    assert status == 200 and body == {"apiVersion": "2.0.3", "dataTimestamp": big.data_timestamp}


def test_throttle_answers_429_with_retry_after(s):
    registry = Registry.replicated(5)
    with serve(registry, throttle_every=3, retry_after=7) as url:
        answers = [get(s, url, "/version") for _ in range(6)]
    assert [a[0] for a in answers] == [200, 200, 429, 200, 200, 429]
    assert answers[2][1]["Retry-After"] == "7" and answers[2][1]["Content-Type"].startswith("text/plain")
    assert len(registry.requests) == 6


@pytest.mark.parametrize(("mode", "error"), [("reset", requests.ConnectionError),
                                             ("truncate", requests.exceptions.ChunkedEncodingError)])
def test_drop_breaks_the_connection(s, mode, error):
    registry = Registry.replicated(5)
    with serve(registry, drop_every=2, drop_mode=mode) as url:
        assert get(s, url, "/studies")[0] == 200
        with pytest.raises(error):
            get(s, url, "/studies")
        assert get(s, url, "/studies")[0] == 200
    assert [path for path, _ in registry.requests] == ["/studies"] * 3


def test_changes_show_in_later_answers(s):
    registry = Registry.replicated(12, seed=5)
    a, b, c = registry.ids()[:3]
    with serve(registry) as url:
        registry.advance("2026-12-01T08:00:00")
        registry.update(a, lambda st: st["protocolSection"]["identificationModule"].update(briefTitle="Renamed"))
        registry.withdraw(b)
        registry.remove(c)
        _, _, body = get(s, url, params={"filter.advanced": "AREA[LastUpdatePostDate]RANGE[2026-12-01,MAX]",
                                         "fields": "NCTId,BriefTitle,OverallStatus,LastUpdatePostDate"})
        assert ids_of(body) == [a, b]
        assert body["studies"][0]["protocolSection"]["identificationModule"]["briefTitle"] == "Renamed"
        assert body["studies"][1]["protocolSection"]["statusModule"] == {
            "overallStatus": "WITHDRAWN", "lastUpdatePostDateStruct": {"date": "2026-12-01"}}
        assert b in ids_of(get(s, url, params={"filter.overallStatus": "WITHDRAWN"})[2])
        assert get(s, url, f"/studies/{c}")[0] == 404
        assert get(s, url, "/version")[2]["dataTimestamp"] == "2026-12-01T08:00:00"
    assert registry.requests[0] == ("/studies", {"filter.advanced": "AREA[LastUpdatePostDate]RANGE[2026-12-01,MAX]",
                                                 "fields": "NCTId,BriefTitle,OverallStatus,LastUpdatePostDate"})
    assert len(registry.requests) == 4
