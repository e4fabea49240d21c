"""FHIR R5 -> R4 down-conversion of one trial's resources (pure functions, no HTTP).

``to_r4(resources)`` takes the R5 resources of one trial (as ``map_resources`` gives them, the
ResearchStudy first) and returns their R4 shape, plus the resources R4 needs where R5 has a
backbone element. Each resource type's conversion is the ``to_r4`` of its mapper module (the
ResearchStudy's, the largest, lies in :mod:`.r4_research_study`); the shared pieces (cross-version
extensions ``http://hl7.org/fhir/5.0/StructureDefinition/extension-<Type>.<element>``, moved code
systems) are in :mod:`.r4_base`, the tables in ``mappings/r5-to-r4.json``. A type without a mapper
passes through unchanged. The results (Group, Evidence, Composition) are left out unless
``results="extensions"`` asks for them (:mod:`.r4_results`). Same input, same bytes: nothing here
reads a clock.
"""
from __future__ import annotations

import orjson

from . import MAPPERS
from .r4_base import EPOCH, RESULTS_MODES, R4Context, extension_url  # noqa: F401 - the names this module always had

CONVERTERS = {m.RESOURCE_TYPE: m.to_r4 for m in MAPPERS}  # resource type -> its R4 converter


def to_r4(resources: list[dict], left_out: list[dict] | None = None, results: str = "omit") -> list[dict]:
    """The R4 resources of one trial from its R5 resources (ResearchStudy first, Provenance last;
    the new Group, Organization and Practitioner right after the ResearchStudy). The Provenance
    targets the new resources too, and not those R4 cannot hold: a converter that returns an
    empty list leaves its resource out (with ``results="omit"``, the default: the results' Group,
    Evidence, Composition), and ``left_out``, when given, receives them. With
    ``results="extensions"`` the results are converted too (:mod:`.r4_results`)."""
    if results not in RESULTS_MODES:
        raise ValueError(f"results must be one of {', '.join(RESULTS_MODES)}, not {results!r}")
    resources = orjson.loads(orjson.dumps(resources))  # a deep copy, several times faster than copy's
    context = R4Context(resources, results=results)
    out: list[dict] = []
    for r in resources:
        convert = CONVERTERS.get(r["resourceType"])
        converted = convert(r, context) if convert else r
        if converted == []:
            context.left_out.append(r)
        if isinstance(converted, list):
            out.extend(converted)
            context.added.extend(converted[1:])
        else:
            out.append(converted)
    if left_out is not None:
        left_out.extend(context.left_out)
    return out
