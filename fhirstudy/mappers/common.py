"""Small builders shared by the mappers: codeable concepts, references, provenance meta."""
from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from .. import __version__
from ..trial import Provenance, Trial

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
    return {"source": _source(trial.provenance)}


@lru_cache(maxsize=64)
def _source(p: Provenance) -> str:
    """The ``meta.source`` of a provenance (memoized: every resource of a trial has it)."""
    name = p.file.replace("\\", "/").rsplit("/", 1)[-1]  # the file name only: same bytes on every machine
    return f"{SOURCE_BASE}:{p.format}:{quote(name)}#{p.record}"


_EMPTIABLE = (list, dict, str)  # the kinds whose empty value compact drops (with None)


def compact(d: dict) -> dict:
    """Drop keys whose value is None, an empty list or an empty dict (FHIR forbids empty values)."""
    # A true value is kept at the first test; a false one is dropped unless it is a 0 or False.
    return {k: v for k, v in d.items() if v or v is not None and not isinstance(v, _EMPTIABLE)}


GENERATOR = f"fhirstudy {__version__}"
