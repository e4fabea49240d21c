"""Reading one criterion's text into parts and facts, precision first.

A criterion is split into parts (at ``;``, at a comma before a word, at a sentence end, at ``and``
before a new analyte; a lead-in ending in ``:`` is dropped). A part is a fact when it names known
analytes followed by exactly one value (or a ``>= a and <= b`` pair, read as a range) in a unit the
analyte accepts, and nothing else in it raises doubt; status analytes (HER2, ER, PR) need
``positive``/``negative`` right after the name, findings (pregnancy) must stand alone. An ``or``
inside a part keeps that part text; a part that begins with ``or`` makes the whole criterion a
disjunction, so doubtful, except a second threshold with a condition ("<= 2.5 x ULN, or <= 5 x ULN
with liver metastases"): the first threshold is the fact and the second, with its condition, its
note.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from fhirstudy.eligibility.lexicon import Lexicon, lexicon, normalise

MARK = re.compile(r"\s*§(\d+)§\s*")
_THOUSANDS_DOT = re.compile(r"\d{1,3}\.\d{3}")
_JOINERS = re.compile(r"^(?:\s|,|/|&|\[|\]|\(|\)|\band\b|\bas\s+well\s+as\b|\bboth\b)*$", re.IGNORECASE)
_WORD = re.compile(r"[a-z]+")
_SPLIT = re.compile(r";|,\s*(?=[^\d\s])|\.\s+(?=[A-Za-z])")
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_LEADING_OR = re.compile(r"[\s,;.]*or\b", re.IGNORECASE)
_PUNCT = re.compile(r"^[\s.,;:()\[\]'\"*-]*$")


@dataclass(frozen=True)
class Fact:
    """One checkable statement: an analyte (table key) and its value."""

    analyte: str
    comparator: str | None = None   # quantities: ">=", "<=", ">", "<", "="
    value: float | None = None
    low: float | None = None        # ranges, inclusive
    high: float | None = None
    unit: str = ""                  # UCUM code, "" for a unitless score or ratio
    interpretation: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Part:
    """A piece of a criterion and the facts it states (none: it stays text)."""

    text: str
    facts: tuple[Fact, ...] = ()
    joined_by: str = ""             # how it follows the part before: "and", "list" (, ; .) or ""


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int
    key: str


@dataclass(frozen=True)
class _Value:
    start: int
    end: int
    kind: str                      # between, cmp, range, list, single
    comparator: str | None
    numbers: tuple[str, ...]
    unit: str | None               # UCUM code, None when no unit is written
    bare_uln: bool = False


def _mentions(text: str, lex: Lexicon) -> list[_Mention]:
    found = sorted((m.start(), -(m.end() - m.start()), key == "", m.end(), key)
                   for key, pattern in lex.names for m in pattern.finditer(text) if m.end() > m.start())
    out: list[_Mention] = []
    for start, _, _, end, key in found:
        if not out or start >= out[-1].end:
            out.append(_Mention(start, end, key))
    return out


def _comparator(phrase: str, lex: Lexicon) -> str | None:
    phrase = " ".join(phrase.split())
    return next((code for code, pattern in lex.comparators if pattern.match(phrase)), None)


def _values(masked: str, lex: Lexicon) -> list[_Value]:
    out: list[_Value] = []
    pos = 0
    while (m := lex.values.search(masked, pos)) is not None:
        end, unit, comparator = m.end(), None, None
        if m.group("between"):
            kind, numbers = "between", (m.group("b_lo"), m.group("b_hi"))
        elif m.group("cmp"):
            kind, comparator = "cmp", _comparator(m.group("cmp"), lex)
            numbers = (m.group("num"),) if m.group("num") else ("1",)
        elif m.group("range"):
            kind, numbers = "range", (m.group("r_lo"), m.group("r_hi"))
        elif m.group("list"):
            kind, numbers = "list", tuple(re.findall(r"\d+(?:[.,]\d+)*", m.group("list")))
        else:
            kind, numbers = "single", (m.group("single"),)
        bare = bool(m.group("bare"))
        if bare:
            unit = lex.bare_unit
        elif (u := lex.unit_after.match(masked, end)) is not None:
            unit = lex.units[int(u.lastgroup[1:])][0]
            end = u.end()
        for code, pattern in lex.postfix:
            if (p := pattern.match(masked, end)) is not None:
                if kind == "single":
                    kind, comparator, end = "cmp", code, p.end()
                elif kind == "cmp" and comparator == code:   # ">= 5.7% or higher" says it twice
                    end = p.end()
                break
        out.append(_Value(m.start(), end, kind, comparator, numbers, unit, bare))
        pos = max(end, m.start() + 1)
    return out


def number(text: str) -> float | None:
    """A written number: ``1,500`` and ``100,000`` are thousands, ``1,5`` a decimal comma; anything
    else with a comma (``1,5,0``) is not a number."""
    text = text.replace(" ", "")
    if "," in text:
        groups = text.split(",")
        if "." not in text and all(len(g) == 3 for g in groups[1:]):
            return float("".join(groups))
        if "." not in text and len(groups) == 2:
            return float(".".join(groups))
        return None
    if text.count(".") > 1:
        return None
    return float(text)


def _blank(text: str, spans) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _split(text: str, mentions: list[_Mention], values: list[_Value], lex: Lexicon) -> list[tuple[int, int]] | None:
    """Part spans of ``text``: lead-in dropped, split at separators outside values, ``and`` split
    before a new analyte when the left side already has its value, a bare name list merged with the
    part that gives it its value."""
    inside = [(v.start, v.end) for v in values] + [(m.start, m.end) for m in mentions]
    begin = 0
    if (lead := lex.lead_in.match(text)) is not None:
        head = lead.end()
        if not any(m.start < head for m in mentions) and not any(v.start < head for v in values):
            if lex.lead_in_doubt.search(text[:head]):
                return None
            begin = head
    cuts = [m for m in _SPLIT.finditer(text, begin)
            if not any(s <= m.start() < e for s, e in inside)]
    spans, start = [], begin
    for cut in cuts:
        spans.append((start, cut.start()))
        start = cut.end()
    spans.append((start, len(text)))
    out: list[tuple[int, int]] = []
    for start, end in spans:
        out.extend(_split_and(text, start, end, mentions, values, lex))
    merged: list[tuple[int, int]] = []
    for span in out:
        if merged and _names_only(merged[-1], mentions, values, lex) and _has(span, mentions) and _has(span, values):
            merged[-1] = (merged[-1][0], span[1])
        else:
            merged.append(span)
    return [(s, e) for s, e in merged if text[s:e].strip(" ,;.")]


def _has(span, items) -> bool:
    return any(span[0] <= i.start < span[1] for i in items)


def _names_only(span, mentions, values, lex: Lexicon) -> bool:
    inside = [m for m in mentions if span[0] <= m.start < span[1]]
    return bool(inside) and not _has(span, values) and all(
        m.key and lex.analytes[m.key]["kind"] in ("quantity", "score") for m in inside)


def _split_and(text, start, end, mentions, values, lex: Lexicon) -> list[tuple[int, int]]:
    out = []
    for m in _AND.finditer(text, start, end):
        left, right = (start, m.start()), (m.end(), end)
        left_status = any(left[0] <= x.start < left[1] and x.key and lex.analytes[x.key]["kind"] == "status"
                          for x in mentions)
        if _has(right, mentions) and _has(left, mentions) and (_has(left, values) or left_status):
            out.append(left)
            start = m.end()
    out.append((start, end))
    return out


READ_CACHE = 1 << 14  # criteria remembered per process: the same wording recurs across trials


@lru_cache(maxsize=READ_CACHE)
def read(text: str, exclude: bool = False) -> tuple[Part, ...] | None:
    """The parts of a criterion and the facts each states, or None when the criterion as a whole is
    in doubt (an exception, an ``or`` between parts, ``and/or`` ...). In an exclusion criterion a
    list is a disjunction anyway, so ``, or`` before its last item is read as a list joint.

    A pure function of its arguments with an immutable answer (frozen dataclasses in tuples), so it
    is memoized: "Age >= 18 years" or "Pregnant or breastfeeding" is read once per process."""
    lex = lexicon()
    t = lex.ignorable.sub(" ", lex.restatement.sub(" ", normalise(text, lex)))
    if lex.doubt_criterion.search(t):
        return None
    notes: list[str] = []

    def _note(m: re.Match) -> str:
        body = m.group("body")
        if _mentions(body, lex):
            return m.group(0)
        joint = re.search(r"\b(or|and)\b", m.group("lead"), re.IGNORECASE)
        said = " ".join(body.split()).rstrip(" .,;")
        notes.append(f"{joint.group(1).lower()} {said}" if joint else said)
        return f" §{len(notes) - 1}§ "

    t = " ".join(lex.conditional.sub(_note, t).split())
    mentions = _mentions(t, lex)
    masked = _blank(t, [(m.start, m.end) for m in mentions])
    masked = MARK.sub(lambda m: " " * len(m.group(0)), masked)
    values = _values(masked, lex)
    parts = []
    spans = _split(t, mentions, values, lex)
    if spans is None:
        return None
    previous = None
    for start, end in spans:
        leading_or = _LEADING_OR.match(t, start)
        if leading_or and not (exclude and previous is not None):
            return None
        if leading_or:
            start = leading_or.end()
        joined_by = "" if previous is None else ("and" if re.search(r"\band\b", t[previous:start], re.I) else "list")
        previous = end
        start = lex.enumerator.match(t, start).end() if start < end else start
        pm = [m for m in mentions if start <= m.start < end]
        pv = [v for v in values if start <= v.start < end]
        marks = [int(i) for i in MARK.findall(t[start:end])]
        description = " ".join(MARK.sub(" ", t[start:end]).split()).strip(" ,;.")
        found = _read_part(t, start, end, pm, pv, lex)
        if found and marks:
            note = "; ".join(notes[i] for i in marks)
            found = tuple(Fact(**{**f.__dict__, "note": note}) for f in found)
        if found or pm or pv or not _PUNCT.match(description):
            parts.append(Part(description, found or (), joined_by if parts else ""))
    return tuple(parts)


def _residual_ok(text: str, start: int, end: int, spans, lex: Lexicon) -> bool:
    """Nothing doubtful left beside the names and the value, and every other word a filler word,
    except the term a definition defines: "Anemia (hemoglobin < 10 g/dL)", "renal impairment defined
    as eGFR < 30 ...", whose words are only checked for doubt."""
    rest = MARK.sub(lambda m: " " * len(m.group(0)), _blank(text, spans)[start:end])
    rest = lex.connectors.sub(lambda m: " " * len(m.group(0)), rest)
    if lex.doubt_part.search(rest):
        return False
    first = min(s for s, _ in spans) - start
    last = max(e for _, e in spans) - start
    head = rest[:first]
    if (d := lex.definition_head.match(head)) is not None:
        rest = " " * d.end() + rest[d.end():]
    else:
        open_ = head.rfind("(")
        if open_ >= 0 and ")" not in head[open_:] and ")" in rest[last:]:
            close = last + rest[last:].index(")")
            rest = " " * (open_ + 1) + rest[open_ + 1:close] + " " * (len(rest) - close)
    return all(w in lex.filler_words for w in _WORD.findall(rest.lower()))


def _read_part(t, start, end, pm, pv, lex: Lexicon) -> tuple[Fact, ...] | None:
    if not pm or any(not m.key for m in pm):
        return None
    kinds = {lex.analytes[m.key]["kind"] for m in pm}
    if kinds <= {"status", "finding"}:
        return _read_status(t, start, end, pm, pv, lex)
    if kinds & {"status", "finding"} or not pv:
        return None
    if pv[0].start < pm[-1].end:
        return None
    for a, b in zip(pm, pm[1:]):
        joint = t[a.end:b.start]
        if not _JOINERS.match(joint):
            return None
        if "/" in joint and a.key != b.key and (a.key, b.key) not in lex.slash_both:
            return None
    if lex.doubt_part.search(lex.connectors.sub(" ", t[pm[-1].end:pv[0].start])):
        return None
    chosen = _the_values(t, pv)
    if chosen is None:
        return None
    spans = [(m.start, m.end) for m in pm] + [(v.start, v.end) for v in pv]
    if not _residual_ok(t, start, end, spans, lex):
        return None
    keys = list(dict.fromkeys(m.key for m in pm))
    if len(chosen) > 1 and len(keys) > 1:
        return None
    facts = tuple(_fact(lex.analytes[k], value, lex) for k in keys for value in chosen)
    return facts if all(facts) else None


def _the_values(t, pv: list[_Value]) -> list[_Value] | None:
    """The part's values: one value; or a lower and an upper bound (``>= a and <= b``, ``> a < b``),
    one inclusive range when both are inclusive, else both bounds as two facts (all of them)."""
    if len(pv) == 1:
        return pv
    if len(pv) == 2:
        a, b = pv
        if (a.kind == b.kind == "cmp" and a.comparator in (">=", ">") and b.comparator in ("<=", "<")
                and re.fullmatch(r"\s*(?:and\s*)?", t[a.end:b.start]) and (a.unit is None or b.unit is None or a.unit == b.unit)):
            unit = b.unit or a.unit
            if a.comparator == ">=" and b.comparator == "<=":
                return [_Value(a.start, b.end, "between", None, (a.numbers[0], b.numbers[0]), unit)]
            return [_Value(a.start, a.end, "cmp", a.comparator, a.numbers, unit), _Value(b.start, b.end, "cmp", b.comparator, b.numbers, unit)]
    return None


def _fact(analyte: dict, v: _Value, lex: Lexicon) -> Fact | None:
    numbers = [number(n) for n in v.numbers]
    if any(n is None for n in numbers):
        return None
    unit = v.unit
    if analyte["kind"] == "score":
        if unit is not None and unit not in analyte.get("drop_units", []):
            return None
        low, high = analyte["range"]
        if not all(n == int(n) and low <= n <= high for n in numbers):
            return None
        if v.kind == "single":
            return Fact(analyte["key"], "=", numbers[0])
        if v.kind == "list":
            ints = [int(n) for n in numbers]
            if ints != list(range(ints[0], ints[0] + len(ints))) or len(ints) < 2:
                return None
            return Fact(analyte["key"], low=ints[0], high=ints[-1])
        if v.kind in ("range", "between"):
            return Fact(analyte["key"], low=numbers[0], high=numbers[1]) if numbers[0] < numbers[1] else None
        return Fact(analyte["key"], v.comparator, numbers[0])
    if unit is None:
        unit = analyte.get("implied_unit", "" if "" in analyte["units"] else None)
    if unit is None or unit not in analyte["units"] + ([analyte["implied_unit"]] if "implied_unit" in analyte else []):
        return None
    if unit in lex.count_units and any(_THOUSANDS_DOT.fullmatch(n) for n in v.numbers):
        return None
    if v.kind == "cmp" and v.comparator:
        return Fact(analyte["key"], v.comparator, numbers[0], unit=unit)
    if v.kind in ("range", "between") and numbers[0] < numbers[1]:
        return Fact(analyte["key"], low=numbers[0], high=numbers[1], unit=unit)
    return None


_STATUS_JOIN = re.compile(r"\s*(?:status\s*)?(?:[:=]\s*|is\s+|-\s*)?", re.IGNORECASE)


def _read_status(t, start, end, pm, pv, lex: Lexicon) -> tuple[Fact, ...] | None:
    if pv or len(pm) != 1:
        return None
    m = pm[0]
    analyte = lex.analytes[m.key]
    if analyte["kind"] == "finding":
        rest = _blank(t, [(m.start, m.end)])[start:end]
        rest = re.sub(analyte["filler"], " ", rest, flags=re.IGNORECASE)
        return (Fact(m.key, interpretation=analyte["values"][0]),) if _PUNCT.match(rest) else None
    for key in analyte["values"]:
        pattern = lex.interpretations[key]["pattern"]
        for join in (_STATUS_JOIN.match(t, m.end), None):
            at = join.end() if join else m.end
            if (i := pattern.match(t, at)) is not None:
                rest = _blank(t, [(m.start, i.end())])[start:end]
                rest = lex.status_filler.sub(" ", rest)
                return (Fact(m.key, interpretation=key),) if _PUNCT.match(rest) else None
    return None
