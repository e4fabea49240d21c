"""Tests of the input readers (fhirstudy.sources): the facts each seed must keep, and bad input."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from fhirstudy.sources import FORMATS, Record, iter_records
from fhirstudy.sources._text import DERIVED_ID_SYSTEM, split_components
from fhirstudy.sources.text_registry_export import split_outcome

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data" / "sources"


def seed_path(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return str(path)


def read_one(path: str | Path, **kw) -> Record:
    records = list(iter_records([path], **kw))
    assert len(records) == 1
    return records[0]


_CACHE: dict[str, Record] = {}


def seed(prefix: str) -> Record:
    if prefix not in _CACHE:
        _CACHE[prefix] = read_one(seed_path(prefix))
    return _CACHE[prefix]


def names(t, kind):
    return [o.name for o in t.outcomes_of(kind)]


def frames(t, kind):
    return [o.time_frame for o in t.outcomes_of(kind)]


def outcome(t, kind, start):
    """The one outcome of that kind whose name starts with ``start``."""
    (o,) = [o for o in t.outcomes_of(kind) if o.name.startswith(start)]
    return o


def components(t):
    return [c for i in t.interventions for c in i.components]


def crit(t, exclude):
    return [c.text for c in t.criteria if c.exclude is exclude]


# (seed, what, getter, expected): every fact the brief asks each seed to keep.
FACTS = [
    # 000
    ("000", "format", lambda t: t.provenance.format, "text-registry-export"),
    ("000", "primary outcome names", lambda t: names(t, "primary"), ["Objective response rate (ORR)"]),
    ("000", "primary time frame", lambda t: frames(t, "primary"), ["1 year"]),
    ("000", "secondary count", lambda t: len(t.outcomes_of("secondary")), 6),
    ("000", "secondary names", lambda t: names(t, "secondary"), [
        "Clinical benefit rate (CBR)", "Progression free survival (PFS)", "Duration of response (DOR)",
        "Overall survival (OS)", "Number of Participants with Adverse Events", "The quality of life"]),
    ("000", "OS time frame", lambda t: outcome(t, "secondary", "Overall survival").time_frame, "3 years"),
    ("000", "FACT-B description", lambda t: "0 and 144" in outcome(t, "secondary", "The quality").description
     and "FACT-B" in outcome(t, "secondary", "The quality").description, True),
    ("000", "one DRUG intervention", lambda t: [i.type for i in t.interventions], ["DRUG"]),
    ("000", "components", components, ["inetetamab", "cyclophosphamide", "aromatase inhibitor"]),
    ("000", "conditions", lambda t: list(t.conditions), ["Breast Cancer"]),
    ("000", "no phase invented", lambda t: t.phases, ()),
    # 001
    ("001", "intervention names", lambda t: [i.name.lower() for i in t.interventions], [
        "inetetamab", "pyrotinib", "capecitabine", "gemcitabine", "vinorelbine", "carboplatin",
        "albumin paclitaxel", "eribulin"]),
    ("001", "intervention types", lambda t: {i.type for i in t.interventions}, {"DRUG"}),
    ("001", "primary", lambda t: [(o.name, o.time_frame) for o in t.outcomes_of("primary")],
     [("Objective Response Rate，ORR", "18 weeks after enrollment")]),
    ("001", "secondary count", lambda t: len(t.outcomes_of("secondary")), 6),
    ("001", "secondary time frames", lambda t: frames(t, "secondary"), [
        "2 years", "4 years", "24 weeks after enrollment", "up to 24 weeks after enrollment", "1 year",
        "the first week after the enrollment"]),
    ("001", "PFS", lambda t: outcome(t, "secondary", "Progression Free Survival").time_frame, "2 years"),
    ("001", "OS", lambda t: outcome(t, "secondary", "overall survival").time_frame, "4 years"),
    ("001", "CBR", lambda t: outcome(t, "secondary", "Clinical Benefit Rate").time_frame,
     "24 weeks after enrollment"),
    ("001", "AEs", lambda t: outcome(t, "secondary", "the rate of adverse events").time_frame,
     "up to 24 weeks after enrollment"),
    ("001", "QoL", lambda t: ("QoL" in outcome(t, "secondary", "Quality of life").name,
                              "FACT-B" in outcome(t, "secondary", "Quality of life").description,
                              outcome(t, "secondary", "Quality of life").time_frame), (True, True, "1 year")),
    ("001", "biomarkers", lambda t: outcome(t, "secondary", "Exploration of biomarkers").time_frame,
     "the first week after the enrollment"),
    ("001", "phase from summary", lambda t: t.phases, ("PHASE2",)),
    # 002
    ("002", "format", lambda t: t.provenance.format, "text-webpage"),
    ("002", "nct", lambda t: [(i.value, i.kind) for i in t.identifiers if i.kind == "nct"],
     [("NCT06731140", "nct")]),
    ("002", "nct_id", lambda t: t.nct_id, "NCT06731140"),
    ("002", "sponsor", lambda t: (t.sponsor.name, t.sponsor.role), ("Fudan University", "lead-sponsor")),
    ("002", "status", lambda t: t.overall_status, "RECRUITING"),
    ("002", "sex", lambda t: t.sex, "FEMALE"),
    ("002", "enrollment", lambda t: (t.enrollment, t.enrollment_type), (10, "ESTIMATED")),
    ("002", "phase", lambda t: t.phases, ("PHASE2",)),
    ("002", "study type", lambda t: t.study_type, "INTERVENTIONAL"),
    ("002", "intervention model", lambda t: t.intervention_model, "SINGLE_GROUP"),
    ("002", "site", lambda t: [(s.facility, s.city, s.state, s.country) for s in t.sites],
     [("Fudan University Shanghai Cancer Center", "Shanghai", "Shanghai", "China")]),
    ("002", "primary names", lambda t: names(t, "primary"),
     ["Objective Response Rate (ORR)", "Immune changes in peripheral blood"]),
    ("002", "primary time frames", lambda t: frames(t, "primary"),
     ["Baseline until disease progression or loss of clinical benefit, assessed up to 6 months"] * 2),
    ("002", "secondary names", lambda t: names(t, "secondary"), [
        "Biomarker analysis", "Disease Control Rate (DCR)", "Progression Free Survival (PFS)",
        "Safety and treatment-related AEs"]),
    ("002", "biomarker description", lambda t: (
        outcome(t, "secondary", "Biomarker").description.startswith("Retinoic acid related genes"),
        outcome(t, "secondary", "Biomarker").description.endswith("to predict therapy response.")),
     (True, True)),
    ("002", "biomarker time frame", lambda t: outcome(t, "secondary", "Biomarker").time_frame,
     "Baseline until disease progression or loss of clinical benefit, assessed up to 6 months"),
    ("002", "DCR time frame", lambda t: outcome(t, "secondary", "Disease Control").time_frame,
     "Baseline through end of study, assessed up to 6 months"),
    ("002", "PFS time frame", lambda t: outcome(t, "secondary", "Progression Free").time_frame,
     "Randomization to death from any cause, through the end of study, assessed up to 6 months"),
    ("002", "AEs time frame", lambda t: outcome(t, "secondary", "Safety").time_frame,
     "Randomization to death from any cause, through the end of study, assessed up to 12 months"),
    ("002", "inclusion count", lambda t: len(crit(t, False)), 7),
    ("002", "exclusion count", lambda t: len(crit(t, True)), 9),
    ("002", "unbulleted line is an inclusion criterion",
     lambda t: any(c.startswith("For women of childbearing potential") for c in crit(t, False)), True),
    ("002", "first inclusion", lambda t: crit(t, False)[0], "ECOG Performance Status of 0, 1, or 2"),
    ("002", "first exclusion", lambda t: crit(t, True)[0],
     "Symptomatic, untreated, or actively progressing CNS metastases"),
    ("002", "exclusion after inclusion", lambda t: [c.exclude for c in t.criteria], [False] * 7 + [True] * 9),
    ("002", "conditions", lambda t: list(t.conditions), ["HER2 Negative Breast Cancer"]),
    ("002", "registered intervention", lambda t: [(i.name, i.type, i.components) for i in t.interventions
                                                  if i.name == "anti-PD-1 antibody and chemotherapy"],
     [("anti-PD-1 antibody and chemotherapy", "DRUG", ("anti-pd-1 antibody", "chemotherapy"))]),
    ("002", "arm", lambda t: [(a.label, a.interventions) for a in t.arms],
     [("retinoic acid with anti-PD-1 immunotherapy", ("Retinoic Acid", "anti-PD-1 antibody and chemotherapy"))]),
    ("002", "retinoic acid from the arms table",
     lambda t: [(i.type, i.components, i.arms) for i in t.interventions if i.name == "Retinoic Acid"],
     [("DRUG", ("retinoic acid",), ("retinoic acid with anti-PD-1 immunotherapy",))]),
    ("002", "detailed description keeps every paragraph",
     lambda t: (t.detailed_description.count("\n\n"), "retinoic acid combined with immunotherapy at a clinical level"
                in t.detailed_description), (3, True)),
    ("002", "page chrome not in the trial", lambda t: "Related Research Topics" in repr(t), False),
    # 003
    ("003", "components", components, ["inetetamab", "paclitaxel", "pertuzumab"]),
    ("003", "conditions", lambda t: list(t.conditions), ["Breast Cancer Stage IV"]),
    ("003", "primary", lambda t: names(t, "primary"), ["PFS"]),
    ("003", "primary time frame", lambda t: "24 months" in frames(t, "primary")[0], True),
    ("003", "secondary", lambda t: names(t, "secondary"), [
        "Objective Response Rate (ORR)", "Clinical Benefit Rate (CBR)", "Overall Survival (OS)",
        "Number of Participants With Adverse Events (AEs)"]),
    ("003", "AE description", lambda t: "CTCAE v 5.0" in outcome(t, "secondary", "Number of").description, True),
    ("003", "markdown escape undone", lambda t: (">6 months" in outcome(t, "secondary", "Clinical").description,
                                                 "\\" in repr(t.outcomes)), (True, False)),
    ("003", "no phase invented", lambda t: t.phases, ()),
    # 004
    ("004", "format", lambda t: t.provenance.format, "text-bulleted"),
    ("004", "title", lambda t: t.brief_title.startswith(
        "A Prospective Study on Efficacy and Safety of Anlotinib"), True),
    ("004", "inclusion count", lambda t: len(crit(t, False)), 10),
    ("004", "no exclusion", lambda t: crit(t, True), []),
    ("004", "first criterion", lambda t: t.criteria[0].text, "Aged 18 years or older female;"),
    ("004", "organ function bullet whole", lambda t: [c.text for c in t.criteria if "Hemoglobin≥90g/L" in c.text
                                                      and "Cockcroft-Gault formula" in c.text
                                                      and c.text.startswith("Normal function of main organs")],
     ["Normal function of main organs and bone marrow: Hemoglobin≥90g/L; Neutrophil count (ANC)≥1.5×109/L; "
      "Platelet count (PLT)≥80×109/L; Total bilirubin≤1.5×ULN (upper limit of normal); Alanine "
      "aminotransferase (ALT) and aspartate aminotransferase (AST) ≤ 2.5×ULN (≤5×ULN if has liver "
      "metastasis); Serum creatinine (Cr) ≤1.5×ULN or creatinine clearance ≥60mL/min (Cockcroft-Gault formula);"]),
    ("004", "no bullets kept", lambda t: any("•" in c.text for c in t.criteria), False),
    ("004", "no outcomes invented", lambda t: t.outcomes, ()),
    ("004", "phase", lambda t: t.phases, ("PHASE2",)),
    ("004", "components from the title", lambda t: {"anlotinib", "fulvestrant"} <= set(components(t)), True),
    ("004", "breast cancer condition", lambda t: any("breast cancer" in c.lower() for c in t.conditions), True),
]


@pytest.mark.parametrize(("prefix", "what", "get", "expected"), FACTS,
                         ids=[f"{f[0]}-{f[1]}" for f in FACTS])
def test_seed_fact(prefix, what, get, expected):
    record = seed(prefix)
    assert record.trial is not None, record.problems
    assert get(record.trial) == expected


SEED_FORMATS = [("000", "text-registry-export"), ("001", "text-registry-export"),
                ("002", "text-webpage"), ("003", "text-registry-export"), ("004", "text-bulleted")]


@pytest.mark.parametrize(("prefix", "fmt"), SEED_FORMATS)
def test_every_seed_has_derived_identifier_and_provenance(prefix, fmt):
    record = seed(prefix)
    t = record.trial
    assert not [p for p in record.problems if p.severity == "error"]
    (derived,) = [i for i in t.identifiers if i.kind == "derived"]
    norm = " ".join(t.brief_title.lower().split())
    assert derived.system == DERIVED_ID_SYSTEM
    assert derived.value == hashlib.sha256(norm.encode()).hexdigest()[:16]
    assert (t.provenance.file, t.provenance.record, t.provenance.format) == (seed_path(prefix), 1, fmt)
    assert (record.file, record.record) == (seed_path(prefix), 1)
    assert not t.unplaced  # every line of every seed is placed
    assert all(p.file == seed_path(prefix) and p.record == 1 for p in record.problems)


@pytest.mark.parametrize("prefix", ["000", "001", "002", "003", "004"])
def test_reading_is_pure(prefix):
    again = read_one(seed_path(prefix))
    assert again == seed(prefix)


# (seed, field, words the warning must contain): what each seed infers is reported.
INFERRED = [
    ("001", "phases", "inferred from 'phase II' in brief_summary"),
    ("002", "phases", "inferred from 'Phase II'"),
    ("002", "criteria", "exclusion criteria inferred to start at line 31"),
    ("002", "criteria", "line 28: unbulleted line"),
    ("002", "interventions", "'Retinoic Acid' appears only in the arms table"),
    ("002", None, "page chrome dropped: 'Related Research Topics"),
    ("004", "phases", "inferred from 'phase II'"),
    ("004", "interventions", "'Anlotinib Combined With Fulvestrant' (type DRUG) inferred from the title"),
    ("004", "conditions", "inferred from the title"),
]


@pytest.mark.parametrize(("prefix", "field", "words"), INFERRED)
def test_inferred_is_reported_as_warning(prefix, field, words):
    hits = [p for p in seed(prefix).problems if p.field == field and words in p.reason]
    assert hits and all(p.severity == "warning" for p in hits)


def test_seeds_000_and_003_infer_nothing():
    assert seed("000").problems == ()
    assert seed("003").problems == ()


def test_formats():
    assert FORMATS == ("ctgov-json", "ctgov-csv", "ctgov-xml", "text-webpage", "text-bulleted", "text-registry-export")


# (file, field, words in the reason): bad input is an error Record, never an exception.
BAD = [
    ("empty.txt", "brief_title", "empty file"),
    ("blank.txt", "brief_title", "empty file"),
    ("registry-unknown-type.txt", "interventions", "line 4, intervention 1: unknown intervention type 'FOO'"),
    ("registry-no-time-frame.txt", "outcomes", "line 5, primary outcome 1"),
    ("registry-no-time-frame.txt", "outcomes", "has no time frame"),
    ("random.txt", "format", "no reader recognises"),
    ("not-utf8.txt", None, "not UTF-8 text"),
    ("webpage-bad-intervention.txt", "interventions", "line 5: intervention 'Potion: magic'"),
    ("does-not-exist.txt", None, "cannot read"),
]


@pytest.mark.parametrize(("name", "field", "words"), BAD)
def test_bad_input_is_an_error_record(name, field, words):
    path = str(DATA / name)
    record = read_one(path)
    assert record.trial is None
    assert (record.file, record.record) == (path, 1)
    errors = [p for p in record.problems if p.severity == "error"]
    assert any(p.field == field and words in p.reason and p.file == path and p.record == 1 for p in errors), \
        record.problems


def test_schema_error_names_the_field(tmp_path):
    path = tmp_path / "no-title.txt"
    path.write_text("\nsummary\nBreast Cancer\nDRUG: X\n", encoding="utf-8")
    record = read_one(path, format="text-registry-export")
    assert record.trial is None
    assert [(p.field, p.file, p.record) for p in record.problems] == [("brief_title", str(path), 1)]


def test_empty_fields_are_empty_not_misplaced():
    record = read_one(DATA / "registry-empty-fields.txt")
    t = record.trial
    assert record.problems == ()
    assert t.brief_summary is None
    assert t.conditions == ("Breast Cancer", "Metastatic Breast Cancer")
    assert [i.components for i in t.interventions] == [("z", "aromatase inhibitor")]
    assert t.outcomes_of("primary") == []
    assert [(o.name, o.description, o.time_frame) for o in t.outcomes_of("secondary")] == [
        ("Overall survival (OS)", None, "3 years")]
    assert t.detailed_description == "First paragraph of the description.\n\nSecond paragraph of the description."


def test_unplaced_text_is_kept_and_reported_with_its_line():
    record = read_one(DATA / "webpage-unplaced.txt")
    t = record.trial
    assert t.nct_id == "NCT01234567"
    assert t.unplaced == ("Share this page", "SOMETHING_ELSE")
    warnings = [p.reason for p in record.problems if p.field == "unplaced"]
    assert len(warnings) == 2
    assert warnings[0].startswith("line 2:") and "Share this page" in warnings[0]
    assert warnings[1].startswith("line 12:") and "SOMETHING_ELSE" in warnings[1]
    assert all(p.severity == "warning" for p in record.problems)


def test_format_overrides_detection():
    record = read_one(DATA / "random.txt", format="text-registry-export")
    assert record.trial is None
    assert any(p.field == "interventions" and "line 4" in p.reason for p in record.problems)
    record = read_one(seed_path("004"), format="text-bulleted")
    assert record.trial.provenance.format == "text-bulleted"


def test_unknown_format_raises_at_once():
    with pytest.raises(ValueError, match="unknown format"):
        iter_records([seed_path("000")], format="csv")


def test_folder_is_read_sorted_recursively_skipping_hidden(tmp_path):
    text = Path(seed_path("000")).read_text(encoding="utf-8")
    for rel in ("b.txt", "a/z.txt", "a.txt", ".hidden.txt", ".git/c.txt", "c/d/e.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    files = [Path(r.file).relative_to(tmp_path).as_posix() for r in iter_records([tmp_path])]
    assert files == ["a/z.txt", "a.txt", "b.txt", "c/d/e.txt"]


def test_folder_is_streamed(tmp_path):
    for name in ("1.txt", "2.txt"):
        (tmp_path / name).write_text(Path(seed_path("000")).read_text(encoding="utf-8"), encoding="utf-8")
    records = iter_records([tmp_path])
    first = next(records)
    assert first.trial is not None
    (tmp_path / "2.txt").unlink()  # not read yet: its loss shows up as an error record, later
    (second,) = list(records)
    assert second.trial is None and "cannot read" in second.problems[0].reason


def test_mixed_inputs_keep_their_order():
    paths = [seed_path("004"), str(DATA / "random.txt"), seed_path("000")]
    records = list(iter_records(paths))
    assert [r.file for r in records] == paths
    assert [r.trial is not None for r in records] == [True, False, True]


# (outcome text, (name, description, time frame)): the name/description/time-frame split.
OUTCOME_SPLITS = [
    ("Objective response rate (ORR), The proportion of responders., 1 year",
     ("Objective response rate (ORR)", "The proportion of responders.", "1 year")),
    ("ORR (per RECIST, v1.1), Rate of response, 12 weeks",
     ("ORR (per RECIST, v1.1)", "Rate of response", "12 weeks")),
    ("PFS, Time to progression., Until progression, assessed up to approximately 24 months",
     ("PFS", "Time to progression.", "Until progression, assessed up to approximately 24 months")),
    ("Rate of AEs, Adverse events (e.g., nausea), 12 weeks",
     ("Rate of AEs", "Adverse events (e.g., nausea)", "12 weeks")),
    ("Objective Response Rate，ORR, Assessed at 18 weeks，about 6 cycles, 18 weeks after enrollment",
     ("Objective Response Rate，ORR", "Assessed at 18 weeks，about 6 cycles", "18 weeks after enrollment")),
    ("Overall survival, 3 years", ("Overall survival", None, "3 years")),
]


@pytest.mark.parametrize(("item", "parts"), OUTCOME_SPLITS)
def test_split_outcome(item, parts):
    assert split_outcome(item) == parts


@pytest.mark.parametrize("item", ["Overall survival", "ORR, The proportion of responders."])
def test_split_outcome_without_time_frame(item):
    with pytest.raises(ValueError, match="time frame"):
        split_outcome(item)


COMPONENT_SPLITS = [
    ("Inetetamab Plus Cyclophosphamide Metronomic Chemotherapy Plus AI",
     ["inetetamab", "cyclophosphamide", "aromatase inhibitor"]),
    ("Inetetamab and Paclitaxel ± Pertuzumab", ["inetetamab", "paclitaxel", "pertuzumab"]),
    ("anti-PD-1 antibody and chemotherapy", ["anti-pd-1 antibody", "chemotherapy"]),
    ("Albumin paclitaxel", ["albumin paclitaxel"]),
    ("Metronomic chemotherapy", ["metronomic chemotherapy"]),
]


@pytest.mark.parametrize(("name", "parts"), COMPONENT_SPLITS)
def test_split_components(name, parts):
    assert split_components(name) == parts


def test_readers_import_nothing_downstream():
    code = ("import sys, fhirstudy.sources; "
            "bad = [m for m in ('flask', 'sqlalchemy', 'requests', 'fhirstudy.mappers', 'fhirstudy.store', "
            "'fhirstudy.server') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_webpage_eligibility_headings_win_over_cues():
    record = read_one(DATA / "webpage-labelled-eligibility.txt")
    t = record.trial
    assert [(c.text, c.exclude) for c in t.criteria] == [
        ("Women aged 18 or over", False), ("Men", True), ("Children", True)]
    assert t.sex == "FEMALE"
    assert not [p for p in record.problems if p.field == "criteria"]
