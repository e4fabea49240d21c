"""FHIR element definitions (``fhirstudy/mappings/fhir-r5-elements.json``, loaded once): the type
and path of a child element, and the typed JSON names of choice elements (``value[x]``)."""
from __future__ import annotations

from functools import lru_cache

from fhirstudy import mappings
from fhirstudy.search.fhirpath.nodes import Item

ELEMENTS_FILE = "fhir-r5-elements.json"  # in fhirstudy.mappings
_FHIRPATH_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
# First steps that stand for "the resource at hand" whatever its type.
ANY_RESOURCE = frozenset({"Resource", "DomainResource"})


@lru_cache(maxsize=1)
def elements() -> dict[str, dict]:
    return mappings.load(ELEMENTS_FILE)["elements"]


@lru_cache(maxsize=1)
def choice_types() -> dict[str, str]:
    """Choice-element JSON suffixes and the type each names (``Quantity``, ``DateTime`` -> dateTime)."""
    names: dict[str, str] = {}
    for path, element in elements().items():
        if path.endswith("[x]"):
            names.update((_upper_first(t), t) for t in element["types"])
    return names


def _upper_first(name: str) -> str:
    return name[:1].upper() + name[1:]


def _simple_type(code: str) -> str:
    return code[len(_FHIRPATH_SYSTEM_PREFIX):].lower() if code.startswith(_FHIRPATH_SYSTEM_PREFIX) else code


def _element(path: str | None) -> dict | None:
    if path is None:
        return None
    element = elements().get(path)
    if element and element.get("contentReference"):
        return {"types": [], "contentReference": element["contentReference"]}
    return element


def child_path_and_type(parent: Item, name: str) -> tuple[str | None, str | None]:
    """Element path and FHIR type of child ``name`` of ``parent``, when the definitions know it."""
    base = parent.path
    if base is None and parent.type is not None:
        base = parent.type
    if base is None:
        return None, None
    return _child_of(base, name)


@lru_cache(maxsize=None)
def _child_of(base: str, name: str) -> tuple[str | None, str | None]:
    path = f"{base}.{name}"
    element = _element(path)
    if element is None:
        return None, None
    if element.get("contentReference"):
        return element["contentReference"], None
    types = element["types"]
    if len(types) == 1:
        type_name = _simple_type(types[0])
        if type_name in ("BackboneElement", "Element"):
            return path, None
        return (type_name if type_name[:1].isupper() else path), type_name
    return path, None


@lru_cache(maxsize=None)
def may_be_choice(base: str | None, name: str) -> bool:
    """Whether child ``name`` of ``base`` can be a choice element (``name[x]``): always when the
    definitions do not know ``base``."""
    if base is None or f"{base}.{name}[x]" in elements():
        return True
    return base not in _known_bases()


@lru_cache(maxsize=1)
def _known_bases() -> frozenset[str]:
    return frozenset(path.rsplit(".", 1)[0] for path in elements())
