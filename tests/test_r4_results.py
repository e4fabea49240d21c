"""Trial results to R4 stores (#16): ``push --r4-results=extensions`` sends Group, Evidence and
Composition as valid R4, what R4 lacks in the R5 cross-version extensions; the default (``omit``)
leaves them out with a note. The statistics are read back from the real peer server in R4 mode
with a decoder of our own, written from the official R5 element table only."""
from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from _peer_fixtures import peer_r4  # noqa: F401
from _references import references
from conftest import SAMPLES
from fhirstudy import cli, mappings
from fhirstudy.mappers import ids
from fhirstudy.mappers.r4 import extension_url, to_r4
from fhirstudy.mappers.r4_base import element_ext
from fhirstudy.pipeline import convert
from fhirstudy.push import FhirClient
from fhirstudy.push.prepare import RESOURCE_ID_SYSTEM, prepare_trial

FILES = [SAMPLES / "NCT03064438.json", SAMPLES / "NCT02210780.json", SAMPLES / "NCT01065844.xml"]
RESULT_TYPES = ("Group", "Evidence", "Composition")
ANALYSIS = "nct03064438-outcome-result-1-analysis-1"       # p-value 0.366, 95% CI -2.162 to 5.727
SERIOUS = "nct02210780-adverse-events-serious-group-2"      # serious adverse events: 3 of 97, one a carcinoma
ELEMENTS = mappings.load("fhir-r5-elements.json")["elements"]


@pytest.fixture(scope="module")
def trials() -> dict[str, list[dict]]:
    return {c.bundle["entry"][0]["resource"]["id"]: [e["resource"] for e in c.bundle["entry"]]
            for c in convert(FILES) if c.ok}


def decode(path: str, extension: dict):
    """The R5 value of one cross-version extension of element ``path`` (complex extensions by the
    element table: a sub-extension per child, repeated for a list, ``value`` for ``value[x]``)."""
    definition = ELEMENTS[path]
    if definition.get("contentReference"):
        path = definition["contentReference"]
    if "extension" not in extension:
        return next(v for k, v in extension.items() if k.startswith("value"))
    out: dict = {}
    for sub in extension["extension"]:
        name = sub["url"]
        child = f"{path}.{name}" if f"{path}.{name}" in ELEMENTS else f"{path}.{name}[x]"
        key = name if not child.endswith("[x]") else name + next(k for k in sub if k.startswith("value"))[5:]
        value = decode(child, sub)
        if ELEMENTS[child]["max"] == "*":
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out


def recovered(resource: dict, element: str) -> list:
    """Every value of R5 ``<Type>.<element>`` carried in the resource's cross-version extensions."""
    path = f"{resource['resourceType']}.{element}"
    return [decode(path, e) for e in resource.get("extension", []) if e["url"] == extension_url(path)]


ELEMENT_CASES = [  # (R5 path, value, the cross-version extension)
    ("Group.description", "Arm A", {"url": extension_url("Group.description"), "valueMarkdown": "Arm A"}),
    ("Group.characteristic", {"code": {"text": "adult"}, "valueBoolean": True, "exclude": False},
     {"url": extension_url("Group.characteristic"), "extension": [
         {"url": "code", "valueCodeableConcept": {"text": "adult"}}, {"url": "value", "valueBoolean": True},
         {"url": "exclude", "valueBoolean": False}]}),
    ("Evidence.citeAsMarkdown", "Smith 2020", {"url": extension_url("Evidence.citeAs"), "valueMarkdown": "Smith 2020"}),
    ("Evidence.statistic", {"attributeEstimate": [{"level": 0.9, "attributeEstimate": [{"level": 0.5}]}]},
     {"url": extension_url("Evidence.statistic"), "extension": [{"url": "attributeEstimate", "extension": [
         {"url": "level", "valueDecimal": 0.9},
         {"url": "attributeEstimate", "extension": [{"url": "level", "valueDecimal": 0.5}]}]}]}),
]


@pytest.mark.parametrize(("path", "value", "expected"), ELEMENT_CASES)
def test_element_ext_follows_the_r5_element_table(path, value, expected):
    assert element_ext(path, value) == expected


@pytest.mark.parametrize(("path", "value", "message"), [
    ("Evidence.statistic", {"pValue": 1}, "Evidence.statistic.pValue is not an R5 element"),
    ("Evidence.nothing", 1, "Evidence.nothing is not an R5 element"),
    ("ResearchStudy.focus", {"concept": {"text": "x"}}, "no R4 cross-version extension for type CodeableReference")])
def test_element_ext_refuses_what_it_cannot_carry(path, value, message):
    with pytest.raises(ValueError, match=message):
        element_ext(path, value)


def test_every_r5_element_of_the_results_is_in_r4_or_recoverable(trials):
    same = {"Group": {"identifier", "type", "name"},
            "Evidence": {"title", "status", "date", "description", "note"},
            "Composition": {"status", "type", "date", "author", "title", "section"}}
    for resources in trials.values():
        r4 = {(r["resourceType"], r["id"]): r for r in to_r4(resources, results="extensions")}
        results = [r for r in resources if r["resourceType"] in RESULT_TYPES]
        assert results
        for r5 in results:
            got = r4[(r5["resourceType"], r5["id"])]
            for key, value in r5.items():
                if key in ("resourceType", "id", "meta", "text") or key in same[r5["resourceType"]]:
                    assert got.get(key) == value, (r5["id"], key)
                elif key == "membership":
                    assert got["actual"] is (value == "enumerated")
                elif key == "subject":
                    assert got["subject"] == value[0] and len(value) == 1
                elif key in ("relatedArtifact", "contained"):
                    assert len(got[key]) == len(value)
                else:  # statistic, variableDefinition, Group.description, Composition.note ...
                    assert recovered(got, key) == (value if isinstance(value, list) else [value]), (r5["id"], key)


def test_r4_evidence_references_r4_evidence_variables(trials):
    for resources in trials.values():
        r4 = to_r4(resources, results="extensions")
        held = {f"{r['resourceType']}/{r['id']}": r for r in r4}
        for ref in references(r4):
            assert ref.startswith("#") or ref in held, ref
        for ev in (r for r in r4 if r["resourceType"] == "Evidence"):
            for ref in [ev["exposureBackground"], *ev.get("exposureVariant", []), *ev.get("outcome", [])]:
                assert ref["reference"].startswith("EvidenceVariable/")
        provenance = r4[-1]
        assert {t["reference"] for t in provenance["target"]} == set(held) - {f"Provenance/{provenance['id']}"}
    r4 = {r["id"]: r for r in to_r4(trials["nct03064438"], results="extensions")}
    group = "nct03064438-result-group-1"
    assert r4["nct03064438-outcome-result-1-group-1"]["exposureBackground"]["reference"] == \
        f"EvidenceVariable/{ids.group_variable_id(group)}"
    assert r4[ids.group_variable_id(group)]["characteristic"][0]["definitionReference"]["reference"] == f"Group/{group}"
    analysis = r4[ANALYSIS]  # an analysis has no population variable: the study's eligibility
    assert analysis["exposureBackground"]["reference"] == "EvidenceVariable/nct03064438-eligibility"
    assert [v["reference"] for v in analysis["exposureVariant"]] == [
        f"EvidenceVariable/{ids.group_variable_id('nct03064438-result-group-1')}",
        f"EvidenceVariable/{ids.group_variable_id('nct03064438-result-group-2')}"]
    assert analysis["outcome"] == [{"reference": "EvidenceVariable/nct03064438-outcome-primary-1",
                                    "display": "Change From Baseline in Total Lesion Count at Week 12"}]
    arms = [e for e in r4["nct03064438"]["extension"] if e["url"] == extension_url("ResearchStudy.comparisonGroup")]
    assert any(s["url"] == "observedGroup" for a in arms for s in a["extension"])


def test_without_eligibility_the_study_population_is_made_once(trials):
    resources = [r for r in trials["nct03064438"] if r["id"] != ids.eligibility_id("nct03064438")]
    resources[0] = {k: v for k, v in resources[0].items() if k != "recruitment"}
    r4 = to_r4(resources, results="extensions")
    made = [r for r in r4 if r["id"] == ids.results_population_id("nct03064438")]
    assert len(made) == 1 and made[0]["resourceType"] == "EvidenceVariable"
    analysis = next(r for r in r4 if r["id"] == ANALYSIS)
    assert analysis["exposureBackground"]["reference"] == f"EvidenceVariable/{made[0]['id']}"


def test_omit_is_the_default_and_modes_are_checked(trials):
    resources = trials["nct03064438"]
    assert to_r4(resources) == to_r4(resources, results="omit")
    assert not {"Evidence", "Composition"} & {r["resourceType"] for r in to_r4(resources)}
    with pytest.raises(ValueError, match="omit, extensions"):
        to_r4(resources, results="everything")
    omitted, sent = prepare_trial(resources, "4.0"), prepare_trial(resources, "4.0", r4_results="extensions")
    assert omitted.note.startswith("results not sent (3 Group, 68 Evidence, 5 Composition)")
    assert sent.note.startswith("results sent as R5 cross-version extensions (3 Group, 68 Evidence, 5 Composition)")
    assert omitted.content_hash != sent.content_hash  # a journal sends the results when the mode changes
    composition = next(r for r in sent.resources if r["resourceType"] == "Composition")
    assert "identifier" not in composition  # R4 Composition.identifier is 0..1: matched by its tag
    assert {"system": RESOURCE_ID_SYSTEM, "code": composition["id"]} in composition["meta"]["tag"]
    assert prepare_trial(resources, "5.0", r4_results="extensions").note is None


def test_an_unknown_mode_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["push", str(FILES[0]), "--to", "http://127.0.0.1:9", "--r4-results=all"])
    assert exit_.value.code == 2 and "--r4-results" in capsys.readouterr().err


def test_r4_results_pass_the_r4_validator(trials, peer_validate, tmp_path):
    files = []
    for resources in trials.values():
        for r in prepare_trial(resources, "4.0", r4_results="extensions").resources:
            path = tmp_path / f"{r['resourceType']}-{r['id']}.json"
            path.write_text(json.dumps(r))
            files.append(str(path))
    run = subprocess.run([str(peer_validate), "r4", *files], capture_output=True, text=True, timeout=600)
    invalid = [line for line in run.stdout.splitlines() if not line.startswith("valid")]
    assert run.returncode == 0 and not invalid, "\n".join(invalid[:20]) + run.stderr[-2000:]
    assert len(run.stdout.splitlines()) == len(files)


def _by_identifier(client: FhirClient, rtype: str, rid: str) -> dict:
    [found] = client.search(rtype, {"identifier": f"{RESOURCE_ID_SYSTEM}|{rid}"})
    return found


def _push(peer, tmp_path, *options: str) -> dict:
    report = tmp_path / "report.json"
    argv = ["push", *map(str, FILES[:2]), "-q", "--to", peer.url, "--report", str(report), *options]
    assert cli.main(argv) == 0
    return json.loads(report.read_text())


def test_push_results_to_an_r4_store_as_extensions(peer_r4, trials, tmp_path, capsys):
    peer_r4.wipe()
    data = _push(peer_r4, tmp_path, "--r4-results=extensions")
    assert data["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "failed": 0}
    assert data["r4Results"] == "extensions"
    assert all(t["note"].startswith("results sent as R5 cross-version extensions") for t in data["trials"])
    assert "sent in R5 cross-version extensions" in capsys.readouterr().err
    client = FhirClient(peer_r4.url)
    try:
        expected = Counter(r["resourceType"] for t in ("nct03064438", "nct02210780")
                           for r in prepare_trial(trials[t], "4.0", r4_results="extensions").resources)
        held = {t: client.search(t, {"_count": "500"}) for t in expected}
        assert Counter({t: len(v) for t, v in held.items()}) == expected  # the peer took every resource

        r5 = {r["id"]: r for t in ("nct03064438", "nct02210780") for r in trials[t]}
        analysis = _by_identifier(client, "Evidence", ANALYSIS)
        [statistic] = recovered(analysis, "statistic")
        assert statistic == r5[ANALYSIS]["statistic"][0]
        p_value = next(a for a in statistic["attributeEstimate"] if a["type"]["coding"][0]["code"] == "C44185")
        ci = next(a for a in statistic["attributeEstimate"] if a["type"]["coding"][0]["code"] == "C53324")
        assert p_value["quantity"] == {"value": 0.366}
        assert (ci["level"], ci["range"]["low"]["value"], ci["range"]["high"]["value"]) == (0.95, -2.162, 5.727)
        background = analysis["exposureBackground"]["reference"].split("/")
        assert client.read(*background)["identifier"][0]["value"] == "nct03064438-eligibility"

        serious = _by_identifier(client, "Evidence", SERIOUS)
        counts = recovered(serious, "statistic")
        assert counts == r5[SERIOUS]["statistic"] and len(counts) > 1
        by_term = {s["category"]["text"]: (s["numberAffected"], s["sampleSize"]["numberOfParticipants"]) for s in counts}
        assert by_term["Total, serious adverse events"] == (3, 97)
        assert by_term["Squamous cell carcinoma"] == (1, 97)

        again = _push(peer_r4, tmp_path, "--r4-results=extensions")  # idempotent: nothing changes
        assert again["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "failed": 0}
        after = {t: client.search(t, {"_count": "500"}) for t in expected}
        assert Counter({t: len(v) for t, v in after.items()}) == expected
        assert {r["meta"]["versionId"] for rs in after.values() for r in rs} == {"1"}
    finally:
        client.close()


def test_default_push_to_an_r4_store_leaves_results_out(peer_r4, tmp_path, capsys):
    peer_r4.wipe()
    journal = str(tmp_path / "journal.sqlite")
    data = _push(peer_r4, tmp_path, "--resume", journal)
    assert data["counts"]["created"] == 2 and data["r4Results"] == "omit"
    assert all(t["note"].startswith("results not sent") for t in data["trials"])
    assert "--r4-results=extensions" in capsys.readouterr().err
    client = FhirClient(peer_r4.url)
    try:
        assert client.search("Evidence", {}) == [] and client.search("Composition", {}) == []
        assert all(not g["identifier"][0]["value"].startswith("nct03064438-result-group")
                   for g in client.search("Group", {"_count": "100"}))
        switched = _push(peer_r4, tmp_path, "--resume", journal, "--r4-results=extensions")  # the journal
        assert switched["counts"] == {"created": 0, "updated": 2, "unchanged": 0, "failed": 0}  # sees a change
        assert len(client.search("Evidence", {"_count": "500"})) == 68 + 67
    finally:
        client.close()
