"""Reader of the ClinicalTrials.gov website CSV export ("Download" -> CSV): one study per row.

Columns are read by header name, so an export of any subset of the 30 columns, in any order, reads.
Lists are ``|``-separated; interventions are ``TYPE: name``; outcomes ``name, description, time
frame`` (split by ``text_registry_export.split_outcome``); locations ``facility, city, state, zip,
country`` with empty parts left out; the study design is ``Key: value|...``. Values are API v2 names
in current exports and display text in older ones; both read (``mappings/ctgov-legacy-values.json``).

Rows are streamed with the ``csv`` module, one at a time. A row whose quoting is broken (an
unterminated quote swallows the rows after it) or whose field count differs from the header's is an
error record naming the column where it goes wrong; the rows after it still convert. Each row is
read through ``Fields``, so a column the reader does not carry into the Trial and that is not on
the ignore list (``mappings/ctgov-ignored-fields.json``, key ``ctgov-csv``) is reported as unmapped.
"""
from __future__ import annotations

import csv
import importlib.util
import io
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ..errors import Problem, SourceError
from ._boundary import FHIR_UNSIGNED_INT_MAX, given, is_whole_number, one_record, whole_number
from ._ctgov_legacy import NCT_ID, UnknownValue, api_value, masking, partial_date, read_value
from ._fields import Fields, ignored_fields
from ._text import clean, error, intervention_type, snippet, warning
from .text_registry_export import split_outcome

FORMAT = "ctgov-csv"
ENCODING = "utf-8-sig"
# Longest cell read (a study with thousands of locations has a long Locations cell); the csv
# module's default of 131,072 characters is too small for those. Bounds the memory a broken
# quote can take.
FIELD_SIZE_LIMIT = 16 * 1024 * 1024


def _own_csv_parser():
    """The stdlib's C csv parser loaded as a module instance of our own, so its field limit is
    ours: ``csv.field_size_limit`` of the process (the ``csv`` module everyone else uses) stays
    untouched. Set once here, never changed after."""
    spec = importlib.util.find_spec("_csv")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.field_size_limit(FIELD_SIZE_LIMIT)
    return module


_PARSER = _own_csv_parser()
_EXCEL = {"delimiter": ",", "quotechar": '"', "doublequote": True, "skipinitialspace": False,
          "lineterminator": "\r\n", "strict": False}  # csv.excel, spelled out: the own parser has no dialect registry
COLUMNS = (
    "NCT Number", "Study Title", "Study URL", "Acronym", "Study Status", "Brief Summary", "Study Results",
    "Conditions", "Interventions", "Primary Outcome Measures", "Secondary Outcome Measures",
    "Other Outcome Measures", "Sponsor", "Collaborators", "Sex", "Age", "Phases", "Enrollment", "Funder Type",
    "Study Type", "Study Design", "Other IDs", "Start Date", "Primary Completion Date", "Completion Date",
    "First Posted", "Results First Posted", "Last Update Posted", "Locations", "Study Documents",
)
_OUTCOME_COLUMNS = (("primary", "Primary Outcome Measures"), ("secondary", "Secondary Outcome Measures"),
                    ("other", "Other Outcome Measures"))
_PERIOD_DATES = (("start_date", "Start Date"), ("primary_completion_date", "Primary Completion Date"),
                 ("completion_date", "Completion Date"))
_POSTED_DATES = (("first_posted_date", "First Posted"), ("results_first_posted_date", "Results First Posted"),
                 ("last_update_date", "Last Update Posted"))
# "Study Design" keys -> (Trial field, value set of mappings/ctgov-legacy-values.json).
_DESIGN = {
    "Allocation": ("allocation", "allocation"),
    "Intervention Model": ("intervention_model", "interventionModel"),
    "Primary Purpose": ("primary_purpose", "primaryPurpose"),
    "Observational Model": ("observational_model", "observationalModel"),
    "Time Perspective": ("time_perspective", "timePerspective"),
}
# A line break followed by what starts another record: a quote left open swallowed the next rows.
_SWALLOWED_ROW = re.compile(r"[\r\n]\"?(NCT\d{8})\"?,")
_ZIP = re.compile(r"\d")
_ISO_DAY = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def _enum_shape(section: str) -> Callable[[str], bool]:
    def ok(value: str) -> bool:
        try:
            return all(api_value(section, v) is not None for v in value.split("|"))
        except UnknownValue:
            return False
    return ok


# What a cell of a column must look like; used to find where a row with too many or too few
# fields goes out of step with the header.
_SHAPES: dict[str, Callable[[str], bool]] = {
    "NCT Number": lambda v: bool(NCT_ID.match(v)),
    "Study URL": lambda v: v.startswith(("http://", "https://")),
    "Study Status": _enum_shape("overallStatus"),
    "Study Results": lambda v: v.upper() in ("YES", "NO"),
    "Sex": _enum_shape("sex"),
    "Phases": _enum_shape("phase"),
    "Enrollment": is_whole_number,
    "Funder Type": _enum_shape("agencyClass"),
    "Study Type": _enum_shape("studyType"),
    "Start Date": lambda v: bool(_ISO_DAY.match(v)),
    "Primary Completion Date": lambda v: bool(_ISO_DAY.match(v)),
    "Completion Date": lambda v: bool(_ISO_DAY.match(v)),
    "First Posted": lambda v: bool(_ISO_DAY.match(v)),
    "Results First Posted": lambda v: bool(_ISO_DAY.match(v)),
    "Last Update Posted": lambda v: bool(_ISO_DAY.match(v)),
}


def detect(head: str) -> bool:
    """True when the first line is a CSV header naming ``NCT Number`` and another export column."""
    first = head.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    try:
        cells = {c.strip() for c in next(csv.reader([first]))}
    except (csv.Error, StopIteration):
        return False
    return "NCT Number" in cells and len(cells & set(COLUMNS)) >= 2


def read_stream(stream: BinaryIO, file: str,
                accounting: bool = True) -> Iterator[tuple[dict | None, list[Problem], list[str]]]:
    """Each row of the export, in order, as ``(data, problems, unmapped)``; ``data`` is None for a
    row that cannot be read. Raises SourceError when the file is not UTF-8, has no export header or
    no rows."""
    for read, args in split_stream(stream, file, accounting):
        yield read(*args)


def split_stream(stream: BinaryIO, file: str, accounting: bool = True) -> Iterator[tuple[Callable, tuple]]:
    """:func:`read_stream` in two steps: each row as ``(read, args)`` (its cells by column, to be
    converted when called, in this process or another); a row that cannot be read is its error."""
    text = io.TextIOWrapper(stream, encoding=ENCODING, newline="")
    reader = _PARSER.reader(text, **_EXCEL)
    try:
        header = [h.strip() for h in next(reader, [])]
        if "NCT Number" not in header:
            raise SourceError(Problem("the first line is not a ClinicalTrials.gov CSV header (no 'NCT Number' "
                                      "column)", field="format"))
        duplicates = sorted({h for h in header if h and header.count(h) > 1})
        if duplicates:
            raise SourceError(Problem(f"the header repeats column(s) {', '.join(duplicates)}", field="format"))
        count = 0
        for item in _rows(reader, header, accounting):
            count += 1
            yield item
        if count == 0:
            raise SourceError(Problem("no rows after the header", field="format"))
    except UnicodeDecodeError as exc:
        raise SourceError(Problem(f"not UTF-8 text ({exc.reason})", field="format")) from None
    finally:
        if not stream.closed:
            text.detach()  # the caller owns the stream and closes it


def _rows(reader: Any, header: list[str], accounting: bool) -> Iterator[tuple[Callable, tuple]]:
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except _PARSER.Error as exc:
            yield given, (None, [error(f"lines {first_line}-{reader.line_num}: the CSV cannot be read here ({exc}); "
                                       "an unterminated quote is the usual cause; the row is skipped", None)], [])
            continue
        lines = f"line {first_line}" if reader.line_num == first_line else f"lines {first_line}-{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        broken = _broken(row, header, lines)
        if broken:
            yield given, (None, [broken], [])
            continue
        yield convert_row, (dict(zip(header, row)), accounting)


def _broken(row: list[str], header: list[str], lines: str) -> Problem | None:
    """The error for a row whose quoting or field count is broken, naming the column where it
    goes wrong; None for a sound row."""
    for column, cell in zip(header, row):
        m = _SWALLOWED_ROW.search(cell)
        if m:
            return error(f"{lines}: column {column!r} holds a line break followed by the start of another row "
                         f"({m.group(1)}): a quote left open swallowed the rows after it; the row is skipped",
                         column)
    if len(row) == len(header):
        return None
    column = next((c for c, cell in zip(header, row) if cell and c in _SHAPES and not _SHAPES[c](cell.strip())),
                  header[min(len(row), len(header)) - 1])
    return error(f"{lines}: the row has {len(row)} fields, the header {len(header)}; the columns are out of step "
                 f"from {column!r} on; the row is skipped", column)


@one_record
def convert_row(row: dict[str, str], accounting: bool = True) -> tuple[dict | None, list[Problem], list[str]]:
    """One export row (column name -> cell) as a ``TrialSchema`` dict without provenance, the
    problems found, and the columns left unmapped."""
    f = Fields({k: (v if v and v.strip() else None) for k, v in row.items()}, accounting=accounting)
    problems: list[Problem] = []
    data: dict[str, Any] = {}

    def cell(column: str) -> str | None:
        value = f.get(column)
        return clean(value.replace("\r\n", "\n").replace("\r", "\n")) if value else None

    def items(column: str, sep: str = "|") -> list[str]:
        return [v for part in (cell(column) or "").split(sep) if (v := part.strip())]

    nct = cell("NCT Number")
    if not nct or not NCT_ID.match(nct):
        reason = f"'NCT Number' {nct!r} is not an NCT number (NCT followed by 8 digits)" if nct else \
            "no 'NCT Number': the row cannot be identified"
        problems.append(error(f"{reason}; row skipped", "identifiers"))
        return None, problems, []  # a skipped record has no field accounting
    data["identifiers"] = [{"value": nct, "kind": "nct"}]
    # The export lists the organisation's own study id first, then the secondary ids.
    for n, value in enumerate(items("Other IDs")):
        if value != nct:
            data["identifiers"].append({"value": value, "kind": "org" if n == 0 else "secondary"})
    data["brief_title"] = cell("Study Title")
    if not data["brief_title"]:
        problems.append(error("no 'Study Title'", "brief_title"))
    data["acronym"] = cell("Acronym")
    data["brief_summary"] = cell("Brief Summary")
    data["overall_status"] = read_value("overallStatus", cell("Study Status"), "overall_status", "'Study Status'",
                                        problems)
    data["has_results"] = read_value("yesNo", cell("Study Results"), "has_results", "'Study Results'", problems,
                                     "warning")
    data["conditions"] = items("Conditions")
    data["interventions"] = _interventions(items("Interventions"), problems)
    data["outcomes"] = [o for kind, column in _OUTCOME_COLUMNS for o in _outcomes(kind, column, items(column),
                                                                                   problems)]
    sponsor = cell("Sponsor")
    classifier = read_value("agencyClass", cell("Funder Type"), "sponsor", "'Funder Type'", problems, "warning")
    data["sponsor"] = {"name": sponsor, "role": "lead-sponsor", "classifier": classifier} if sponsor else None
    data["collaborators"] = [{"name": name, "role": "collaborator"} for name in items("Collaborators")]
    data["sex"] = read_value("sex", cell("Sex"), "sex", "'Sex'", problems)
    data["std_ages"] = [v for age in items("Age", ",")
                        if (v := read_value("stdAge", age, "std_ages", "'Age'", problems, "warning"))]
    data["phases"] = [p for phase in items("Phases")
                      for p in read_value("phase", phase, "phases", "'Phases'", problems) or []]
    enrollment = cell("Enrollment")
    if enrollment is not None:
        data["enrollment"] = whole_number(enrollment)
        if data["enrollment"] is None:
            problems.append(warning(f"'Enrollment' {enrollment!r} is not a whole number from 0 to "
                                    f"{FHIR_UNSIGNED_INT_MAX}; left empty", "enrollment"))
    data["study_type"] = read_value("studyType", cell("Study Type"), "study_type", "'Study Type'", problems)
    _design(items("Study Design"), data, problems)
    for field, column in _PERIOD_DATES:
        date = _date(cell(column), field, column, problems)
        data[field] = {"date": date} if date else None
    for field, column in _POSTED_DATES:
        data[field] = _date(cell(column), field, column, problems)
    data["sites"] = [_site(item) for item in items("Locations")]
    data["references"] = [_document(item) for item in items("Study Documents")]
    return data, problems, f.unmapped(ignored_fields(FORMAT))


def _interventions(values: list[str], problems: list[Problem]) -> list[dict]:
    out = []
    for n, item in enumerate(values, start=1):
        raw_type, sep, name = item.partition(":")
        kind = intervention_type(raw_type) if sep else None
        if kind is None:
            try:  # older exports: "Drug: name", display text
                kind = api_value("interventionType", raw_type) if sep else None
            except UnknownValue:
                kind = None
        name = name.strip()
        if not sep or not name:
            problems.append(error(f"'Interventions' item {n} ({snippet(item)!r}) is not 'TYPE: name'",
                                  "interventions"))
        elif kind is None:
            problems.append(error(f"'Interventions' item {n}: unknown intervention type {raw_type.strip()!r}",
                                  "interventions"))
        else:
            out.append({"type": kind, "name": name})
    return out


def _outcomes(kind: str, column: str, values: list[str], problems: list[Problem]) -> list[dict]:
    out = []
    for n, item in enumerate(values, start=1):
        try:
            name, description, time_frame = split_outcome(item)
        except ValueError as exc:
            problems.append(warning(f"{column!r} item {n} ({snippet(item)!r}) {exc}: the whole item is kept as "
                                    "the outcome's name", "outcomes"))
            name, description, time_frame = item, None, None
        out.append({"kind": kind, "name": name, "description": description, "time_frame": time_frame})
    return out


def _design(values: list[str], data: dict, problems: list[Problem]) -> None:
    """The ``Key: value`` items of 'Study Design'; an item that cannot be read is a warning."""
    for item in values:
        key, sep, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Masking" and sep:
            data["masking"], data["who_masked"] = masking(value, "'Study Design' Masking", problems)
        elif key in _DESIGN and sep:
            field, section = _DESIGN[key]
            if not value:
                problems.append(warning(f"'Study Design' {key} has no value (the export may be truncated)", field))
            else:
                data[field] = read_value(section, value, field, f"'Study Design' {key}", problems, "warning")
        else:
            problems.append(warning(f"'Study Design' item {snippet(item)!r} is not one of "
                                    f"{', '.join([*_DESIGN, 'Masking'])} with a value; left out", "study_design"))


def _date(value: str | None, field: str, column: str, problems: list[Problem]) -> str | None:
    try:
        return partial_date(value)
    except ValueError as exc:
        problems.append(warning(f"{column!r}: {exc}; left empty", field))
        return None


def _site(item: str) -> dict:
    """``facility, city, state, zip, country`` with empty parts left out by the export: the country
    is last, a part with a digit before it is the zip; of what remains, the last two are city and
    state when there are three or more, the last one is the city when there are two (facility,
    city), and a lone part is the city. A facility name holding ", " keeps its commas."""
    parts = [p.strip() for p in item.split(", ")]
    site: dict[str, Any] = {"country": parts.pop() if len(parts) > 1 else None}
    if len(parts) > 1 and _ZIP.search(parts[-1]):
        site["zip"] = parts.pop()
    if len(parts) >= 3:
        site["state"] = parts.pop()
    site["city"] = parts.pop() if parts else None
    site["facility"] = ", ".join(parts) or None
    return site


def _document(item: str) -> dict:
    """``label, url`` of 'Study Documents' as a link reference."""
    label, sep, url = item.rpartition(", ")
    if not sep:
        label, url = "", item
    return {"label": label or None, "url": url, "type": "link"}
