"""The table ``eligibility-facts.json``, compiled once: normalisation, analyte names, units,
comparators and the doubt wording, as regular expressions ready to scan a criterion."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from fhirstudy.terminology import load_mapping

TABLE = "eligibility-facts.json"
NUMBER = r"(?<![\d.,^*])(?:\d{1,3}(?: \d{3})+(?![\d.,])|\d+(?:[.,]\d+)*)(?![\d])"


@dataclass(frozen=True)
class Lexicon:
    """Everything the reader needs, compiled from the table."""

    analytes: dict            # key -> analyte entry of the table
    names: tuple              # (key, compiled name pattern), one per name, "" key = another analyte
    units: tuple              # (code, unit) by group index u0, u1, ...
    bare_unit: str            # the code of a unit that stands alone for one of it ("<= ULN")
    values: re.Pattern        # the numeric core of one value (see _value_pattern)
    unit_after: re.Pattern    # a unit right after it, group u<i> = units[i]
    postfix: tuple            # (code, compiled phrase after a value: "or greater")
    conditional: re.Pattern   # a second, conditional threshold ("or <= 5 x ULN with liver metastases")
    restatement: re.Pattern   # a value repeated in other units in brackets: "(1.5 x 10^9/L)"
    doubt_criterion: re.Pattern
    doubt_part: re.Pattern
    connectors: re.Pattern
    lead_in: re.Pattern
    lead_in_doubt: re.Pattern  # a lead-in naming a subgroup ("Adolescent participants:") dooms the criterion
    comparators: tuple        # (code, compiled phrase) in table order
    interpretations: dict     # key -> entry with compiled "pattern" where it has one
    status_filler: re.Pattern
    filler_words: frozenset   # words a part may hold beside its names and value
    definition_head: re.Pattern
    enumerator: re.Pattern
    count_units: frozenset
    replace: tuple            # (written, normal) longest first
    ucum: str                 # the UCUM system URL
    slash_both: frozenset     # (key, key) pairs a slash joins as "each of them"
    ignorable: re.Pattern     # how a value is measured ("by echocardiogram or MUGA"): blanked before reading


def _alternation(patterns) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def _comparator_alternation(table: dict) -> str:
    phrases = [(code, p) for code, ps in table.items() for p in ps]
    return _alternation(p for _, p in phrases)


def _units_alternation(units: list) -> str:
    return "|".join(f"(?P<u{i}>{u['pattern']})" for i, u in enumerate(units) if not u.get("bare"))


def _value_pattern(data: dict) -> str:
    """The numeric core of a value, alternatives tried left to right at each position:
    between-range, comparator-led number (or a bare ULN), range, score list, bare number. The unit
    and a postfix comparator after it are matched separately (:attr:`Lexicon.unit_after`)."""
    cmp_ = _comparator_alternation(data["comparators"])
    units = data["units"]
    bare = _alternation(u["pattern"] for u in units if u.get("bare"))
    any_unit = _alternation(u["pattern"] for u in units if not u.get("bare"))
    conn = data["connectors"]
    join = _alternation(data["range_joiners"])
    lst = _alternation(data["score_list_joiners"])
    n = NUMBER
    return (
        rf"(?P<between>\bbetween\s+(?P<b_lo>{n})\s*(?:{any_unit})?\s*and\s+(?P<b_hi>{n}))"
        rf"|(?P<cmp>{cmp_})\s*(?:(?:{conn})\s*)*(?:(?P<num>{n})|(?P<bare>{bare}))"
        rf"|(?P<range>(?P<r_lo>{n})\s*(?:%\s*)?(?:{join})\s*(?P<r_hi>{n}))"
        rf"|(?P<list>{n}(?:\s*(?:{lst})\s*{n})+)"
        rf"|(?P<single>{n})"
    )


def normalise(text: str, lex: "Lexicon | None" = None) -> str:
    """``text`` as the reader scans it: NFKC, the table's replacements, spaces collapsed."""
    lex = lex or lexicon()
    out = unicodedata.normalize("NFKC", text)
    for written, normal in lex.replace:
        out = out.replace(written, normal)
    return " ".join(out.split())


@lru_cache(maxsize=None)
def lexicon() -> Lexicon:
    """The compiled table (once per process)."""
    data = load_mapping(TABLE)
    flags = re.IGNORECASE
    names = [(a["key"], re.compile(p, flags)) for a in data["analytes"] for p in a["names"]]
    names += [("", re.compile(p, flags)) for p in data["other_analytes"]["names"]]
    units = data["units"]
    unit_groups = tuple((u["code"], u["unit"]) for u in units)
    any_unit = _alternation(u["pattern"] for u in units if not u.get("bare"))
    cmp_ = _comparator_alternation(data["comparators"])
    cond = data["conditions"]
    conditional = (rf"(?P<lead>[,;]?\s*\(?\s*(?:or|and)\s+|\(\s*(?:or\s+)?)"
                   rf"(?P<body>(?:{cmp_})\s*{NUMBER}\s*(?:{any_unit})?[^;()]*?(?:{cond})[^;()]*?)(?P<tail>\)|(?=;)|$|(?=\.\s))")
    restatement = rf"\(\s*(?:or\s+)?(?:(?:{cmp_})\s*)?{NUMBER}(?:\s*(?:-|to)\s*{NUMBER})?\s*(?:{any_unit})\s*\)"
    interpretations = {k: dict(v, pattern=re.compile(v["pattern"], flags)) if "pattern" in v else v
                       for k, v in data["interpretations"].items() if not k.startswith("_")}
    replace = sorted(data["normalise"]["replace"].items(), key=lambda kv: -len(kv[0]))
    return Lexicon(
        analytes={a["key"]: a for a in data["analytes"]},
        names=tuple(names),
        units=unit_groups,
        bare_unit=next(u["code"] for u in units if u.get("bare")),
        values=re.compile(_value_pattern(data), flags),
        unit_after=re.compile(rf"\s*(?:{_units_alternation(units)})", flags),
        postfix=tuple((code, re.compile(rf"\s*(?:{p})\b", flags))
                      for code, ps in data["postfix_comparators"].items() for p in ps),
        conditional=re.compile(conditional, flags),
        restatement=re.compile(restatement, flags),
        doubt_criterion=re.compile(_alternation(data["doubt"]["criterion"]), flags),
        doubt_part=re.compile(_alternation(data["doubt"]["part"]), flags),
        connectors=re.compile(data["connectors"], flags),
        lead_in=re.compile(data["lead_in"], flags),
        lead_in_doubt=re.compile(data["lead_in_doubt"], flags),
        comparators=tuple((code, re.compile(rf"^(?:{p})$", flags))
                          for code, ps in data["comparators"].items() for p in ps),
        interpretations=interpretations,
        status_filler=re.compile(data["status_filler"], flags),
        filler_words=frozenset(data["filler_words"].split()),
        definition_head=re.compile(data["definition_head"], flags),
        enumerator=re.compile(data["enumerator"], flags),
        count_units=frozenset(data["count_units"]),
        replace=tuple(replace),
        ucum=data["ucum"],
        slash_both=frozenset(tuple(p) for p in data["slash_both"]["pairs"]),
        ignorable=re.compile(_alternation(data["ignorable"]["patterns"]), flags),
    )
