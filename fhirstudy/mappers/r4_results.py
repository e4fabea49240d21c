"""FHIR R5 -> R4 trial results (``push --r4-results=extensions``): the ``to_r4`` of
:mod:`.results_groups`, :mod:`.evidence` and :mod:`.composition` when the conversion is asked
to carry the results (``R4Context.results == "extensions"``; by default they are left out).

R4 Evidence has no ``statistic`` and no ``variableDefinition``: both go, whole, into the
cross-version extensions ``http://hl7.org/fhir/5.0/StructureDefinition/extension-Evidence.statistic``
and ``extension-Evidence.variableDefinition`` (:func:`.r4_base.element_ext`, one extension per
item). What R4 has, it gets in its own elements:

- R4 ``Evidence.exposureBackground`` (required: "the population for the research") is an
  EvidenceVariable: each result Group gets one in R4, ``<group>-variable``, defined by the Group
  (``characteristic.definitionReference``); a population variable points at it. Evidence without
  one (an analysis compares groups) points at the trial's eligibility EvidenceVariable, or, when
  the trial has none, at ``<trial>-results-population``, made here once;
- exposure variables (the groups an analysis compares) are ``exposureVariant``, the measured
  outcome's EvidenceVariable ``outcome``;
- R4 Group has ``actual`` (required) where R5 has ``membership`` (definitional is not actual) and
  no ``description`` (an extension);
- R4 Composition has one ``subject`` (the rest as extensions) and no ``note`` (extensions); the
  contained point of contact's R5 ``ExtendedContactDetail`` names become R4's one contact name.

Every other R5 element of these resources that R4 lacks becomes its cross-version extension too,
so nothing is dropped. No code is made up: the codings are the R5 resources' own.
"""
from __future__ import annotations

from . import ids
from .common import compact, reference
from .r4_base import R4Context, concepts, element_ext, ext, extension_url, related_artifact

GROUP_SAME = ("identifier", "active", "type", "code", "name", "quantity", "managingEntity")
EVIDENCE_SAME = ("url", "identifier", "version", "name", "title", "status", "date", "description", "note", "useContext",
                 "publisher", "contact", "author", "editor", "reviewer", "endorser", "copyright",
                 "approvalDate", "lastReviewDate", "effectivePeriod")
COMPOSITION_SAME = ("status", "type", "category", "encounter", "date", "author", "title", "custodian", "section")
HEAD = ("resourceType", "id", "meta", "text", "contained")  # R4 has text (the narrative) as R5 does
EXPOSURE_ROLES = ("exposure", "referenceExposure")


def _carry(resource: dict, same: tuple[str, ...], handled: tuple[str, ...]) -> tuple[dict, list[dict]]:
    """The elements R4 has under the same name, and the cross-version extensions of the others."""
    kept = {k: concepts(resource[k]) for k in same if k in resource}
    rtype = resource["resourceType"]
    extensions = list(resource.get("extension", []))
    for key, value in resource.items():
        if key in same or key in handled or key in HEAD or key == "extension":
            continue
        extensions += [e for v in (value if isinstance(value, list) else [value])
                       if (e := element_ext(f"{rtype}.{key}", v))]
    return kept, extensions


def _head(resource: dict) -> dict:
    return {k: resource[k] for k in ("resourceType", "id", "meta", "text") if k in resource}


def group_variable(group: dict) -> dict:
    """The R4 EvidenceVariable that stands for a result Group in R4 Evidence."""
    name = group.get("name") or group["id"]
    return compact({
        "resourceType": "EvidenceVariable", "id": ids.group_variable_id(group["id"]), "meta": group.get("meta"),
        "title": f"Result group: {name}", "status": "active",
        "characteristic": [compact({"description": group.get("description"),
                                    "definitionReference": reference("Group", group["id"], group.get("name"))})],
    })


def group(r5: dict, context: R4Context) -> list[dict]:
    """A result Group in R4 (``actual`` from ``membership``), and its EvidenceVariable."""
    kept, extensions = _carry(r5, GROUP_SAME, ("membership",))
    out = compact({**_head(r5), "extension": extensions, **kept,
                   "actual": r5.get("membership") == "enumerated"})
    return [out, group_variable(r5)]


def _variable_reference(observed: dict | None) -> dict | None:
    """An R5 variable's observed Group or EvidenceVariable as an R4 Reference(EvidenceVariable)."""
    target = (observed or {}).get("reference", "")
    if target.startswith("EvidenceVariable/"):
        return observed
    if target.startswith("Group/"):
        return compact({"reference": f"EvidenceVariable/{ids.group_variable_id(target.split('/', 1)[1])}",
                        "display": observed.get("display")})
    return None


def _study_population(context: R4Context, evidence_id: str) -> tuple[dict, list[dict]]:
    """The EvidenceVariable for "the population of the research" of an Evidence without a
    population variable: the eligibility EvidenceVariable, else one made once per trial."""
    study = context.study()
    sid = study["id"] if study else evidence_id
    eligibility = context.resolve(f"EvidenceVariable/{ids.eligibility_id(sid)}")
    if eligibility:
        return reference("EvidenceVariable", eligibility["id"], eligibility.get("title")), []
    pid = ids.results_population_id(sid)
    title = f"Participants of {(study or {}).get('title') or sid}"
    ref = reference("EvidenceVariable", pid, title)
    if any(r["id"] == pid and r["resourceType"] == "EvidenceVariable" for r in context.added):
        return ref, []
    made = {"resourceType": "EvidenceVariable", "id": pid, **({"meta": study["meta"]} if study and "meta" in study else {}),
            "title": title, "status": "active", "characteristic": [{"definitionCodeableConcept": {"text": title}}]}
    return ref, [made]


def _role(variable: dict) -> str | None:
    return next((c.get("code") for c in (variable.get("variableRole") or {}).get("coding", [])), None)


def evidence(r5: dict, context: R4Context) -> list[dict]:
    """An Evidence in R4: statistics and variable definitions as extensions; population, exposures
    and outcome as R4 EvidenceVariable references (and the study population, when made here)."""
    kept, extensions = _carry(r5, EVIDENCE_SAME, ("relatedArtifact",))
    background, variants, outcomes = None, [], []
    for variable in r5.get("variableDefinition", []):
        ref, role = _variable_reference(variable.get("observed")), _role(variable)
        if ref is None:
            continue
        if role == "population" and background is None:
            background = ref
        elif role in EXPOSURE_ROLES:
            variants.append(ref)
        elif role == "measuredVariable" and ref["reference"].startswith("EvidenceVariable/"):
            outcomes.append(ref)
    made: list[dict] = []
    if background is None:
        background, made = _study_population(context, r5["id"])
    out = compact({**_head(r5), "extension": extensions, **kept,
                   "relatedArtifact": [related_artifact(ra, "Evidence") for ra in r5.get("relatedArtifact", [])],
                   "exposureBackground": background, "exposureVariant": variants, "outcome": outcomes})
    return [out, *made]


def _contact_organization(org: dict) -> dict:
    """A contained R5 Organization in R4: an ExtendedContactDetail's first name is R4's one name."""
    contacts = []
    for c in org.get("contact", []):
        names = c.get("name", [])
        contacts.append(compact({
            "extension": [e for n in names[1:] if (e := ext(extension_url("Organization.contact.name"), "HumanName", n))],
            "purpose": concepts(c.get("purpose")), "name": names[0] if names else None,
            "telecom": c.get("telecom", []), "address": (c.get("address") or None)}))
    return compact({**{k: org[k] for k in ("resourceType", "id", "identifier", "active", "name", "telecom") if k in org},
                    "contact": contacts})


def composition(r5: dict, context: R4Context) -> list[dict]:
    """A results report Composition in R4 (one ``subject``; ``note`` as extensions)."""
    kept, extensions = _carry(r5, COMPOSITION_SAME, ("subject", "contained"))
    subjects = r5.get("subject", [])
    extensions += [e for s in subjects[1:] if (e := ext(extension_url("Composition.subject"), "Reference", s))]
    contained = [_contact_organization(c) if c["resourceType"] == "Organization" else c for c in r5.get("contained", [])]
    out = compact({**_head(r5), "contained": contained, "extension": extensions, **kept,
                   "subject": subjects[0] if subjects else None})
    return [out]
