"""``$match`` over the seeds and the ClinicalTrials.gov samples (fhirstudy.matching.engine).

The safety rule is proved the general way: for every stored study, a patient is made from the
study's own computable criteria (every inclusion fact met, every exclusion fact not met, values
written in other units than the criterion's where UCUM converts them), and that patient must get
the study back; then, one computable criterion at a time, a patient who fails just that criterion
must not (and with ``includeIneligible`` gets it with score 0 and that criterion failed).
"""
from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from _server_fixtures import db_url, fixed_clock, pg_server, pg_url  # noqa: F401
from conftest import SAMPLES, SEEDS
from fhirstudy.matching import Matcher, run_match
from fhirstudy.matching.conditions import subtype_characteristics
from fhirstudy.matching.engine import CRITERION_URL
from fhirstudy.pipeline import convert
from fhirstudy.service import SearchService
from fhirstudy.store import open_store

ON = date(2026, 12, 3)
PATIENTS = Path(__file__).parent / "data" / "patients"
ALL_STATUSES = ("recruiting,not-yet-recruiting,active-but-not-recruiting,completed,terminated,withdrawn,"
                "enrolling-by-invitation,temporarily-closed-to-accrual-and-intervention")
UCUM = "http://unitsofmeasure.org"
# The unit a patient's lab reports a value in, instead of the criterion's, and the factor between
# them (patient value = criterion value x factor): UCUM conversions that are exact.
OTHER_UNIT = {"10*9/L": ("/mm3", 1000), "/mm3": ("10*9/L", 0.001), "/uL": ("10*9/L", 0.001),
              "g/dL": ("g/L", 10), "g/L": ("g/dL", 0.1)}
FACT_CODES = {}  # LOINC/SNOMED code -> analyte key, filled from eligibility-facts.json


@pytest.fixture(scope="module")
def resources() -> list[dict]:
    return [e["resource"] for c in convert([SEEDS, SAMPLES]) if c.ok for e in c.bundle["entry"]]


@pytest.fixture(scope="module")
def service(resources, tmp_path_factory):
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('match')}/match.db", clock=fixed_clock)
    store.put_many(resources)
    yield Matcher(SearchService(store, store.registry, 0))
    store.close()


def _match(service, bundle: dict, **parameters) -> dict:
    params = [{"name": "trialMatchClinicalData", "resource": bundle}, {"name": "date", "valueDate": ON.isoformat()},
              {"name": "recruitmentStatus", "valueString": parameters.pop("status", ALL_STATUSES)},
              {"name": "count", "valueInteger": 500}]
    for name, value in parameters.items():
        key = {bool: "valueBoolean", int: "valueInteger", float: "valueDecimal"}.get(type(value), "valueString")
        params.append({"name": name, key: value})
    return run_match(service, {"resourceType": "Parameters", "parameter": params}, "http://x", ON)


def _criteria(entry: dict) -> dict[str, dict]:
    out = {}
    for ext in entry["search"].get("extension", []):
        if ext["url"] == CRITERION_URL:
            parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]
                     if p["url"] not in ("evidence", "missing")}
            out[parts["linkId"]] = parts
    return out


def _found(result: dict) -> dict[str, dict]:
    return {e["resource"]["id"]: e for e in result["entry"] if e["search"]["mode"] == "match"}


# -- a patient made from a study's criteria -------------------------------------------------------

def _analytes() -> dict:
    from fhirstudy import terminology
    data = terminology.load_mapping("eligibility-facts.json")
    return {(a["coding"]["system"], a["coding"]["code"]): a for a in data["analytes"]}


class PatientMaker:
    """Observations and Conditions that make each computable fact of a study hold (``want``) or
    fail (``not want``)."""

    def __init__(self):
        self.resources: list[dict] = []
        self.analytes = _analytes()

    def add(self, resource: dict) -> None:
        resource["id"] = f"r{len(self.resources)}"
        self.resources.append(resource)

    def fact(self, definition: dict, want: bool) -> bool:
        """Add a resource that makes ``definition`` hold (or fail); False when it cannot."""
        coding = [(c.get("system"), c.get("code")) for c in definition.get("type", {}).get("coding", [])]
        analyte = next((self.analytes[c] for c in coding if c in self.analytes), None)
        if analyte is None:
            return False
        code = {"coding": [{k: analyte["coding"][k] for k in ("system", "code")}]}
        when = (ON - timedelta(days=3)).isoformat()
        if "valueCodeableConcept" in definition:
            codes = {c.get("code") for c in definition["valueCodeableConcept"].get("coding", [])}
            wanted = "positive" if "LA6576-8" in codes else "negative" if "LA6577-6" in codes else "present"
            value = wanted if want else {"positive": "negative", "negative": "positive", "present": "absent"}[wanted]
            if analyte["key"] == "pregnancy":
                answer = {"present": "LA15173-0", "absent": "LA26683-5"}[value]
                code = {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]}
            elif analyte["key"] == "brain_metastases":
                if value == "absent":
                    return True   # no Condition: unknown, which does not exclude
                self.add({"resourceType": "Condition", "code": {"coding": [{"system": "http://snomed.info/sct",
                                                                            "code": "94225005"}]}})
                return True
            else:
                answer = {"positive": "LA6576-8", "negative": "LA6577-6"}[value]
            self.add({"resourceType": "Observation", "status": "final", "code": code, "effectiveDateTime": when,
                      "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": answer}]}})
            return True
        x, unit = _value(definition, want)
        if x is None:
            return False
        observation = {"resourceType": "Observation", "status": "final", "code": code, "effectiveDateTime": when}
        if unit == "{ULN}":
            observation["valueQuantity"] = {"value": x * 40, "unit": "U/L", "system": UCUM, "code": "U/L"}
            observation["referenceRange"] = [{"high": {"value": 40, "unit": "U/L", "system": UCUM, "code": "U/L"}}]
        elif unit in ("", None):
            observation["valueInteger" if float(x).is_integer() else "valueQuantity"] = (
                int(x) if float(x).is_integer() else {"value": x, "system": UCUM, "code": "1"})
        else:
            other, factor = OTHER_UNIT.get(unit, (unit, 1))
            observation["valueQuantity"] = {"value": round(x * factor, 6), "unit": other, "system": UCUM, "code": other}
        self.add(observation)
        return True


def _value(definition: dict, want: bool) -> tuple[float | None, str | None]:
    """A number that meets (or fails, clearly) the quantity or range, and its unit."""
    if "valueRange" in definition:
        low, high = (definition["valueRange"].get(k, {}) for k in ("low", "high"))
        unit = high.get("code", low.get("code", ""))
        if want:
            return (low.get("value", 0) + high["value"]) / 2 if "value" in high else low["value"] + 1, unit
        return (high["value"] * 2 + 2, unit) if "value" in high else (low["value"] / 2 - 1, unit)
    q = definition.get("valueQuantity") or {}
    if "value" not in q:
        return None, None
    v, comparator, unit = q["value"], q.get("comparator"), q.get("code", "")
    up = comparator in (">", ">=")
    if comparator is None:
        return (v if want else v + 3), unit
    if want:
        return (v * 1.5 + 1 if up else v / 2), unit
    return (v / 2 - 0.5 if up else v * 2 + 1), unit


def _walk(maker: PatientMaker, characteristic: dict, want: bool) -> bool:
    """Make ``characteristic`` hold (or fail); False when nothing computable decides it."""
    want = want != bool(characteristic.get("exclude")) if "linkId" not in characteristic else want
    combination = characteristic.get("definitionByCombination")
    if combination:
        items = [c for c in combination["characteristic"] if _computable(c)]
        if not items:
            return False
        every = (combination["code"] == "all-of") == want
        return all(_walk(maker, c, want) for c in (items if every else items[:1]))
    definition = characteristic.get("definitionByTypeAndValue")
    return bool(definition) and maker.fact(definition, want)


def _computable(characteristic: dict) -> bool:
    if "definitionByCombination" in characteristic:
        return any(_computable(c) for c in characteristic["definitionByCombination"]["characteristic"])
    definition = characteristic.get("definitionByTypeAndValue") or {}
    return bool(definition) and any((c.get("system"), c.get("code")) in _analytes()
                                    for c in definition.get("type", {}).get("coding", []))


def _patient_for(study: dict, eligibility: dict | None, broken: str | None = None) -> dict | None:
    """A Bundle of a patient meeting every computable criterion of ``study`` except ``broken``
    (a linkId), which the patient fails; None when ``broken`` cannot be failed."""
    maker = PatientMaker()
    characteristics = subtype_characteristics(study) + ((eligibility or {}).get("characteristic") or [])
    patient = {"resourceType": "Patient", "gender": "female", "birthDate": "1980-06-15"}
    broke = False
    for c in characteristics:
        link = c.get("linkId")
        if link == "sex":
            codes = [x["code"] for x in c["definitionByTypeAndValue"]["valueCodeableConcept"]["coding"]]
            patient["gender"] = codes[0] if broken != link else {"female": "male", "male": "female"}[codes[0]]
            broke |= broken == link
        elif link == "age":
            r = c["definitionByTypeAndValue"]["valueRange"]
            years = _age_years(r, broken == link)
            patient["birthDate"] = f"{ON.year - years}-06-15"
            broke |= broken == link
        elif _computable(c) and not c.get("note"):
            fail = broken == link
            want = (not c.get("exclude")) != fail
            done = _walk(maker, {**c, "exclude": False}, want)
            broke |= fail and done
    if broken and not broke:
        return None
    conditions = [{"resourceType": "Condition", "code": {"text": cond.get("text") or cond["coding"][0]["display"]}}
                  for cond in study.get("condition") or []][:1]
    entries = [patient] + conditions + maker.resources
    for n, r in enumerate(entries):
        r.setdefault("id", f"e{n}")
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{n:012d}", "resource": r}
                      for n, r in enumerate(entries)]}


def _age_years(limits: dict, fail: bool) -> int:
    def years(q):
        return q["value"] / {"a": 1, "mo": 12, "wk": 52, "d": 365}.get(q.get("code", "a"), 1)
    low = years(limits["low"]) if "low" in limits else 0
    high = years(limits["high"]) if "high" in limits else 120
    if fail:
        return int(high) + 3 if "high" in limits else max(int(low) - 3, 0)
    return int((low + high) / 2) if "high" in limits else int(low) + 10


def _studies(resources) -> list[tuple[dict, dict | None]]:
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    return [(r, by_ref.get(((r.get("recruitment") or {}).get("eligibility") or {}).get("reference")))
            for r in resources if r["resourceType"] == "ResearchStudy"]


def test_every_study_is_found_for_a_patient_who_meets_its_computable_criteria(service, resources):
    missed = []
    for study, eligibility in _studies(resources):
        found = _found(_match(service, _patient_for(study, eligibility)))
        if study["id"] not in found:
            missed.append(study["id"])
        else:
            fails = [k for k, c in _criteria(found[study["id"]]).items() if c["fit"] == "fail"]
            assert not fails, (study["id"], fails)
    assert not missed


def _breakable(study, eligibility) -> list[str]:
    return [c["linkId"] for c in subtype_characteristics(study) + ((eligibility or {}).get("characteristic") or [])
            if c.get("linkId") in ("sex", "age") or (_computable(c) and not c.get("note"))]


def test_a_patient_failing_one_computable_criterion_is_left_out(service, resources):
    pairs = kept = 0
    for study, eligibility in _studies(resources):
        for link in _breakable(study, eligibility):
            bundle = _patient_for(study, eligibility, broken=link)
            if bundle is None:
                continue
            pairs += 1
            if study["id"] in _found(_match(service, bundle)):
                kept += 1
                continue
            entry = _found(_match(service, bundle, includeIneligible=True))[study["id"]]
            assert entry["search"]["score"] == 0
            assert _criteria(entry)[link]["fit"] == "fail", (study["id"], link, _criteria(entry)[link])
    print(f"{pairs} study-criterion pairs failed on purpose")
    assert pairs >= 30, "the samples hold at least 30 computable criteria to fail"
    assert kept == 0, f"{kept} of {pairs} patients failing a computable criterion were still matched"


# -- the synthetic patients in tests/data/patients -------------------------------------------------

def _bundle(name: str) -> dict:
    if name == "minimal-breast":   # a woman with breast cancer, and nothing else known
        return {"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p", "gender": "female",
                                                   "birthDate": "1970-01-01"}},
            {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Condition", "id": "c",
                                                   "code": {"text": "Breast cancer"}}}]}
    return json.loads((PATIENTS / f"{name}.json").read_text())


def _with_condition(bundle: dict, text: str) -> dict:
    """``bundle`` with one more Condition (so that a study of that condition is a candidate)."""
    bundle = copy.deepcopy(bundle)
    bundle["entry"].append({"fullUrl": "urn:uuid:extra", "resource": {"resourceType": "Condition", "id": "extra",
                                                                      "code": {"text": text}}})
    return bundle


def _verdicts(service, name: str, study: str) -> dict[str, dict]:
    bundle = _with_condition(_bundle(name), "Breast cancer")   # the studies below are breast cancer trials
    return _criteria(_found(_match(service, bundle, includeIneligible=True))[study])


EXPECTED = [  # patient, study, linkId -> fit
    ("her2-positive-metastatic-breast", "nct02513394", "condition", "pass"),
    ("her2-positive-metastatic-breast", "nct02513394", "inclusion-16", "pass"),   # ANC 2.1 x 10^9/L >= 1,500/uL
    ("her2-positive-metastatic-breast", "nct02513394", "inclusion-17", "pass"),   # platelets in 10^9/L vs /mm3
    ("her2-positive-metastatic-breast", "nct06731140", "subtype-her2-negative", "fail"),
    ("her2-positive-metastatic-breast", "nct06731140", "sex", "pass"),
    ("poor-organ-function", "nct06731140", "sex", "fail"),                         # a man; the study is for women
    ("poor-organ-function", "nct02513394", "inclusion-16", "fail"),
    ("poor-organ-function", "nct02513394", "inclusion-17", "fail"),               # 60,000 /mm3
    ("elderly-ecog3", "nct02513394", "inclusion-8", "fail"),                       # ECOG 0-1
    ("minimal-breast", "nct02513394", "inclusion-16", "unknown"),
]


@pytest.mark.parametrize(("patient", "study", "link", "fit"), EXPECTED)
def test_synthetic_patients(service, patient, study, link, fit):
    assert _verdicts(service, patient, study)[link]["fit"] == fit


@pytest.mark.parametrize(("patient", "study"), [
    ("her2-positive-metastatic-breast", "nct04328077"),   # a NASH study
    ("minimal", "fs-4853c9b87ff2f7c7"),                    # prostate cancer, a breast cancer study
])
def test_studies_about_none_of_the_patients_conditions_are_not_judged(service, patient, study):
    assert study not in _found(_match(service, _bundle(patient), includeIneligible=True))


def test_a_basket_trial_is_a_candidate_for_a_patient_with_a_cancer(service, resources):
    from fhirstudy.matching.request import parse_parameters
    from fhirstudy.matching.engine import candidate_searches
    body = {"resourceType": "Parameters", "parameter": [{"name": "trialMatchClinicalData",
                                                         "resource": _bundle("her2-positive-metastatic-breast")}]}
    searches = candidate_searches(parse_parameters(body, ON))
    texts = [v for s in searches for k, v in s if k == "condition:text"]
    assert any("solid tumor" in t for t in texts)
    assert ("condition", "https://fhirstudy.org/fhir/CodeSystem/condition|breast-cancer") in [
        (k, v) for s in searches for k, v in s]


def test_unknowns_are_reported_as_missing_information(service):
    entry = _found(_match(service, _bundle("minimal-breast")))["nct02513394"]
    missing = [e["valueString"] for e in entry["search"]["extension"] if e["url"].endswith("match-missing")]
    assert any("751-8" in m for m in missing), missing   # the neutrophil count would decide inclusion-16
    assert 0 < entry["search"]["score"] < 1


def test_results_are_ordered_by_score_and_ineligible_ones_left_out(service):
    result = _match(service, _bundle("poor-organ-function"))
    scores = [e["search"]["score"] for e in result["entry"] if e["search"]["mode"] == "match"]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert "nct02513394" not in _found(result)
    assert result["total"] == len(scores)


def test_status_and_phase_filters(service, resources):
    studies = {r["id"]: r for r in resources if r["resourceType"] == "ResearchStudy"}
    from fhirstudy import terminology
    recruitment = {v["code"] for v in terminology.load_mapping("ctgov-to-fhir.json")["overallStatus"]["codes"].values()}
    anyone = {"resourceType": "Bundle", "type": "collection", "entry": [   # no condition: every study is judged
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p"}}]}
    default = _found(_match(service, anyone, includeIneligible=True, status="recruiting,not-yet-recruiting"))
    for sid, study in studies.items():
        states = {c["code"] for p in study.get("progressStatus", []) for c in p["state"].get("coding", [])} & recruitment
        # a study with a status not asked for is left out; one that states none is kept (unknown)
        assert (sid in default) == (not states or bool(states & {"recruiting", "not-yet-recruiting"})), sid
    phase3 = _found(_match(service, anyone, phase="PHASE3"))
    assert phase3 and all(studies[s]["phase"]["coding"][0]["code"] == "phase-3" for s in phase3)


def test_match_on_postgresql_gives_the_same_answer(db_url, resources, service):
    store = open_store(db_url, clock=fixed_clock)
    try:
        store.put_many(copy.deepcopy(resources))
        other = Matcher(SearchService(store, store.registry, 0))
        for name in ("her2-positive-metastatic-breast", "poor-organ-function"):
            a, b = _match(service, _bundle(name)), _match(other, _bundle(name))
            assert [(e["resource"]["id"], e["search"]) for e in a["entry"]] == \
                   [(e["resource"]["id"], e["search"]) for e in b["entry"]]
    finally:
        store.close()


@pytest.mark.parametrize("name", sorted(p.stem for p in PATIENTS.glob("*.json")))
def test_screening_a_profile_agrees_with_judging_the_whole_study(resources, name):
    from fhirstudy.matching.engine import _screen, judge_study
    from fhirstudy.matching.profile import build
    from fhirstudy.matching.request import parse_parameters
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "trialMatchClinicalData", "resource": _with_condition(_bundle(name), "Breast cancer")}]}
    from fhirstudy.matching.profile import ProfileCache
    request, cache, memo = parse_parameters(body, ON), ProfileCache(), {}
    for twice in range(2):   # the second time every statement is shared with a profile seen before
        for n, (study, eligibility) in enumerate(_studies(resources)):
            whole = judge_study(study, eligibility, request)
            profile = build(n, study, 1, eligibility, 1, cache.intern)
            assert _screen(profile, request, memo) == (whole.eligible, whole.score), study["id"]


def test_a_match_past_its_time_limit_ends_with_a_clear_error_not_a_partial_answer(service, monkeypatch):
    from fhirstudy.errors import QueryTooCostly
    from fhirstudy.matching import engine
    monkeypatch.setattr(engine, "MAX_MATCH_SECONDS", -1)
    with pytest.raises(QueryTooCostly, match="narrow"):
        _match(service, _bundle("minimal"))


def test_a_patient_whose_conditions_say_nothing_known_has_every_study_screened(service, resources):
    """A Condition coded only by a SNOMED CT code fhirstudy has no group for gives no way to find
    the studies about it: then every study is a candidate, never none."""
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p", "gender": "female"}},
        {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Condition", "id": "c", "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "73211009"}]}}}]}
    found = _found(_match(service, bundle, includeIneligible=True))
    studies = {r["id"] for r in resources if r["resourceType"] == "ResearchStudy"}
    assert set(found) == studies


def test_a_condition_in_no_group_finds_studies_by_its_words(service):
    """"Oropharyngeal dysphagia" is in no condition group: its word "dysphagia" finds the
    dysphagia study (NCT05594173, conditions "Dysphagia; Deglutition Disorders") and counts as
    its condition; a breast cancer (grouped) still decides the candidates with it."""
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "p", "gender": "female",
                                               "birthDate": "1970-01-01"}},
        {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Condition", "id": "b", "code": {"text": "Breast cancer"}}},
        {"fullUrl": "urn:uuid:d", "resource": {"resourceType": "Condition", "id": "d",
                                               "code": {"text": "Oropharyngeal dysphagia"}}}]}
    entry = _found(_match(service, bundle))["nct05594173"]
    assert _criteria(entry)["condition"]["fit"] == "pass"


SYNTHETIC_CRITERIA = """Inclusion Criteria:

* Histologically confirmed non-small cell lung cancer
* ECOG performance status 0-1
* Absolute neutrophil count >= 1.5 x 10^9/L
* Platelets >= 100 x 10^9/L
* Hemoglobin >= 9 g/dL
* Total bilirubin <= 1.5 x ULN

Exclusion Criteria:

* Known brain metastases
* Pregnant women
"""


def _lung_resources(folder: Path) -> list[dict]:
    """A recruiting lung cancer trial (a real ClinicalTrials.gov record with these criteria): one
    of each kind of computable criterion, exclusions included."""
    record = json.loads((SAMPLES / "NCT05594173.json").read_text())
    protocol = record["protocolSection"]
    protocol["identificationModule"]["nctId"] = "NCT09999991"
    protocol["statusModule"]["overallStatus"] = "RECRUITING"
    protocol["conditionsModule"] = {"conditions": ["Non-small Cell Lung Cancer"]}
    protocol["eligibilityModule"].update(eligibilityCriteria=SYNTHETIC_CRITERIA, healthyVolunteers=False,
                                         maximumAge="85 Years")
    record.pop("derivedSection", None)
    path = folder / "NCT09999991.json"
    path.write_text(json.dumps(record))
    return [e["resource"] for c in convert([path]) for e in c.bundle["entry"]]


@pytest.fixture(scope="module")
def lung_trial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lung")
    store = open_store(f"sqlite:///{folder}/lung.db", clock=fixed_clock)
    store.put_many(_lung_resources(folder))
    yield Matcher(SearchService(store, store.registry, 0))
    store.close()


def test_a_changed_eligibility_is_judged_anew_by_a_matcher_that_kept_the_old_one(tmp_path):
    """The matcher keeps study profiles, and the keys its candidate searches found, between
    requests; a write to the eligibility alone (or to the study, a delete, a new study) is seen by
    the next request."""
    resources = _lung_resources(tmp_path)
    store = open_store(f"sqlite:///{tmp_path}/kept.db", clock=fixed_clock)
    try:
        store.put_many(resources)
        matcher = Matcher(SearchService(store, store.registry, 0))
        low_anc = _lung_patient(anc={"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
                                     "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
                                     "valueQuantity": {"value": 1.2, "system": "http://unitsofmeasure.org",
                                                       "code": "10*9/L"}})
        assert "nct09999991" not in _found(_match(matcher, low_anc))       # ANC >= 1.5: left out
        ev = copy.deepcopy(next(r for r in resources if r["id"] == "nct09999991-eligibility"))
        anc = next(c for c in ev["characteristic"] if c.get("linkId") == "inclusion-3")
        anc["definitionByTypeAndValue"]["valueQuantity"]["value"] = 1
        store.update(ev)                                                      # now ANC >= 1.0
        assert "nct09999991" in _found(_match(matcher, low_anc))
        study = copy.deepcopy(next(r for r in resources if r["id"] == "nct09999991"))
        store.delete("ResearchStudy", "nct09999991")
        assert "nct09999991" not in _found(_match(matcher, _lung_patient()))
        study["id"] = "nct09999992"
        store.put_many([study])                                               # a new study, same condition
        assert "nct09999992" in _found(_match(matcher, _lung_patient()))
    finally:
        store.close()


def _lung_patient(**changes) -> dict:
    """A 60-year-old woman with NSCLC who meets every criterion, with ``changes`` (analyte ->
    Observation/Condition resource) swapped in."""
    def obs(code, **value):
        return {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, **value}

    def qty(value, code):
        return {"valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": code}}

    resources = {
        "patient": {"resourceType": "Patient", "gender": "female", "birthDate": "1966-05-01"},
        "condition": {"resourceType": "Condition", "code": {"text": "Non-small cell lung cancer"}},
        "ecog": obs("89247-1", valueInteger=1),
        "anc": obs("751-8", **qty(2.0, "10*9/L")),
        "platelets": obs("777-3", **qty(150000, "/mm3")),
        "hemoglobin": obs("718-7", **qty(110, "g/L")),
        "bilirubin": obs("1975-2", **qty(0.9, "mg/dL"), referenceRange=[{"high": {
            "value": 1.2, "system": "http://unitsofmeasure.org", "code": "mg/dL"}}]),
        "pregnancy": obs("82810-3", valueCodeableConcept={"coding": [{"system": "http://loinc.org",
                                                                      "code": "LA26683-5"}]}),
    }
    resources.update(changes)
    entries = [r for r in resources.values() if r is not None]
    for n, r in enumerate(entries):
        r["id"] = f"r{n}"
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries]}


def test_the_lung_patient_who_meets_every_criterion_is_found(lung_trial):
    entry = _found(_match(lung_trial, _lung_patient()))["nct09999991"]
    fits = {k: c["fit"] for k, c in _criteria(entry).items() if c.get("computable")}
    # no Condition of brain metastases does not tell that she has none: unknown, which keeps the trial
    assert fits.pop("exclusion-1") == "unknown"
    assert set(fits.values()) == {"pass"}, fits
    assert {"inclusion-2", "inclusion-3", "inclusion-4", "inclusion-5", "inclusion-6",
            "exclusion-2", "condition", "age", "healthy-volunteers"} <= set(fits)


BRAIN_METS = {"resourceType": "Condition", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "94225005"}]}}
PREGNANT = {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
            "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
            "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA15173-0"}]}}


@pytest.mark.parametrize(("changes", "failed"), [
    ({"ecog": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
               "code": {"coding": [{"system": "http://loinc.org", "code": "89247-1"}]}, "valueInteger": 2}},
     "inclusion-2"),
    ({"anc": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
              "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
              "valueQuantity": {"value": 900, "system": "http://unitsofmeasure.org", "code": "/uL"}}}, "inclusion-3"),
    ({"platelets": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "26515-7"}]},
                    "valueQuantity": {"value": 60, "system": "http://unitsofmeasure.org", "code": "10*3/uL"}}},
     "inclusion-4"),
    ({"hemoglobin": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                     "valueQuantity": {"value": 4.5, "system": "http://unitsofmeasure.org", "code": "mmol/L"}}},
     "inclusion-5"),   # 4.5 mmol/L is 7.3 g/dL
    ({"bilirubin": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
                    "valueQuantity": {"value": 40, "system": "http://unitsofmeasure.org", "code": "umol/L"},
                    "referenceRange": [{"high": {"value": 20, "system": "http://unitsofmeasure.org",
                                                 "code": "umol/L"}}]}}, "inclusion-6"),   # 2 x ULN
    ({"mets": BRAIN_METS}, "exclusion-1"),
    ({"pregnancy": PREGNANT}, "exclusion-2"),
    ({"patient": {"resourceType": "Patient", "gender": "female", "birthDate": "1935-05-01"}}, "age"),
])
def test_each_kind_of_failed_criterion_leaves_the_trial_out(lung_trial, changes, failed):
    bundle = _lung_patient(**copy.deepcopy(changes))
    assert "nct09999991" not in _found(_match(lung_trial, bundle))
    entry = _found(_match(lung_trial, bundle, includeIneligible=True))["nct09999991"]
    fits = {k: c["fit"] for k, c in _criteria(entry).items() if c.get("computable")}
    assert [k for k, f in fits.items() if f == "fail"] == [failed]
    assert entry["search"]["score"] == 0


@pytest.mark.parametrize(("changes", "unknown"), [
    ({"anc": None}, "inclusion-3"),                                 # no result
    ({"anc": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2025-01-10",
              "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
              "valueQuantity": {"value": 0.5, "system": "http://unitsofmeasure.org", "code": "10*9/L"}}},
     "inclusion-3"),                                                 # too old to tell
    ({"anc": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
              "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
              "valueQuantity": {"value": 0.5}}}, "inclusion-3"),    # no unit
    ({"bilirubin": {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-11-30",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]},
                    "valueQuantity": {"value": 3.0, "system": "http://unitsofmeasure.org", "code": "mg/dL"}}},
     "inclusion-6"),                                                 # x ULN without a reference range
    ({"pregnancy": None}, "exclusion-2"),
])
def test_what_cannot_be_told_keeps_the_trial_and_says_what_is_missing(lung_trial, changes, unknown):
    entry = _found(_match(lung_trial, _lung_patient(**copy.deepcopy(changes))))["nct09999991"]
    criterion = _criteria(entry)[unknown]
    assert criterion["fit"] == "unknown"
    missing = [e["valueString"] for e in entry["search"]["extension"] if e["url"].endswith("match-missing")]
    assert missing and 0 < entry["search"]["score"] < 1
