"""Trial sites -> FHIR R5 Locations."""
from __future__ import annotations

from ..trial import Trial
from . import ids
from .common import compact, meta

RESOURCE_TYPE = "Location"


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
            "id": ids.child_id(sid, "site", n),
            "meta": meta(trial),
            "status": "active",
            "name": site.facility or ", ".join(p for p in (site.city, site.state, site.country) if p) or None,
            "mode": "instance",
            "address": address or None,
            "position": position,
        }))
    return out
