"""Narratives of a trial's posted results: each result Group (name, description, size), each
Evidence (its statistics: value, unit, denominator, estimates) and each report Composition (title,
type, date and sections)."""
from __future__ import annotations

from .xhtml import bold, concept_text, heading, items, labelled, number, para, quantity, text

MAX_STATISTICS = 10  # statistics an Evidence's narrative lists; the rest are counted (adverse events run to hundreds)
MAX_SECTIONS = 30    # sections a report's narrative lists
SHORT_DESCRIPTION = 200  # an Evidence's description is shown up to this length (an analysis's compared groups)
STARTED = "STARTED"  # the participant-flow milestone that gives a group's size


def group_sizes(resources: list[dict]) -> dict[str, int]:
    """``Group/<id>`` -> participants who started, from the first participant-flow Evidence of each
    group (the milestone STARTED); groups without one are absent."""
    sizes: dict[str, int] = {}
    for r in resources:
        if r["resourceType"] != "Evidence":
            continue
        started = next((s for s in r.get("statistic", ()) if (s.get("category") or {}).get("text") == STARTED), None)
        if started is None or (started.get("quantity") or {}).get("value") is None:
            continue
        for v in r.get("variableDefinition", ()):
            ref = (v.get("observed") or {}).get("reference", "")
            if ref.startswith("Group/") and ref not in sizes:
                sizes[ref] = started["quantity"]["value"]
    return sizes


def group(g: dict, context) -> str:
    """A result group: its name, description and size (participants who started)."""
    size = context.group_sizes().get(f"Group/{g['id']}")
    if size is None:
        size = g.get("quantity")
    return "".join((
        heading(g.get("name") or g["id"]),
        para(g["description"]) if g.get("description") else "",
        labelled("Participants", number(size) if size is not None else None),
    ))


def _range(r: dict | None) -> str | None:
    if not r:
        return None
    low, high = quantity(r.get("low")), quantity(r.get("high"))
    if low is None and high is None:
        return None
    return f"{low if low is not None else '?'} to {high if high is not None else '?'}"


def _estimate(a: dict) -> str | None:
    name = concept_text(a.get("type")) or "estimate"
    level = a.get("level")
    if level is not None:
        name = f"{number(round(level * 100, 6))}% {name}"
    value = quantity(a.get("quantity")) or _range(a.get("range"))
    return f"{name} {value}" if value else None


def _statistic(s: dict) -> str:
    """One statistic on one line: category (else type), value and unit, then the type, the
    denominator, participants affected and events, and the estimates (p-value, interval, spread)."""
    category, kind = concept_text(s.get("category")), concept_text(s.get("statisticType"))
    method = next((concept_text(m.get("code")) for m in s.get("modelCharacteristic", ()) if m.get("code")), None)
    label = category or kind or method
    value = quantity(s.get("quantity")) or s.get("description")
    line = f"{label}: {value}" if label and value else (label or value or "statistic")
    sample = (s.get("sampleSize") or {}).get("numberOfParticipants")
    extra = [kind if category else None, method if method != label else None,
             f"n = {sample}" if sample is not None else None,
             f"{s['numberAffected']} affected" if s.get("numberAffected") is not None else None,
             f"{s['numberOfEvents']} events" if s.get("numberOfEvents") is not None else None,
             *(_estimate(a) for a in s.get("attributeEstimate", ()))]
    extra = [e for e in extra if e]
    return text(line + (f" ({'; '.join(extra)})" if extra else ""))


def evidence(e: dict, context) -> str:
    """An Evidence: its title, its description when short, then its statistics (the first
    ``MAX_STATISTICS``, the rest counted)."""
    statistics = e.get("statistic", ())
    shown = [_statistic(s) for s in statistics[:MAX_STATISTICS]]
    more = len(statistics) - len(shown)
    return "".join((
        heading(e.get("title") or e["id"]),
        para(e["description"]) if len(e.get("description") or "") in range(1, SHORT_DESCRIPTION + 1) else "",
        items(shown),
        para(f"... and {more} more statistics") if more > 0 else "",
    ))


def composition(c: dict, context) -> str:
    """A report: its title, type, status, date and subject, then its sections (entries counted)."""
    subjects = c.get("subject") or ()
    subjects = [subjects] if isinstance(subjects, dict) else subjects  # R4: one Reference
    subject = "; ".join(s.get("display") or s.get("reference", "") for s in subjects)
    sections = []
    for s in c.get("section", ())[:MAX_SECTIONS]:
        n = len(s.get("entry", ()))
        sections.append(bold(s.get("title") or concept_text(s.get("code")) or "Section")
                        + (text(f" ({n} {'entry' if n == 1 else 'entries'})") if n else ""))
    more = len(c.get("section", ())) - len(sections)
    return "".join((
        heading(c.get("title") or concept_text(c.get("type")) or c["id"]),
        para(", ".join(x for x in (concept_text(c.get("type")), c.get("status"), c.get("date")) if x)),
        labelled("Study", subject or None),
        items(sections),
        para(f"... and {more} more sections") if more > 0 else "",
    ))
