"""Reader of the ``text-webpage`` layout: the text of a trial's web page, copied from a browser.

Line 1 is the title. Then ``- Label`` lines, each followed by its value(s) as ``- value`` lines or
paragraphs, grouped under section headings without a dash (``Recruitment & Eligibility``,
``Study & Design``, ``Trial Locations``). Tables (arms, outcome measures) arrive flattened into
one line of words, e.g. ``Name Time Method <name> <time frame> [<description>] ...``.

What the page does not label is inferred and reported as a warning: the split of the
eligibility list into inclusion and exclusion criteria (cue phrases from
``mappings/eligibility-cues.json``), the rows of the flattened tables, the phase (from the
summary text) and interventions that appear only in the arms table. Page chrome ("Related
Research Topics") is dropped with a warning; any other line the reader cannot place is kept in
``unplaced`` with a warning.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import Problem
from ._boundary import whole_number
from ._text import (clean, derived_identifier, eligibility_label, error, intervention_type,
                    phases_from_text, snippet, split_components, split_eligibility, unplaced,
                    warning)

FORMAT = "text-webpage"

# The page's labels (``- Label``) and how each one's content is read.
_LIST, _SINGLE, _TEXT, _TABLE, _LOCATIONS = "list", "single", "text", "table", "locations"
LABELS = {
    "Conditions": _LIST, "Interventions": _LIST, "Registration Number": _SINGLE,
    "Lead Sponsor": _SINGLE, "Brief Summary": _TEXT, "Detailed Description": _TEXT,
    "Status": _SINGLE, "Sex": _SINGLE, "Target Recruitment": _SINGLE, "Study Type": _SINGLE,
    "Study Design": _SINGLE, "Arm && Interventions": _TABLE, "Primary Outcome Measures": _TABLE,
    "Secondary Outcome Measures": _TABLE, "Locations": _LOCATIONS,
}
ELIGIBILITY_SECTION = "Recruitment & Eligibility"
SECTIONS = (ELIGIBILITY_SECTION, "Study & Design", "Trial Locations")
CHROME_SECTIONS = ("Related Research Topics",)  # page furniture, not trial data
_LABEL = re.compile(r"^- (?P<label>.+?)(?: \(\d+\))?\s*$")
_NCT = re.compile(r"^NCT\d{8}$")
_FLAG = re.compile(r"^[\U0001F1E6-\U0001F1FF]{2}\s*")
_SEXES = {"FEMALE": "FEMALE", "MALE": "MALE", "ALL": "ALL", "BOTH": "ALL"}
_INTERVENTION_MODELS = ("SINGLE_GROUP", "PARALLEL", "CROSSOVER", "FACTORIAL", "SEQUENTIAL")
# Flattened outcome tables: a time frame starts with one of these words and ends at the first
# "<number> <unit>" ("Baseline until ..., assessed up to 6 months").
_TIME_FRAME = re.compile(
    r"\b(?:Baseline|Randomi[sz]ation|Enrol?lment|Screening|From|Up to|Until|Through|Throughout|"
    r"Within|During|After|At|Day|Week|Month|Year|Cycle|Approximately|Every)\b"
    r".*?\b\d+(?:\.\d+)?\s*(?:days?|weeks?|months?|years?|cycles?|hours?)\b")
_SENTENCE_END = re.compile(r"[.!?]\s+(?=[A-Z(])")
_OUTCOME_HEADER = "Name Time Method"
_ARMS_HEADER = "Group Intervention Description"


@dataclass
class _Block:
    label: str
    lineno: int
    section: str | None
    lines: list[tuple[int, str]] = field(default_factory=list)


def detect(text: str) -> bool:
    """True when at least three lines are ``- Label`` lines of the page's known labels."""
    hits = 0
    for line in text.splitlines():
        m = _LABEL.match(line.strip())
        hits += bool(m and m.group("label") in LABELS)
    return hits >= 3


def _upper(value: str) -> str:
    return re.sub(r"[\s,-]+", "_", value.strip()).upper()


def _blocks(lines: list[tuple[int, str]], problems: list[Problem], data: dict) -> list[_Block]:
    blocks: list[_Block] = []
    section: str | None = None
    chrome: list[tuple[int, str]] | None = None
    for n, line in lines:
        stripped = line.strip()
        m = _LABEL.match(stripped)
        if stripped in SECTIONS or stripped in CHROME_SECTIONS or (m and m.group("label") in LABELS):
            if chrome:
                first = chrome[0][0]
                problems.append(warning(
                    f"lines {first}-{chrome[-1][0]}: page chrome dropped: "
                    f"{snippet(' '.join(t for _, t in chrome))!r}"))
            chrome = None
        if stripped in CHROME_SECTIONS:
            chrome = [(n, stripped)]
        elif stripped in SECTIONS:
            section = stripped
        elif m and m.group("label") in LABELS:
            blocks.append(_Block(m.group("label"), n, section))
        elif chrome is not None:
            chrome.append((n, stripped))
        elif blocks:
            blocks[-1].lines.append((n, stripped))
        else:
            data["unplaced"].append(stripped)
            problems.append(unplaced(n, stripped))
    if chrome:
        problems.append(warning(f"lines {chrome[0][0]}-{chrome[-1][0]}: page chrome dropped: "
                                f"{snippet(' '.join(t for _, t in chrome))!r}"))
    return blocks


def _value(text: str) -> str | None:
    return clean(text[2:] if text.startswith("- ") else text)


def _single(block: _Block, data: dict, problems: list[Problem], criteria: list) -> None:
    """A label with one value: the first line. Further lines in the eligibility section are the
    (unlabelled) eligibility list; elsewhere they are unplaced."""
    if not block.lines:
        problems.append(warning(f"line {block.lineno}: {block.label!r} has no value"))
        return
    (n, first), rest = block.lines[0], block.lines[1:]
    value = _value(first)
    label = block.label
    if value is None:
        problems.append(warning(f"line {n}: {label!r} has an empty value"))
        value = ""
    if not value:
        pass
    elif label == "Registration Number":
        kind = "nct" if _NCT.match(value.upper()) else "secondary"
        data["identifiers"].append({"value": value.upper() if kind == "nct" else value, "kind": kind})
    elif label == "Lead Sponsor":
        data["sponsor"] = {"name": value, "role": "lead-sponsor"}
    elif label == "Status":
        data["overall_status"] = _upper(value)
    elif label == "Sex":
        data["sex"] = _SEXES.get(value.upper(), value)
    elif label == "Target Recruitment":
        number = whole_number(value)
        data["enrollment"] = value if number is None else number  # not a number: the schema says so
        # "Target" is the anticipated count: ClinicalTrials.gov calls that ESTIMATED.
        data["enrollment_type"] = "ESTIMATED"
    elif label == "Study Type":
        data["study_type"] = _upper(value)
    elif label == "Study Design":
        model = _upper(value).removesuffix("_ASSIGNMENT")
        if model in _INTERVENTION_MODELS:
            data["intervention_model"] = model
        else:
            data["unplaced"].append(value)
            problems.append(unplaced(n, first))
    if block.section == ELIGIBILITY_SECTION:
        criteria.extend(rest)
    else:
        for n2, line in rest:
            data["unplaced"].append(line)
            problems.append(unplaced(n2, line))


def _list(block: _Block, data: dict, problems: list[Problem]) -> None:
    for n, line in block.lines:
        value = _value(line)
        if not line.startswith("- ") or not value:
            data["unplaced"].append(line)
            problems.append(unplaced(n, line))
        elif block.label == "Conditions":
            data["conditions"].append(value)
        else:  # Interventions: "Drug: name"
            raw_type, sep, name = value.partition(":")
            kind = intervention_type(raw_type) if sep else None
            if kind is None or not name.strip():
                problems.append(error(f"line {n}: intervention {value!r} is not 'Type: name' with a "
                                      "ClinicalTrials.gov intervention type", "interventions"))
                continue
            name = name.strip()
            data["interventions"].append({"type": kind, "name": name,
                                          "components": split_components(name)})


def outcome_rows(table: str) -> list[tuple[str, str, str | None]] | None:
    """A flattened ``Name Time Method`` table -> (name, time frame, description) rows; None when
    no time frame can be found.

    A time frame starts with a time word (Baseline, Randomization, Up to, ...) and ends at the
    first number with a unit; the name is the text before it; text between one time frame and
    the next name is the previous row's description when it ends a sentence.
    """
    body = table.removeprefix(_OUTCOME_HEADER).strip()
    frames = []
    pos = 1
    while (m := _TIME_FRAME.search(body, pos)) is not None:
        frames.append(m)
        pos = m.end() + 1
    if not frames:
        return None
    rows: list[list] = []
    start = 0
    for m in frames:
        gap = body[start:m.start()].strip()
        if rows:
            cut = list(_SENTENCE_END.finditer(gap))
            if cut:
                rows[-1][2] = gap[: cut[-1].start() + 1].strip()
                gap = gap[cut[-1].end():].strip()
        if not gap:
            return None  # a time frame without a name: not a table we can read
        rows.append([gap, m.group(0).strip(), None])
        start = m.end()
    rows[-1][2] = body[start:].strip() or None
    return [tuple(r) for r in rows]


def _outcomes(block: _Block, data: dict, problems: list[Problem]) -> None:
    kind = "primary" if block.label.startswith("Primary") else "secondary"
    table = " ".join(line for _, line in block.lines)
    rows = outcome_rows(table) if table else []
    if rows is None:
        data["unplaced"].append(table)
        problems.append(unplaced(block.lineno, table))
        return
    for name, time_frame, description in rows:
        data["outcomes"].append({"kind": kind, "name": clean(name), "time_frame": clean(time_frame),
                                 "description": clean(description)})
    if rows:
        problems.append(warning(
            f"line {block.lineno}: {len(rows)} {kind} outcome(s) read from a flattened table by "
            "their time frames; names and time frames are inferred", "outcomes"))


def arm_rows(table: str, known: list[str]) -> list[tuple[str, str, str]] | None:
    """A flattened ``Group Intervention Description`` table -> (group, intervention, description)
    rows; None when it cannot be split.

    The group label is the longest run of leading words that recurs in the table; each row
    starts with it. A row's intervention is a ``known`` intervention name it starts with, else
    the text up to the next occurrence of the group label when that occurrence is the
    description (a description that repeats the label, as single-arm pages do).
    """
    words = table.removeprefix(_ARMS_HEADER).split()
    text = " ".join(words)
    group = None
    for k in range(len(words) - 1, 0, -1):
        candidate = " ".join(words[:k])
        if len(re.findall(rf"(?<!\S){re.escape(candidate)}(?!\S)", text)) >= 2:
            group = candidate
            break
    if group is None:
        return None
    pieces = [p.strip() for p in re.split(rf"(?<!\S){re.escape(group)}(?!\S)", text)]
    # pieces: "", body1, "", body2, "" ... for rows "G I D" whose D repeats G.
    rows = []
    i = 1
    while i < len(pieces):
        body = pieces[i]
        if not body:
            i += 1
            continue
        name = next((k for k in known if body.lower().startswith(k.lower())), None)
        if name is not None and body[len(name):].strip():
            rows.append((group, body[: len(name)], body[len(name):].strip()))
            i += 1
        elif i + 1 < len(pieces) and pieces[i + 1] == "":
            rows.append((group, body, group))  # the description repeats the group label
            i += 2
        else:
            return None
    return rows or None


def _arms(block: _Block, data: dict, problems: list[Problem]) -> None:
    table = " ".join(line for _, line in block.lines)
    known = [i["name"] for i in data["interventions"]]
    rows = arm_rows(table, known) if table else []
    if rows is None:
        data["unplaced"].append(table)
        problems.append(unplaced(block.lineno, table))
        return
    arms: dict[str, dict] = {}
    for group, name, description in rows:
        arm = arms.setdefault(group, {"label": group, "description": description, "interventions": []})
        arm["interventions"].append(name)
        match = next((i for i in data["interventions"] if i["name"].lower() == name.lower()), None)
        if match is None:
            match = {"type": "DRUG", "name": name, "components": split_components(name)}
            data["interventions"].append(match)
            problems.append(warning(
                f"line {block.lineno}: intervention {name!r} appears only in the arms table; added "
                "with type DRUG, inferred (the page lists its other interventions as Drug)",
                "interventions"))
        match.setdefault("arms", []).append(group)
    data["arms"] = list(arms.values())
    if rows:
        problems.append(warning(f"line {block.lineno}: arms read from a flattened table; the row "
                                "split is inferred", "arms"))


def _locations(block: _Block, data: dict, problems: list[Problem]) -> None:
    facility: tuple[int, str] | None = None
    for n, line in block.lines:
        if _FLAG.match(line):
            parts = [p.strip() for p in _FLAG.sub("", line).split(",")]
            site = {"facility": clean(facility[1]) if facility else None, "country": parts[-1]}
            if len(parts) >= 2:
                site["city"] = parts[0]
            if len(parts) >= 3:
                site["state"] = ", ".join(parts[1:-1])
            data["sites"].append(site)
            facility = None
        else:
            if facility:
                data["unplaced"].append(facility[1])
                problems.append(unplaced(*facility))
            facility = (n, line)
    if facility:
        data["unplaced"].append(facility[1])
        problems.append(unplaced(*facility))


def _criteria(lines: list[tuple[int, str]], data: dict, problems: list[Problem]) -> None:
    """The eligibility list: by its "Inclusion/Exclusion Criteria:" headings when it has them,
    else split where cue phrases say exclusion starts (reported as inferred)."""
    labelled = any(eligibility_label(_value(line) or "") for _, line in lines)
    pairs: list[tuple[int, str, bool]] = []
    exclude = False
    for n, line in lines:
        text = _value(line)
        label = eligibility_label(text or "")
        if label:
            exclude = label == "exclusion"
        elif text:
            pairs.append((n, text, exclude))
            if not line.startswith("- "):
                problems.append(warning(f"line {n}: unbulleted line inside the eligibility list read "
                                        "as a criterion of its own", "criteria"))
    if not labelled and pairs:
        split = split_eligibility([t for _, t, _ in pairs])
        if split is None:
            split = len(pairs)
            problems.append(warning(f"lines {pairs[0][0]}-{pairs[-1][0]}: eligibility list has no "
                                    "inclusion/exclusion labels or cues; all read as inclusion",
                                    "criteria"))
        else:
            where = (f"exclusion criteria inferred to start at line {pairs[split][0]} "
                     f"({snippet(pairs[split][1])!r})" if split < len(pairs)
                     else "no exclusion criteria inferred")
            problems.append(warning(f"eligibility list has no inclusion/exclusion labels: {where}, "
                                    "from cue phrases", "criteria"))
        pairs = [(n, t, i >= split) for i, (n, t, _) in enumerate(pairs)]
    data["criteria"] = [{"text": t, "exclude": x} for _, t, x in pairs]
    data["eligibility_text"] = "\n".join(t for _, t, _ in pairs) or None


def read(text: str, file: str) -> Iterator[tuple[dict, list[Problem]]]:
    """The one record of a web-page file, as a ``TrialSchema`` dict (without provenance), with
    the problems found."""
    problems: list[Problem] = []
    data: dict = {"identifiers": [], "conditions": [], "interventions": [], "outcomes": [],
                  "sites": [], "unplaced": []}
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if lines:
        title = clean(lines.pop(0)[1])
        data["brief_title"] = title
        data["identifiers"].append(derived_identifier(title))
    criteria: list[tuple[int, str]] = []
    blocks = _blocks(lines, problems, data)
    # Arms last: they need the interventions, wherever the page puts them.
    for block in sorted(blocks, key=lambda b: b.label == "Arm && Interventions"):
        kind = LABELS[block.label]
        if kind == _SINGLE:
            _single(block, data, problems, criteria)
        elif kind == _LIST:
            _list(block, data, problems)
        elif kind == _TEXT:
            key = block.label.lower().replace(" ", "_")
            data[key] = "\n\n".join(clean(line) for _, line in block.lines) or None
        elif kind == _LOCATIONS:
            _locations(block, data, problems)
        elif block.label == "Arm && Interventions":
            _arms(block, data, problems)
        else:
            _outcomes(block, data, problems)
    _criteria(criteria, data, problems)
    data["phases"], found = phases_from_text({"brief_title": data.get("brief_title"),
                                              "brief_summary": data.get("brief_summary")})
    problems += found
    yield data, problems
