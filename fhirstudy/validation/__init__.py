"""Validation of FHIR R5 output: fhir.resources, plus the checks it lacks.

fhir.resources (pydantic) checks structure and unknown elements, but it coerces ``"5"`` into an
unsignedInt and accepts ResearchStudy.status ``"bogus"``. So every resource also goes through a
walk driven by the official definitions (``mappings/fhir-r5-elements.json`` and
``mappings/fhir-r5-required-bindings.json``, extracted from hl7.fhir.r5.core) that checks strict
JSON types, array versus single value, the patterns of id, code, date and dateTime, codes of
required bindings, references inside a Bundle, the nesting depth and forbidden characters
(:mod:`.checks` says each). A resource validated on its own (what a client writes: the server's
create, update, Bundle entries, ``$validate``, ``load`` of FHIR input) also has each narrative
checked against FHIR's rules (:mod:`.narrative`), and so does a Bundle given
``narratives=True`` (``fhirstudy validate``); the converter's Bundles skip that, as what fhirstudy
generates keeps them by construction.

Every document is checked; what repeats is checked once: :mod:`.repeats` keeps the verdict of
each distinct shape (the resource with its primitive values set aside by :mod:`.shapes`, those
checked in one batch per element type) per process, and answers only "clean" from it; anything else is checked again by :mod:`.checks`, so a
document that fails gets exactly its problems. ``validate_resource`` and ``validate_bundle``
collect every issue into one ``ValidationFailed``.

May import: the foundation (``fhirstudy.errors``, ``limits``, ``terminology``, ``mappings``),
fhir.resources, pydantic and orjson; never sources, trial, mappers, store, server or cli.
"""
from __future__ import annotations

from ..errors import ValidationFailed
from .checks import bundle_issues, resource_issues
from .repeats import Repeats

_REPEATS = Repeats()  # per process: a memo of a pure function (see .repeats), never a different answer


def validate_resource(resource: dict) -> None:
    """Validate one resource on its own (references are not resolved). Raises ValidationFailed."""
    if _REPEATS.resource_is_clean(resource):
        return
    issues = resource_issues(resource)
    if issues:
        raise ValidationFailed(issues)


def validate_bundle(bundle: dict, narratives: bool = False) -> None:
    """Validate a Bundle and every resource in it, and resolve its internal references; with
    ``narratives`` (a Bundle from outside: ``fhirstudy validate``), check every narrative's XHTML
    against FHIR's rules too.

    Relative references (``Type/id``) must match an entry's resource, ``urn:uuid:`` references an
    entry's fullUrl; absolute http(s) references point outside and are not followed.
    """
    if _REPEATS.bundle_is_clean(bundle, narratives):
        return
    issues = bundle_issues(bundle, narratives)
    if issues:
        raise ValidationFailed(issues)
