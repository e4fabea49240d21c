"""The Provenance of a trial's resources: which source record they came from, and when the source
was last updated."""
from __future__ import annotations

from ..trial import Trial
from . import ids
from .common import GENERATOR, compact, meta
from .r4_base import EPOCH, R4Context, instant

RESOURCE_TYPE = "Provenance"


def map_resources(trial: Trial, resources: list[dict]) -> dict:
    """One Provenance targeting every resource converted from the trial's source record."""
    p = trial.provenance
    name = p.file.replace("\\\\", "/").rsplit("/", 1)[-1]
    return compact({
        "resourceType": RESOURCE_TYPE,
        "id": ids.provenance_id(ids.study_id(trial)),
        "meta": meta(trial),
        "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources],
        "occurredDateTime": p.source_date,
        "activity": {"text": f"converted from a {p.format} record to FHIR R5"},
        "agent": [{"who": {"display": GENERATOR}}],
        "entity": [{"role": "source", "what": {"display": f"record {p.record} of {name} ({p.format})"}}],
    })


def _provenance_r4(prov: dict, study: dict | None) -> dict:
    """R5 Provenance -> R4: ``recorded`` (required in R4) from the source date, else the study's
    last update date or start, else the epoch (a conversion never reads the clock)."""
    recorded = (prov.get("recorded") or instant(prov.get("occurredDateTime"))
                or instant((study or {}).get("date")) or instant(((study or {}).get("period") or {}).get("start"))
                or EPOCH)
    out = dict(prov)
    out["recorded"] = recorded
    order = ["resourceType", "id", "meta", "target", "occurredDateTime", "recorded", "activity", "agent", "entity"]
    return compact({k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order})




def to_r4(prov: dict, context: R4Context) -> dict:
    """R5 Provenance -> R4, targeting also the resources the R4 conversion added, and not those it
    left out."""
    out = _provenance_r4(prov, context.study())
    gone = {f"{x['resourceType']}/{x['id']}" for x in context.left_out}
    out["target"] = [t for t in out["target"] if t.get("reference") not in gone] + [
        {"reference": f"{x['resourceType']}/{x['id']}"} for x in context.added]
    return out
