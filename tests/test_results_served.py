"""Trial results served (#16): Evidence, Composition and Group are served types with their R5
search parameters, reachable from the study (``_revinclude=Composition:subject``, then
``_include:iterate=Composition:entry``), in a study-level export, and kept out of R4 pushes with
a note per trial."""
from __future__ import annotations

import copy

import orjson
import pytest

from conftest import SAMPLES
from fhirstudy.export.request import ExportRequest, exported_types
from fhirstudy.export.writer import write_export
from fhirstudy.mappers import ids
from fhirstudy.pipeline import convert
from fhirstudy.push.prepare import prepare_trial
from fhirstudy.search.registry import SERVED_TYPES, load_registry
from fhirstudy.service import SearchService
from fhirstudy.store import open_store

BASE = "https://fhir.example.org/r5"
STUDY = "nct03064438"


@pytest.fixture(scope="module")
def trials() -> dict[str, list[dict]]:
    files = [SAMPLES / "NCT03064438.json", SAMPLES / "NCT00763412.json", SAMPLES / "NCT03630471.json"]
    return {c.bundle["entry"][0]["resource"]["id"]: [e["resource"] for e in c.bundle["entry"]]
            for c in convert(files) if c.ok}


@pytest.fixture
def store(tmp_path, trials):
    store = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    store.put_many(copy.deepcopy([r for resources in trials.values() for r in resources]))
    yield store
    store.close()


def _search(store, rtype, params):
    return orjson.loads(SearchService(store, store.registry).searchset(rtype, params, BASE))


def test_results_types_are_served_with_their_r5_parameters():
    assert {"Evidence", "Composition", "Group"} <= set(SERVED_TYPES)
    registry = load_registry()
    assert {"subject", "type", "entry", "section", "status", "title", "date"} <= set(registry.params("Composition"))
    assert {"title", "status", "identifier", "description", "date"} <= set(registry.params("Evidence"))
    assert {"name", "identifier", "type", "membership"} <= set(registry.params("Group"))


def test_the_study_reaches_its_reports_evidence_and_groups(store, trials):
    bundle = _search(store, "ResearchStudy", [("_id", STUDY), ("_revinclude", "Composition:subject"),
                                              ("_include:iterate", "Composition:entry")])
    found = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]}
    made = {(r["resourceType"], r["id"]) for r in trials[STUDY] if r["resourceType"] in ("Composition", "Evidence")}
    assert made <= found
    groups = {(r["resourceType"], r["id"]) for r in trials[STUDY] if r["resourceType"] == "Group"}
    assert groups <= found  # the reports' group sections list them
    assert not {i for t, i in found if t == "Composition" and not i.startswith(STUDY)}


def test_compositions_and_evidence_are_searchable(store):
    reports = _search(store, "Composition", [("subject", f"ResearchStudy/{STUDY}")])
    assert {e["resource"]["id"] for e in reports["entry"]} == {ids.report_id(STUDY, r) for r in (
        "results", "participant-flow", "baseline", "outcome-measures", "adverse-events")}
    typed = _search(store, "Composition", [("type", "https://fevir.net/resources/CodeSystem/179423|OutcomeMeasureReport")])
    assert {e["resource"]["id"] for e in typed["entry"]} == {ids.report_id(STUDY, "outcome-measures"),
                                                             ids.report_id("nct00763412", "outcome-measures")}
    evidence = _search(store, "Evidence", [("title:contains", "Total Lesion Count at Week 12")])
    assert evidence["total"] >= 3
    groups = _search(store, "Group", [("name", "ACU-D1 Ointment Vehicle")])
    assert {e["resource"]["id"] for e in groups["entry"]} == {ids.result_group_id(STUDY, 2)}


def test_a_study_export_holds_its_results(store, trials, tmp_path):
    assert {"Evidence", "Composition", "Group"} <= set(exported_types("ResearchStudy", SERVED_TYPES))
    request = ExportRequest(level="ResearchStudy", type_filters={"ResearchStudy": (f"_id={STUDY}",)})
    result = write_export(store, SearchService(store, store.registry, 0), request, tmp_path)
    exported = set()
    for listed in result.output:
        for line in (tmp_path / listed.name).read_bytes().splitlines():
            r = orjson.loads(line)
            assert (r["resourceType"], r["id"]) not in exported
            exported.add((r["resourceType"], r["id"]))
    assert {(r["resourceType"], r["id"]) for r in trials[STUDY]} == exported  # the whole trial, results too


def test_r4_push_leaves_results_out_and_says_so(trials):
    resources = trials[STUDY]
    prepared = prepare_trial(resources, "4.0")
    kinds = {r["resourceType"] for r in prepared.resources}
    assert not kinds & {"Evidence", "Composition"}
    assert not any(r["resourceType"] == "Group" and r["id"].startswith(f"{STUDY}-result-group") for r in prepared.resources)
    n_evidence = sum(r["resourceType"] == "Evidence" for r in resources)
    assert prepared.note and f"{n_evidence} Evidence" in prepared.note and "R5" in prepared.note
    provenance = next(r for r in prepared.resources if r["resourceType"] == "Provenance")
    kept = {f"{r['resourceType']}/{r['id']}" for r in prepared.resources}
    assert {t["reference"] for t in provenance["target"]} <= kept
    r5 = prepare_trial(resources, "5.0")
    assert r5.note is None and len(r5.resources) == len(resources)
    assert prepare_trial(trials["nct03630471"], "4.0").note is None  # no results, nothing to say
