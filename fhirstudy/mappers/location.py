"""Trial sites -> FHIR R5 Locations."""
from __future__ import annotations

from .. import terminology
from ..trial import Site, Trial
from . import ids
from .common import compact, concept, meta

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
