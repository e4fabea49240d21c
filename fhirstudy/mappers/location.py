"""Trial sites -> FHIR R5 Locations."""
from __future__ import annotations

from .. import terminology
from ..trial import Site, Trial
from . import ids
from .common import compact, concept, meta
from .r4_base import R4Context, complex_ext, ext, extension_url

RESOURCE_TYPE = "Location"


def _contacts(site: Site) -> list[dict]:
    out = []
    for person in site.contacts:
        telecom = [{"system": "phone", "value": person.phone}] if person.phone else []
        telecom += [{"system": "email", "value": person.email}] if person.email else []
        out.append(compact({"purpose": concept(text=person.role) if person.role else None,
                            "name": [{"text": person.name}], "telecom": telecom}))
    return out


def _recruitment(site: Site) -> list[dict]:
    """The site's recruitment status as a characteristic (Location.status is about the place itself)."""
    if not site.status:
        return []
    code = terminology.coding("overallStatus", site.status)
    return [concept(code, text=f"Recruitment status: {site.status.replace('_', ' ').lower()}")]


def map_trial(trial: Trial) -> list[dict]:
    """One Location per site, in source order (ids ``<trial>-site-N``)."""
    sid = ids.study_id(trial)
    out = []
    for n, site in enumerate(trial.sites, 1):
        address = compact({"city": site.city, "state": site.state, "postalCode": site.zip, "country": site.country})
        position = ({"latitude": site.latitude, "longitude": site.longitude}
                    if site.latitude is not None and site.longitude is not None else None)
        out.append(compact({
            "resourceType": RESOURCE_TYPE,
            "id": ids.site_id(sid, n),
            "meta": meta(trial),
            "status": "active",
            "name": site.facility or ", ".join(p for p in (site.city, site.state, site.country) if p) or None,
            "mode": "instance",
            "address": address or None,
            "position": position,
            "characteristic": _recruitment(site),
            "contact": _contacts(site),
        }))
    return out


def to_r4(loc: dict, context: R4Context | None = None) -> dict:
    """R5 Location -> R4 (``characteristic`` and ``contact`` as extensions; the contacts' phones
    and emails also in ``telecom``)."""
    out = {k: v for k, v in loc.items() if k not in ("characteristic", "contact")}
    extensions = [ext(extension_url("Location.characteristic"), "CodeableConcept", c)
                  for c in loc.get("characteristic", [])]
    extensions += [complex_ext(extension_url("Location.contact"), [
        ("purpose", "CodeableConcept", c.get("purpose")), ("name", "HumanName", c.get("name", [])),
        ("telecom", "ContactPoint", c.get("telecom", []))]) for c in loc.get("contact", [])]
    telecom = [t for c in loc.get("contact", []) for t in c.get("telecom", [])]
    head = {"resourceType": out.pop("resourceType"), "id": out.pop("id")}
    if "meta" in out:
        head["meta"] = out.pop("meta")
    return compact({**head, "extension": [e for e in extensions if e], **out, "telecom": telecom})
