"""Corrupt records among good ones, through the real ``fhirstudy convert``: every good record
lands, every bad one is reported with its place, nothing else is lost.

The inputs are generated here from the real ClinicalTrials.gov samples (new NCT numbers): a
3,000-record API v2 NDJSON with 1% corrupt records of varied kinds, a CSV export and a 60-record
legacy XML file with corrupt records among them.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import multiprocessing
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLES
from fhirstudy.pipeline import _convert_chunk, convert_record
from fhirstudy.sources import RawRecord

FHIRSTUDY = str(Path(sys.executable).with_name("fhirstudy"))
RECORDS = 3_000  # 30 corrupt records: every kind of corruption several times
CORRUPT_EVERY = 100  # 1%
JSON_SAMPLES = ["NCT00763412.json", "NCT02210780.json", "NCT03064438.json", "NCT03630471.json", "NCT05594173.json"]
# Modules kept from each sample: the study itself (its ResearchStudy), small enough for thousands of records
# in seconds; the other modules have their own tests.
KEPT_MODULES = {"identificationModule", "statusModule", "sponsorCollaboratorsModule", "conditionsModule",
                "designModule"}
HUGE = "x" * 1_000_000


def _nct(n: int) -> str:
    return f"NCT9{n:07d}"


def _set(path: tuple, value):
    def corrupt(study: dict) -> None:
        node = study["protocolSection"]
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return corrupt


def _drop_nct(study: dict) -> None:
    del study["protocolSection"]["identificationModule"]["nctId"]


# (kind, how the study is spoiled, the reason reported): each makes its record fail.
CORRUPTIONS = [
    ("wrong type", _set(("identificationModule", "briefTitle"), 5), "is a number, expected text"),
    ("impossible date", _set(("statusModule", "startDateStruct"), {"date": "2021-02-30"}), "day value"),
    ("superscript digit", _set(("designModule", "enrollmentInfo"), {"count": "1²"}), "expected a whole number"),
    ("past 32 bits", _set(("designModule", "enrollmentInfo"), {"count": 10**30}), "less than or equal to"),
    ("missing nctId", _drop_nct, "no nctId"),
    ("unknown status", _set(("statusModule", "overallStatus"), "BOGUS"), "Must be one of"),
    ("list for object", _set(("statusModule",), ["RECRUITING"]), "expected an object"),
]
# Odd but valid: these records must land.
ODD_GOOD = [_set(("identificationModule", "briefTitle"), HUGE),
            _set(("statusModule", "completionDateStruct"), {"date": "9999-12-31", "type": "ESTIMATED"})]


def _studies() -> list[dict]:
    out = []
    for name in JSON_SAMPLES:
        path = SAMPLES / name
        if not path.exists():
            pytest.skip(f"registry sample {path} not found (set FHIRSTUDY_SHARED_DIR)")
        study = json.loads(path.read_text(encoding="utf-8"))
        out.append({"protocolSection": {k: v for k, v in study["protocolSection"].items() if k in KEPT_MODULES}})
    return out


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FHIRSTUDY, *args], capture_output=True, text=True, timeout=600)


def _errors(stderr: str) -> dict[str, str]:
    """``file:record`` -> the reason, of every error line."""
    out = {}
    for line in stderr.splitlines():
        m = re.match(r"error: (\S+?:\d+)(?: \[.*?\])?: (.*)", line)
        if m:
            out.setdefault(m[1], m[2])
    return out


@pytest.fixture(scope="module")
def ndjson_run(tmp_path_factory):
    """The 10,000-record NDJSON, its expectations, and one run of convert over it (2 processes)."""
    folder = tmp_path_factory.mktemp("faults")
    studies = _studies()
    source, good, bad = folder / "studies.ndjson", set(), {}
    with source.open("w", encoding="utf-8") as out:
        for n in range(1, RECORDS + 1):
            study = copy.deepcopy(studies[n % len(studies)])
            study["protocolSection"]["identificationModule"]["nctId"] = _nct(n)
            if n % CORRUPT_EVERY == 0:
                kind = n // CORRUPT_EVERY % (len(CORRUPTIONS) + 1)
                if kind == len(CORRUPTIONS):  # a line cut short: not JSON at all
                    out.write(json.dumps(study)[:200] + "\n")
                    bad[n] = "not valid JSON"
                    continue
                CORRUPTIONS[kind][1](study)
                bad[n] = CORRUPTIONS[kind][2]
            else:
                if n % 1000 == 1:
                    ODD_GOOD[n // 1000 % len(ODD_GOOD)](study)
                good.add(_nct(n).lower())
            out.write(json.dumps(study) + "\n")
    result = _run("convert", str(source), "-o", str(folder / "out.ndjson"), "-q", "--jobs", "2")
    return source, good, bad, result, folder / "out.ndjson"


def test_every_good_ndjson_record_lands(ndjson_run):
    _, good, bad, result, output = ndjson_run
    ids = [json.loads(line)["entry"][0]["resource"]["id"] for line in output.read_bytes().splitlines()]
    assert len(ids) == len(set(ids)) == RECORDS - len(bad) == len(good)
    assert set(ids) == good
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"converted {len(good)}, failed {len(bad)}, warnings ")
    assert "Traceback" not in result.stderr


def test_every_bad_ndjson_record_is_reported_at_its_line(ndjson_run):
    source, _, bad, result, _ = ndjson_run
    errors = _errors(result.stderr)
    assert set(errors) == {f"{source}:{n}" for n in bad}, "exactly the bad records are reported"
    for n, reason in bad.items():
        assert reason in errors[f"{source}:{n}"], (n, errors[f"{source}:{n}"])


def _csv_rows() -> tuple[list[str], list[list[str]]]:
    path = SAMPLES / "ctgov-export-mixed.csv"
    if not path.exists():
        pytest.skip(f"registry sample {path} not found (set FHIRSTUDY_SHARED_DIR)")
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    return rows[0], rows[1:]


# (row number, column, value, reason reported or None when the row still lands with a warning)
CSV_FAULTS = [(4, "Enrollment", "1²", None), (9, "NCT Number", "NCT123", "is not an NCT number"),
              (17, "Study Status", "BOGUS", "unknown value 'BOGUS'"), (23, "Enrollment", "99999999999999999999999", None),
              (31, "Start Date", "2021-02-30", None)]


def test_csv_with_corrupt_rows(tmp_path):
    header, rows = _csv_rows()
    out_rows, bad = [], {}
    for n in range(1, 41):
        row = list(rows[n % len(rows)])
        row[header.index("NCT Number")] = _nct(n)
        for at, column, value, reason in CSV_FAULTS:
            if at == n:
                row[header.index(column)] = value
                if reason:
                    bad[n] = reason
        out_rows.append(row)
    out_rows.insert(12, ["NCT90000099", "only two fields"])  # record 13: out of step with the header
    bad = {(k + 1 if k >= 13 else k): v for k, v in bad.items()} | {13: "the row has 2 fields"}
    source = tmp_path / "export.csv"
    with source.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *out_rows])
    result = _run("convert", str(source), "-o", str(tmp_path / "out.ndjson"))
    landed = (tmp_path / "out.ndjson").read_bytes().splitlines()
    assert len(landed) == 40 - (len(bad) - 1)
    errors = _errors(result.stderr)
    assert set(errors) == {f"{source}:{n}" for n in bad}
    for n, reason in bad.items():
        assert reason in errors[f"{source}:{n}"]
    assert "'Enrollment' '1²' is not a whole number" in result.stderr  # warnings: these rows landed
    assert "'Start Date': not a date: '2021-02-30'" in result.stderr
    assert result.returncode == 1 and "Traceback" not in result.stderr


XML_RECORDS = 60
# (record number, what spoils it, where the error is, relative to the record's first line)
XML_FAULTS = [(17, lambda x: x.replace("<brief_title>", "<brief_title><b>", 1), "mismatched tag"),
              (33, lambda x: x.replace("</official_title>", " &bogus;</official_title>", 1), "undefined entity"),
              (46, lambda x: x.replace("<nct_id>", "<nct_id><", 1), "not well-formed"),
              (51, lambda x: re.sub(r"<nct_id>[^<]*</nct_id>", "", x, count=1), "no <id_info><nct_id>")]


def _xml_records() -> list[str]:
    out = []
    for name in ("NCT00055081.xml", "NCT01065844.xml", "NCT02513394.xml"):
        path = SAMPLES / name
        if not path.exists():
            pytest.skip(f"registry sample {path} not found (set FHIRSTUDY_SHARED_DIR)")
        text = path.read_text(encoding="utf-8")
        out.append(re.sub(r"^<\?xml[^>]*\?>\s*", "", text))
    return out


def test_one_malformed_xml_record_costs_only_itself(tmp_path):
    samples, parts, lines, bad = _xml_records(), [], {}, {}
    line = 3
    for n in range(1, XML_RECORDS + 1):
        record = re.sub(r"<nct_id>NCT\d{8}</nct_id>", f"<nct_id>{_nct(n)}</nct_id>", samples[n % len(samples)],
                        count=1)
        for at, spoil, reason in XML_FAULTS:
            if at == n:
                record, bad[n] = spoil(record), reason
        lines[n] = line
        line += record.count("\n") + 1
        parts.append(record)
    source = tmp_path / "search_results.xml"
    source.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<search_results count="60">\n'
                      + "\n".join(parts) + "\n</search_results>\n", encoding="utf-8")
    result = _run("convert", str(source), "-o", str(tmp_path / "out.ndjson"), "-q")
    ids = {json.loads(b)["entry"][0]["resource"]["id"] for b in (tmp_path / "out.ndjson").read_bytes().splitlines()}
    assert ids == {_nct(n).lower() for n in range(1, XML_RECORDS + 1) if n not in bad}
    errors = _errors(result.stderr)
    assert set(errors) == {f"{source}:{n}" for n in bad}
    for n, reason in bad.items():
        assert reason in errors[f"{source}:{n}"]
    for n in (17, 33, 46):  # the line named is inside the record, in the file's own numbering
        at = int(re.search(r"at line (\d+)", errors[f"{source}:{n}"])[1])
        assert lines[n] <= at < lines.get(n + 1, line), (n, at, lines[n])
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_an_xml_file_cut_short_keeps_the_records_before(tmp_path):
    samples = _xml_records()
    body = "\n".join(re.sub(r"<nct_id>NCT\d{8}</nct_id>", f"<nct_id>{_nct(n)}</nct_id>", samples[n % 3], count=1)
                     for n in range(1, 4))
    source = tmp_path / "cut.xml"
    source.write_text("<search_results>\n" + body[: len(body) - 500], encoding="utf-8")
    result = _run("convert", str(source), "-o", "-", "-q")
    assert len(result.stdout.splitlines()) == 2
    assert set(_errors(result.stderr)) == {f"{source}:3"}


# Records as a reader with a bug would hand them on: data of the wrong shape, crashing the schema stage.
BROKEN_RAW = [RawRecord("broken.json", 1, "ctgov-json", ["not", "a", "dict"], ()),
              RawRecord("broken.json", 2, "ctgov-json", {"unplaced": 5, "brief_title": "x"}, ())]


@pytest.mark.parametrize("raw", BROKEN_RAW, ids=["list", "unplaced-int"])
def test_an_exception_inside_one_record_is_its_problem(raw):
    converted = convert_record(raw)
    assert not converted.ok
    (problem,) = converted.problems
    assert (problem.file, problem.record) == (raw.file, raw.record)
    assert "internal error while converting this record" in problem.reason


def test_an_exception_in_a_worker_process_is_its_record_problem():
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh interpreter, as --jobs may use
        results = pool.apply(_convert_chunk, (BROKEN_RAW,))
    assert [(r.file, r.record, r.ok) for r in results] == [("broken.json", 1, False), ("broken.json", 2, False)]
    assert all("internal error while converting" in r.problems[0].reason for r in results)
