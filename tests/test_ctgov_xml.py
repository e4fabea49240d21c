"""Tests of the ClinicalTrials.gov legacy XML reader (fhirstudy.sources.ctgov_xml): the facts of the
three real ``<clinical_study>`` samples, many records in one file, bad input, field accounting and
streaming of a large file."""
from __future__ import annotations

import os
import re
import tracemalloc
from pathlib import Path

import pytest

from fhirstudy.sources import Record, ctgov_xml, iter_records
from fhirstudy.sources._ctgov_legacy import api_value, partial_date
from fhirstudy.sources._fields import ignored_fields

SHARED = Path(os.environ.get("FHIRSTUDY_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
SAMPLES = SHARED / "ctgov-samples"
DATA = Path(__file__).resolve().parent / "data" / "ctgov_xml"
RECORDS = 2_000  # enough to show the peak (about 0.5 MB) stays far below the file; bench/convert.py runs 20,000+


def sample_path(nct: str) -> Path:
    path = SAMPLES / f"{nct}.xml"
    if not path.exists():
        pytest.skip(f"registry sample {path} not found (set FHIRSTUDY_SHARED_DIR to the folder holding "
                    "ctgov-samples/)")
    return path


_CACHE: dict[str, Record] = {}


def sample(nct: str) -> Record:
    if nct not in _CACHE:
        (_CACHE[nct],) = iter_records([sample_path(nct)])
    return _CACHE[nct]


def interventions(t):
    return [(i.type, i.name) for i in t.interventions]


def outcome_counts(t):
    return tuple(len(t.outcomes_of(k)) for k in ("primary", "secondary", "other"))


def criteria_counts(t):
    return (sum(not c.exclude for c in t.criteria), sum(c.exclude for c in t.criteria))


def crit(t, n):
    return (t.criteria[n].exclude, t.criteria[n].text)


# (NCT number, what, getter, expected), read by hand from the samples.
FACTS = [
    # NCT00055081: no <?xml?> declaration, &#xD; entities, behavioural, N/A phase, healthy volunteers
    ("NCT00055081", "nct id", lambda t: t.nct_id, "NCT00055081"),
    ("NCT00055081", "title", lambda t: t.brief_title, "The Impact of Family CTI on Homeless Children"),
    ("NCT00055081", "status", lambda t: (t.overall_status, t.last_known_status), ("COMPLETED", None)),
    ("NCT00055081", "phases", lambda t: t.phases, ("NA",)),
    ("NCT00055081", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (320, "ACTUAL")),
    ("NCT00055081", "sponsor", lambda t: (t.sponsor.name, t.sponsor.role, t.sponsor.classifier),
     ("Nathan Kline Institute for Psychiatric Research", "lead-sponsor", "OTHER")),
    ("NCT00055081", "collaborator", lambda t: [(c.name, c.classifier) for c in t.collaborators],
     [("National Institute of Mental Health (NIMH)", "NIH")]),
    ("NCT00055081", "conditions", lambda t: t.conditions, ("Mental Health",)),
    ("NCT00055081", "interventions", interventions, [("BEHAVIORAL", "Critical Time Intervention")]),
    ("NCT00055081", "outcomes by kind", outcome_counts, (1, 0, 0)),
    ("NCT00055081", "outcome", lambda t: (t.outcomes[0].name, t.outcomes[0].time_frame),
     ("Internalizing, externalizing, school outcomes", "18 months post enrollment")),
    ("NCT00055081", "sites", lambda t: [(s.facility, s.city, s.state, s.zip, s.country) for s in t.sites],
     [("The Nathan S. Kline Institute for Psychiatric Research", "Orangeburg", "New York", "10962",
       "United States")]),
    ("NCT00055081", "criteria split", criteria_counts, (2, 0)),
    ("NCT00055081", "wrapped criterion joined", lambda t: crit(t, 1),
     (False, "Homeless and living at a shelter with mother/maternal guardian at the time of study enrollment")),
    ("NCT00055081", "sex and ages", lambda t: (t.sex, t.minimum_age, t.maximum_age), ("ALL", "18 Months", "16 Years")),
    ("NCT00055081", "healthy volunteers", lambda t: t.healthy_volunteers, True),
    ("NCT00055081", "no CR left in the text", lambda t: "\r" in (t.brief_summary + t.detailed_description), False),
    ("NCT00055081", "summary re-flowed", lambda t: t.brief_summary,
     "The purpose of this study is to examine how services and housing provided for homeless families affect "
     "the mental health and behavior of homeless children over time."),
    ("NCT00055081", "description paragraphs", lambda t: t.detailed_description.count("\n\n"), 1),
    ("NCT00055081", "identifiers", lambda t: [(i.kind, i.value) for i in t.identifiers],
     [("nct", "NCT00055081"), ("org", "R01MH067148"), ("secondary", "DSIR 82-SEMS")]),
    ("NCT00055081", "design", lambda t: (t.study_type, t.allocation, t.intervention_model, t.primary_purpose,
                                         t.masking), ("INTERVENTIONAL", "RANDOMIZED", "PARALLEL", "TREATMENT", "NONE")),
    ("NCT00055081", "dates", lambda t: (t.start_date.date, t.start_date.type, t.completion_date.date,
                                        t.completion_date.type, t.first_posted_date, t.last_update_date,
                                        t.status_verified_date),
     ("2002-07", None, "2005-11", "ACTUAL", "2003-02-20", "2013-12-06", "2013-12")),
    ("NCT00055081", "download date", lambda t: t.provenance.source_date, "2023-05-09"),
    ("NCT00055081", "keywords", lambda t: t.keywords, ("Homeless Persons",)),
    ("NCT00055081", "official", lambda t: (t.officials[0].name, t.officials[0].role),
     ("Judith A Samuels, MBA, PhD", "primary-investigator")),
    ("NCT00055081", "oversight", lambda t: [(f.name, f.value) for f in t.oversight], [("oversightHasDmc", False)]),
    ("NCT00055081", "no results", lambda t: t.has_results, False),
    # NCT01065844: oncology, results, old and new date names, entities, one arm without allocation
    ("NCT01065844", "title", lambda t: t.brief_title, "Nelfinavir in Recurrent Adenoid Cystic Cancer of the Head and Neck"),
    ("NCT01065844", "status", lambda t: t.overall_status, "ACTIVE_NOT_RECRUITING"),
    ("NCT01065844", "phases", lambda t: t.phases, ("PHASE2",)),
    ("NCT01065844", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (15, "ACTUAL")),
    ("NCT01065844", "sponsor", lambda t: t.sponsor.name, "University of Iowa"),
    ("NCT01065844", "conditions", lambda t: t.conditions, ("Carcinoma, Adenoid Cystic", "Head and Neck Neoplasms")),
    ("NCT01065844", "interventions", interventions, [("DRUG", "Nelfinavir")]),
    ("NCT01065844", "intervention arms", lambda t: t.interventions[0].arms, ("Nelfinavir",)),
    ("NCT01065844", "arm", lambda t: [(a.label, a.type, a.interventions) for a in t.arms],
     [("Nelfinavir", "EXPERIMENTAL", ("Nelfinavir",))]),
    ("NCT01065844", "outcomes by kind", outcome_counts, (1, 1, 0)),
    ("NCT01065844", "sites", lambda t: len(t.sites), 1),
    ("NCT01065844", "criteria split (the organ-function sub-list is one criterion)", criteria_counts, (8, 6)),
    ("NCT01065844", "&lt; decoded, nested bullets are the items of their criterion", lambda t: (
        t.criteria[4].exclude, t.criteria[4].text, len(t.criteria[4].items), t.criteria[4].items[3]),
     (False, "Patients must have normal organ and marrow function as defined below:", 7,
      "total bilirubin < 1.5 mg/dl OR a stable or a decreasing bilirubin in patients who "
      "have undergone placement of an intrabiliary stent")),
    ("NCT01065844", "&amp; decoded, exclusion", lambda t: crit(t, 10),
     (True, "Hemophilia A & B as increased bleeding during protease inhibitor therapy has been reported (22).")),
    ("NCT01065844", "sex and ages", lambda t: (t.sex, t.minimum_age, t.maximum_age), ("ALL", "18 Years", None)),
    ("NCT01065844", "healthy volunteers", lambda t: t.healthy_volunteers, False),
    ("NCT01065844", "no allocation", lambda t: (t.allocation, t.intervention_model), (None, "SINGLE_GROUP")),
    ("NCT01065844", "period dates", lambda t: (t.primary_completion_date, t.completion_date),
     (("2015-05", "ACTUAL"), ("2018-12", "ESTIMATED"))),
    ("NCT01065844", "results", lambda t: (t.has_results, t.results_first_posted_date), (True, "2016-12-19")),
    ("NCT01065844", "references", lambda t: [(r.type, r.pmid) for r in t.references],
     [("BACKGROUND", "19729990"), ("RESULT", "24596143")]),
    ("NCT01065844", "download date", lambda t: t.provenance.source_date, "2017-10-20"),
    ("NCT01065844", "responsible party kept as official", lambda t: [(o.name, o.role, o.title) for o in t.officials],
     [("John M. Buatti, M.D.", "primary-investigator", None),
      ("John M. Buatti", "primary-investigator", "Professor & Chair of Radiation Oncology")]),
    # NCT02513394 (PALLAS): breast cancer, CRLF, rank attribute, 233 locations
    ("NCT02513394", "title", lambda t: (t.brief_title, t.acronym), ("PALbociclib CoLlaborative Adjuvant Study", "PALLAS")),
    ("NCT02513394", "status", lambda t: t.overall_status, "ACTIVE_NOT_RECRUITING"),
    ("NCT02513394", "phases", lambda t: t.phases, ("PHASE3",)),
    ("NCT02513394", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (5796, "ACTUAL")),
    ("NCT02513394", "sponsor", lambda t: t.sponsor.name, "Alliance Foundation Trials, LLC."),
    ("NCT02513394", "collaborators", lambda t: [(c.name, c.classifier) for c in t.collaborators][-1], ("Pfizer", "INDUSTRY")),
    ("NCT02513394", "collaborator count", lambda t: len(t.collaborators), 5),
    ("NCT02513394", "conditions", lambda t: t.conditions, ("Breast Cancer",)),
    ("NCT02513394", "interventions", interventions,
     [("DRUG", "Palbociclib"), ("DRUG", "Standard Adjuvant Endocrine Therapy")]),
    ("NCT02513394", "arms", lambda t: [(a.label, a.type, a.interventions) for a in t.arms],
     [("Arm A", "EXPERIMENTAL", ("Palbociclib", "Standard Adjuvant Endocrine Therapy")),
      ("Arm B", "OTHER", ("Standard Adjuvant Endocrine Therapy",))]),
    ("NCT02513394", "outcomes by kind", outcome_counts, (1, 1, 0)),
    ("NCT02513394", "sites", lambda t: len(t.sites), 233),
    ("NCT02513394", "sites without state / zip", lambda t: (sum(s.state is None for s in t.sites),
                                                           sum(s.zip is None for s in t.sites)), (21, 32)),
    ("NCT02513394", "accented cities", lambda t: {"Montréal", "Genève"} <= {s.city for s in t.sites}, True),
    ("NCT02513394", "countries", lambda t: len({s.country for s in t.sites}), 9),
    ("NCT02513394", "criteria split", criteria_counts, (21, 13)),
    ("NCT02513394", "first criterion", lambda t: crit(t, 0),
     (False, "Signed informed consent prior to study specific procedures.")),
    ("NCT02513394", "unbulleted paragraph kept", lambda t: crit(t, 6),
     (False, "FFPE tumor tissue block must be confirmed to be received at the central sample repository prior "
      "to randomization.")),
    ("NCT02513394", "symbols kept", lambda t: crit(t, 15), (False, "Absolute neutrophil count ≥ 1,500/µL")),
    ("NCT02513394", "first exclusion", lambda t: crit(t, 21),
     (True, "Concurrent therapy with other Investigational Products.")),
    ("NCT02513394", "sex and ages", lambda t: (t.sex, t.minimum_age, t.maximum_age), ("ALL", "18 Years", None)),
    ("NCT02513394", "officials", lambda t: len(t.officials), 4),
    ("NCT02513394", "secondary ids", lambda t: [i.value for i in t.identifiers if i.kind == "secondary"],
     ["ABCSG 42", "BIG 14-03", "2014-005181-30"]),
    ("NCT02513394", "estimated dates", lambda t: (t.primary_completion_date, t.completion_date),
     (("2020-09", "ESTIMATED"), ("2025-09", "ESTIMATED"))),
    ("NCT02513394", "keywords", lambda t: t.keywords, ("HR+/HER2- breast cancer", "Palbociclib")),
    ("NCT02513394", "no MeSH without ids", lambda t: (t.condition_meshes, t.intervention_meshes), ((), ())),
]


def _date_tuple(d):
    return None if d is None else (d.date, d.type)


@pytest.mark.parametrize(("nct", "what", "get", "expected"), FACTS, ids=[f"{f[0]}-{f[1]}" for f in FACTS])
def test_sample_fact(nct, what, get, expected):
    record = sample(nct)
    assert record.ok, record.problems
    got = get(record.trial)
    if what in ("period dates", "estimated dates"):
        got = tuple(_date_tuple(d) for d in got)
    assert got == expected


@pytest.mark.parametrize("nct", ["NCT00055081", "NCT01065844", "NCT02513394"])
def test_sample_has_no_problems_and_nothing_unmapped(nct):
    record = sample(nct)
    assert record.problems == ()
    assert record.unmapped == ()
    assert record.trial.provenance.format == "ctgov-xml"


def test_clinical_results_are_carried():
    results = sample("NCT01065844").trial.results
    assert [g.title for g in results.participant_flow.groups] == ["Nelfinavir"]
    assert results.adverse_events.time_frame.startswith("Adverse event data collected from day 1")
    assert [(g.id, g.serious_num_affected, g.serious_num_at_risk, g.other_num_affected) for g in
            results.adverse_events.groups] == [("E1", 0, 15, 5)]
    assert [e.term for e in results.adverse_events.events][0] == "platelet count decreased"
    assert results.adverse_events.events[0].source_vocabulary == "CTCAE (3.0)"
    assert results.adverse_events.events[0].assessment_type == "SYSTEMATIC_ASSESSMENT"
    assert (results.more_info.pi_sponsor_employee, results.more_info.restrictive_agreement) == (True, False)
    assert [m.kind for m in results.outcome_measures] == ["PRIMARY", "SECONDARY"]
    assert results.outcome_measures[0].param_type == "COUNT_OF_PARTICIPANTS"


def test_ignore_list_has_a_reason_for_each_path():
    from fhirstudy.terminology import load_mapping
    table = load_mapping("ctgov-ignored-fields.json")["ctgov-xml"]
    assert set(table) == ignored_fields("ctgov-xml")
    assert all(isinstance(reason, str) and len(reason) > 20 for reason in table.values())
    assert "MeSH terms without ids" in table["condition_browse"]
    # results are carried; only the flag ClinicalTrials.gov itself dropped is ignored
    assert [p for p in table if p.startswith("clinical_results")] == ["clinical_results.outcome_list.outcome.safety_issue"]


def test_detect():
    assert ctgov_xml.detect("<clinical_study>\r\n  <!-- -->\r\n")
    assert ctgov_xml.detect('<?xml version="1.0"?>\n<search_results><clinical_study rank="1">')
    assert not ctgov_xml.detect("A text about a <clinical_study> element")
    assert not ctgov_xml.detect('{"protocolSection": {}}')


def test_many_records_under_one_root():
    records = list(iter_records([DATA / "many.xml"]))
    assert [(r.record, r.ok, r.trial.nct_id) for r in records] == [
        (1, True, "NCT00000401"), (2, True, "NCT00000402"), (3, True, "NCT00000403")]
    first, second, third = (r.trial for r in records)
    assert (first.phases, first.enrollment, first.enrollment_type) == (("PHASE1", "PHASE2"), 30, "ESTIMATED")
    assert (first.start_date.date, first.start_date.type) == ("2014-03-03", "ACTUAL")
    assert first.interventions[0].other_names == ("PD-0332991",)
    assert (first.sex, first.minimum_age, first.provenance.source_date) == ("FEMALE", "18 Years", "2021-03-03")
    assert (second.overall_status, second.last_known_status) == ("UNKNOWN", "ACTIVE_NOT_RECRUITING")
    assert (second.study_type, second.patient_registry, second.phases) == ("OBSERVATIONAL", True, ("NA",))
    assert (second.observational_model, second.time_perspective) == ("COHORT", "PROSPECTIVE")
    assert [(i.kind, i.value, i.type) for i in third.identifiers][1] == ("secondary", "NCT00000499", "NCT alias")
    assert all(r.unmapped == () and r.problems == () for r in records)


# (file, [(record, ok, field of the first problem)]): bad records are errors; the others convert.
BAD = [
    ("no-nct.xml", [(1, False, "identifiers"), (2, True, None)]),
    ("truncated.xml", [(1, True, None), (2, False, "format")]),
    ("unknown-status.xml", [(1, False, "overall_status"), (2, True, None)]),
]


@pytest.mark.parametrize(("name", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_records_are_reported_and_the_rest_convert(name, expected):
    records = list(iter_records([DATA / name]))
    assert [(r.record, r.ok, r.problems[0].field if r.problems else None) for r in records] == expected
    for r in records:
        assert all(p.file == str(DATA / name) and p.record == r.record for p in r.problems)


def test_truncated_xml_names_the_line():
    records = list(iter_records([DATA / "truncated.xml"]))
    assert records[0].trial.nct_id == "NCT00000601"
    assert "line 9" in records[1].problems[0].reason


def test_unknown_status_names_the_element_and_value():
    (bad, good) = iter_records([DATA / "unknown-status.xml"])
    assert "<overall_status>" in bad.problems[0].reason and "'Bogus'" in bad.problems[0].reason
    assert (good.trial.overall_status, good.trial.why_stopped) == ("WITHDRAWN", "No funding")


def test_file_without_records_is_reported(tmp_path):
    path = tmp_path / "empty.xml"
    path.write_text("<search_results>\n<clinical_study/>\n</search_results>\n", encoding="utf-8")
    (record,) = iter_records([path], format="ctgov-xml")
    assert not record.ok and record.problems[0].field == "identifiers"
    path.write_text("<search_results><query>x</query></search_results>\n", encoding="utf-8")
    (record,) = iter_records([path], format="ctgov-xml")
    assert not record.ok and "no <clinical_study>" in record.problems[0].reason


VALUES = [
    ("phase", "Phase 2", ["PHASE2"]), ("phase", "Phase 1/Phase 2", ["PHASE1", "PHASE2"]), ("phase", "N/A", ["NA"]),
    ("phase", "PHASE3", ["PHASE3"]), ("overallStatus", "Recruiting", "RECRUITING"),
    ("overallStatus", "Active, not recruiting", "ACTIVE_NOT_RECRUITING"), ("overallStatus", "Unknown status", "UNKNOWN"),
    ("studyType", "Interventional", "INTERVENTIONAL"), ("interventionType", "Drug", "DRUG"),
    ("interventionType", "Dietary Supplement", "DIETARY_SUPPLEMENT"), ("sex", "Female", "FEMALE"),
    ("allocation", "Randomized", "RANDOMIZED"), ("interventionModel", "Parallel Assignment", "PARALLEL"),
    ("agencyClass", "Industry", "INDUSTRY"), ("agencyClass", "U.S. Fed", "FED"),
    ("primaryPurpose", "Educational/Counseling/Training", "ECT"), ("dateType", "Anticipated", "ESTIMATED"),
]


@pytest.mark.parametrize(("section", "raw", "expected"), VALUES)
def test_legacy_value(section, raw, expected):
    assert api_value(section, raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("March 2014", "2014-03"), ("March 3, 2014", "2014-03-03"), ("December 19, 2016", "2016-12-19"),
    ("2014-03-03", "2014-03-03"), ("2011-06", "2011-06"), (None, None)])
def test_partial_date(raw, expected):
    assert partial_date(raw) == expected


@pytest.mark.parametrize("raw", ["Marchember 2014", "February 30, 2014", "soon"])
def test_partial_date_rejects(raw):
    with pytest.raises(ValueError):
        partial_date(raw)


def test_large_file_streams_in_bounded_memory(tmp_path):
    """2,000 records (the smallest sample 2,000 times under one root) read with a memory peak far
    below the file size. Indentation between elements is dropped to keep the test quick."""
    body = sample_path("NCT00055081").read_bytes()
    body = re.sub(rb">\s+<", b"><", body)
    path = tmp_path / "large.xml"
    with open(path, "wb") as out:
        out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<search_results>')
        out.writelines(body for _ in range(RECORDS))
        out.write(b"</search_results>\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = 0
        with open(path, "rb") as stream:
            for data, problems, unmapped in ctgov_xml.read_stream(stream, str(path)):
                count += data is not None and data["identifiers"][0]["value"] == "NCT00055081"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == RECORDS
    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte file"
