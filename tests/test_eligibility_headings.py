"""Eligibility headings as registries really write them (#18): every form, table-driven, then
whole texts through the API v2 JSON and legacy XML readers."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from fhirstudy.sources import iter_records
from fhirstudy.sources._criteria import split_criteria
from fhirstudy.sources._headings import Heading, heading, is_note

SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "ctgov-samples"

HEADINGS = [
    ("Inclusion Criteria:", Heading("inclusion")),
    ("Exclusion Criteria:", Heading("exclusion")),
    ("Inclusion Criteria Stage 1", Heading("inclusion", "Stage 1")),
    ("Exclusion Criteria for Stage 1", Heading("exclusion", "Stage 1")),
    ("Inclusion criteria stage 2", Heading("inclusion", "stage 2")),
    ("Exclusion Criteria (Cohort B)", Heading("exclusion", "Cohort B")),
    ("Key Inclusion Criteria", Heading("inclusion")),
    ("Key Exclusion Criteria:", Heading("exclusion")),
    ("Main exclusion criteria:", Heading("exclusion")),
    ("Additional exclusion criteria for Part 2", Heading("exclusion", "Part 2")),
    ("Additional Inclusion Criteria for Part 2:", Heading("inclusion", "Part 2")),
    ("INCLUSION CRITERIA", Heading("inclusion")),
    ("EXCLUSION CRITERIA:", Heading("exclusion")),
    ("**Exclusion criteria**", Heading("exclusion")),
    ("**Inclusion Criteria:**", Heading("inclusion")),
    ("\\*\\*Inclusion Criteria\\*\\*", Heading("inclusion")),
    ("### Exclusion Criteria", Heading("exclusion")),
    ("## Inclusion criteria:", Heading("inclusion")),
    ("Inclusion Criteria - Healthy Volunteers:", Heading("inclusion", "Healthy Volunteers")),
    ("Inclusion Criteria for Participants in the Dose Expansion Phase:",
     Heading("inclusion", "Participants in the Dose Expansion Phase")),
    ("Exclusion Criteria for all participants:", Heading("exclusion")),
    ("Exclusion:", Heading("exclusion")),
    ("- Inclusion criteria:", Heading("inclusion")),
    ("Eligibility Criteria:", Heading(None)),
    ("Inclusion and Exclusion Criteria:", Heading(None)),
    ("Inclusion/Exclusion Criteria", Heading(None)),
    ("Patients will be excluded if they have any of the following:", Heading("exclusion")),
    ("Subjects must meet all of the following:", Heading("inclusion")),
    ("Participants are not eligible if:", Heading("exclusion")),
    ("Participants are eligible to be included in the study only if all of the following criteria apply:",
     Heading("inclusion")),
    ("Participants are excluded from the study if any of the following criteria apply:", Heading("exclusion")),
    ("Subjects must not have any of the following:", Heading("exclusion")),
    ("Patients must have:", Heading("inclusion")),
]

NOT_HEADINGS = [
    "Meets all inclusion criteria of the parent study",
    "Inclusion criteria for the parent study apply",
    "Exclusion criteria are the same as for Stage 1",
    "Exclusion of patients with HIV infection",
    "Eligibility for surgery as judged by the surgeon",
    "Enrollment in another interventional study",
    "Met the inclusion criteria for study NCT01234567 and completed it",
    "- Patient fulfils the exclusion criteria of the main study",
    "Participants are not eligible if they are pregnant",  # a criterion, no list follows
    "Inclusion Criteria",  # a heading...
][:-1]


@pytest.mark.parametrize(("line", "expected"), HEADINGS, ids=[h[0] for h in HEADINGS])
def test_heading_forms(line, expected):
    assert heading(line) == expected


@pytest.mark.parametrize("line", NOT_HEADINGS)
def test_lines_that_mention_criteria_are_not_headings(line):
    assert heading(line) is None


@pytest.mark.parametrize(("text", "note"), [
    ("Additional drug-specific exclusion criteria might apply.", True),
    ("Other protocol-defined inclusion/exclusion criteria may apply.", True),
    ("Other protocol defined Inclusion/Exclusion criteria could apply", True),
    ("Note: participants may be rescreened once.", True),
    ("The information listed above is not intended to contain all considerations relevant to participation", True),
    ("Patients who meet criteria for sepsis", False),
    ("Meets the criteria for major depressive disorder per DSM-5", False),
    ("Any condition that, in the opinion of the investigator, would interfere with the study", False),
])
def test_notes(text, note):
    assert is_note(text) is note


STAGED = """Inclusion Criteria Stage 1

* Age 18 or older
* ECOG 0-1

Inclusion criteria stage 2

* Completed Stage 1

Exclusion Criteria for Stage 1

* Prior anti-PD-1 therapy

Exclusion Criteria (Cohort B)

* Brain metastases
* Additional drug-specific exclusion criteria might apply.
"""


def _sides(criteria):
    return [(c["text"], c["exclude"], c.get("qualifier"), c.get("note", False)) for c in criteria]


def test_several_blocks_keep_side_and_qualifier():
    criteria, problems = split_criteria(STAGED)
    assert _sides(criteria) == [
        ("Age 18 or older", False, "Stage 1", False),
        ("ECOG 0-1", False, "Stage 1", False),
        ("Completed Stage 1", False, "stage 2", False),
        ("Prior anti-PD-1 therapy", True, "Stage 1", False),
        ("Brain metastases", True, "Cohort B", False),
        ("Additional drug-specific exclusion criteria might apply.", False, None, True),
    ]
    assert problems == []


def test_opener_sentences_switch_sides():
    text = ("Subjects must meet all of the following:\n\n- Age >= 18\n- Signed consent\n\n"
            "Patients will be excluded if they have any of the following:\n\n- Pregnancy\n- Active infection\n")
    criteria, problems = split_criteria(text)
    assert _sides(criteria) == [("Age >= 18", False, None, False), ("Signed consent", False, None, False),
                                ("Pregnancy", True, None, False), ("Active infection", True, None, False)]
    assert problems == []


def test_markdown_headings_and_criteria_that_mention_criteria():
    text = ("### Inclusion Criteria\n\n* Meets all inclusion criteria of the parent study\n* Age >= 18\n\n"
            "**Exclusion criteria**\n\n* Met any exclusion criteria of the parent study\n")
    criteria, problems = split_criteria(text)
    assert _sides(criteria) == [("Meets all inclusion criteria of the parent study", False, None, False),
                                ("Age >= 18", False, None, False),
                                ("Met any exclusion criteria of the parent study", True, None, False)]
    assert problems == []


def test_a_doubtful_line_is_reported_with_its_line_number():
    text = "Inclusion Criteria:\n\n* Age >= 18\n\nExclusion criteria are the same as for Stage 1\n\n* Pregnancy\n"
    criteria, problems = split_criteria(text)
    assert [c["exclude"] for c in criteria] == [False, False, False]  # nothing guessed
    assert [p.severity for p in problems] == ["warning"]
    assert problems[0].reason.startswith("line 5: ") and problems[0].field == "criteria"


def test_criteria_before_an_inclusion_heading_are_reported():
    text = "* Age >= 18\n\nInclusion Criteria:\n\n* ECOG 0-1\n\nExclusion Criteria:\n\n* Pregnancy\n"
    criteria, problems = split_criteria(text)
    assert [c["exclude"] for c in criteria] == [False, False, True]
    assert len(problems) == 1 and "line 3" in problems[0].reason


def test_sub_bullets_are_items():
    text = ("Inclusion Criteria:\n\n* Adequate organ function:\n    * ANC >= 1.5 x 10^9/L\n"
            "        * measured within 14 days\n    * Platelets >= 100 x 10^9/L\n* Age >= 18\n")
    criteria, _ = split_criteria(text)
    assert [(c["text"], c.get("items")) for c in criteria] == [
        ("Adequate organ function:", ["ANC >= 1.5 x 10^9/L / measured within 14 days", "Platelets >= 100 x 10^9/L"]),
        ("Age >= 18", None)]


def _json_study(tmp_path: Path, criteria: str) -> Path:
    study = json.loads((SAMPLES / "NCT03064438.json").read_text(encoding="utf-8"))
    study = copy.deepcopy(study)
    study["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] = criteria
    path = tmp_path / "NCT03064438.json"
    path.write_text(json.dumps(study), encoding="utf-8")
    return path


def _xml_study(tmp_path: Path, criteria: str) -> Path:
    xml = (SAMPLES / "NCT01065844.xml").read_text(encoding="utf-8")
    start = xml.index("<textblock>", xml.index("<criteria>")) + len("<textblock>")
    end = xml.index("</textblock>", start)
    # the legacy XML indents every line of a textblock and writes bullets as "-"
    block = "\n".join(f"        {line.replace('* ', '- ', 1)}" if line.strip() else "" for line in criteria.splitlines())
    from xml.sax.saxutils import escape
    path = tmp_path / "NCT01065844.xml"
    path.write_text(xml[:start] + "\n" + escape(block) + "\n      " + xml[end:], encoding="utf-8")
    return path


@pytest.mark.parametrize("make", [_json_study, _xml_study], ids=["api-v2-json", "legacy-xml"])
def test_staged_blocks_through_the_readers(tmp_path, make):
    [record] = list(iter_records([make(tmp_path, STAGED)]))
    assert record.ok, record.problems
    got = [(c.text, c.exclude, c.qualifier, c.note) for c in record.trial.criteria]
    assert got == [tuple(x) for x in _sides(split_criteria(STAGED)[0])]
