"""Tests of the ClinicalTrials.gov website CSV export reader (fhirstudy.sources.ctgov_csv): the facts
of each row of the real sample export, broken rows, field accounting and streaming of a large file."""
from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from fhirstudy.sources import Record, ctgov_csv, iter_records

SHARED = Path(os.environ.get("FHIRSTUDY_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
SAMPLE = SHARED / "ctgov-samples" / "ctgov-export-mixed.csv"
DATA = Path(__file__).resolve().parent / "data" / "ctgov_csv"
ROWS = 4_000  # enough to show the peak does not grow with the file; bench/convert.py runs 20,000+


def sample_path() -> Path:
    if not SAMPLE.exists():
        pytest.skip(f"registry sample {SAMPLE} not found (set FHIRSTUDY_SHARED_DIR to the folder holding "
                    "ctgov-samples/)")
    return SAMPLE


_CACHE: dict[str, list[Record]] = {}


def sample_records() -> list[Record]:
    if "sample" not in _CACHE:
        _CACHE["sample"] = list(iter_records([sample_path()]))
    return _CACHE["sample"]


def row(nct: str):
    (record,) = [r for r in sample_records() if r.trial and r.trial.nct_id == nct]
    return record.trial


def interventions(t):
    return [(i.type, i.name) for i in t.interventions]


def site(s):
    return (s.facility, s.city, s.state, s.zip, s.country)


def outcome_counts(t):
    return tuple(len(t.outcomes_of(k)) for k in ("primary", "secondary", "other"))


# (NCT number, what, getter, expected), read by hand from the sample export.
FACTS = [
    # row 1: phase 2, results posted, two documents
    ("NCT04328077", "title", lambda t: t.brief_title, "LIFT Study: A Safety, Tolerability, Efficacy, and "
     "Pharmacokinetics Study of TERN-101 in Subjects With Non-Cirrhotic Non-Alcoholic Steatohepatitis (NASH)"),
    ("NCT04328077", "status", lambda t: t.overall_status, "COMPLETED"),
    ("NCT04328077", "phases", lambda t: t.phases, ("PHASE2",)),
    ("NCT04328077", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (101, None)),
    ("NCT04328077", "sponsor", lambda t: (t.sponsor.name, t.sponsor.role, t.sponsor.classifier),
     ("Terns, Inc.", "lead-sponsor", "INDUSTRY")),
    ("NCT04328077", "conditions", lambda t: t.conditions, ("NASH - Nonalcoholic Steatohepatitis",)),
    ("NCT04328077", "interventions", interventions, [("DRUG", "TERN-101"), ("OTHER", "Placebo")]),
    ("NCT04328077", "outcomes by kind", outcome_counts, (1, 5, 0)),
    ("NCT04328077", "primary outcome", lambda t: (t.outcomes[0].name, t.outcomes[0].time_frame),
     ("Number of Participants With Adverse Events for TERN-101 Versus Placebo", "16 weeks")),
    ("NCT04328077", "sites", lambda t: len(t.sites), 31),
    ("NCT04328077", "first site", lambda t: site(t.sites[0]),
     ("Terns Clinical Study Site 1017", "Chandler", "Arizona", "85224", "United States")),
    ("NCT04328077", "sex", lambda t: t.sex, "ALL"),
    ("NCT04328077", "no minimum age in the export", lambda t: t.minimum_age, None),
    ("NCT04328077", "std ages", lambda t: t.std_ages, ("ADULT", "OLDER_ADULT")),
    ("NCT04328077", "design", lambda t: (t.study_type, t.allocation, t.intervention_model, t.masking,
                                         t.who_masked, t.primary_purpose),
     ("INTERVENTIONAL", "RANDOMIZED", "PARALLEL", "TRIPLE", ("PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR"),
      "TREATMENT")),
    ("NCT04328077", "org id", lambda t: [(i.kind, i.value) for i in t.identifiers],
     [("nct", "NCT04328077"), ("org", "TERN101-2001")]),
    ("NCT04328077", "dates", lambda t: (t.start_date.date, t.primary_completion_date.date, t.completion_date.date,
                                        t.first_posted_date, t.results_first_posted_date, t.last_update_date),
     ("2020-06-18", "2021-05-19", "2021-05-19", "2020-03-31", "2022-06-14", "2022-08-09")),
    ("NCT04328077", "has results", lambda t: t.has_results, True),
    ("NCT04328077", "documents", lambda t: [(r.label, r.url.rsplit("/", 1)[-1]) for r in t.references],
     [("Study Protocol", "Prot_000.pdf"), ("Statistical Analysis Plan", "SAP_001.pdf")]),
    # row 2: phase 1, two primary outcomes, no secondary
    ("NCT04897594", "status", lambda t: t.overall_status, "COMPLETED"),
    ("NCT04897594", "phases", lambda t: t.phases, ("PHASE1",)),
    ("NCT04897594", "enrollment", lambda t: t.enrollment, 52),
    ("NCT04897594", "interventions", interventions, [("DRUG", "TERN-201"), ("OTHER", "Placebo")]),
    ("NCT04897594", "outcomes by kind", outcome_counts, (2, 0, 0)),
    ("NCT04897594", "first outcome split", lambda t: (t.outcomes[0].name, t.outcomes[0].time_frame),
     ("Patient Incidence of Adverse Events for TERN-201 Versus Placebo", "Day 1 through Week 16")),
    ("NCT04897594", "sites", lambda t: len(t.sites), 11),
    ("NCT04897594", "model", lambda t: t.intervention_model, "SEQUENTIAL"),
    # row 3: observational registry, truncated design, no interventions, acronym
    ("NCT01361386", "title", lambda t: t.brief_title, "Long-tErm Follow-uP of antithrombotIc Management Patterns "
     "In Acute CORonary Syndrome Patients in Asia"),
    ("NCT01361386", "acronym", lambda t: t.acronym, "EPICOR ASIA"),
    ("NCT01361386", "study type", lambda t: t.study_type, "OBSERVATIONAL"),
    ("NCT01361386", "no phase", lambda t: t.phases, ()),
    ("NCT01361386", "truncated design left empty", lambda t: (t.observational_model, t.time_perspective),
     (None, None)),
    ("NCT01361386", "enrollment", lambda t: t.enrollment, 13011),
    ("NCT01361386", "no interventions", interventions, []),
    ("NCT01361386", "sponsor", lambda t: t.sponsor.name, "AstraZeneca"),
    ("NCT01361386", "conditions", lambda t: t.conditions, ("Acute Coronary Syndrome",)),
    ("NCT01361386", "outcomes by kind", outcome_counts, (1, 3, 0)),
    ("NCT01361386", "sites", lambda t: len(t.sites), 109),
    ("NCT01361386", "site without zip", lambda t: site(t.sites[0]), ("Research Site", "Hefei", "Anhui", None, "China")),
    ("NCT01361386", "month dates", lambda t: (t.start_date.date, t.completion_date.date), ("2011-06", "2014-05")),
    ("NCT01361386", "has results", lambda t: t.has_results, False),
    # row 4: terminated device study
    ("NCT01398852", "status", lambda t: t.overall_status, "TERMINATED"),
    ("NCT01398852", "phases", lambda t: t.phases, ("PHASE3",)),
    ("NCT01398852", "interventions", interventions,
     [("DRUG", "Riboflavin"), ("DEVICE", "VEGA UV-A Illumination System")]),
    ("NCT01398852", "outcomes by kind", outcome_counts, (1, 0, 0)),
    ("NCT01398852", "sites", lambda t: len(t.sites), 13),
    ("NCT01398852", "allocation NA", lambda t: (t.allocation, t.intervention_model, t.masking),
     ("NA", "SINGLE_GROUP", "NONE")),
    ("NCT01398852", "std ages", lambda t: t.std_ages, ("CHILD", "ADULT", "OLDER_ADULT")),
    # row 5: three interventions
    ("NCT05415722", "interventions", interventions,
     [("DRUG", "TERN-501"), ("DRUG", "TERN-101"), ("OTHER", "Placebo")]),
    ("NCT05415722", "outcomes by kind", outcome_counts, (1, 4, 0)),
    ("NCT05415722", "enrollment", lambda t: t.enrollment, 162),
    ("NCT05415722", "sites", lambda t: len(t.sites), 35),
    # row 6: NA phase, OTHER_GOV funder, collaborator, non-ASCII, multi-line outcome description
    ("NCT01613339", "phases", lambda t: t.phases, ("NA",)),
    ("NCT01613339", "sponsor", lambda t: (t.sponsor.name, t.sponsor.classifier), ("Örebro County Council", "OTHER_GOV")),
    ("NCT01613339", "collaborators", lambda t: [c.name for c in t.collaborators], ["Norrbacka-Eugenia Foundation"]),
    ("NCT01613339", "interventions", interventions, [("OTHER", "Balance training using Body awareness therapy")]),
    ("NCT01613339", "outcomes by kind", outcome_counts, (1, 2, 0)),
    ("NCT01613339", "primary outcome", lambda t: (t.outcomes[0].name, t.outcomes[0].time_frame),
     ("Bergs Balance Scale", "Change from baseline in Bergs balance scale at 9 weeks")),
    ("NCT01613339", "line breaks kept in the description", lambda t: "\n\nThe Berg balance scale" in
     t.outcomes[0].description, True),
    ("NCT01613339", "one site", lambda t: [site(s) for s in t.sites],
     [("Primary Health Care Centres", "Örebro", None, None, "Sweden")]),
    ("NCT01613339", "masking", lambda t: (t.masking, t.who_masked), ("SINGLE", ("OUTCOMES_ASSESSOR",))),
    # row 7: not yet recruiting, male children, no locations
    ("NCT06668220", "status", lambda t: t.overall_status, "NOT_YET_RECRUITING"),
    ("NCT06668220", "phases", lambda t: t.phases, ("PHASE1",)),
    ("NCT06668220", "sex", lambda t: t.sex, "MALE"),
    ("NCT06668220", "std ages", lambda t: t.std_ages, ("CHILD",)),
    ("NCT06668220", "interventions", interventions, [("DRUG", "Dexmedetomidine"), ("DRUG", "Bupivacain")]),
    ("NCT06668220", "outcomes by kind", outcome_counts, (1, 2, 0)),
    ("NCT06668220", "no sites", lambda t: t.sites, ()),
    ("NCT06668220", "org id with spaces", lambda t: t.identifiers[1].value, "caudal block for pediatrics"),
    # row 8: unknown status (the export has no last known status), five conditions
    ("NCT04989114", "status", lambda t: (t.overall_status, t.last_known_status), ("UNKNOWN", None)),
    ("NCT04989114", "conditions", lambda t: t.conditions, (
        "Bronchiolitis Acute Viral", "Bronchiolitis", "Bronchiolitis Acute", "Bronchiolitis, Viral",
        "Nasal Continuous Positive Airway Pressure")),
    ("NCT04989114", "interventions", interventions, [("DEVICE", "nasal continuous positive airway pressure")]),
    ("NCT04989114", "sponsor and collaborator", lambda t: (t.sponsor.name, [c.name for c in t.collaborators]),
     ("ameer asadullah gull", ["King Edward Medical University"])),
    ("NCT04989114", "one site", lambda t: [site(s) for s in t.sites],
     [("Mayo Hospital", "Lahore", "Punjab", "54000", "Pakistan")]),
    # row 9: female, two other ids
    ("NCT00598403", "sex", lambda t: t.sex, "FEMALE"),
    ("NCT00598403", "ids", lambda t: [(i.kind, i.value) for i in t.identifiers],
     [("nct", "NCT00598403"), ("org", "TM-ME1207/311"), ("secondary", "2007-001486-15")]),
    ("NCT00598403", "interventions", interventions, [("DRUG", "cefditoren pivoxil"), ("DRUG", "Ciprofloxacin")]),
    ("NCT00598403", "outcomes by kind", outcome_counts, (1, 1, 0)),
    ("NCT00598403", "sites", lambda t: len(t.sites), 30),
    ("NCT00598403", "site with zip, no state", lambda t: site(t.sites[2]),
     ("CS Rincón de Loix", "Benidorm", "Alicante", "03500", "Spain")),
    ("NCT00598403", "site without state or zip", lambda t: site(t.sites[0]),
     ("General Hospital of Chest Disease of Athens", "Athens", None, None, "Greece")),
    # row 10: phase 1/2, recruiting, eight combination products
    ("NCT06702449", "status", lambda t: t.overall_status, "RECRUITING"),
    ("NCT06702449", "phases", lambda t: t.phases, ("PHASE1", "PHASE2")),
    ("NCT06702449", "enrollment", lambda t: t.enrollment, 448),
    ("NCT06702449", "sponsor", lambda t: t.sponsor.name, "GlaxoSmithKline"),
    ("NCT06702449", "interventions", lambda t: (len(t.interventions), {i.type for i in t.interventions},
                                                t.interventions[-1].name), (8, {"COMBINATION_PRODUCT"}, "Placebo")),
    ("NCT06702449", "outcomes by kind", outcome_counts, (12, 3, 0)),
    ("NCT06702449", "escapes undone", lambda t: "(>=) 38.0°C" in t.outcomes[2].description, True),
    ("NCT06702449", "sites", lambda t: len(t.sites), 32),
]


@pytest.mark.parametrize(("nct", "what", "get", "expected"), FACTS, ids=[f"{f[0]}-{f[1]}" for f in FACTS])
def test_sample_fact(nct, what, get, expected):
    assert get(row(nct)) == expected


def test_sample_reads_all_ten_rows_in_order():
    records = sample_records()
    assert [r.record for r in records] == list(range(1, 11))
    assert all(r.ok for r in records)
    assert [r.trial.nct_id for r in records] == [
        "NCT04328077", "NCT04897594", "NCT01361386", "NCT01398852", "NCT05415722", "NCT01613339",
        "NCT06668220", "NCT04989114", "NCT00598403", "NCT06702449"]
    assert {r.trial.provenance.format for r in records} == {"ctgov-csv"}


def test_sample_every_column_is_carried_or_ignored():
    assert [r.unmapped for r in sample_records()] == [()] * 10


def test_sample_truncated_design_is_reported_as_warnings():
    (record,) = [r for r in sample_records() if r.trial.nct_id == "NCT01361386"]
    assert [(p.severity, p.field) for p in record.problems] == [
        ("warning", "observational_model"), ("warning", "time_perspective")]
    assert "'p'" in record.problems[1].reason
    others = [r for r in sample_records() if r is not record]
    assert [p for r in others for p in r.problems] == []


def test_detect():
    assert ctgov_csv.detect("NCT Number,Study Title,Study Status\r\nNCT00000101,x,COMPLETED\r\n")
    assert ctgov_csv.detect("\ufeff\"NCT Number\",\"Conditions\"\n")
    assert not ctgov_csv.detect("NCT Number\nNCT00000101\n")  # needs another export column
    assert not ctgov_csv.detect("Study Title,Conditions\nx,y\n")
    assert not ctgov_csv.detect("The NCT Number of the Study Title is NCT00000101.\n")


# (file, [(record, ok, field of the error)]): bad rows are errors naming the field; the others convert.
BAD = [
    ("broken-quote.csv", [(1, True, None), (2, False, "Study Title"), (3, True, None)]),
    ("too-many-fields.csv", [(1, False, "Study Status"), (2, True, None)]),
    ("unknown-status.csv", [(1, False, "overall_status"), (2, True, None)]),
]


@pytest.mark.parametrize(("name", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_rows_are_reported_and_the_rest_convert(name, expected):
    records = list(iter_records([DATA / name]))
    got = [(r.record, r.ok, None if r.ok else r.problems[0].field) for r in records]
    assert got == expected
    for r in records:
        assert r.problems == () if r.ok else all(p.file == str(DATA / name) and p.record == r.record
                                                 for p in r.problems)


def test_broken_quote_names_the_lines_and_the_swallowed_row():
    records = list(iter_records([DATA / "broken-quote.csv"]))
    (problem,) = records[1].problems
    assert "lines 3-4" in problem.reason and "NCT00000103" in problem.reason
    assert records[2].trial.nct_id == "NCT00000104"
    assert records[2].trial.conditions == ("Asthma", "COPD")
    assert records[2].trial.phases == ("PHASE1", "PHASE2")


def test_unknown_status_names_the_column_and_value():
    records = list(iter_records([DATA / "unknown-status.csv"]))
    assert "'Study Status'" in records[0].problems[0].reason and "'BOGUS'" in records[0].problems[0].reason
    # display text of older exports reads too
    t = records[1].trial
    assert (t.overall_status, t.phases, t.study_type) == ("RECRUITING", ("PHASE2",), "INTERVENTIONAL")


def test_unknown_column_is_unmapped(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("NCT Number,Study Title,Favourite Colour\r\nNCT00000801,A title,blue\r\n", encoding="utf-8")
    (record,) = iter_records([path])
    assert record.ok and record.unmapped == ("Favourite Colour",)


def test_header_only_is_reported(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("NCT Number,Study Title\r\n", encoding="utf-8")
    (record,) = iter_records([path])
    assert not record.ok and "no rows" in record.problems[0].reason


def test_large_export_streams_in_bounded_memory(tmp_path):
    """4,000 rows (the sample's 10 rows 400 times) read with a memory peak far below the file size."""
    header, rows = sample_path().read_bytes().split(b"\r\n", 1)
    path = tmp_path / "large.csv"
    with open(path, "wb") as out:
        out.write(header + b"\r\n")
        out.writelines(rows for _ in range(ROWS // 10))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = 0
        with open(path, "rb") as stream:
            for data, problems, unmapped in ctgov_csv.read_stream(stream, str(path)):
                count += data is not None and data["identifiers"][0]["kind"] == "nct"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == ROWS
    assert peak < size / 20, f"peak {peak} bytes for a {size}-byte file"


def test_a_cell_longer_than_the_csv_default_reads_and_the_process_limit_stays(tmp_path):
    """A Locations cell of 300,000 characters (a study with thousands of sites) is read; the
    process-wide ``csv.field_size_limit`` is not changed by reading it."""
    import csv
    before = csv.field_size_limit()
    sites = "|".join(f"Site {n}, City {n}, Country" for n in range(12000))
    assert len(sites) > 2 * 131072
    path = tmp_path / "long.csv"
    path.write_text(f'NCT Number,Study Title,Locations\r\nNCT00000801,A title,"{sites}"\r\n', encoding="utf-8")
    (record,) = iter_records([path])
    assert record.ok and len(record.trial.sites) == 12000
    assert csv.field_size_limit() == before
