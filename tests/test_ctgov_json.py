"""Tests of the ClinicalTrials.gov API v2 JSON reader (fhirstudy.sources.ctgov_json): the facts each
registry sample must keep, the four containers, streaming, bad input, and field accounting."""
from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from fhirstudy.sources import FORMATS, Record, _ctgov, ctgov_json, iter_raw, iter_records
from fhirstudy.terminology import load_mapping
from fhirstudy.trial import DateStruct, Trial

DATA = Path(__file__).resolve().parent / "data" / "ctgov_json"
SHARED = Path(os.environ.get("FHIRSTUDY_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
SAMPLES = SHARED / "ctgov-samples"
SAMPLE_IDS = ["NCT00763412", "NCT02210780", "NCT03064438", "NCT03630471", "NCT05594173"]


def sample_path(nct: str) -> Path:
    path = SAMPLES / f"{nct}.json"
    if not path.exists():
        pytest.skip(f"registry sample {path} not found (set FHIRSTUDY_SHARED_DIR to the folder holding ctgov-samples/)")
    return path


def sample_json(nct: str) -> dict:
    return json.loads(sample_path(nct).read_text(encoding="utf-8"))


def read_one(path: str | Path, **kw) -> Record:
    records = list(iter_records([path], **kw))
    assert len(records) == 1, records
    return records[0]


_CACHE: dict[str, Record] = {}


def sample(nct: str) -> Record:
    if nct not in _CACHE:
        _CACHE[nct] = read_one(sample_path(nct))
    return _CACHE[nct]


def kinds(t: Trial) -> tuple[int, int, int]:
    return tuple(len(t.outcomes_of(k)) for k in ("primary", "secondary", "other"))


def split(t: Trial) -> tuple[int, int]:
    criteria = [c for c in t.criteria if not c.note]
    return sum(not c.exclude for c in criteria), sum(c.exclude for c in criteria)


def strings(value) -> list[str]:
    """Every text of a Trial (or of any part of it)."""
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value):
        return [s for f in dataclasses.fields(value) for s in strings(getattr(value, f.name))]
    if isinstance(value, tuple):
        return [s for item in value for s in strings(item)]
    return []



# (sample, what, getter, expected): the facts a user would check, read off the sample files by hand.
FACTS = [
    # NCT00763412: INDIV sponsor, startDateStruct without type, placebo arm, quadruple masking, \< \> escapes
    ("NCT00763412", "nct id", lambda t: t.nct_id, "NCT00763412"),
    ("NCT00763412", "brief title", lambda t: t.brief_title,
     "Pilot and Feasibility Study for the Treatment of Pre-diabetes in Patients With Cystic Fibrosis"),
    ("NCT00763412", "official title", lambda t: t.official_title,
     "Pilot and Feasibility Study for the Treatment of Pre-diabetes in Patients With Cystic Fibrosis"),
    ("NCT00763412", "overall status", lambda t: t.overall_status, "COMPLETED"),
    ("NCT00763412", "phases", lambda t: t.phases, ("NA",)),
    ("NCT00763412", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (31, "ACTUAL")),
    ("NCT00763412", "sponsor", lambda t: (t.sponsor.name, t.sponsor.classifier, t.sponsor.role),
     ("Arbelaez, Ana Maria", "INDIV", "lead-sponsor")),
    ("NCT00763412", "collaborators", lambda t: [(c.name, c.classifier) for c in t.collaborators], [
        ("Washington University School of Medicine", "OTHER"), ("National Institutes of Health (NIH)", "NIH"),
        ("Novo Nordisk A/S", "INDUSTRY"),
        ("National Institute of Diabetes and Digestive and Kidney Diseases (NIDDK)", "NIH")]),
    ("NCT00763412", "conditions", lambda t: t.conditions,
     ("Cystic Fibrosis Related Diabetes", "Pancreatic Insufficiency")),
    ("NCT00763412", "condition MeSH ids", lambda t: [m.id for m in t.condition_meshes],
     ["D003550", "D010188", "D003920", "D011236", "D018149", "D005355"]),
    ("NCT00763412", "condition MeSH ancestors", lambda t: [(m.id, m.term) for m in t.condition_ancestors][:3],
     [("D044882", "Glucose Metabolism Disorders"), ("D008659", "Metabolic Diseases"),
      ("D004700", "Endocrine System Diseases")]),
    ("NCT00763412", "11 ancestors", lambda t: len(t.condition_ancestors), 11),
    ("NCT00763412", "intervention MeSH", lambda t: [(m.id, m.term) for m in t.intervention_meshes],
     [("C000072379", "Repaglinide")]),
    ("NCT00763412", "interventions", lambda t: [(i.type, i.name) for i in t.interventions],
     [("DRUG", "placebo"), ("DRUG", "repaglinide")]),
    ("NCT00763412", "other names", lambda t: [i.other_names for i in t.interventions], [(), ("Prandin",)]),
    ("NCT00763412", "arms name interventions without the type label", lambda t: [(a.label, a.type, a.interventions)
                                                                                  for a in t.arms],
     [("1 Placebo", "PLACEBO_COMPARATOR", ("placebo",)), ("2. repaglinide", "EXPERIMENTAL", ("repaglinide",))]),
    ("NCT00763412", "outcomes by kind", kinds, (3, 6, 0)),
    ("NCT00763412", "sites", lambda t: [(s.facility, s.city, s.state, s.zip, s.country, s.latitude, s.longitude)
                                        for s in t.sites],
     [("Washington University School of Medicine", "Saint Louis", "Missouri", "63110", "United States",
       38.62727, -90.19789)]),
    ("NCT00763412", "criteria split", split, (5, 6)),
    ("NCT00763412", "sex, ages, healthy volunteers",
     lambda t: (t.sex, t.minimum_age, t.maximum_age, t.healthy_volunteers), ("ALL", "12 Years", "24 Years", False)),
    ("NCT00763412", "start date without type", lambda t: t.start_date, DateStruct("2006-11", None)),
    ("NCT00763412", "completion date", lambda t: t.completion_date, DateStruct("2013-01", "ACTUAL")),
    ("NCT00763412", "posted dates", lambda t: (t.status_verified_date, t.first_posted_date,
                                               t.results_first_posted_date, t.last_update_date),
     ("2017-05", "2008-10-01", "2017-06-05", "2017-06-05")),
    ("NCT00763412", "masking", lambda t: (t.masking, t.who_masked),
     ("QUADRUPLE", ("PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR", "OUTCOMES_ASSESSOR"))),
    ("NCT00763412", "identifiers", lambda t: [(i.value, i.kind, i.type, i.assigner) for i in t.identifiers], [
        ("NCT00763412", "nct", None, None), ("05-1109", "org", None, "Arbelaez, Ana Maria"),
        ("P60DK020579", "secondary", "NIH", None)]),
    ("NCT00763412", "responsible party and official", lambda t: [(p.name, p.role, p.title, p.affiliation, p.is_person)
                                                                  for p in t.officials], [
        ("Ana Maria Arbelaez", "primary-investigator", "Assistant Professor in Pediatrics", "Arbelaez, Ana Maria",
         True),
        ("Neil H White, M.D.", "study-chair", None, "Washington University School of Medicine", True)]),
    ("NCT00763412", "markdown escapes undone", lambda t: any("blood glucose <126 mg/dl" in c.text and ">200 mg/dl"
                                                             in c.text for c in t.criteria), True),
    ("NCT00763412", "oversight", lambda t: [(f.name, f.value) for f in t.oversight],
     [("oversightHasDmc", True), ("isFdaRegulatedDrug", True), ("isFdaRegulatedDevice", False)]),
    ("NCT00763412", "keywords", lambda t: len(t.keywords), 10),
    ("NCT00763412", "has results", lambda t: t.has_results, True),
    ("NCT00763412", "ipd sharing", lambda t: t.ipd_sharing.sharing, "UNDECIDED"),
    # NCT02210780: 42 locations without a facility, otherNames, Key Inclusion/Exclusion headings, \[ \] escapes
    ("NCT02210780", "nct id", lambda t: t.nct_id, "NCT02210780"),
    ("NCT02210780", "brief title", lambda t: t.brief_title,
     "Study of Dupilumab and Immune Responses in Adults With Atopic Dermatitis (AD)"),
    ("NCT02210780", "official title", lambda t: t.official_title,
     ("A Randomized, Double-Blind, Placebo-Controlled, Study Investigating Vaccine Responses in Adults With "
      "Moderate to Severe Atopic Dermatitis Treated With Dupilumab")),
    ("NCT02210780", "overall status", lambda t: t.overall_status, "COMPLETED"),
    ("NCT02210780", "phases", lambda t: t.phases, ("PHASE2",)),
    ("NCT02210780", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (194, "ACTUAL")),
    ("NCT02210780", "sponsor", lambda t: (t.sponsor.name, t.sponsor.classifier),
     ("Regeneron Pharmaceuticals", "INDUSTRY")),
    ("NCT02210780", "collaborators", lambda t: [(c.name, c.role) for c in t.collaborators],
     [("Sanofi", "collaborator")]),
    ("NCT02210780", "conditions", lambda t: t.conditions, ("Atopic Dermatitis",)),
    ("NCT02210780", "condition MeSH ids", lambda t: [m.id for m in t.condition_meshes],
     ["D003876", "D003872", "D004485"]),
    ("NCT02210780", "interventions", lambda t: [(i.type, i.name, i.other_names, i.arms) for i in t.interventions], [
        ("DRUG", "Dupilumab", ("REGN668", "SAR231893", "Dupixent"), ("Dupilumab 300 mg qw",)),
        ("DRUG", "Placebo", (), ("Placebo qw",))]),
    ("NCT02210780", "arms", lambda t: [(a.label, a.interventions) for a in t.arms],
     [("Placebo qw", ("Placebo",)), ("Dupilumab 300 mg qw", ("Dupilumab",))]),
    ("NCT02210780", "outcomes by kind", kinds, (1, 10, 0)),
    ("NCT02210780", "sites", lambda t: len(t.sites), 42),
    ("NCT02210780", "no site has a facility name", lambda t: {s.facility for s in t.sites}, {None}),
    ("NCT02210780", "first site", lambda t: (t.sites[0].city, t.sites[0].state, t.sites[0].country,
                                             t.sites[0].latitude, t.sites[0].longitude),
     ("Birmingham", "Alabama", "United States", 33.52066, -86.80249)),
    ("NCT02210780", "sex, ages, healthy volunteers",
     lambda t: (t.sex, t.minimum_age, t.maximum_age, t.healthy_volunteers), ("ALL", "18 Years", "64 Years", False)),
    ("NCT02210780", "brackets unescaped", lambda t: "[Eichenfeld 2004]" in t.criteria[0].text, True),
    ("NCT02210780", "official", lambda t: [(p.name, p.role, p.affiliation) for p in t.officials],
     [("Clinical Trial Management", "study-director", "Regeneron Pharmaceuticals")]),
    ("NCT02210780", "no ipd sharing statement", lambda t: t.ipd_sharing, None),
    ("NCT02210780", "criteria split (the closing disclaimer is a note)", split, (5, 7)),
    # NCT03064438: otherOutcomes, fdaaa801Violation, no overallOfficials, nested sub-bullets
    ("NCT03064438", "nct id", lambda t: t.nct_id, "NCT03064438"),
    ("NCT03064438", "brief title", lambda t: t.brief_title,
     "Safety and Efficacy of ACU-D1 in the Treatment of Acne Rosacea"),
    ("NCT03064438", "official title", lambda t: t.official_title,
     ("A RANDOMIZED, DOUBLE-BLIND, VEHICLE CONTROLLED, PROOF-OF CONCEPT STUDY OF THE SAFETY AND EFFICACY OF "
      "ACU-D1 OINTMENT IN SUBJECTS WITH ACNE ROSACEA")),
    ("NCT03064438", "overall status", lambda t: t.overall_status, "COMPLETED"),
    ("NCT03064438", "phases", lambda t: t.phases, ("PHASE2",)),
    ("NCT03064438", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (40, "ACTUAL")),
    ("NCT03064438", "sponsor", lambda t: (t.sponsor.name, t.sponsor.classifier), ("Accuitis, Inc.", "INDUSTRY")),
    ("NCT03064438", "conditions", lambda t: t.conditions, ("Acne Rosacea",)),
    ("NCT03064438", "condition MeSH ids", lambda t: [m.id for m in t.condition_meshes], ["D012393"]),
    ("NCT03064438", "no intervention MeSH", lambda t: t.intervention_meshes, ()),
    ("NCT03064438", "interventions", lambda t: [(i.type, i.name) for i in t.interventions],
     [("DRUG", "ACCU-D1"), ("DRUG", "Vehicle")]),
    ("NCT03064438", "outcomes by kind", kinds, (1, 7, 2)),
    ("NCT03064438", "sites", lambda t: [(s.facility, s.city) for s in t.sites],
     [("DS Research", "Louisville"), ("DermResearch", "Austin")]),
    ("NCT03064438", "sex, ages, healthy volunteers",
     lambda t: (t.sex, t.minimum_age, t.maximum_age, t.healthy_volunteers), ("ALL", "18 Years", None, False)),
    ("NCT03064438", "no officials (the sponsor is the responsible party)", lambda t: t.officials, ()),
    ("NCT03064438", "fdaaa801Violation", lambda t: ("fdaaa801Violation", True) in [(f.name, f.value)
                                                                                  for f in t.oversight], True),
    ("NCT03064438", "reference", lambda t: [(r.pmid, r.type) for r in t.references], [("34076401", "DERIVED")]),
    ("NCT03064438", "non-ASCII kept", lambda t: "≥10 and ≤40" in t.criteria[2].text, True),
    ("NCT03064438", "less-than unescaped", lambda t: "\\<0.5 cm" not in repr(t.outcomes)
     and any("<0.5 cm" in (o.description or "") for o in t.outcomes), True),
    ("NCT03064438", "ipd sharing", lambda t: t.ipd_sharing.sharing, "NO"),
    ("NCT03064438", "criteria split (sub-bullets join their criterion)", split, (9, 11)),
    # NCT03630471: no results, acronym, maskingDescription, "Eligibility criteria:" + sub-headings, IPD statement
    ("NCT03630471", "nct id", lambda t: t.nct_id, "NCT03630471"),
    ("NCT03630471", "brief title", lambda t: t.brief_title,
     "Effectiveness of a Problem-solving Intervention for Common Adolescent Mental Health Problems in India"),
    ("NCT03630471", "official title", lambda t: t.official_title,
     ("The Effectiveness of a Low-intensity, Lay Counsellor-delivered, Problem-solving Intervention for Common "
      "Mental Health Problems in School-going Adolescents in New Delhi, India: the PRIDE Study Protocol for a "
      "Randomized Controlled Trial")),
    ("NCT03630471", "acronym", lambda t: t.acronym, "PRIDE"),
    ("NCT03630471", "overall status", lambda t: t.overall_status, "COMPLETED"),
    ("NCT03630471", "phases", lambda t: t.phases, ("NA",)),
    ("NCT03630471", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (250, "ACTUAL")),
    ("NCT03630471", "sponsor", lambda t: (t.sponsor.name, t.sponsor.classifier), ("Sangath", "OTHER")),
    ("NCT03630471", "conditions", lambda t: t.conditions,
     ("Mental Health Issue (E.G., Depression, Psychosis, Personality Disorder, Substance Abuse)",)),
    ("NCT03630471", "keywords", lambda t: t.keywords, ("Adolescents",)),
    ("NCT03630471", "condition MeSH ids", lambda t: [m.id for m in t.condition_meshes], ["D019966", "D010554"]),
    ("NCT03630471", "interventions", lambda t: [(i.type, i.name) for i in t.interventions],
     [("BEHAVIORAL", "PRIDE 'Step 1' problem-solving intervention"), ("BEHAVIORAL", "Enhanced usual care")]),
    ("NCT03630471", "arms", lambda t: [(a.label, a.interventions) for a in t.arms],
     [("Control", ("Enhanced usual care",)), ("Intervention", ("PRIDE 'Step 1' problem-solving intervention",))]),
    ("NCT03630471", "outcomes by kind", kinds, (2, 9, 0)),
    ("NCT03630471", "sites", lambda t: [(s.facility, s.city, s.state, s.zip, s.country) for s in t.sites],
     [("Sangath", "New Delhi", "Delhi", "110016", "India")]),
    ("NCT03630471", "criteria split", split, (9, 8)),
    ("NCT03630471", "sub-heading kept as prefix", lambda t: t.criteria[-1].text,
     "For parent participants: Intoxicated at the point of consent or assessment"),
    ("NCT03630471", "sex, ages, healthy volunteers",
     lambda t: (t.sex, t.minimum_age, t.maximum_age, t.healthy_volunteers), ("ALL", "13 Years", "20 Years", False)),
    ("NCT03630471", "masking", lambda t: (t.masking, t.who_masked, t.masking_description.startswith(
        "The randomization list will be generated by an independent statistician.")),
     ("DOUBLE", ("INVESTIGATOR", "OUTCOMES_ASSESSOR"), True)),
    ("NCT03630471", "intervention model description", lambda t: t.intervention_model_description,
     "A two-arm, individually randomized controlled trial with equal allocation of participants between arms."),
    ("NCT03630471", "ipd sharing", lambda t: (t.ipd_sharing.sharing, t.ipd_sharing.info_types, t.ipd_sharing.url,
                                              t.ipd_sharing.time_frame),
     ("YES", ("STUDY_PROTOCOL", "SAP", "ICF"), "http://datacompass.lshtm.ac.uk/",
      "12 months after completion of trial.")),
    ("NCT03630471", "references with and without PMID", lambda t: (len(t.references),
                                                                   sum(r.pmid is None for r in t.references)), (12, 2)),
    ("NCT03630471", "detailed description keeps its paragraphs",
     lambda t: t.detailed_description.startswith("Background and rationale:\n\nThis study is part of"), True),
    ("NCT03630471", "has results", lambda t: t.has_results, False),
    # NCT05594173: observational, healthy volunteers, \& escapes, results
    ("NCT05594173", "nct id", lambda t: t.nct_id, "NCT05594173"),
    ("NCT05594173", "brief title", lambda t: t.brief_title, "Chewing and Oral Processing of Solid Food"),
    ("NCT05594173", "official title", lambda t: t.official_title,
     "Chewing and Oral Processing of Solid Food in Healthy Swallowing"),
    ("NCT05594173", "acronym", lambda t: t.acronym, "NIH_HVX6"),
    ("NCT05594173", "overall status", lambda t: t.overall_status, "COMPLETED"),
    ("NCT05594173", "no phase", lambda t: t.phases, ()),
    ("NCT05594173", "observational design", lambda t: (t.study_type, t.observational_model, t.time_perspective,
                                                       t.patient_registry),
     ("OBSERVATIONAL", "COHORT", "PROSPECTIVE", False)),
    ("NCT05594173", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (20, "ACTUAL")),
    ("NCT05594173", "sponsor", lambda t: (t.sponsor.name, t.sponsor.classifier),
     ("University Health Network, Toronto", "OTHER")),
    ("NCT05594173", "conditions", lambda t: t.conditions, ("Dysphagia",)),
    ("NCT05594173", "condition MeSH", lambda t: [(m.id, m.term) for m in t.condition_meshes],
     [("D003680", "Deglutition Disorders")]),
    ("NCT05594173", "interventions", lambda t: [(i.type, i.name, i.arms) for i in t.interventions],
     [("OTHER", "Food texture modification", ())]),
    ("NCT05594173", "no arms", lambda t: t.arms, ()),
    ("NCT05594173", "outcomes by kind", kinds, (2, 0, 0)),
    ("NCT05594173", "sites", lambda t: [(s.facility, s.city, s.state, s.zip, s.country) for s in t.sites],
     [("Toronto Rehabilitation Institute - University Health Network", "Toronto", "Ontario", "M5G 2A2", "Canada")]),
    ("NCT05594173", "criteria split", split, (1, 7)),
    ("NCT05594173", "sex, ages, healthy volunteers",
     lambda t: (t.sex, t.minimum_age, t.maximum_age, t.healthy_volunteers), ("ALL", "18 Years", "60 Years", True)),
    ("NCT05594173", "population", lambda t: (t.study_population, t.sampling_method, t.std_ages),
     ("Healthy adult volunteers with no history of swallowing difficulty", "NON_PROBABILITY_SAMPLE", ("ADULT",))),
    ("NCT05594173", "ampersand unescaped", lambda t: "(minced and moist, soft & bite-sized, regular)"
     in t.detailed_description, True),
    ("NCT05594173", "secondary id", lambda t: [(i.value, i.kind, i.type) for i in t.identifiers
                                               if i.kind == "secondary"],
     [("R01DC011020", "secondary", "NIH")]),
    ("NCT05594173", "has results", lambda t: (t.has_results, t.results_first_posted_date), (True, "2022-11-21")),
]


def _fact_id(fact) -> str:
    values = fact.values if hasattr(fact, "values") else fact
    return f"{values[0]}-{values[1]}"


@pytest.mark.parametrize(("nct", "what", "get", "expected"), FACTS, ids=[_fact_id(f) for f in FACTS])
def test_sample_fact(nct, what, get, expected):
    record = sample(nct)
    assert record.trial is not None, record.problems
    assert get(record.trial) == expected


@pytest.mark.parametrize("nct", SAMPLE_IDS)
def test_sample_reads_cleanly(nct):
    record = sample(nct)
    path = str(sample_path(nct))
    study = sample_json(nct)
    t = record.trial
    assert record.problems == ()
    assert (record.file, record.record) == (path, 1)
    assert (t.provenance.file, t.provenance.record, t.provenance.format) == (path, 1, "ctgov-json")
    assert t.provenance.source_date == study["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]["date"]
    assert not [s for s in strings(t) if "\\" in s], "markdown escapes left in the text"
    assert all(isinstance(s.latitude, float) and isinstance(s.longitude, float) for s in t.sites)
    assert {i.name for i in t.interventions} >= {n for a in t.arms for n in a.interventions}
    assert all(i.components == () for i in t.interventions)


@pytest.mark.parametrize("nct", SAMPLE_IDS)
def test_no_protocol_field_unmapped_unless_ignored(nct):
    record = sample(nct)
    study = sample_json(nct)
    assert [p for p in record.unmapped if p.startswith(("protocolSection.", "resultsSection."))] == []
    assert (record.trial.results is not None) == ("resultsSection" in study)
    # what the reader leaves out of the Trial is reported, not dropped in silence
    for section in ("annotationSection", "documentSection"):
        assert any(p.startswith(section + ".") for p in record.unmapped) == (section in study), section


def test_every_protocol_field_of_the_api_is_carried_or_ignored():
    """The synthetic full-study.json holds every protocolSection field of the API description."""
    record = read_one(DATA / "full-study.json")
    t = record.trial
    assert record.problems == () and record.unmapped == ()
    assert [(i.value, i.kind, i.type, i.assigner) for i in t.identifiers] == [
        ("NCT09999901", "nct", None, None), ("NCT09999900", "secondary", "NCT alias", None),
        ("FS-001", "org", "NIH", "Fhirstudy Test Organization"),
        ("2020-000001-11", "secondary", "EUDRACT_NUMBER", "EudraCT"), ("R01CA000001", "secondary", "NIH", None)]
    assert (t.brief_title, t.official_title) == ("Palbociclib & Letrozole in Early Breast Cancer",
                                                 "A Synthetic Record Holding Every Protocol Field [Not a Real Study]")
    assert (t.overall_status, t.last_known_status, t.why_stopped) == ("UNKNOWN", "RECRUITING", "Funding ended")
    assert (t.start_date, t.primary_completion_date, t.completion_date) == (
        DateStruct("2021-02", "ACTUAL"), DateStruct("2025-12-31", "ESTIMATED"), DateStruct("2026", None))
    assert t.provenance.source_date == "2024-03-20"
    assert [(p.name, p.role, p.title, p.affiliation) for p in t.officials] == [
        ("Jane Roe", "sponsor-investigator", "Professor of Oncology", "Example University Hospital"),
        ("Jane Roe, MD", "primary-investigator", None, "Example University Hospital"),
        ("John Doe", "study-chair", None, "Example Cooperative Group"),
        ("Mary Major", "study-director", None, None),
        ("Richard Miles", "sub-investigator", None, None)]
    assert [(p.name, p.role, p.phone, p.email) for p in t.contacts] == [
        ("Study Coordinator", "recruitment-contact", "+1 555 0100 ext. 12", "coordinator@example.org")]
    assert [(p.name, p.role) for p in t.sites[0].contacts] == [
        ("Site Nurse", "recruitment-contact"), ("Site Investigator", "primary-investigator")]
    assert (t.sites[0].status, t.sites[0].city, t.sites[1].facility) == ("RECRUITING", "Montréal", None)
    assert len(t.oversight) == 7
    assert (t.expanded_access_types, t.target_duration, t.bio_spec_retention, t.bio_spec_description) == (
        ("individual", "treatment"), "5 Years", "SAMPLES_WITH_DNA", "Blood and tumour tissue")
    assert (t.gender_based, t.gender_description, t.maximum_age) == (
        True, "Participants who self-identify as women.", "75 Years")
    assert [(a.label, a.interventions) for a in t.arms] == [
        ("Palbociclib + letrozole", ("Palbociclib", "Letrozole", "Vitamin D")),
        ("Letrozole alone", ("Letrozole",)), ("Exercise", ("Exercise: walking programme",))]
    assert [(r.type, r.pmid, r.url, r.label) for r in t.references] == [
        ("BACKGROUND", "12345678", None, None), ("retraction", "23456789", None, "Retraction of PMID 12345678"),
        ("RESULT", None, None, None), ("link", None, "https://example.org/fs-pal", "Study website"),
        ("ipd", None, "https://example.org/ipd", "Individual Participant Data Set (ID IPD-1): On request")]
    assert [(m.id, m.term) for m in t.intervention_meshes] == [("D000077289", "Letrozole")]
    assert [(o.kind, o.name) for o in t.outcomes] == [
        ("primary", "Invasive disease-free survival"), ("secondary", "Overall survival"),
        ("secondary", "Adverse events"), ("other", "Ki-67 change")]
    assert t.outcomes[2].description == "CTCAE >= grade 3"


def test_ignore_list_gives_every_field_a_reason():
    table = load_mapping("ctgov-ignored-fields.json")["ctgov-json"]
    assert table, "the ctgov-json ignore list is empty"
    for path, reason in table.items():
        assert isinstance(reason, str) and len(reason) > 20, path
        assert path.split(".")[0] in {"protocolSection", "derivedSection"}, path
    # results are carried (Trial.results), none ignored
    assert not [p for p in table if p.startswith("resultsSection")]
    # what the Trial does carry is not on the list
    assert not [p for p in table if p.endswith(".meshes") or ".meshes." in p]


def test_json_reader_is_tried_first():
    assert FORMATS[0] == "ctgov-json"


DETECT = [
    ('{"protocolSection": {"identificationModule": {', True),
    ('\n  {\n    "protocolSection" : {', True),
    ('[{"protocolSection": {', True),
    ('[\n  {\n    "protocolSection": {', True),
    ('{"hasResults": false, "protocolSection": {', True),
    ('{"studies": [{"protocolSection": {', True),
    ('{"totalCount": 2, "studies": [', True),
    ('{"nextPageToken": "x", "studies": []}', True),
    ('[{"studies": []}]', False),
    ('{"resourceType": "ResearchStudy", "id": "x"}', False),
    ("[1, 2, 3]", False),
    ("[]", False),
    ("NCT Number,Study Title,Study URL\n", False),
    ('<?xml version="1.0"?>\n<clinical_study>', False),
    ("A title line\n• a bullet\n", False),
]


@pytest.mark.parametrize(("head", "expected"), DETECT)
def test_detect(head, expected):
    assert ctgov_json.detect(head) is expected


# The four containers of the same studies, each written plain, gzipped and zipped.
def _write_single(folder: Path, studies: list[dict]) -> list[Path]:
    paths = []
    for n, study in enumerate(studies):
        path = folder / f"{n}.json"
        path.write_text(json.dumps(study, indent=2, ensure_ascii=False), encoding="utf-8")
        paths.append(path)
    return paths


def _write_page(folder: Path, studies: list[dict]) -> list[Path]:
    path = folder / "page.json"
    path.write_text(json.dumps({"totalCount": len(studies), "studies": studies, "nextPageToken": "NF0g5JKDlPAt"}),
                    encoding="utf-8")
    return [path]


def _write_array(folder: Path, studies: list[dict]) -> list[Path]:
    path = folder / "ctg-studies.json"
    path.write_text(json.dumps(studies, indent=2, ensure_ascii=False), encoding="utf-8")
    return [path]


def _write_ndjson(folder: Path, studies: list[dict]) -> list[Path]:
    path = folder / "studies.ndjson"
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in studies), encoding="utf-8")
    return [path]


CONTAINERS = {"single": _write_single, "page": _write_page, "array": _write_array, "ndjson": _write_ndjson}


def _compress(paths: list[Path], how: str) -> list[Path]:
    if how == "plain":
        return paths
    out = []
    for path in paths:
        if how == "gz":
            target = path.with_name(path.name + ".gz")
            target.write_bytes(gzip.compress(path.read_bytes()))
        else:
            target = path.with_name(path.name + ".zip")
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(path, f"export/{path.name}")
        path.unlink()
        out.append(target)
    return out


def _comparable(trial: Trial) -> Trial:
    """The trial without the file and record number of its provenance (format and source date stay)."""
    return dataclasses.replace(trial, provenance=dataclasses.replace(trial.provenance, file="", record=0))


def _expected_trials() -> list[Trial]:
    return [_comparable(sample(nct).trial) for nct in SAMPLE_IDS]


@pytest.mark.parametrize("how", ["plain", "gz", "zip"])
@pytest.mark.parametrize("container", list(CONTAINERS))
def test_containers_give_the_same_trials(tmp_path, container, how):
    studies = [sample_json(nct) for nct in SAMPLE_IDS]
    paths = _compress(CONTAINERS[container](tmp_path, studies), how)
    records = list(iter_records(paths))
    assert [r.problems for r in records] == [()] * len(studies)
    assert [_comparable(r.trial) for r in records] == _expected_trials()
    if container == "single":
        assert [r.record for r in records] == [1] * len(studies)
    else:
        assert [r.record for r in records] == list(range(1, len(studies) + 1))
        assert {r.file for r in records} == {str(paths[0]) + ("!export/" + paths[0].stem if how == "zip" else "")}


def test_zip_member_is_named(tmp_path):
    (path,) = _compress(_write_ndjson(tmp_path, [sample_json("NCT05594173")]), "zip")
    record = read_one(path)
    assert record.file == f"{path}!export/studies.ndjson"
    assert record.trial.provenance.file == record.file


def _minimal(nct: str = "NCT09999903") -> dict:
    study = json.loads((DATA / "minimal.json").read_text(encoding="utf-8"))
    study["protocolSection"]["identificationModule"]["nctId"] = nct
    return study


def test_minimal_study(tmp_path):
    record = read_one(DATA / "minimal.json")
    t = record.trial
    assert record.problems == () and record.unmapped == ()
    assert (t.nct_id, t.overall_status, t.sex, t.enrollment, split(t)) == ("NCT09999903", "RECRUITING", "FEMALE", 30,
                                                                           (1, 1))


def test_utf8_bom_and_compact_single_study(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_minimal()).encode())  # one line, no newline at the end
    record = read_one(path)
    assert record.trial.nct_id == "NCT09999903" and record.problems == ()


def test_streaming_keeps_memory_bounded(tmp_path):
    """5,000 studies in a gzipped array: the reader holds one study (and ijson one 64 KB buffer of
    them) at a time, never the file. Measured up to the schema check (``iter_raw``), and with the
    minimal study cut to five modules, so the test takes seconds, not minutes, under tracemalloc."""
    count = 5_000
    minimal = _minimal()
    keep = ("identificationModule", "statusModule", "sponsorCollaboratorsModule", "conditionsModule", "designModule")
    study = {"protocolSection": {k: v for k, v in minimal["protocolSection"].items() if k in keep},
             "derivedSection": minimal["derivedSection"], "hasResults": False}
    ident = study["protocolSection"]["identificationModule"]
    path = tmp_path / "ctg-studies.json.gz"
    size = 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(b"[\n")
        for n in range(count):
            ident["nctId"] = f"NCT{n:08d}"
            chunk = (b",\n" if n else b"") + json.dumps(study).encode()
            size += len(chunk)
            out.write(chunk)
        out.write(b"\n]\n")
    list(iter_raw([DATA / "minimal.json"]))  # load the tables read once per process before measuring
    tracemalloc.start()
    try:
        seen = 0
        for item in iter_raw([path]):
            assert item.data is not None, item.problems
            seen += 1
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert (last.record, last.data["identifiers"][0]["value"]) == (count, f"NCT{count - 1:08d}")
    assert size > 5_000_000
    # The same ~0.8 MB peak as with 20,000 studies (21 MB): it is the reader's buffers, not the file.
    assert peak < 2_000_000, f"peak {peak} bytes of Python memory for {size} bytes of JSON"


# (file in tests/data/ctgov_json, which records convert, the error record, words in its reason)
BROKEN_FILES = [
    ("array-truncated.json", [True, True, False], 3,
     ["invalid JSON after study 2 of the JSON array", "premature EOF", "the rest of the file cannot be read"]),
    ("page-truncated.json", [True, False], 2,
     ["invalid JSON after study 1 of the API page", "the rest of the file cannot be read"]),
    ("ndjson-bad-line.ndjson", [True, False, True], 2, ["line 2: not valid JSON", "the next lines are read on"]),
]


@pytest.mark.parametrize(("name", "ok", "bad", "words"), BROKEN_FILES)
def test_broken_json_is_one_error_record(name, ok, bad, words):
    path = str(DATA / name)
    records = list(iter_records([path]))
    assert [r.ok for r in records] == ok
    assert [r.record for r in records] == list(range(1, len(ok) + 1))
    (problem,) = records[bad - 1].problems
    assert (problem.file, problem.record, problem.severity) == (path, bad, "error")
    assert all(w in problem.reason for w in words), problem.reason
    assert [r.trial.nct_id for r in records if r.ok] == [f"NCT0999991{n}" for n, good in enumerate(ok, 1) if good]


def _set(path: str, value):
    def mutate(study: dict) -> dict:
        *parents, key = path.split(".")
        node = study
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value
        return study
    return mutate


_DELETE = object()
P = "protocolSection."

# (case, how the 2nd study is broken, the field named, words in the reason)
BAD_STUDIES = [
    ("no nctId", _set(P + "identificationModule.nctId", _DELETE), "identifiers",
     "no nctId (protocolSection.identificationModule.nctId)"),
    ("unknown overallStatus", _set(P + "statusModule.overallStatus", "BOGUS"), "overall_status", "Must be one of"),
    ("count is text", _set(P + "designModule.enrollmentInfo.count", "abc"), "enrollment",
     "protocolSection.designModule.enrollmentInfo.count: 'abc' is text, expected a whole number"),
    ("count is negative", _set(P + "designModule.enrollmentInfo.count", -3), "enrollment",
     "greater than or equal to 0"),
    ("conditions not a list", _set(P + "conditionsModule.conditions", "Asthma"), "conditions",
     "protocolSection.conditionsModule.conditions: 'Asthma' is text, expected an array of text"),
    ("healthyVolunteers is text", _set(P + "eligibilityModule.healthyVolunteers", "yes"), "healthy_volunteers",
     "expected true or false"),
    ("latitude is text", _set(P + "contactsLocationsModule.locations.0.geoPoint.lat", "north"), "sites",
     "protocolSection.contactsLocationsModule.locations.geoPoint.lat: 'north' is text, expected a number"),
    ("latitude out of range", _set(P + "contactsLocationsModule.locations.0.geoPoint.lat", 123.4), "sites.0.latitude",
     "less than or equal to 90"),
    ("unknown phase", _set(P + "designModule.phases", ["PHASE9"]), "phases.0", "Must be one of"),
    ("impossible date", _set(P + "statusModule.startDateStruct.date", "2023-13-01"), "start_date.date",
     "not a date"),
    ("unknown intervention type", _set(P + "armsInterventionsModule.interventions.0.type", "MAGIC"),
     "interventions.0.type", "Must be one of"),
    ("intervention without name", _set(P + "armsInterventionsModule.interventions.0.name", _DELETE),
     "interventions", "intervention 1 (protocolSection.armsInterventionsModule.interventions) has no name"),
    ("locations not a list", _set(P + "contactsLocationsModule.locations", {"city": "Lyon"}), "sites",
     "expected an array"),
    ("module is a list", _set(P + "designModule", []), None,
     "protocolSection.designModule: [] is an array, expected an object"),
    ("no brief title", _set(P + "identificationModule.briefTitle", _DELETE), "brief_title", "no briefTitle"),
    ("no protocolSection", _set("protocolSection", _DELETE), None, "no protocolSection"),
    ("study is not an object", lambda study: 42, None, "a study must be a JSON object, not a number"),
]


@pytest.mark.parametrize("container", ["array", "ndjson", "page"])
@pytest.mark.parametrize(("case", "mutate", "field", "words"), BAD_STUDIES, ids=[b[0] for b in BAD_STUDIES])
def test_bad_study_is_an_error_record_and_the_others_convert(tmp_path, container, case, mutate, field, words):
    studies = [_minimal("NCT09999911"), mutate(_minimal("NCT09999912")), _minimal("NCT09999913")]
    (path,) = CONTAINERS[container](tmp_path, studies)
    records = list(iter_records([path]))
    assert [r.ok for r in records] == [True, False, True]
    assert [r.record for r in records] == [1, 2, 3]
    errors = [p for p in records[1].problems if p.severity == "error"]
    assert errors and all((p.file, p.record) == (str(path), 2) for p in errors)
    assert any(p.field == field and words in p.reason for p in errors), records[1].problems


def test_bad_single_study_file(tmp_path):
    path = tmp_path / "NCT09999912.json"
    path.write_text(json.dumps(_set(P + "statusModule.overallStatus", "BOGUS")(_minimal()), indent=2), encoding="utf-8")
    record = read_one(path)
    assert record.trial is None
    assert [(p.field, p.file, p.record) for p in record.problems] == [("overall_status", str(path), 1)]


def test_truncated_single_study(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(_minimal(), indent=2)[:900], encoding="utf-8")
    record = read_one(path)
    assert record.trial is None
    assert record.problems[0].reason.startswith("not valid JSON") and record.problems[0].file == str(path)


def test_ndjson_bad_first_line_does_not_stop_the_rest(tmp_path):
    path = tmp_path / "studies.ndjson"
    lines = [json.dumps(_minimal(f"NCT0999991{n}")) for n in (1, 2, 3)]
    path.write_text(lines[0][:200] + "\n\n" + lines[1] + "\n" + lines[2] + "\n", encoding="utf-8")
    records = list(iter_records([path]))
    assert [r.ok for r in records] == [False, True, True]
    assert "line 1: not valid JSON" in records[0].problems[0].reason
    assert [r.trial.nct_id for r in records[1:]] == ["NCT09999912", "NCT09999913"]


def test_truncated_gzip(tmp_path):
    path = tmp_path / "studies.json.gz"
    data = gzip.compress(json.dumps([_minimal(f"NCT{n:08d}") for n in range(200)]).encode())
    path.write_bytes(data[: len(data) // 2])
    records = list(iter_records([path]))
    assert all(r.ok for r in records[:-1]) and len(records) > 1
    assert records[-1].trial is None
    assert f"cannot read past record {len(records) - 1}" in records[-1].problems[0].reason


def test_empty_page_is_reported(tmp_path):
    path = tmp_path / "page.json"
    path.write_text('{"studies": [], "nextPageToken": null}', encoding="utf-8")
    record = read_one(path)
    assert record.trial is None and "the API page holds no study" in record.problems[0].reason


def test_forced_format_on_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('[1, 2]', encoding="utf-8")
    assert read_one(path).trial is None  # not detected
    record = read_one(path, format="ctgov-json")
    assert record.trial is None and "a study must be a JSON object, not an array" in record.problems[0].reason


def test_arm_naming_an_unknown_intervention_is_a_warning(tmp_path):
    study = _set(P + "armsInterventionsModule.armGroups.0.interventionNames", ["Drug: Letrozole", "Drug: Anastrozole"])(
        _minimal())
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study), encoding="utf-8")
    record = read_one(path)
    assert record.trial.arms[0].interventions == ("Letrozole", "Anastrozole")
    assert [(p.field, p.severity) for p in record.problems] == [("arms", "warning")]
    assert "'Anastrozole', which is not among the study's interventions" in record.problems[0].reason


def test_old_style_responsible_party(tmp_path):
    study = _set(P + "sponsorCollaboratorsModule.responsibleParty",
                 {"oldNameTitle": "Dr. A. Smith, Medical Director", "oldOrganization": "Example Pharma"})(_minimal())
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study), encoding="utf-8")
    record = read_one(path)
    assert record.unmapped == ()
    assert [(p.name, p.role, p.affiliation) for p in record.trial.officials] == [
        ("Dr. A. Smith, Medical Director", "responsible-party", "Example Pharma")]


def test_unknown_field_is_reported_unmapped(tmp_path):
    study = _set(P + "designModule.newFieldFromTheFuture", {"x": 1})(_minimal())
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study), encoding="utf-8")
    record = read_one(path)
    assert record.ok and record.unmapped == ("protocolSection.designModule.newFieldFromTheFuture.x",)


def test_reading_is_pure():
    first = list(iter_records([DATA / "full-study.json", DATA / "array-truncated.json"]))
    again = list(iter_records([DATA / "full-study.json", DATA / "array-truncated.json"]))
    assert first == again


INTERVENTION_NAMES = [
    ("Drug: Palbociclib", set(), "Palbociclib"),
    ("Dietary Supplement: Vitamin D", set(), "Vitamin D"),
    ("Combination Product: Device + drug", set(), "Device + drug"),
    ("Behavioral: Exercise: walking programme", set(), "Exercise: walking programme"),
    ("Drug: X", {"Drug: X"}, "Drug: X"),
    ("Note: something", set(), "Note: something"),
    ("Palbociclib", set(), "Palbociclib"),
]


@pytest.mark.parametrize(("entry", "names", "expected"), INTERVENTION_NAMES)
def test_intervention_name(entry, names, expected):
    assert _ctgov.intervention_name(entry, names) == expected


@pytest.mark.parametrize(("number", "ext", "expected"), [
    ("555-0100", "12", "555-0100 ext. 12"), ("555-0100", None, "555-0100"), (None, "12", "ext. 12"),
    (None, None, None)])
def test_phone(number, ext, expected):
    assert _ctgov.phone(number, ext) == expected


@pytest.mark.parametrize(("value", "expected", "well_formed"), [
    ("18 Years", "18 Years", True), ("6 Months", "6 Months", True), ("N/A", None, None), ("", None, None),
    ("eighteen", "eighteen", False)])
def test_age(value, expected, well_formed):
    assert _ctgov.age(value) == expected
    if expected is not None:
        assert _ctgov.is_age(expected) is well_formed


def test_copy_of_study_is_untouched():
    """convert() reads the study, it does not change it (a caller may hold on to it)."""
    study = _minimal()
    before = copy.deepcopy(study)
    data, problems, unmapped = ctgov_json.convert(study)
    assert study == before and data["brief_title"] and problems == [] and unmapped == []
