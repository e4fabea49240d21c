"""The Provenance of a trial's resources: which source record they came from, and when the source
was last updated."""
from __future__ import annotations

from ..trial import Trial
from . import ids
from .common import GENERATOR, compact, meta


def map_resources(trial: Trial, resources: list[dict]) -> dict:
    """One Provenance targeting every resource converted from the trial's source record."""
    p = trial.provenance
    name = p.file.replace("\\\\", "/").rsplit("/", 1)[-1]
    return compact({
        "resourceType": "Provenance",
        "id": ids.provenance_id(ids.study_id(trial)),
        "meta": meta(trial),
        "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources],
        "occurredDateTime": p.source_date,
        "activity": {"text": f"converted from a {p.format} record to FHIR R5"},
        "agent": [{"who": {"display": GENERATOR}}],
        "entity": [{"role": "source", "what": {"display": f"record {p.record} of {name} ({p.format})"}}],
    })
