"""One ``<clinical_study>`` view -> a ``TrialSchema`` dict, element by element (for
:mod:`.ctgov_xml`, which streams and parses the records)."""
from __future__ import annotations

from typing import Any

from ..errors import Problem
from . import _ctgov
from ._boundary import FHIR_UNSIGNED_INT_MAX, whole_number
from ._criteria import split_criteria
from ._ctgov_xml_results import clinical_results
from ._ctgov_legacy import (
    NCT_ID,
    TEXT,
    block_text,
    download_date,
    element_text,
    masking,
    one_line,
    paragraphs,
    partial_date,
    read_value,
    table,
)
from ._fields import Fields
from ._text import error, warning


# Posting dates under their current element name, then the pre-2017 name read when it is absent.
_POSTED_DATES = (
    ("first_posted_date", "study_first_posted", "firstreceived_date"),
    ("last_update_date", "last_update_posted", "lastchanged_date"),
    ("results_first_posted_date", "results_first_posted", "firstreceived_results_date"),
)
_PERIOD_DATES = ("start_date", "primary_completion_date", "completion_date")
_OUTCOME_KINDS = (("primary", "primary_outcome"), ("secondary", "secondary_outcome"), ("other", "other_outcome"))
_DESIGN = (("allocation", "allocation"), ("intervention_model", "interventionModel"),
           ("primary_purpose", "primaryPurpose"), ("observational_model", "observationalModel"),
           ("time_perspective", "timePerspective"))


def _each(f: Fields, key: str) -> list[Fields]:
    """The nodes of a tag that may repeat: one node, the items of a list, or none."""
    value = f.at(key)
    if value is None:
        return []
    if isinstance(value, list):
        return f.nodes(key)
    return [f.node(key)]


def _text(f: Fields, key: str) -> str | None:
    """An element's text with whitespace collapsed, or None."""
    return one_line(element_text(f, key))


def _attr(f: Fields, key: str, name: str) -> str | None:
    return f.get(f"{key}.@{name}") if isinstance(f.at(key), dict) else None


def _date(f: Fields, key: str, problems: list[Problem], field: str) -> str | None:
    try:
        return partial_date(_text(f, key))
    except ValueError as exc:
        problems.append(warning(f"<{key}>: {exc}; left empty", field))
        return None


def _period_date(f: Fields, key: str, problems: list[Problem]) -> dict | None:
    date = _date(f, key, problems, key)
    if date is None:
        _attr(f, key, "type")
        return None
    kind = read_value("dateType", _attr(f, key, "type"), key, f"<{key} type>", problems, "warning")
    return {"date": date, "type": kind}


def _yes_no(f: Fields, key: str, field: str, problems: list[Problem]) -> bool | None:
    return read_value("yesNo", _text(f, key), field, f"<{key}>", problems, "warning")


def _person_name(f: Fields) -> str | None:
    parts = [_text(f, k) for k in ("first_name", "middle_name", "last_name")]
    return " ".join(p for p in parts if p) or None


def _contact(f: Fields, role: str | None) -> dict | None:
    name = _person_name(f)
    if name is None:
        return None
    return {"name": name, "role": role, "is_person": True, "title": _text(f, "degrees"),
            "phone": _ctgov.phone(_text(f, "phone"), _text(f, "phone_ext")), "email": _text(f, "email")}


def _identifiers(f: Fields, nct: str, sponsor: str | None) -> list[dict]:
    out = [{"value": nct, "kind": "nct"}]
    seen = {nct}
    org = _text(f, "id_info.org_study_id")
    if org:
        out.append({"value": org, "kind": "org", "assigner": sponsor})
        seen.add(org)
    for key, kind in (("secondary_id", None), ("nct_alias", "NCT alias")):
        for value in _texts(f, f"id_info.{key}"):
            if value not in seen:
                seen.add(value)
                out.append({"value": value, "kind": "secondary", "type": kind})
    return out


def _texts(f: Fields, key: str) -> list[str]:
    """The texts of a tag that may repeat (a leaf or a list of leaves), all marked used."""
    value = f.get(key)
    items = value if isinstance(value, list) else [] if value is None else [value]
    texts = (one_line(item.get(TEXT) if isinstance(item, dict) else item) for item in items)
    return [t for t in texts if t]


def convert(study: Any, ignored: frozenset[str], accounting: bool = True) -> tuple[dict | None, list[Problem], list[str]]:
    """One ``<clinical_study>`` view as a ``TrialSchema`` dict without provenance, the problems
    found, and the element paths left unmapped (other than ``ignored``)."""
    f = Fields(study if isinstance(study, dict) else {}, accounting=accounting)
    problems: list[Problem] = []
    nct = _text(f, "id_info.nct_id")
    if not nct or not NCT_ID.match(nct):
        reason = (f"<id_info><nct_id> {nct!r} is not an NCT number (NCT followed by 8 digits)" if nct else
                  "no <id_info><nct_id>: the record cannot be identified")
        problems.append(error(f"{reason}; record skipped", "identifiers"))
        return None, problems, []  # a skipped record has no field accounting
    data: dict[str, Any] = {"_source_date": download_date(_text(f, "required_header.download_date"))}

    sponsor_name = _text(f, "sponsors.lead_sponsor.agency")
    data["identifiers"] = _identifiers(f, nct, sponsor_name)
    data["brief_title"] = _text(f, "brief_title")
    data["official_title"] = _text(f, "official_title")
    data["acronym"] = _text(f, "acronym")
    if not data["brief_title"]:
        data["brief_title"] = data["official_title"]
        problems.append(warning("no <brief_title>: the official title is used as the title", "brief_title")
                        if data["official_title"] else error("no <brief_title> nor <official_title>", "brief_title"))

    data["sponsor"] = _party(f, "sponsors.lead_sponsor", "lead-sponsor", problems)
    data["collaborators"] = [p for node in _each(f, "sponsors.collaborator")
                             if (p := _party(node, "", "collaborator", problems))]

    data["brief_summary"] = paragraphs(element_text(f, "brief_summary.textblock"))
    data["detailed_description"] = paragraphs(element_text(f, "detailed_description.textblock"))

    data["overall_status"] = read_value("overallStatus", _text(f, "overall_status"), "overall_status",
                                        "<overall_status>", problems)
    data["last_known_status"] = read_value("overallStatus", _text(f, "last_known_status"), "last_known_status",
                                           "<last_known_status>", problems)
    data["why_stopped"] = _text(f, "why_stopped")
    for key in _PERIOD_DATES:
        data[key] = _period_date(f, key, problems)
    data["status_verified_date"] = _date(f, "verification_date", problems, "status_verified_date")
    for field, key, old in _POSTED_DATES:
        data[field] = _date(f, key, problems, field) or _date(f, old, problems, field)
        f.mark(old)  # superseded by the current name when both are given
    data["has_results"] = f.node("clinical_results").value is not None or bool(data["results_first_posted_date"])

    phase = _text(f, "phase")
    data["phases"] = read_value("phase", phase, "phases", "<phase>", problems) or []
    study_type = _text(f, "study_type")
    data["study_type"] = read_value("studyType", study_type, "study_type", "<study_type>", problems)
    if study_type and "patient registry" in study_type.lower():
        data["patient_registry"] = True
    _design(f, data, problems)
    data["target_duration"] = _text(f, "target_duration")
    data["bio_spec_retention"] = read_value("bioSpecRetention", _text(f, "biospec_retention"), "bio_spec_retention",
                                            "<biospec_retention>", problems, "warning")
    data["bio_spec_description"] = paragraphs(element_text(f, "biospec_descr.textblock"))
    data["expanded_access_types"] = [
        name for key, name in table("expandedAccessType").items()
        if _yes_no(f, f"expanded_access_info.{key}", "expanded_access_types", problems)]
    data["oversight"] = [{"name": name, "value": value} for key, name in table("oversight").items()
                         if (value := _yes_no(f, f"oversight_info.{key}", "oversight", problems)) is not None]

    enrollment = _text(f, "enrollment")
    if enrollment is not None:
        data["enrollment"] = whole_number(enrollment)
        if data["enrollment"] is not None:
            data["enrollment_type"] = read_value("dateType", _attr(f, "enrollment", "type"), "enrollment_type",
                                                 "<enrollment type>", problems, "warning")
        else:
            problems.append(warning(f"<enrollment> {enrollment!r} is not a whole number from 0 to "
                                    f"{FHIR_UNSIGNED_INT_MAX}; left empty", "enrollment"))
    data["conditions"] = _texts(f, "condition")
    data["keywords"] = _texts(f, "keyword")

    data["interventions"] = [i for node in _each(f, "intervention") if (i := _intervention(node, problems))]
    data["arms"] = [a for node in _each(f, "arm_group") if (a := _arm(node, data["interventions"], problems))]
    data["outcomes"] = [o for kind, key in _OUTCOME_KINDS for node in _each(f, key) if (o := _outcome(node, kind))]
    _eligibility(f, data, problems)

    data["officials"] = [p for node in _each(f, "overall_official") if (p := _official(node, problems))]
    data["officials"] += _responsible_party(f)
    data["contacts"] = [c for key in ("overall_contact", "overall_contact_backup") for node in _each(f, key)
                        if (c := _contact(node, _ctgov.DEFAULT_CONTACT_ROLE))]
    data["sites"] = [_site(node, problems) for node in _each(f, "location")]
    data["references"] = _references(f)
    data["ipd_sharing"] = _ipd(f, problems)
    data["results"] = clinical_results(f)
    return data, problems, f.unmapped(ignored)


def _party(f: Fields, key: str, role: str, problems: list[Problem]) -> dict | None:
    prefix = f"{key}." if key else ""
    name = _text(f, f"{prefix}agency")
    if not name:
        return None
    classifier = read_value("agencyClass", _text(f, f"{prefix}agency_class"), "sponsor",
                            f"<{prefix}agency_class>", problems, "warning")
    return {"name": name, "role": role, "classifier": classifier}


def _design(f: Fields, data: dict, problems: list[Problem]) -> None:
    for field, section in _DESIGN:
        data[field] = read_value(section, _text(f, f"study_design_info.{field}"), field,
                                 f"<study_design_info><{field}>", problems, "warning")
    data["masking"], data["who_masked"] = masking(_text(f, "study_design_info.masking"),
                                                  "<study_design_info><masking>", problems)
    data["intervention_model_description"] = paragraphs(element_text(f, "study_design_info.intervention_model_description"))
    data["masking_description"] = paragraphs(element_text(f, "study_design_info.masking_description"))


def _intervention(f: Fields, problems: list[Problem]) -> dict | None:
    name = _text(f, "intervention_name")
    kind = read_value("interventionType", _text(f, "intervention_type"), "interventions",
                      "<intervention><intervention_type>", problems)
    if not name:
        problems.append(warning("an <intervention> without <intervention_name> was left out", "interventions"))
        return None
    return {"type": kind or "OTHER", "name": name, "description": paragraphs(element_text(f, "description")),
            "other_names": _texts(f, "other_name"),
            "arms": _texts(f, "arm_group_label")}


def _arm(f: Fields, interventions: list[dict], problems: list[Problem]) -> dict | None:
    label = _text(f, "arm_group_label")
    if not label:
        problems.append(warning("an <arm_group> without <arm_group_label> was left out", "arms"))
        return None
    return {"label": label,
            "type": read_value("armGroupType", _text(f, "arm_group_type"), "arms", "<arm_group_type>", problems,
                               "warning"),
            "description": paragraphs(element_text(f, "description")),
            "interventions": [i["name"] for i in interventions if label in i["arms"]]}


def _outcome(f: Fields, kind: str) -> dict | None:
    name = _text(f, "measure")
    if not name:
        return None
    return {"kind": kind, "name": name, "description": paragraphs(element_text(f, "description")),
            "time_frame": _text(f, "time_frame")}


def _eligibility(f: Fields, data: dict, problems: list[Problem]) -> None:
    text = block_text(element_text(f, "eligibility.criteria.textblock"))
    data["eligibility_text"] = text
    data["criteria"], found = split_criteria(text)
    problems += found
    data["sex"] = read_value("sex", _text(f, "eligibility.gender"), "sex", "<eligibility><gender>", problems)
    data["gender_based"] = _yes_no(f, "eligibility.gender_based", "gender_based", problems)
    data["gender_description"] = paragraphs(element_text(f, "eligibility.gender_description"))
    for field in ("minimum_age", "maximum_age"):
        data[field] = _ctgov.age(_text(f, f"eligibility.{field}"))
        if data[field] is not None and not _ctgov.is_age(data[field]):
            problems.append(warning(f"<eligibility><{field}> {data[field]!r} is not of the form '18 Years'; kept "
                                    "as written", field))
    data["healthy_volunteers"] = _yes_no(f, "eligibility.healthy_volunteers", "healthy_volunteers", problems)
    data["study_population"] = paragraphs(element_text(f, "eligibility.study_pop.textblock"))
    data["sampling_method"] = read_value("samplingMethod", _text(f, "eligibility.sampling_method"),
                                         "sampling_method", "<eligibility><sampling_method>", problems, "warning")


def _official(f: Fields, problems: list[Problem]) -> dict | None:
    name = _person_name(f)
    if not name:
        return None
    role = read_value("officialRole", _text(f, "role"), "officials", "<overall_official><role>", problems, "warning")
    return {"name": name, "role": _ctgov.OFFICIAL_ROLES.get(role or "", role or "official"), "is_person": True,
            "title": _text(f, "degrees"), "affiliation": _text(f, "affiliation")}


def _responsible_party(f: Fields) -> list[dict]:
    """The responsible party as an official when it is a person (a principal investigator or a
    sponsor-investigator, or the pre-2011 free-text name); a SPONSOR is the lead sponsor, already
    carried. Roles as the API v2 reader gives them (``_ctgov.RESPONSIBLE_PARTY_ROLES``)."""
    kind = read_value("responsiblePartyType", _text(f, "responsible_party.responsible_party_type"), "officials",
                      "<responsible_party><responsible_party_type>", [], "warning")
    if kind == "SPONSOR":
        return []
    name = _text(f, "responsible_party.investigator_full_name") or _text(f, "responsible_party.name_title")
    if not name:
        return []
    role = _ctgov.RESPONSIBLE_PARTY_ROLES.get(kind or "", kind or _ctgov.UNTYPED_RESPONSIBLE_PARTY_ROLE)
    return [{"name": name, "role": role, "is_person": True, "title": _text(f, "responsible_party.investigator_title"),
             "affiliation": (_text(f, "responsible_party.investigator_affiliation")
                             or _text(f, "responsible_party.organization"))}]


def _site(f: Fields, problems: list[Problem]) -> dict:
    contacts = [c for key in ("contact", "contact_backup") for node in _each(f, key)
                if (c := _contact(node, _ctgov.DEFAULT_CONTACT_ROLE))]
    for node in _each(f, "investigator"):
        role = read_value("officialRole", _text(node, "role"), "sites", "<location><investigator><role>", problems,
                          "warning")
        person = _contact(node, _ctgov.OFFICIAL_ROLES.get(role or "", role or "investigator"))
        if person:
            contacts.append(person)
    return {"facility": _text(f, "facility.name"), "city": _text(f, "facility.address.city"),
            "state": _text(f, "facility.address.state"), "zip": _text(f, "facility.address.zip"),
            "country": _text(f, "facility.address.country"),
            "status": read_value("overallStatus", _text(f, "status"), "sites", "<location><status>", problems,
                                 "warning"),
            "contacts": contacts}


def _references(f: Fields) -> list[dict]:
    out = []
    for key, kind in (("reference", "BACKGROUND"), ("results_reference", "RESULT")):
        for node in _each(f, key):
            citation, pmid = _text(node, "citation"), _text(node, "PMID")
            if citation or pmid:
                out.append({"citation": citation, "pmid": pmid, "type": kind})
    for node in _each(f, "link"):
        url = _text(node, "url")
        if url:
            out.append({"url": url, "label": _text(node, "description"), "type": "link"})
    for node in _each(f, "study_docs.study_doc"):  # API v2 availIpds: labelled as the API v2 reader does
        kind, ident, comment = _text(node, "doc_type"), _text(node, "doc_id"), _text(node, "doc_comment")
        label = " ".join(p for p in (kind, f"(ID {ident})" if ident else None) if p)
        if comment:
            label = f"{label}: {comment}" if label else comment
        out.append({"url": _text(node, "doc_url"), "label": label or None, "type": "ipd"})
    for node in _each(f, "provided_document_section.provided_document"):
        url = _text(node, "document_url")
        if url:
            date = _text(node, "document_date")
            label = " ".join(p for p in (_text(node, "document_type"), f"({date})" if date else None) if p)
            out.append({"url": url, "label": label or None, "type": "link"})
    return out


def _ipd(f: Fields, problems: list[Problem]) -> dict | None:
    if f.node("patient_data").value is None:
        return None
    return {"sharing": read_value("ipdSharing", _text(f, "patient_data.sharing_ipd"), "ipd_sharing",
                                  "<patient_data><sharing_ipd>", problems, "warning"),
            "description": paragraphs(element_text(f, "patient_data.ipd_description")),
            "info_types": [v for t in _texts(f, "patient_data.ipd_info_type")
                           if (v := read_value("ipdInfoType", t, "ipd_sharing",
                                               "<patient_data><ipd_info_type>", problems, "warning"))],
            "time_frame": paragraphs(element_text(f, "patient_data.ipd_time_frame")),
            "access_criteria": paragraphs(element_text(f, "patient_data.ipd_access_criteria")),
            "url": _text(f, "patient_data.ipd_url")}
