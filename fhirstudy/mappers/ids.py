"""Stable resource ids: derived from the trial's business identifier, never from a clock or random.

The ResearchStudy of NCT06731140 is ``nct06731140``; the other resources of the trial hang off it
(``nct06731140-protocol``, ``nct06731140-eligibility``, ``nct06731140-outcome-primary-1``,
``nct06731140-site-1``). A trial without an NCT number uses its first org or derived identifier,
hashed (``fs-<16 hex>``). Same record, same ids, on every run and machine.
"""
from __future__ import annotations

import hashlib
import re
import uuid

from ..trial import Trial

NAMESPACE = uuid.UUID("6f1c3a52-0d55-5b7e-9c1e-f3a7d0e2b4c1")  # fhirstudy's own uuid5 namespace
_NCT = re.compile(r"^NCT\d{8}$")


def study_id(trial: Trial) -> str:
    """The ResearchStudy id of a trial."""
    nct = trial.nct_id
    if nct and _NCT.match(nct):
        return nct.lower()
    ident = next((i for i in trial.identifiers if i.kind in ("org", "derived")), None)
    key = f"{ident.system or ''}|{ident.value}" if ident else trial.brief_title
    return "fs-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def child_id(trial_id: str, *parts: object) -> str:
    """The id of a resource that belongs to one trial (``<trial id>-protocol``)."""
    return "-".join([trial_id, *(str(p) for p in parts)])


def full_url(resource_type: str, resource_id: str) -> str:
    """A bundle entry's fullUrl: a urn:uuid derived from type and id, stable everywhere."""
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{resource_type}/{resource_id}')}"
