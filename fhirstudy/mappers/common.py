"""Small builders shared by the mappers: codeable concepts, references, provenance meta."""
from __future__ import annotations

from urllib.parse import quote

from .. import __version__
from ..trial import Trial

SOURCE_BASE = "urn:fhirstudy:source"


def concept(coding: dict | None = None, text: str | None = None) -> dict | None:
    """A CodeableConcept from an optional coding and an optional text; None when both are empty."""
    out: dict = {}
    if coding:
        out["coding"] = [coding]
    if text:
        out["text"] = text
    return out or None


def reference(resource_type: str, resource_id: str, display: str | None = None) -> dict:
    """A literal reference ``Type/id``."""
    ref = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        ref["display"] = display
    return ref


def meta(trial: Trial) -> dict:
    """``meta.source``: where the record came from (format, file name, record number), as a URI."""
    p = trial.provenance
    name = p.file.replace("\\", "/").rsplit("/", 1)[-1]  # the file name only: same bytes on every machine
    return {"source": f"{SOURCE_BASE}:{p.format}:{quote(name)}#{p.record}"}


def compact(d: dict) -> dict:
    """Drop keys whose value is None, an empty list or an empty dict (FHIR forbids empty values)."""
    return {k: v for k, v in d.items() if v is not None and v != [] and v != {} and v != ""}


GENERATOR = f"fhirstudy {__version__}"
