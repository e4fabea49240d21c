"""Narratives (#17): every resource a trial converts to carries a generated ``text`` that keeps
FHIR's narrative rules and says what a reader needs, with every source text escaped.

The rules are checked here with a real XML parser, because the peer validator does not check
them: Medplum's FHIRPath ``htmlChecks()`` (txt-1, txt-2) always answers true, so ``validate.sh``
only sees the narrative's shape (status binding, ``div`` present). The allowed elements are those
of txt-1 as the FHIR specification lists them (narrative-definitions.html, the txt-1 XPath:
https://hl7.org/fhir/DSTU2/narrative-definitions.html; R5 narrative.html#rules keeps the rule);
fhirstudy writes no attribute at all, so none is allowed here.
"""
from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import SAMPLES, SEEDS
from fhirstudy.mappers.r4 import to_r4
from fhirstudy.narrative import strip_narratives, text_of
from fhirstudy.pipeline import convert
from fhirstudy.push.prepare import prepare_trial

XHTML = "{http://www.w3.org/1999/xhtml}"
TXT1_ELEMENTS = frozenset(
    "a abbr acronym b big blockquote br caption cite code col colgroup dd dfn div dl dt em h1 h2 h3 h4 h5 h6 "
    "hr i img li ol p pre q samp small span strong table tbody td tfoot th thead tr tt ul var".split())
MINIMAL = Path(__file__).parent / "data" / "ctgov_json" / "minimal.json"
HOSTILE = "<script>alert('x')</script> & <b>bold</b> < 5"


def _inputs() -> list[Path]:
    samples = sorted(p for p in SAMPLES.glob("*") if p.suffix in (".json", ".xml", ".csv")) if SAMPLES.is_dir() else []
    return [SEEDS, *samples]


@pytest.fixture(scope="module")
def trials() -> list[list[dict]]:
    """Every trial of the seeds and the samples (JSON, XML, CSV), as the pipeline converts them."""
    out = [[e["resource"] for e in c.bundle["entry"]] for c in convert(_inputs(), unmapped=False) if c.ok]
    assert len(out) >= (23 if SAMPLES.is_dir() else 5)
    return out


def rule_problems(div: str) -> list[str]:
    """What breaks FHIR's narrative rules in ``div`` (none: it keeps them)."""
    try:
        root = ET.fromstring(div)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    problems = [] if root.tag == f"{XHTML}div" else [f"root is {root.tag}, not an XHTML div"]
    for el in root.iter():
        name = el.tag.removeprefix(XHTML)
        if not el.tag.startswith(XHTML):
            problems.append(f"{el.tag} is not in the XHTML namespace")
        elif name not in TXT1_ELEMENTS:
            problems.append(f"<{name}> is not allowed (txt-1)")
        if el.attrib:
            problems.append(f"<{name}> has attributes {sorted(el.attrib)}")
    if not "".join(root.itertext()).strip():
        problems.append("no non-whitespace text (txt-2)")
    return problems


def words(resource: dict) -> str:
    """The narrative as a reader sees it: its text, entities resolved."""
    return "".join(ET.fromstring(resource["text"]["div"]).itertext())


def _by_id(trials, rid: str) -> dict:
    return next(r for t in trials for r in t if r["id"] == rid)


def _concept(cc: dict | None) -> str | None:
    return (cc or {}).get("text") or next((c.get("display") for c in (cc or {}).get("coding", [])), None)


# -- every resource: generated, well-formed, only allowed XHTML ----------------------------------


def test_every_resource_of_every_trial_has_a_narrative_that_keeps_the_rules(trials):
    seen = set()
    for resources in trials:
        for r in resources:
            seen.add(r["resourceType"])
            assert r["text"]["status"] == "generated", r["id"]
            assert rule_problems(r["text"]["div"]) == [], (r["id"], r["text"]["div"][:300])
            assert list(r)[:4] == ["resourceType", "id", "meta", "text"], r["id"]
            for contained in r.get("contained", []):
                assert "text" not in contained  # dom-1
    assert {"ResearchStudy", "PlanDefinition", "EvidenceVariable", "Location", "Provenance"} <= seen
    if SAMPLES.is_dir():
        assert {"Group", "Evidence", "Composition"} <= seen


@pytest.mark.parametrize("version", ["4.0", "5.0"])
def test_what_push_sends_has_narratives_and_none_without_them(trials, version):
    for resources in trials:
        sent = prepare_trial(resources, version).resources
        assert all(r["text"]["status"] == "generated" and rule_problems(r["text"]["div"]) == [] for r in sent)
        assert not any("text" in r for r in prepare_trial(resources, version, narrative=False).resources)


def test_the_r4_conversion_keeps_each_narrative(trials):
    for resources in trials:
        r5 = {(r["resourceType"], r["id"]): r["text"] for r in resources}
        for r in to_r4(resources):
            if (r["resourceType"], r["id"]) in r5:
                assert r["text"] == r5[(r["resourceType"], r["id"])], r["id"]


def test_stripping_takes_only_the_resource_text():
    composition = {"resourceType": "Composition", "id": "c", "text": {"status": "generated", "div": "x"},
                   "section": [{"title": "s", "text": {"status": "generated", "div": "y"}}]}
    assert strip_narratives([composition]) == [{"resourceType": "Composition", "id": "c",
                                                "section": composition["section"]}]


# -- what a reader needs ---------------------------------------------------------------------------


def test_a_study_says_title_status_phase_conditions_sponsor_and_dates(trials):
    for resources in trials:
        study = resources[0]
        said = words(study)
        assert study["title"] in said
        nct = next((i["value"] for i in study["identifier"] if i.get("system") == "https://clinicaltrials.gov"), None)
        assert (nct or study["id"]) in said
        for c in study.get("condition", []):
            assert _concept(c) in said
        if study.get("phase"):
            assert _concept(study["phase"]) in said
        state = next((p["state"] for p in study.get("progressStatus", []) if "period" not in p), None)
        if state:
            assert _concept(state) in said
        for party in study.get("associatedParty", []):
            if any(c["code"] == "lead-sponsor" for c in party.get("role", {}).get("coding", [])):
                assert party["name"] in said
        for date in (study.get("period") or {}).values():
            assert date in said


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the samples folder {SAMPLES} is missing")
@pytest.mark.parametrize("rid, expected", [
    ("nct03064438", ["Safety and Efficacy of ACU-D1 in the Treatment of Acne Rosacea", "NCT number: NCT03064438",
                     "Status: Completed", "Phase: Phase 2", "Conditions: Acne Rosacea; Rosacea",
                     "Sponsor: Accuitis, Inc.", "Start: 2017-11-28", "Completion: 2018-06-18",
                     "Enrollment: 40 (actual)"]),
    ("nct02513394", ["PALbociclib CoLlaborative Adjuvant Study", "Phase: Phase 3", "Breast Cancer",
                     "Enrollment: 5796 (actual)", "Sites: 233"]),
    ("nct03064438-outcome-primary-1", ["Change From Baseline in Total Lesion Count at Week 12", "Primary outcome 1",
                                       "Time frame: Baseline, Week 12"]),
    ("nct03064438-result-group-1", ["ACU-D1 Ointment", "Participants: 27"]),
    ("nct03064438-outcome-result-1-analysis-1", ["Difference of Least Squares (LS) Mean: 1.8", "P-value 0.366",
                                                 "95% Confidence interval -2.162 to 5.727"]),
    ("nct03064438-baseline-2-group-1", ["Female: 23 Participants (Count of Participants; n = 27)"]),
    ("nct03064438-outcome-measures-report", ["Outcome Measure Report for NCT03064438",
                                             "Change From Baseline in Total Lesion Count at Week 12 (3 entries)"]),
    ("nct03064438-site-1", ["DS Research", "Louisville, Kentucky 40421, United States"]),
    ("nct03064438-protocol", ["ACU-D1 Ointment", "Drug: ACCU-D1", "Drug: Vehicle"]),
    ("nct03064438-provenance", ["record 1 of NCT03064438.json (ctgov-json)", "Source version date: 2021-08-23",
                                "68 Evidence"]),
])
def test_the_facts_of_the_samples_are_in_their_narratives(trials, rid, expected):
    said = words(_by_id(trials, rid))
    for fact in expected:
        assert fact in said, (fact, said[:500])


def test_eligibility_lists_every_criterion_on_its_side(trials):
    checked = 0
    for resources in trials:
        for ev in (r for r in resources if r["id"].endswith("-eligibility")):
            div = ET.fromstring(ev["text"]["div"])
            lines = [(li.text or "") for li in div.iter(f"{XHTML}li")]
            said = words(ev)
            for c in ev.get("characteristic", []):
                if c.get("linkId", "").startswith(("inclusion-", "exclusion-")):
                    assert c["description"] in lines, c["description"]
                    checked += 1
            sides = [c.get("exclude") for c in ev.get("characteristic", []) if "-" in c.get("linkId", "")]
            assert ("Inclusion criteria" in said) == (False in sides)
            assert ("Exclusion criteria" in said) == (True in sides)
    assert checked > 100


def test_every_outcome_says_its_time_frame(trials):
    for resources in trials:
        for ev in (r for r in resources if "-outcome-" in r["id"] and r["resourceType"] == "EvidenceVariable"):
            assert ev["title"] in words(ev)
            for t in ev["characteristic"][0].get("timeFromEvent", []):
                assert f"Time frame: {t['description']}" in words(ev)


def test_an_evidence_states_its_first_statistics_with_value_and_unit(trials):
    from fhirstudy.narrative.results import MAX_STATISTICS
    from fhirstudy.narrative.xhtml import quantity

    evidence = [r for t in trials for r in t if r["resourceType"] == "Evidence"]
    for e in evidence:
        said = words(e)
        for s in e["statistic"][:MAX_STATISTICS]:
            if (s.get("quantity") or {}).get("value") is not None:
                assert quantity(s["quantity"]) in said, (e["id"], quantity(s["quantity"]))
        if len(e["statistic"]) > MAX_STATISTICS:
            assert f"and {len(e['statistic']) - MAX_STATISTICS} more statistics" in said


# -- escaping ------------------------------------------------------------------------------------


def test_source_text_with_markup_is_escaped_not_markup(tmp_path):
    record = json.loads(MINIMAL.read_text())
    p = record["protocolSection"]
    p["identificationModule"]["briefTitle"] = f"Title {HOSTILE}"
    p["conditionsModule"]["conditions"] = [f"Condition {HOSTILE}"]
    p["sponsorCollaboratorsModule"]["leadSponsor"]["name"] = f"Sponsor {HOSTILE}"
    p["outcomesModule"]["primaryOutcomes"][0]["timeFrame"] = f"Week 4 {HOSTILE}"
    p["eligibilityModule"]["eligibilityCriteria"] = (f"Inclusion Criteria:\n\n* Criterion {HOSTILE}\n\n"
                                                     "Exclusion Criteria:\n\n* Prior letrozole")
    p["contactsLocationsModule"]["locations"][0]["facility"] = f"Hospital {HOSTILE}"
    source = tmp_path / "hostile.json"
    source.write_text(json.dumps(record))
    [converted] = list(convert([source], unmapped=False))
    assert converted.ok, converted.problems
    resources = {r["id"].removeprefix("nct09999903").lstrip("-") or "study": r
                 for r in (e["resource"] for e in converted.bundle["entry"])}
    for r in resources.values():
        assert rule_problems(r["text"]["div"]) == [], r["text"]["div"]
        assert "<script" not in r["text"]["div"]
    for rid, what in [("study", "Title"), ("study", "Condition"), ("study", "Sponsor"),
                      ("outcome-primary-1", "Week 4"), ("eligibility", "Criterion"), ("site-1", "Hospital")]:
        assert f"{what} {HOSTILE}" in words(resources[rid]), (rid, resources[rid]["text"]["div"])
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt; &lt; 5" in resources["study"]["text"]["div"]


@pytest.mark.parametrize("resource", [
    {"resourceType": "Location", "id": "x", "name": HOSTILE, "address": {"city": HOSTILE}},
    {"resourceType": "Basic", "id": "x", "title": HOSTILE},
    {"resourceType": "Evidence", "id": "x", "title": HOSTILE, "statistic": [{"category": {"text": HOSTILE},
                                                                             "quantity": {"value": 1, "unit": HOSTILE}}]},
    {"resourceType": "Location", "id": "x", "name": "bad \ufffe char"},
])
def test_one_resource_alone_gets_an_escaped_narrative(resource):
    text = text_of(resource)
    assert rule_problems(text["div"]) == []
    assert "<script" not in text["div"]


# -- the peer validator ------------------------------------------------------------------------------


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the samples folder {SAMPLES} is missing")
def test_the_peer_validator_finds_no_error_in_the_converted_trials(trials, peer_validate, tmp_path):
    files = []
    for resources in trials:
        path = tmp_path / f"{resources[0]['id']}.json"
        path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"fullUrl": f"https://example.org/{r['resourceType']}/{r['id']}",
                                               "resource": r} for r in resources]}))
        files.append(str(path))
    run = subprocess.run(["bash", str(peer_validate), "r5", *files], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.stdout.count("valid  ") == len(files)
