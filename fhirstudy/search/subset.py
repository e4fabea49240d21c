"""Subsetted resources for ``_summary`` and ``_elements`` (FHIR R5 search 3.2.1.7.5/3.2.1.7.6).

- ``_summary=true``: the elements the official StructureDefinitions mark ``isSummary`` (the flag
  is in ``mappings/fhir-r5-elements.json``, extracted by ``tools/extract_fhir_definitions.py``),
  recursively inside backbone elements; datatype values are kept whole.
- ``_summary=text``: ``text``, ``id``, ``meta`` and the top-level mandatory elements.
- ``_summary=data``: everything but ``text``.
- ``_elements=a,b``: those top-level elements, plus ``id``, ``meta`` and the mandatory ones ("The
  server SHOULD always return mandatory elements whether they are requested or not").

Each subsetted resource gets the ``SUBSETTED`` tag in ``meta.tag``, as the specification asks
("the server SHOULD mark the resource with the tag SUBSETTED").
"""
from __future__ import annotations

from functools import lru_cache

from fhirstudy.search.fhirpath.elements import elements as element_definitions

SUBSETTED_TAG = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
                 "display": "As requested, resource is not fully detailed"}
ALWAYS = ("resourceType", "id", "meta")


@lru_cache(maxsize=None)
def _children(path: str) -> dict[str, dict]:
    """The child elements of ``path`` by name (``value[x]`` under ``value``)."""
    prefix = path + "."
    out = {}
    for name, element in element_definitions().items():
        if name.startswith(prefix) and "." not in name[len(prefix):]:
            out[name[len(prefix):].removesuffix("[x]")] = {**element, "path": name}
    return out


def _element(path: str, key: str) -> dict | None:
    children = _children(path)
    if key in children:
        return children[key]
    for name, element in children.items():  # a choice element: valueQuantity -> value[x]
        if element["path"].endswith("[x]") and key.startswith(name) and key[len(name):][:1].isupper():
            return element
    return None


def _summary_of(value: dict, path: str) -> dict:
    out = {}
    for key, item in value.items():
        if key in ALWAYS and "." not in path:
            out[key] = item
            continue
        element = _element(path, key)
        if element is None or not element.get("isSummary"):
            continue
        if element["types"] in (["BackboneElement"], ["Element"]):
            items = item if isinstance(item, list) else [item]
            kept = [_summary_of(i, element["path"]) for i in items if isinstance(i, dict)]
            out[key] = kept if isinstance(item, list) else kept[0]
        else:
            out[key] = item
    return out


def _mandatory(rtype: str) -> set[str]:
    return {name for name, element in _children(rtype).items() if element.get("min", 0) >= 1}


def subset(resource: dict, summary: str | None, elements: tuple[str, ...] | None) -> dict:
    """``resource`` reduced as ``_summary`` (true, text, data) and ``_elements`` ask, tagged
    SUBSETTED; unchanged when neither asks for a subset."""
    rtype = resource.get("resourceType", "")
    if summary == "true":
        out = _summary_of(resource, rtype)
    elif summary == "text":
        keep = {*ALWAYS, "text", *_mandatory(rtype)}
        out = {k: v for k, v in resource.items() if k in keep}
    elif summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif elements is not None:
        keep = {*ALWAYS, *elements, *_mandatory(rtype)}
        out = {k: v for k, v in resource.items() if k in keep or _name_of(rtype, k) in keep}
    else:
        return resource
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED_TAG]
    head = {"resourceType": rtype, "id": out.get("id"), "meta": meta}
    return {**head, **{k: v for k, v in out.items() if k not in head}}


def _name_of(rtype: str, key: str) -> str | None:
    """The element name of JSON ``key`` (``valueQuantity`` -> ``value``)."""
    element = _element(rtype, key)
    return element["path"].rsplit(".", 1)[1].removesuffix("[x]") if element else None
