"""Trial results in FHIR (#16): every fact of each sample's results, read straight from the source
record (API v2 JSON, or legacy XML with ElementTree: not through fhirstudy's readers), is found in
the FHIR output where the mapping says: every group a Group, every measure value with its unit,
dispersion and denominator in the Evidence of its measure and group, every p-value in the
Evidence of its analysis, every participant-flow and adverse-event count in the Evidence of its
group; the report Compositions list every Evidence; everything passes the peer's validator."""
from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import SAMPLES
from fhirstudy.mappers import ids
from fhirstudy.pipeline import convert

JSON_SAMPLES = ["NCT00763412", "NCT03064438", "NCT02210780", "NCT05594173"]
XML_SAMPLES = ["NCT01065844"]
_NUMBER = re.compile(r"^\s*(<=|>=|<|>)?\s*([-+]?\d+(?:\.\d+)?)\s*$")
P_VALUE = "C44185"


@pytest.fixture(scope="module")
def bundles():
    files = [SAMPLES / f"{n}.json" for n in JSON_SAMPLES] + [SAMPLES / f"{n}.xml" for n in XML_SAMPLES]
    out = {}
    for c in convert(files):
        assert c.ok, c.problems
        out[c.bundle["entry"][0]["resource"]["id"]] = {e["resource"]["id"]: e["resource"] for e in c.bundle["entry"]}
    return out


def _number(text):
    m = _NUMBER.match(text or "")
    return (float(m.group(2)), m.group(1)) if m else (None, None)


def _same(quantity, text, unit=None):
    value, comparator = _number(text)
    if value is None:
        return quantity is None
    return (quantity is not None and quantity["value"] == pytest.approx(value) and quantity.get("comparator") == comparator
            and (unit is None or quantity.get("unit") == unit))


def _category(*titles):
    return ": ".join(t for t in titles if t) or None


def _statistic(evidence, category, value):
    """The statistic of ``category`` whose quantity is ``value`` (or that has no quantity, for "NA")."""
    found = [s for s in evidence["statistic"] if (s.get("category") or {}).get("text") == category
             and _same(s.get("quantity"), value)]
    assert found, f"{evidence['id']}: no statistic {category!r} = {value!r}"
    return found[0]


# --- what each source says, read without fhirstudy ------------------------------------------------

def _json_measures(measures, groups_of, denoms_of):
    """(measure number, group number, group id, category, measurement dict, unit, denominator)."""
    for n, m in enumerate(measures, 1):
        groups = groups_of(m)
        for klass in m.get("classes", []):
            for cat in klass.get("categories", []):
                for meas in cat.get("measurements", []):
                    g = [x["id"] for x in groups].index(meas["groupId"]) + 1
                    denoms = klass.get("denoms") or m.get("denoms") or denoms_of
                    counts = [c["value"] for d in denoms if d.get("units", "Participants").lower() == "participants"
                              for c in d["counts"] if c["groupId"] == meas["groupId"]]
                    yield n, g, meas["groupId"], _category(klass.get("title"), cat.get("title")), meas, \
                        m.get("unitOfMeasure"), counts[0] if counts else None


def _check_measurement(evidence, category, meas, unit, denominator):
    st = _statistic(evidence, category, meas.get("value"))
    if _number(meas.get("value"))[0] is not None:
        assert st["quantity"]["unit"] == unit
    if denominator is not None:
        assert st["sampleSize"]["numberOfParticipants"] == int(denominator)
    estimates = st.get("attributeEstimate", [])
    if _number(meas.get("spread"))[0] is not None:
        assert any(_same(e.get("quantity"), meas["spread"], unit) for e in estimates), (evidence["id"], meas)
    for limit, end in (("lowerLimit", "low"), ("upperLimit", "high")):
        if _number(meas.get(limit))[0] is not None:
            assert any(_same((e.get("range") or {}).get(end), meas[limit], unit) for e in estimates), (evidence["id"], meas)


def _group_ok(resources, title, group_id):
    found = [r for r in resources.values() if r["resourceType"] == "Group" and r.get("name") == title
             and group_id in [i["value"] for i in r.get("identifier", [])]]
    assert found, f"no Group {title!r} for {group_id}"


@pytest.mark.parametrize("nct", JSON_SAMPLES)
def test_json_results_are_all_in_fhir(bundles, nct):
    rs = json.loads((SAMPLES / f"{nct}.json").read_text(encoding="utf-8"))["resultsSection"]
    sid = nct.lower()
    res = bundles[sid]
    evidence = lambda rid: res[rid]  # noqa: E731 - a KeyError names the missing Evidence
    checked = 0
    flow, base = rs.get("participantFlowModule", {}), rs.get("baselineCharacteristicsModule", {})
    events, outcomes = rs.get("adverseEventsModule", {}), rs.get("outcomeMeasuresModule", {}).get("outcomeMeasures", [])
    for module in (flow, base, events):
        for g in module.get("groups", module.get("eventGroups", [])):
            _group_ok(res, g["title"], g["id"])
    for m in outcomes:
        for g in m.get("groups", []):
            _group_ok(res, g["title"], g["id"])
    # participant flow: every milestone and drop reason count
    for p, period in enumerate(flow.get("periods", []), 1):
        for g, group in enumerate(flow.get("groups", []), 1):
            ev = evidence(ids.flow_result_id(sid, p, g))
            for item, category in [(m, m["type"]) for m in period.get("milestones", [])] + [
                    (d, f"Not completed: {d['type']}") for d in period.get("dropWithdraws", [])]:
                for c in item.get("achievements", item.get("reasons", [])):
                    if c["groupId"] == group["id"]:
                        _statistic(ev, category, c["numSubjects"])
                        checked += 1
    # baseline and outcome measures: every value, its unit, dispersion and denominator
    for n, g, _, category, meas, unit, denom in _json_measures(base.get("measures", []), lambda m: base["groups"],
                                                                base.get("denoms", [])):
        _check_measurement(evidence(ids.baseline_result_id(sid, n, g)), category, meas, unit, denom)
        checked += 1
    for n, g, _, category, meas, unit, denom in _json_measures(outcomes, lambda m: m["groups"], []):
        _check_measurement(evidence(ids.outcome_result_id(sid, n, g)), category, meas, unit, denom)
        checked += 1
    # analyses: every p-value, estimate and confidence interval
    for n, m in enumerate(outcomes, 1):
        for a, analysis in enumerate(m.get("analyses", []), 1):
            st = evidence(ids.analysis_result_id(sid, n, a))["statistic"][0]
            estimates = st.get("attributeEstimate", [])
            if analysis.get("pValue"):
                p = [e for e in estimates if e["type"]["coding"][0]["code"] == P_VALUE]
                assert len(p) == 1 and _same(p[0]["quantity"], analysis["pValue"]), (n, a)
                checked += 1
            if analysis.get("paramValue"):
                assert _same(st["quantity"], analysis["paramValue"])
            if analysis.get("ciLowerLimit"):
                ci = [e for e in estimates if e.get("level") == float(analysis["ciPctValue"]) / 100]
                assert ci and _same(ci[0]["range"]["low"], analysis["ciLowerLimit"])
                assert _same(ci[0]["range"]["high"], analysis["ciUpperLimit"])
            observed = [v["observed"]["reference"] for v in evidence(ids.analysis_result_id(sid, n, a))["variableDefinition"]
                        if v["variableRole"]["coding"][0]["code"] == "exposure"]
            assert len(observed) == len(analysis["groupIds"])
    # adverse events: every group total and every term's counts
    for g, group in enumerate(events.get("eventGroups", []), 1):
        for kind in ("serious", "other", "deaths"):
            if group.get(f"{kind}NumAtRisk") is not None:
                total = "Total, all-cause mortality" if kind == "deaths" else f"Total, {kind} adverse events"
                st = _statistic(evidence(ids.adverse_events_id(sid, kind, g)), total, str(group[f"{kind}NumAffected"]))
                assert st["sampleSize"]["numberOfParticipants"] == group[f"{kind}NumAtRisk"]
                checked += 1
        for key, kind in (("seriousEvents", "serious"), ("otherEvents", "other")):
            for event in events.get(key, []):
                for stat in event["stats"]:
                    if stat["groupId"] != group["id"]:
                        continue
                    st = _statistic(evidence(ids.adverse_events_id(sid, kind, g)), event["term"], str(stat["numAffected"]))
                    assert st["numberAffected"] == stat["numAffected"]
                    assert st["sampleSize"]["numberOfParticipants"] == stat["numAtRisk"]
                    assert st.get("numberOfEvents") == stat.get("numEvents")
                    assert f"Organ system: {event['organSystem']}" in [x["text"] for x in st["note"]]
                    checked += 1
    assert checked > 20


def _xml_groups(node):
    return [(g.get("group_id"), g.findtext("title")) for g in node.findall("group_list/group")]


def _xml_class_values(measure, groups, overall=()):
    for klass in measure.findall("class_list/class"):
        for cat in klass.findall("category_list/category"):
            for meas in cat.findall("measurement_list/measurement"):
                g = [x[0] for x in groups].index(meas.get("group_id")) + 1
                analysed = klass.findall("analyzed_list/analyzed") or measure.findall("analyzed_list/analyzed") or overall
                counts = [c.get("value") for a in analysed if (a.findtext("units") or "").lower() == "participants"
                          for c in a.findall("count_list/count") if c.get("group_id") == meas.get("group_id")]
                yield g, _category(klass.findtext("title"), cat.findtext("title")), {
                    "value": meas.get("value"), "spread": meas.get("spread"), "lowerLimit": meas.get("lower_limit"),
                    "upperLimit": meas.get("upper_limit")}, measure.findtext("units"), counts[0] if counts else None


@pytest.mark.parametrize("nct", XML_SAMPLES)
def test_legacy_xml_results_are_all_in_fhir(bundles, nct):
    root = ET.parse(SAMPLES / f"{nct}.xml").getroot().find("clinical_results")
    sid = nct.lower()
    res = bundles[sid]
    checked = 0
    for part in ("participant_flow", "baseline", "reported_events"):
        for gid, title in _xml_groups(root.find(part)):
            _group_ok(res, title, gid)
    flow = root.find("participant_flow")
    for p, period in enumerate(flow.findall("period_list/period"), 1):
        for g, (gid, _) in enumerate(_xml_groups(flow), 1):
            ev = res[ids.flow_result_id(sid, p, g)]
            for item, prefix in [(m, "") for m in period.findall("milestone_list/milestone")] + [
                    (d, "Not completed: ") for d in period.findall("drop_withdraw_reason_list/drop_withdraw_reason")]:
                for c in item.findall("participants_list/participants"):
                    if c.get("group_id") == gid:
                        _statistic(ev, prefix + item.findtext("title"), c.get("count"))
                        checked += 1
    baseline = root.find("baseline")
    for n, measure in enumerate(baseline.findall("measure_list/measure"), 1):
        for g, category, meas, unit, denom in _xml_class_values(measure, _xml_groups(baseline),
                                                                baseline.findall("analyzed_list/analyzed")):
            _check_measurement(res[ids.baseline_result_id(sid, n, g)], category, meas, unit, denom)
            checked += 1
    for n, outcome in enumerate(root.findall("outcome_list/outcome"), 1):
        measure = outcome.find("measure")
        for g, category, meas, unit, denom in (_xml_class_values(measure, _xml_groups(outcome))
                                               if measure is not None else []):
            _check_measurement(res[ids.outcome_result_id(sid, n, g)], category, meas, unit, denom)
            checked += 1
    events = root.find("reported_events")
    for g, (gid, _) in enumerate(_xml_groups(events), 1):
        for part, kind in (("serious_events", "serious"), ("other_events", "other")):
            for cat in events.findall(f"{part}/category_list/category"):
                for event in cat.findall("event_list/event"):
                    for c in event.findall("counts"):
                        if c.get("group_id") != gid:
                            continue
                        term = event.findtext("sub_title")
                        ev = res[ids.adverse_events_id(sid, kind, g)]
                        st = _statistic(ev, term, c.get("subjects_affected"))
                        assert st["sampleSize"]["numberOfParticipants"] == int(c.get("subjects_at_risk"))
                        assert st.get("numberOfEvents") == (int(c.get("events")) if c.get("events") else None)
                        checked += 1
    assert checked > 15


@pytest.mark.parametrize("nct", JSON_SAMPLES + XML_SAMPLES)
def test_reports_list_every_evidence_and_the_study_links_its_arms(bundles, nct):
    res = bundles[nct.lower()]
    listed = set()

    def walk(sections):
        for s in sections:
            listed.update(e["reference"] for e in s.get("entry", []))
            walk(s.get("section", []))
    compositions = [r for r in res.values() if r["resourceType"] == "Composition"]
    for c in compositions:
        assert c["subject"] == [{"reference": f"ResearchStudy/{nct.lower()}", "display": res[nct.lower()]["title"]}]
        walk(c.get("section", []))
    evidence = {f"Evidence/{r['id']}" for r in res.values() if r["resourceType"] == "Evidence"}
    assert evidence and evidence <= listed
    assert {f"Composition/{c['id']}" for c in compositions} - listed == {
        f"Composition/{ids.report_id(nct.lower(), 'results')}"}
    provenance = next(r for r in res.values() if r["resourceType"] == "Provenance")
    targets = {t["reference"] for t in provenance["target"]}
    assert {f"{r['resourceType']}/{r['id']}" for r in res.values() if r["resourceType"] != "Provenance"} == targets
    for arm in res[nct.lower()].get("comparisonGroup", []):
        if "observedGroup" in arm:
            assert res[arm["observedGroup"]["reference"].split("/")[1]]["name"].casefold() == arm["name"].casefold()


def test_codes_are_official_and_units_ucum_only_when_real(bundles):
    res = bundles["nct00763412"]
    statistic = res[ids.outcome_result_id("nct00763412", 1, 1)]["statistic"][0]
    assert statistic["statisticType"]["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/statistic-type",
                                                       "code": "C53319", "display": "Mean"}
    assert statistic["quantity"]["unit"] == "Kg/m^2" and statistic["quantity"]["code"] == "kg/m2"
    assert statistic["attributeEstimate"][0]["type"]["coding"][0]["code"] == "C38013"  # Full Range
    scale = res[ids.outcome_result_id("nct00763412", 7, 1)]["statistic"][0]["quantity"]
    assert scale["unit"] == "units on a scale" and "code" not in scale and "system" not in scale
    lsmean = bundles["nct03064438"][ids.outcome_result_id("nct03064438", 1, 1)]["statistic"][0]
    assert lsmean["statisticType"] == {"text": "Least Squares Mean"}  # no equivalent code: text only
    analysis = bundles["nct02210780"][ids.analysis_result_id("nct02210780", 4, 1)]["statistic"][0]
    p = next(e for e in analysis["attributeEstimate"] if e["type"]["coding"][0]["code"] == P_VALUE)
    assert p["quantity"] == {"value": 0.0001, "comparator": "<"}
    ci = next(e for e in analysis["attributeEstimate"] if e.get("level"))
    assert ci["level"] == 0.9 and "Confidence interval: 2-sided" in [n["text"] for n in ci["note"]]


def test_results_resources_pass_the_peer_validator(bundles, peer_validate, tmp_path):
    files = []
    for sid, res in bundles.items():
        for r in res.values():
            if r["resourceType"] in ("Evidence", "Composition", "Group"):
                path = tmp_path / f"{r['resourceType']}-{r['id']}.json"
                path.write_text(json.dumps(r), encoding="utf-8")
                files.append(str(path))
    done = subprocess.run(["bash", str(peer_validate), "r5", *files], capture_output=True, text=True, timeout=900)
    invalid = [line for line in done.stdout.splitlines() if not line.startswith("valid")]
    assert done.returncode == 0 and not invalid, (invalid[:10], done.stderr[-2000:])
