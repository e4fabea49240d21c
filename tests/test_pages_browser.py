"""The web pages in a real browser: Debian's headless Chromium driven by Playwright against a real
running fhirstudy (seeds and samples). Search by condition with filters, open a study, page
through results, check a patient, keyboard only, colour contrast, a phone-sized screen; every
request the browser makes must go to the test server. Screenshots for a person to look at are
saved under ``test-output/screenshots/`` (gitignored)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from _pages_fixtures import pages_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
PATIENTS = Path(__file__).parent / "data" / "patients"
MIN_CONTRAST = 4.5

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium; make test installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pages_server(tmp_path_factory.mktemp("browser") / "pages.db") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh page; every request it makes is recorded, and any not to the server is refused and
    fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    seen: list[str] = []
    outside: list[str] = []
    host = urlsplit(server).netloc

    def route(r):
        seen.append(r.request.url)
        if urlsplit(r.request.url).netloc != host:
            outside.append(r.request.url)
            return r.abort()
        return r.continue_()

    context.route("**/*", route)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()
    assert seen, "the browser made no request"
    assert not outside, f"requests outside the server: {outside}"


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _listed(page) -> list[str]:
    return [h.split("/")[-1] for h in page.eval_on_selector_all("ol.studies h3 a", "els => els.map(e => e.getAttribute('href'))")]


def test_search_by_condition_with_filters_then_open_a_study(page, server):
    page.goto(server + "/")
    assert page.title().startswith("Find clinical trials")
    options = page.eval_on_selector_all("#condition-groups option", "els => els.map(e => e.value)")
    assert "Breast cancer" in options and len(options) > 50          # the type-ahead list
    page.fill("#f-condition", "Breast cancer")
    page.select_option("#f-biomarker", "her2-positive")
    page.select_option("#f-eligible-sex", "female")
    page.fill("#f-eligible-age", "55")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/ResearchStudy\?"))
    query = parse_qsl(urlsplit(page.url).query)
    assert ("condition", "breast-cancer") in query and ("biomarker", "her2-positive") in query
    fhir = requests.get(page.url, timeout=30).json()                 # the page's URL is the FHIR search
    expected = [e["resource"]["id"] for e in fhir["entry"]]
    assert _listed(page) == expected and len(expected) == fhir["total"] >= 1
    assert page.input_value("#f-condition") == "Breast cancer"
    _shot(page, "search-breast-her2")
    title = page.inner_text("ol.studies li:first-child h3 a")
    page.click("ol.studies li:first-child h3 a")
    page.wait_for_url(re.compile(r"/ResearchStudy/[\w.-]+$"))
    assert page.inner_text("h1") == title
    assert page.locator("h2", has_text="Eligibility criteria").count() == 1
    _shot(page, "study-from-results")


def test_page_through_results_and_back(page, server):
    page.goto(server + "/ResearchStudy?_count=5&_sort=_id")
    pages = [_listed(page)]
    while page.locator("a[rel=next]").count():
        page.click("a[rel=next]")
        page.wait_for_load_state()
        pages.append(_listed(page))
    seen = [i for p in pages for i in p]
    total = requests.get(f"{server}/ResearchStudy?_summary=count", timeout=30).json()["total"]
    assert len(pages) > 2 and len(seen) == len(set(seen)) == total and seen == sorted(seen)
    page.click("a[rel=prev]")
    page.wait_for_load_state()
    assert _listed(page) == pages[-2]
    _shot(page, "paging-previous")


def test_study_page_shows_results_and_criteria_facts(page, server):
    page.goto(server + "/ResearchStudy/nct03064438")
    headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
    assert headings == ["Summary", "Conditions", "Arms and interventions", "Outcome measures", "Eligibility criteria",
                        "Sites", "Results"]
    assert page.locator("text=Least Squares Mean").count() >= 1
    _shot(page, "study-with-results")
    page.goto(server + "/ResearchStudy/nct06731140")
    row = page.locator("#c-inclusion-1")
    assert "LOINC 89247-1" in row.inner_text() and "0 to 2" in row.inner_text()


def test_check_a_patient_from_a_pasted_bundle(page, server):
    patient = (PATIENTS / "her2-positive-metastatic-breast.json").read_text()
    page.goto(server + "/")
    page.click("text=Check a patient")
    page.wait_for_url(re.compile(r"/ResearchStudy/\$match$"))
    page.fill("#f-patient", patient)
    page.click("button[type=submit]")
    page.wait_for_selector("#results-heading")
    answer = requests.post(f"{server}/ResearchStudy/$match", timeout=60, headers={"Content-Type": "application/fhir+json"},
                           data=json.dumps({"resourceType": "Parameters", "parameter": [
                               {"name": "trialMatchClinicalData", "resource": json.loads(patient)}]})).json()
    assert _listed(page) == [e["resource"]["id"] for e in answer["entry"] if e["search"]["mode"] == "match"]
    page.click("ol.studies li:first-child details summary")
    assert page.locator("ol.studies li:first-child td.fit-pass").first.is_visible()
    _shot(page, "match-her2")
    page.fill("#f-patient", "{not json")
    page.click("button[type=submit]")
    page.wait_for_selector("#form-error")
    assert "not JSON" in page.inner_text("#form-error")


FOCUS_ORDER = ["Skip to main content", "fhirstudy", "Find trials", "Check a patient", "FHIR API", "condition",
               "recruitment-status", "phase", "eligible-age", "eligible-sex", "biomarker", "place", "radius", "_count",
               "Search"]


def _focused(page) -> dict:
    return page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e), r = e.getBoundingClientRect();
        return {name: e.name || e.textContent.trim(), outline: s.outlineStyle, width: parseFloat(s.outlineWidth),
                visible: r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0}; }""")


def test_keyboard_only(page, server):
    page.goto(server + "/")
    order = []
    for _ in FOCUS_ORDER:
        page.keyboard.press("Tab")
        focused = _focused(page)
        assert focused["visible"] and focused["outline"] != "none" and focused["width"] >= 2, focused
        order.append(focused["name"])
    assert order == FOCUS_ORDER
    page.keyboard.press("Shift+Tab")
    assert _focused(page)["name"] == "_count"
    page.focus("#f-condition")
    page.keyboard.type("Asthma")
    page.keyboard.press("Enter")                                     # Enter submits the form
    page.wait_for_url(re.compile(r"/ResearchStudy\?"))
    assert ("condition", "asthma") in parse_qsl(urlsplit(page.url).query)
    page.goto(server + "/")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")                                     # the skip link moves focus to main
    assert page.evaluate("document.activeElement.id") == "main"
    _shot(page, "keyboard-search")


CONTRAST = """() => {
  const lum = c => { const [r, g, b] = c.match(/[0-9.]+/g).slice(0, 3).map(Number).map(v => v / 255)
      .map(v => v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4)); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bg = e => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
      if (!/rgba\\(.*, 0\\)$/.test(c) && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
  const out = [];
  for (const e of document.querySelectorAll('body *')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const r = e.getBoundingClientRect();
    if (!own || r.width === 0 || r.height === 0 || getComputedStyle(e).visibility === 'hidden') continue;
    const a = lum(getComputedStyle(e).color), b = lum(bg(e));
    out.push({tag: e.tagName, text: e.textContent.trim().slice(0, 40), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)});
  }
  return out; }"""


@pytest.mark.parametrize("path", ["/ResearchStudy?condition=breast-cancer&_count=20", "/ResearchStudy/nct03064438"])
def test_text_contrast_and_a_phone_screen(page, server, path):
    page.goto(server + path)
    low = [t for t in page.evaluate(CONTRAST) if t["ratio"] < MIN_CONTRAST]
    assert not low, low
    page.set_viewport_size({"width": 375, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 376   # no sideways scrolling
    _shot(page, "phone-" + ("study" if "/ResearchStudy/" in path else "search"))
