"""The web pages over real HTTP (a served app with the seeds and samples): content negotiation
(FHIR clients keep their JSON byte for byte), the search page and its form, paging, the study
page, "Check a patient", error pages, security headers, weight and static accessibility checks."""
from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from _pages_fixtures import BROWSER, pages_server

PATIENTS = Path(__file__).parent / "data" / "patients"
MAX_PAGE_BYTES = 100_000
RESULTS_STUDY = "nct03064438"     # a sample with posted results
FACTS_STUDY = "nct06731140"       # seed 002: ECOG 0-2 as a LOINC fact
NEAR_BOSTON_STUDY = "nct02210780"  # a sample with a site in Boston


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pages_server(tmp_path_factory.mktemp("pages") / "pages.db") as url:
        yield url


def _page(server, path, **kw) -> requests.Response:
    return requests.get(server + path, headers=BROWSER, timeout=30, **kw)


class _Doc(HTMLParser):
    """What the static accessibility checks need of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.headings, self.labels, self.controls, self.links, self.srcs, self.tags = [], set(), [], [], [], []
        self.rels = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"])
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if a.get("rel"):
                self.rels[a["rel"]] = a["href"]
        for name in ("src", "href"):
            if tag != "a" and a.get(name):
                self.srcs.append(a[name])


def _check_page(response: requests.Response) -> _Doc:
    """The checks every page meets: HTML, CSP, weight, one h1, heading order, labels, no outside URL."""
    assert response.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert len(response.content) < MAX_PAGE_BYTES, len(response.content)
    doc = _Doc(response.text)
    assert doc.headings.count(1) == 1 and doc.headings[0] == 1
    assert all(b - a <= 1 for a, b in zip(doc.headings, doc.headings[1:])), doc.headings
    for control in doc.controls:   # every input has a label, or is inside one (checkboxes)
        assert control.get("id") in doc.labels or control.get("type") == "checkbox", control
    assert any(t == "meta" and a.get("name") == "viewport" for t, a in doc.tags)
    assert any(t == "html" and a.get("lang") == "en" for t, a in doc.tags)
    assert doc.links[0] == "#main"   # the skip link comes first
    for url in doc.srcs + doc.links:
        assert not urlsplit(url).netloc and not url.startswith("//"), url
    return doc


@pytest.mark.parametrize("headers, params", [
    ({}, {}), ({"Accept": "*/*"}, {}), ({"Accept": "application/fhir+json"}, {}),
    ({"Accept": "application/json"}, {}), (BROWSER, {"_format": "json"}),
    ({"Accept": "application/fhir+json;q=1, text/html;q=0.9"}, {}),
])
def test_fhir_clients_get_the_same_json_as_before(server, headers, params):
    plain = requests.get(f"{server}/ResearchStudy", params={"condition": "breast-cancer"}, timeout=30)
    asked = requests.get(f"{server}/ResearchStudy", params={"condition": "breast-cancer", **params},
                         headers=headers, timeout=30)
    assert asked.status_code == 200 and asked.headers["Content-Type"].startswith("application/fhir+json")
    assert asked.content == plain.content and plain.json()["total"] > 0   # byte for byte
    read = requests.get(f"{server}/ResearchStudy/{FACTS_STUDY}", params=params, headers=headers, timeout=30)
    assert read.json()["resourceType"] == "ResearchStudy" and "Accept" in read.headers["Vary"]


def test_root_is_the_search_form_for_a_browser_and_405_for_a_fhir_client(server):
    page = _page(server, "/")
    assert page.status_code == 200
    doc = _check_page(page)
    names = [c.get("name") for c in doc.controls]
    assert names[:6] == ["condition", "recruitment-status", "phase", "eligible-age", "eligible-sex", "biomarker"]
    assert 'list="condition-groups"' in page.text and '<option value="Breast cancer">' in page.text
    fhir = requests.get(server + "/", timeout=30)
    assert fhir.status_code == 405 and fhir.json()["resourceType"] == "OperationOutcome"
    assert "POST" in fhir.headers["Allow"]


def test_html_by_format_parameter_and_by_accept(server):
    assert _page(server, "/ResearchStudy?_count=5").headers["Content-Type"].startswith("text/html")
    by_format = requests.get(f"{server}/ResearchStudy?_count=5&_format=html", timeout=30)
    assert by_format.headers["Content-Type"].startswith("text/html")
    assert "_format=html" in _Doc(by_format.text).links[-1] or "next" not in by_format.text


def test_the_form_goes_to_the_fhir_search_url(server):
    found = requests.get(server + "/_pages/find", headers=BROWSER, allow_redirects=False, timeout=30, params=[
        ("condition", "Breast cancer"), ("recruitment-status", ""), ("phase", ""), ("eligible-age", "60"),
        ("eligible-sex", "female"), ("biomarker", "her2-positive"), ("place", "02114"), ("radius", "25"),
        ("_count", "10")])
    assert found.status_code == 303
    target = urlsplit(found.headers["Location"])
    assert target.path == "/ResearchStudy"
    assert parse_qsl(target.query) == [("condition", "breast-cancer"), ("eligible-age", "60"),
                                       ("eligible-sex", "female"), ("biomarker", "her2-positive"), ("_count", "10"),
                                       ("site.near", "42.3611|-71.0682|25|mi")]
    # the same URL is the FHIR search: a FHIR client gets its JSON
    assert requests.get(server + found.headers["Location"], timeout=30).json()["resourceType"] == "Bundle"
    words = requests.get(server + "/_pages/find", params={"condition": "rosacea"}, headers=BROWSER,
                         allow_redirects=False, timeout=30)
    assert parse_qsl(urlsplit(words.headers["Location"]).query) == [("condition:text", "rosacea"), ("_count", "20")]


@pytest.mark.parametrize("place, message", [("00000", "ZIP code 00000 is not in"), ("Rochester", "add the state"),
                                            ("Nowhere, ZZ", "No US city named")])
def test_a_place_that_is_not_known_is_a_400_page_keeping_the_form(server, place, message):
    page = requests.get(server + "/_pages/find", params={"condition": "Asthma", "place": place}, headers=BROWSER,
                        timeout=30)
    assert page.status_code == 400 and message in page.text
    assert f'value="{place}"' in page.text and 'value="Asthma"' in page.text
    _check_page(page)


def test_search_page_lists_the_fhir_search_results(server):
    page = _page(server, "/ResearchStudy?condition=breast-cancer&_count=20")
    assert page.status_code == 200
    doc = _check_page(page)
    bundle = requests.get(f"{server}/ResearchStudy?condition=breast-cancer&_count=20", timeout=30).json()
    studies = [e["resource"] for e in bundle["entry"]]
    assert f"{bundle['total']} trials found" in page.text
    for study in studies:
        assert f"/ResearchStudy/{study['id']}" in doc.links and study["title"] in page.text.replace("&#39;", "'")
    assert 'value="Breast cancer"' in page.text                  # the form shows what was searched
    assert "Phase" in page.text and "Sponsor" in page.text and "Status" in page.text
    json_link = next(link for link in doc.links if link.startswith("/ResearchStudy?") and "_format=json" in link)
    assert requests.get(server + json_link, timeout=30).json()["total"] == bundle["total"]


def test_near_a_place_shows_the_nearest_site_and_its_distance(server):
    page = _page(server, "/ResearchStudy?site.near=42.3611|-71.0682|25|mi&_count=20")
    assert page.status_code == 200
    assert f"/ResearchStudy/{NEAR_BOSTON_STUDY}" in page.text
    assert re.search(r"Nearest site</dt><dd>[^<]*Boston[^<]*: <strong>[0-9.]+ mi</strong>", page.text)
    assert 'value="42.3611, -71.0682"' in page.text and '<option value="25" selected>' in page.text
    # the nearest of all the study's sites, measured here from each site's JSON
    from fhirstudy.pages.search_page import MILE_KM
    from fhirstudy.search.geo import great_circle_km, position

    study = requests.get(f"{server}/ResearchStudy/{NEAR_BOSTON_STUDY}", timeout=30).json()
    measured = []
    for ref in study["site"]:
        site = requests.get(f"{server}/{ref['reference']}", timeout=30).json()
        if "position" in site:
            km = great_circle_km(position(42.3611, -71.0682), position(site["position"]["latitude"],
                                                                        site["position"]["longitude"]))
            measured.append((km, site["name"]))
    assert len(measured) > 1, "the study has several sites with a position"
    km, name = min(measured)
    entry = page.text[page.text.index(f"/ResearchStudy/{NEAR_BOSTON_STUDY}"):]
    shown = re.search(r"Nearest site</dt><dd>([^<]*): <strong>([0-9.]+) mi</strong>", entry)
    assert shown.group(1).startswith(html.escape(name)) and shown.group(2) == f"{km / MILE_KM:.1f}"


def test_paging_follows_the_searchset_links(server):
    seen, path = [], "/ResearchStudy?_count=5&_sort=_id"
    while path:
        doc = _Doc(_page(server, path).text)
        ids = [link.rsplit("/", 1)[1] for link in doc.links if re.fullmatch(r"/ResearchStudy/[\w.-]+", link)]
        assert 0 < len(ids) <= 5
        seen += ids
        path = doc.rels.get("next")
    total = requests.get(f"{server}/ResearchStudy?_summary=count", timeout=30).json()["total"]
    assert len(seen) == len(set(seen)) == total and seen == sorted(seen)
    last = _page(server, f"/ResearchStudy?_count=5&_sort=_id&_cursor=" + "x")
    assert last.status_code == 400 and "not a value this server wrote" in last.text


def test_a_page_without_count_goes_to_the_url_with_it(server):
    response = requests.get(f"{server}/ResearchStudy?condition=asthma", headers=BROWSER, allow_redirects=False,
                            timeout=30)
    assert response.status_code == 302 and response.headers["Location"].endswith("condition=asthma&_count=20")


def test_study_page_shows_the_study_and_links_its_json(server):
    page = _page(server, f"/ResearchStudy/{RESULTS_STUDY}")
    assert page.status_code == 200
    doc = _check_page(page)
    for words in ("Safety and Efficacy of ACU-D1", "Rosacea", "MeSH D012393", "ACU-D1 Ointment Vehicle",
                  "Placebo Comparator", "Change From Baseline in Total Lesion Count at Week 12", "Accuitis",
                  "DS Research", "Louisville", "Outcome Measure Report for NCT03064438", "Least Squares Mean"):
        assert words in page.text, words
    json_links = [link for link in doc.links if link.endswith("_format=json")]
    kinds = {urlsplit(link).path.split("/")[1] for link in json_links}
    assert {"ResearchStudy", "PlanDefinition", "EvidenceVariable", "Location", "Composition", "Evidence"} <= kinds
    for link in json_links[:12]:
        fetched = requests.get(server + link, timeout=30)
        assert fetched.status_code == 200 and fetched.headers["Content-Type"].startswith("application/fhir+json")


def test_criteria_are_shown_beside_their_computable_facts(server):
    page = _page(server, f"/ResearchStudy/{FACTS_STUDY}")
    row = re.search(r'<tr id="c-inclusion-1"><td>([^<]*)</td><td>(.*?)</td></tr>', page.text)
    assert row and row.group(1) == "ECOG Performance Status of 0, 1, or 2"
    assert "ECOG Performance Status score</strong>: 0 to 2" in row.group(2) and "LOINC 89247-1" in row.group(2)
    assert re.search(r'<tr id="c-exclusion-1"><td>Symptomatic, untreated, or actively progressing CNS metastases'
                     r'</td><td><span class="small">text only', page.text)
    assert "Exclusion criteria</h3>" in page.text and "No results posted." in page.text


def _match_form(server, **fields):
    files = {"patient_file": ("", b"", "application/octet-stream")}
    return requests.post(f"{server}/ResearchStudy/$match", data=fields, files=files, headers=BROWSER, timeout=60)


def test_check_a_patient_shows_the_match_with_reasons(server):
    form = _page(server, "/ResearchStudy/$match")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
    _check_page(form)
    patient = (PATIENTS / "her2-positive-metastatic-breast.json").read_text()
    page = _match_form(server, patient=patient)
    assert page.status_code == 200
    _check_page(page)
    answer = requests.post(f"{server}/ResearchStudy/$match", timeout=60, headers={"Content-Type": "application/fhir+json"},
                           data=json.dumps({"resourceType": "Parameters", "parameter": [
                               {"name": "trialMatchClinicalData", "resource": json.loads(patient)}]})).json()
    expected = [e["resource"]["id"] for e in answer["entry"] if e["search"]["mode"] == "match"]
    shown = re.findall(r'<h3><a href="/ResearchStudy/([\w.-]+)">', page.text)
    assert shown == expected and expected
    assert "Subtype: HER2-positive" in page.text and 'class="fit-pass"' in page.text
    uploaded = requests.post(f"{server}/ResearchStudy/$match", headers=BROWSER, timeout=60,
                             files={"patient_file": ("p.json", patient.encode(), "application/json")})
    assert re.findall(r'<h3><a href="/ResearchStudy/([\w.-]+)">', uploaded.text) == expected


@pytest.mark.parametrize("patient, status, message", [
    ("", 400, "Paste the patient"), ("{not json", 400, "is not JSON"),
    ('{"resourceType": "Patient"}', 400, "must be a FHIR Bundle"), ("[1, 2]", 400, "must be a FHIR Bundle"),
    ((PATIENTS / "minimal.json").read_text(), 400, "is not a US ZIP code"),
])
def test_bad_patient_input_is_a_4xx_page_that_says_why(server, patient, status, message):
    page = _match_form(server, patient=patient, zip="" if "ZIP" not in message else "12")
    assert page.status_code == status and message in page.text, page.text[:3000]
    assert 'role="alert"' in page.text and "<textarea" in page.text


def test_a_patient_too_big_is_a_413_page(tmp_path):
    with pages_server(tmp_path / "small.db", MAX_BODY_BYTES=2000) as small:
        page = _match_form(small, patient="x" * 5000)
    assert page.status_code == 413 and page.headers["Content-Type"].startswith("text/html")
    assert "larger than this server takes (2000 bytes)" in page.text


def test_error_pages_for_a_browser_keep_their_status(server):
    missing = _page(server, "/ResearchStudy/no-such-study")
    assert missing.status_code == 404 and "ResearchStudy/no-such-study is not known" in missing.text
    _check_page(missing)
    bad = _page(server, "/ResearchStudy?bogus=1&_count=5")
    assert bad.status_code == 400 and "Unknown search parameter" in bad.text
    assert requests.get(f"{server}/ResearchStudy?bogus=1", timeout=30).json()["resourceType"] == "OperationOutcome"


def test_other_resources_and_searches_have_simple_pages(server):
    location = _page(server, f"/Location/{RESULTS_STUDY}-site-1")
    assert location.status_code == 200 and "DS Research" in location.text
    _check_page(location)
    search = _page(server, "/Location?address-city=Boston&_count=5")
    assert search.status_code == 200 and "Location search" in search.text
    metadata = _page(server, "/metadata")
    assert metadata.status_code == 200 and "CapabilityStatement" in metadata.text


def test_the_stylesheet_is_served_and_loads_nothing_else(server):
    css = requests.get(f"{server}/_pages/static/pages.css", timeout=30)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert "url(" not in css.text and "@import" not in css.text and ":focus-visible" in css.text
