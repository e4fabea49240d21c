"""``<clinical_results>`` of one legacy ``<clinical_study>`` view -> the ``results`` of a
``TrialSchema`` dict (for :mod:`._ctgov_xml_study`), in the shape the API v2 reader gives.

Legacy display values ("Count of Participants", "Standard Deviation", "Primary") become API v2
names through ``mappings/ctgov-legacy-values.json``; one no table knows stays as written. Group
ids are the file's (``P1``, ``B1``, ``O1``, ``E1``). What differs from API v2:

- the totals of serious and other adverse events are a category titled ``Total`` whose event
  ``Total, serious adverse events`` holds them: they become the event groups' totals, not a term;
- ``<certain_agreements>`` holds statements, not flags: the flags are read from the registry's
  fixed wording ("... ARE employed ...", "There is NOT an agreement ...") and the statements are
  kept as written (``agreement_details``);
- ``<default_vocab>`` and ``<default_assessment>`` apply to each event without its own.
"""
from __future__ import annotations

import re

from ._ctgov import phone
from ._ctgov_json_results import enum_name
from ._ctgov_legacy import TEXT, element_text, one_line, paragraphs
from ._fields import Fields

TOTAL_CATEGORY = "Total"
_TOTAL_EVENT = re.compile(r"^Total,\s*(serious|other)\b", re.IGNORECASE)
_PI_EMPLOYEE = ((re.compile(r"\bARE employed\b"), True), (re.compile(r"\bare NOT employed\b", re.IGNORECASE), False))
_RESTRICTIVE = ((re.compile(r"\bThere is NOT an agreement\b", re.IGNORECASE), False),
                (re.compile(r"\bThere IS an agreement\b"), True))


def _each(f: Fields, key: str) -> list[Fields]:
    node = f.node(key)
    if node.value is None:
        return []
    return f.nodes(key) if isinstance(node.value, list) else [node]


def _text(f: Fields, key: str) -> str | None:
    return one_line(element_text(f, key))


def _block(f: Fields, key: str) -> str | None:
    return paragraphs(element_text(f, key))


def _attr(f: Fields, key: str, name: str) -> str | None:
    node = f.node(key) if key else f
    if not isinstance(node.value, dict):
        return None
    value = f.get(f"{key}.@{name}" if key else f"@{name}")
    return value.strip() or None if isinstance(value, str) else None


def _integer(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def clinical_results(f: Fields) -> dict | None:
    """The Trial's ``results`` from ``<clinical_results>`` (None when the record has none)."""
    root = f.node("clinical_results")
    if not isinstance(root.value, dict):
        return None
    flow = root.node("participant_flow")
    baseline = root.node("baseline")
    events = root.node("reported_events")
    return {
        "participant_flow": _flow(flow) if isinstance(flow.value, dict) else None,
        "baseline": _baseline(baseline) if isinstance(baseline.value, dict) else None,
        "outcome_measures": [m for node in _each(root, "outcome_list.outcome") if (m := _outcome(node))],
        "adverse_events": _events(events) if isinstance(events.value, dict) else None,
        "more_info": _more_info(root),
    }


def _groups(f: Fields) -> list[dict]:
    return [{"id": gid, "title": _text(g, "title"), "description": _block(g, "description")}
            for g in _each(f, "group_list.group") if (gid := _attr(g, "", "group_id"))]


def _participants(f: Fields) -> list[dict]:
    return [{"group_id": gid, "value": _attr(p, "", "count"), "comment": _text(p, TEXT)}
            for p in _each(f, "participants_list.participants") if (gid := _attr(p, "", "group_id"))]


def _flow(f: Fields) -> dict:
    periods = []
    for period in _each(f, "period_list.period"):
        periods.append({
            "title": _text(period, "title"),
            "milestones": [{"type": t, "counts": _participants(m)}
                           for m in _each(period, "milestone_list.milestone") if (t := _text(m, "title"))],
            "drop_withdraws": [{"type": t, "counts": _participants(m)}
                               for m in _each(period, "drop_withdraw_reason_list.drop_withdraw_reason")
                               if (t := _text(m, "title"))],
        })
    return {"recruitment_details": _block(f, "recruitment_details"),
            "pre_assignment_details": _block(f, "pre_assignment_details"),
            "groups": _groups(f), "periods": periods}


def _denoms(f: Fields) -> list[dict]:
    out = []
    for analyzed in _each(f, "analyzed_list.analyzed"):
        analyzed.mark("scope")  # Overall / Measure / Class: where the list stands says it
        out.append({"units": _text(analyzed, "units"),
                    "counts": [{"group_id": gid, "value": _attr(c, "", "value")}
                               for c in _each(analyzed, "count_list.count") if (gid := _attr(c, "", "group_id"))]})
    return out


def _measure(f: Fields) -> dict:
    classes = []
    for klass in _each(f, "class_list.class"):
        categories = []
        for category in _each(klass, "category_list.category"):
            categories.append({"title": _text(category, "title"), "measurements": [
                {"group_id": gid, "value": _attr(m, "", "value"), "spread": _attr(m, "", "spread"),
                 "lower_limit": _attr(m, "", "lower_limit"), "upper_limit": _attr(m, "", "upper_limit"),
                 "comment": _text(m, TEXT)}
                for m in _each(category, "measurement_list.measurement") if (gid := _attr(m, "", "group_id"))]})
        classes.append({"title": _text(klass, "title"), "denoms": _denoms(klass), "categories": categories})
    return {"title": _text(f, "title"), "description": _block(f, "description"),
            "population_description": _block(f, "population"),
            "param_type": enum_name("measureParam", _text(f, "param")),
            "dispersion_type": enum_name("dispersionType", _text(f, "dispersion")),
            "unit_of_measure": _text(f, "units"), "type_units_analyzed": _text(f, "units_analyzed"),
            "denoms": _denoms(f), "classes": classes}


def _baseline(f: Fields) -> dict:
    return {"population_description": _block(f, "population"), "groups": _groups(f), "denoms": _denoms(f),
            "measures": [m for node in _each(f, "measure_list.measure") if (m := _measure(node))["title"]]}


def _outcome(f: Fields) -> dict | None:
    title = _text(f, "title")
    if not title:
        return None
    measure = _measure(f.node("measure")) if isinstance(f.node("measure").value, dict) else {}
    measure = {k: v for k, v in measure.items() if v not in (None, [])}
    return {**measure, "title": title, "kind": enum_name("outcomeMeasureType", _text(f, "type")),
            "description": _block(f, "description") or measure.get("description"),
            "population_description": _block(f, "population") or measure.get("population_description"),
            "time_frame": _text(f, "time_frame"), "anticipated_posting_date": _text(f, "posting_date"),
            "reporting_status": "POSTED" if measure.get("classes") else None,
            "groups": _groups(f), "analyses": [_analysis(a) for a in _each(f, "analysis_list.analysis")]}


def _analysis(f: Fields) -> dict:
    value = f.get("group_id_list.group_id")
    ids = [one_line(v.get(TEXT) if isinstance(v, dict) else v)
           for v in (value if isinstance(value, list) else [value] if value else [])]
    method, method_desc = _text(f, "method"), _block(f, "method_desc")
    return {
        "group_ids": [i for i in ids if i], "group_description": _block(f, "groups_desc"),
        "non_inferiority_type": enum_name("nonInferiorityType", _text(f, "non_inferiority_type")),
        "non_inferiority_comment": _block(f, "non_inferiority_desc"),
        "p_value": _text(f, "p_value"), "p_value_comment": _block(f, "p_value_desc"),
        "statistical_method": method, "statistical_comment": method_desc,
        "param_type": _text(f, "param_type"), "param_value": _text(f, "param_value"),
        "dispersion_type": enum_name("analysisDispersionType", _text(f, "dispersion_type")),
        "dispersion_value": _text(f, "dispersion_value"),
        "ci_pct_value": _text(f, "ci_percent"), "ci_num_sides": enum_name("ciNumSides", _text(f, "ci_n_sides")),
        "ci_lower_limit": _text(f, "ci_lower_limit"), "ci_upper_limit": _text(f, "ci_upper_limit"),
        "ci_upper_limit_comment": _block(f, "ci_upper_limit_na_comment"),
        "estimate_comment": _block(f, "estimate_desc"),
        "other_analysis_description": _block(f, "other_analysis_desc"),
    }


def _events(f: Fields) -> dict:
    groups = {g["id"]: g for g in _groups(f)}
    events = []
    threshold = None
    for key, serious in (("serious_events", True), ("other_events", False)):
        part = f.node(key)
        if not isinstance(part.value, dict):
            continue
        threshold = _text(part, "frequency_threshold") or threshold
        vocabulary, assessment = _text(part, "default_vocab"), _text(part, "default_assessment")
        kind = "serious" if serious else "other"
        for category in _each(part, "category_list.category"):
            organ_system = _text(category, "title")
            for event in _each(category, "event_list.event"):
                term = _text(event, "sub_title")
                counts = [{"group_id": gid, "num_events": _integer(_attr(c, "", "events")),
                           "num_affected": _integer(_attr(c, "", "subjects_affected")),
                           "num_at_risk": _integer(_attr(c, "", "subjects_at_risk"))}
                          for c in _each(event, "counts") if (gid := _attr(c, "", "group_id"))]
                if organ_system == TOTAL_CATEGORY and term and _TOTAL_EVENT.match(term):
                    for c in counts:
                        group = groups.setdefault(c["group_id"], {"id": c["group_id"]})
                        group[f"{kind}_num_affected"] = c["num_affected"]
                        group[f"{kind}_num_at_risk"] = c["num_at_risk"]
                    continue
                if not term:
                    continue
                events.append({"term": term, "serious": serious, "organ_system": organ_system,
                               "source_vocabulary": _attr(event, "sub_title", "vocab") or vocabulary,
                               "assessment_type": enum_name("eventAssessment", _text(event, "assessment") or assessment),
                               "notes": _block(event, "description"), "stats": counts})
    return {"frequency_threshold": threshold, "time_frame": _block(f, "time_frame"),
            "description": _block(f, "desc"), "groups": list(groups.values()), "events": events}


def _flag(text: str | None, patterns) -> bool | None:
    return next((value for pattern, value in patterns if text and pattern.search(text)), None)


def _more_info(f: Fields) -> dict | None:
    pi, restrictive = _block(f, "certain_agreements.pi_employee"), _block(f, "certain_agreements.restrictive_agreement")
    contact = f.node("point_of_contact")
    limitations = _block(f, "limitations_and_caveats")
    if not (pi or restrictive or limitations or isinstance(contact.value, dict)):
        return None
    return {"limitations": limitations,
            "pi_sponsor_employee": _flag(pi, _PI_EMPLOYEE), "restrictive_agreement": _flag(restrictive, _RESTRICTIVE),
            "agreement_details": "\n\n".join(t for t in (pi, restrictive) if t) or None,
            "contact_title": _text(contact, "name_or_title"), "contact_organization": _text(contact, "organization"),
            "contact_email": _text(contact, "email"),
            "contact_phone": phone(_text(contact, "phone"), _text(contact, "phone_ext"))}
