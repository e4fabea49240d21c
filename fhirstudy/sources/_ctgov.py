"""Helpers shared by the ClinicalTrials.gov readers (API v2 JSON, and any legacy XML or CSV reader).

Everything here is a pure function of its arguments: the ClinicalTrials.gov vocabularies it
translates (official and contact roles, intervention type labels) are ClinicalTrials.gov's own,
turned into the FHIR ``research-study-party-role`` codes the Trial uses for ``Party.role``.
"""
from __future__ import annotations

import re

from ..trial import INTERVENTION_TYPES
from ._text import clean

# overallOfficials[].role (OfficialRole) and contacts' role (ContactRole) -> research-study-party-role.
OFFICIAL_ROLES = {
    "STUDY_CHAIR": "study-chair",
    "STUDY_DIRECTOR": "study-director",
    "PRINCIPAL_INVESTIGATOR": "primary-investigator",
    "SUB_INVESTIGATOR": "sub-investigator",
}
# A central or facility contact is, in ClinicalTrials.gov's definitions, the person "to whom
# questions concerning enrollment" can be addressed: FHIR's recruitment-contact, not general-contact.
CONTACT_ROLES = {**OFFICIAL_ROLES, "CONTACT": "recruitment-contact"}
DEFAULT_CONTACT_ROLE = "recruitment-contact"
# responsibleParty.type -> the role of the person named; SPONSOR names nobody but the lead sponsor.
RESPONSIBLE_PARTY_ROLES = {
    "SPONSOR_INVESTIGATOR": "sponsor-investigator",
    "PRINCIPAL_INVESTIGATOR": "primary-investigator",
}
# A responsible party in the old free-text form (oldNameTitle) without a type: no FHIR code fits,
# so the role stays as text.
UNTYPED_RESPONSIBLE_PARTY_ROLE = "responsible-party"

# "Drug", "Dietary Supplement", ...: the labels ClinicalTrials.gov shows for InterventionType values,
# which API v2 puts in front of armGroups[].interventionNames ("Drug: Palbociclib").
INTERVENTION_TYPE_LABELS = {t.replace("_", " ").casefold(): t for t in INTERVENTION_TYPES}
_TYPE_PREFIX = re.compile(r"^\s*(?P<label>[A-Za-z][A-Za-z ]*?)\s*:\s*(?P<name>\S.*)$", re.DOTALL)

# Ages are "<n> <unit>" (minimumAge "18 Years"); the legacy XML writes "N/A" for no limit.
AGE = re.compile(r"^\d+ (Year|Years|Month|Months|Week|Weeks|Day|Days|Hour|Hours|Minute|Minutes)$")
_NO_AGE = {"n/a", "na", "none", "no limit"}


def text(value: str | None) -> str | None:
    """Registry free text with markdown backslash escapes undone (``\\>`` -> ``>``) and surrounding
    whitespace stripped; empty text becomes None."""
    return clean(value)


def intervention_name(entry: str, names: set[str] | frozenset[str] = frozenset()) -> str:
    """The intervention name an arm's ``interventionNames`` entry refers to: API v2 writes
    ``"<type label>: <name>"`` ("Drug: Palbociclib" -> "Palbociclib"). An entry that already is
    one of the study's intervention ``names`` is kept whole (an intervention may be named "Drug: X")."""
    if entry in names:
        return entry
    match = _TYPE_PREFIX.match(entry)
    if match and match["label"].casefold() in INTERVENTION_TYPE_LABELS:
        return match["name"].strip()
    return entry


def phone(number: str | None, extension: str | None = None) -> str | None:
    """A contact's phone number with its extension, if any ("555-1234 ext. 12")."""
    number = text(number)
    extension = text(extension)
    if number and extension:
        return f"{number} ext. {extension}"
    return number or (f"ext. {extension}" if extension else None)


def age(value: str | None) -> str | None:
    """An age limit as the registry writes it ("18 Years"), or None when there is no limit
    ("N/A", empty). Text in another form is kept as it is: the caller may warn about it."""
    value = text(value)
    if value is None or value.casefold() in _NO_AGE:
        return None
    return value


def is_age(value: str) -> bool:
    """True when an age limit has ClinicalTrials.gov's form ``<n> <unit>`` ("18 Years")."""
    return bool(AGE.match(value))
