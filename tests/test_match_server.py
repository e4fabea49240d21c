"""``POST /ResearchStudy/$match`` over real HTTP, its OperationDefinition and CapabilityStatement
entry, the distance filter with per-site recruitment status, and ``fhirstudy match`` on the
command line."""
from __future__ import annotations

import copy
import re
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from _server_fixtures import fixed_clock, serve_in_thread
from conftest import SEEDS
from fhirstudy.matching.engine import DISTANCE_URL
from fhirstudy.pipeline import convert
from fhirstudy.server import STORE_EXTENSION, close_store, create_app
from fhirstudy.validation import validate_resource

PATIENTS = Path(__file__).parent / "data" / "patients"
HER2 = json.loads((PATIENTS / "her2-positive-metastatic-breast.json").read_text())
FHIR_JSON = {"Content-Type": "application/fhir+json"}
BOSTON = (42.3601, -71.0589)       # Massachusetts General Hospital is at 42.3626, -71.0695
SEATTLE = (47.6062, -122.3321)
STUDY = "nct06731140"              # seed 002: a breast cancer study for women (HER2-negative)


def _sites() -> list[dict]:
    """Two sites for the study: near Boston and recruiting, near Seattle and completed."""
    status = "http://hl7.org/fhir/research-study-status"
    return [
        {"resourceType": "Location", "id": f"{STUDY}-site-1", "name": "Boston site", "mode": "instance",
         "position": {"latitude": 42.3626, "longitude": -71.0695},
         "characteristic": [{"coding": [{"system": status, "code": "recruiting"}]}]},
        {"resourceType": "Location", "id": f"{STUDY}-site-2", "name": "Seattle site", "mode": "instance",
         "position": {"latitude": 47.6097, "longitude": -122.3331},
         "characteristic": [{"coding": [{"system": status, "code": "completed"}]}]},
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    resources = [e["resource"] for c in convert([SEEDS]) for e in c.bundle["entry"]]
    study = next(r for r in resources if r["id"] == STUDY)
    study["site"] = [{"reference": f"Location/{s['id']}"} for s in _sites()]
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('m')}/m.db"})
    store = app.extensions[STORE_EXTENSION]
    store.clock = fixed_clock
    store.put_many([r for r in resources if r["resourceType"] != "Location"] + _sites())
    with serve_in_thread(app) as url:
        yield url
    close_store(app)


def _parameters(bundle=HER2, **values) -> dict:
    params = [{"name": "trialMatchClinicalData", "resource": bundle}]
    for name, value in {"date": "2026-12-03", **values}.items():
        key = {bool: "valueBoolean", int: "valueInteger", float: "valueDecimal"}.get(type(value), "valueString")
        params.append({"name": name, "valueDate" if name == "date" else key: value})
    return {"resourceType": "Parameters", "parameter": params}


def _post(url: str, body, headers=FHIR_JSON) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{url}/ResearchStudy/$match", data=data, headers=headers, timeout=30)


def test_match_answers_a_searchset_ordered_by_score(server):
    response = _post(server, _parameters(includeIneligible=True))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["type"] == "searchset" and bundle["total"] == len(bundle["entry"]) > 0
    scores = [e["search"]["score"] for e in bundle["entry"]]
    assert scores == sorted(scores, reverse=True)
    assert all(e["fullUrl"] == f"{server}/ResearchStudy/{e['resource']['id']}" for e in bundle["entry"])
    validate_resource(bundle)


def test_the_result_passes_the_independent_validator(server, peer_validate, tmp_path):
    path = tmp_path / "match.json"
    path.write_text(_post(server, _parameters(includeIneligible=True, zipCode="02114")).text)
    run = subprocess.run(["bash", str(peer_validate), "r5", str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(("body", "status", "expression", "words"), [
    ({"resourceType": "Patient"}, 400, "resourceType", "Parameters"),
    ({"resourceType": "Parameters", "parameter": []}, 400, "Parameters.parameter", "trialMatchClinicalData"),
    (_parameters({"resourceType": "Patient"}), 400, "Bundle", "Bundle"),
    (_parameters(zipCode="00000"), 400, "zipCode", "00000"),
    (_parameters(zipCode="ABCDE"), 400, "zipCode", "ZIP"),
    (_parameters(travelRadius="ten"), 400, "travelRadius", "zipCode"),
    (_parameters(zipCode="02114", travelRadius="ten"), 400, "travelRadius", "number"),
    (_parameters(phase="PHASE9"), 400, "phase", "PHASE9"),
    (_parameters(recruitmentStatus="open"), 400, "recruitmentStatus", "open"),
    (_parameters(count=0), 400, "count", "count"),
    (_parameters(includeIneligible="yes"), 400, "includeIneligible", "includeIneligible"),
    (_parameters(date="yesterday"), 400, "date", "date"),
    ({"resourceType": "Parameters", "parameter": [{"name": "patientData", "valueString": "x"}]}, 400,
     "Parameters.parameter[0]", "patientData"),
    ("{not json", 400, None, "JSON"),
])
def test_a_bad_request_is_a_4xx_operation_outcome_saying_what_and_where(server, body, status, expression, words):
    response = _post(server, body)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert words.lower() in issue["diagnostics"].lower()
    if expression:
        assert expression in issue.get("expression", [""])[0], issue


def test_other_media_types_and_methods_are_refused(server):
    assert _post(server, json.dumps(_parameters()), {"Content-Type": "text/plain"}).status_code == 415
    response = requests.get(f"{server}/ResearchStudy/$match", timeout=10)
    assert response.status_code == 405 and response.json()["resourceType"] == "OperationOutcome"


def test_the_operation_is_defined_and_listed(server):
    definition = requests.get(f"{server}/OperationDefinition/ResearchStudy-match", timeout=10).json()
    validate_resource(definition)
    assert (definition["code"], definition["resource"], definition["type"]) == ("match", ["ResearchStudy"], True)
    assert {p["name"] for p in definition["parameter"]} >= {
        "trialMatchClinicalData", "zipCode", "travelRadius", "phase", "recruitmentStatus", "trialMatchOutput"}
    study = next(r for r in requests.get(f"{server}/metadata", timeout=10).json()["rest"][0]["resource"]
                 if r["type"] == "ResearchStudy")
    assert {"name": "match", "definition": definition["url"]}.items() <= next(
        o for o in study["operation"] if o["name"] == "match").items()
    listed = requests.get(f"{server}/OperationDefinition", timeout=10).json()
    assert [e["resource"]["id"] for e in listed["entry"]] == ["ResearchStudy-match", "ResearchStudy-export"]
    assert requests.get(f"{server}/OperationDefinition/nope", timeout=10).status_code == 404


def test_the_operation_definition_passes_the_independent_validator(peer_validate, tmp_path):
    """The peer engine cannot evaluate opd-3 (memberOf) and reports it for the official
    definitions too (Resource-validate); nothing else may be reported."""
    from fhirstudy.matching import match_operation_definition
    path = tmp_path / "od.json"
    path.write_text(json.dumps(match_operation_definition()))
    run = subprocess.run(["bash", str(peer_validate), "r5", str(path)], capture_output=True, text=True, timeout=300)
    issues = [i.strip() for i in run.stdout.split("  ", 1)[-1].split("|") if i.strip()] if run.returncode else []
    assert all("opd-3" in i or "Error evaluating invariant expression" in i for i in issues), issues


def _woman_with_breast_cancer() -> dict:
    bundle = copy.deepcopy(HER2)
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["id"] not in ("her2-ihc",)]  # HER2 unknown
    return bundle


@pytest.mark.parametrize(("place", "found", "km"), [
    ({"zipCode": "02114", "travelRadius": "25"}, True, 2),                     # Boston: the recruiting site
    ({"latitude": BOSTON[0], "longitude": BOSTON[1]}, True, 1),
    ({"zipCode": "98101", "travelRadius": "50"}, False, None),                 # Seattle: its site has completed
    ({"zipCode": "60601", "travelRadius": "100"}, False, None),                # Chicago: no site
    ({"zipCode": "60601", "travelRadius": "1000"}, True, 1300),                # ... unless she travels far
])
def test_the_distance_filter_counts_only_near_recruiting_sites(server, place, found, km):
    body = _parameters(_woman_with_breast_cancer(), **place)
    entries = {e["resource"]["id"]: e for e in _post(server, body).json()["entry"]}
    assert (STUDY in entries) == found
    if found:
        distance = next(x["valueDistance"] for x in entries[STUDY]["search"]["extension"] if x["url"] == DISTANCE_URL)
        assert distance["code"] == "km" and abs(distance["value"] - km) < max(2, km * 0.1), distance


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fhirstudy.cli", *args], capture_output=True, text=True, timeout=120)


def test_the_command_line_prints_the_same_as_a_table(server, tmp_path):
    url = f"sqlite:///{tmp_path}/cli.db"   # the seeds, loaded by the command line too
    assert _cli("load", str(SEEDS), "--db", url).returncode == 0
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps(HER2))
    run = _cli("match", str(patient), "--db", url, "--date", "2026-12-03", "--include-ineligible")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split()[:2] == ["score", "miles"]
    assert any("NCT06731140" in line and line.split()[0] == "0.00" for line in lines), run.stdout
    assert any("subtype-her2-negative" in line and "fail" in line for line in lines), run.stdout
    assert "studies found" in lines[-1]
    as_json = json.loads(_cli("match", str(patient), "--db", url, "--date", "2026-12-03", "--json").stdout)
    assert as_json["type"] == "searchset"


@pytest.mark.parametrize(("content", "args", "words"), [
    ("{not json", (), "JSON"),
    (json.dumps({"resourceType": "Patient"}), (), "Bundle"),
    (json.dumps(HER2), ("--near", "00000"), "00000"),
])
def test_command_line_mistakes_are_one_line_without_a_traceback(tmp_path, content, args, words):
    patient = tmp_path / "patient.json"
    patient.write_text(content)
    run = _cli("match", str(patient), "--db", f"sqlite:///{tmp_path}/empty.db", *args)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr and words in run.stderr and run.stderr.startswith("error:"), run.stderr


def test_the_extensions_fhirstudy_writes_are_defined(server, peer_validate, tmp_path):
    """Every extension URL in a $match answer and on the stored studies and search parameters
    resolves to a StructureDefinition the server serves; each is valid R5 (fhir.resources) and the
    independent validator reports nothing but element ids with [x] or a slice name, which it
    refuses in the official definitions too (StructureDefinition-actualgroup)."""
    listed = requests.get(f"{server}/StructureDefinition", timeout=10).json()
    urls = {e["resource"]["url"]: e["resource"] for e in listed["entry"]}
    answer = _post(server, _parameters(includeIneligible=True)).text
    study = requests.get(f"{server}/ResearchStudy/{STUDY}", timeout=10).text
    parameters = requests.get(f"{server}/SearchParameter", timeout=10).text
    for text in (answer, study, parameters):
        for url in set(re.findall(r'"url":\s*"(https://fhirstudy\.org/fhir/StructureDefinition/[^"]+)"', text)):
            assert url in urls, url
    for definition in urls.values():
        validate_resource(definition)
        assert requests.get(f"{server}/StructureDefinition/{definition['id']}", timeout=10).json() == definition
        path = tmp_path / f"{definition['id']}.json"
        path.write_text(json.dumps(definition))
    run = subprocess.run(["bash", str(peer_validate), "r5", *map(str, tmp_path.glob("*.json"))],
                         capture_output=True, text=True, timeout=300)
    issues = [i.strip() for line in run.stdout.splitlines() if line.startswith("INVALID")
              for i in line.split("  ", 1)[-1].split("|")]
    assert all(i.endswith("Invalid id format") for i in issues), issues
    assert requests.get(f"{server}/StructureDefinition/nope", timeout=10).status_code == 404
