"""The checks themselves, exactly: fhir.resources, plus the checks it lacks.

fhir.resources (pydantic) checks structure and unknown elements, but it coerces ``"5"`` into an
unsignedInt and accepts ResearchStudy.status ``"bogus"``. So every resource also goes through a
walk driven by the official definitions (``mappings/fhir-r5-elements.json`` and
``mappings/fhir-r5-required-bindings.json``, extracted from hl7.fhir.r5.core) that checks:

- strict JSON types for every primitive (a string is not a number, a number not a boolean), array
  versus single value from the cardinality, and the regular expressions of id, code, date, dateTime;
- codes of required bindings (the value set's codes, expanded from the official CodeSystems);
- references: in a Bundle, every relative ``Type/id`` or ``urn:uuid`` reference resolves to an entry;
- the JSON as text, first and without recursion: at most ``fhirstudy.limits.MAX_JSON_DEPTH`` levels
  of nesting, and no character FHIR strings forbid (below U+0020 except tab, CR, LF) anywhere;
- for one resource on its own (what a client writes), every ``Narrative.div`` the walk meets (the
  resource's ``text``, a contained resource's, a Composition section's) against FHIR's narrative
  rules (:mod:`.narrative`: txt-1, txt-2, no script); for a Bundle only when asked
  (``narratives=True``: ``fhirstudy validate``), since the converter's Bundles keep those rules by
  construction.

``resource_issues`` and ``bundle_issues`` collect every issue (the package's ``validate_resource``
and ``validate_bundle`` raise them as one ``ValidationFailed``); ``entry_resource_issues`` is what
``bundle_issues`` checks of one entry's resource, for :mod:`.repeats`.
"""
from __future__ import annotations

import re
from functools import lru_cache

from fhir.resources import get_fhir_model_class
from pydantic import ValidationError as PydanticError

from ..errors import InvalidRequest, Problem
from ..limits import MAX_JSON_DEPTH, check_depth
from ..terminology import load_mapping
from .narrative import div_problems

_STR = (str,)
_PRIMITIVE_JSON: dict[str, tuple[type, ...]] = {
    "boolean": (bool,), "integer": (int,), "positiveInt": (int,), "unsignedInt": (int,),
    "decimal": (int, float), "integer64": (str,),
}
_PATTERNS = {
    "id": re.compile(r"^[A-Za-z0-9\-.]{1,64}$"),
    "code": re.compile(r"^[^\s]+( [^\s]+)*$"),
    "date": re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$"),
    "dateTime": re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d:"
                           r"([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$"),
    "instant": re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:"
                          r"([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$"),
}
_COMPLEX_CONTAINERS = {"BackboneElement", "Element"}
# what FHIR strings SHALL NOT contain (R5 datatypes, string): below U+0020 except tab, LF and CR
_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
MAX_TEXT_ISSUES = 20  # control-character issues reported for one document before stopping


@lru_cache(maxsize=None)
def _elements() -> dict[str, dict]:
    return load_mapping("fhir-r5-elements.json")["elements"]


@lru_cache(maxsize=None)
def _bindings() -> dict[str, dict[str, frozenset[str]]]:
    """Required-binding path -> {system: allowed codes}; value sets we cannot expand are left out."""
    out = {}
    for path, binding in load_mapping("fhir-r5-required-bindings.json")["bindings"].items():
        if binding["include"] is not None:
            out[path] = {inc["system"]: frozenset(inc["codes"]) for inc in binding["include"]}
    return out


@lru_cache(maxsize=None)
def _required_children() -> dict[str, tuple[str, ...]]:
    """Context path -> names of its elements with min >= 1 (choice elements as ``value[x]``)."""
    out: dict[str, list[str]] = {}
    for path, el in _elements().items():
        if el["min"] >= 1:
            parent, name = path.rsplit(".", 1)
            out.setdefault(parent, []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def strings_are_valid(values: list[str], type_code: str) -> bool:
    """Whether the walk takes each of ``values`` as a JSON string of a primitive type without a
    required binding: not empty, and matching its type's pattern (id, code, date ...) if it has one
    (the rules of ``_Walker.value`` and ``_Walker.primitive``)."""
    pattern = _PATTERNS.get(type_code)
    return "" not in values and (pattern is None or all(map(pattern.match, values)))


def _is_primitive(type_code: str) -> bool:
    return type_code[:1].islower() or type_code.startswith("http://hl7.org/fhirpath/")


@lru_cache(maxsize=65536)
def _element(ctx: str, key: str) -> tuple[str, dict, str] | None:
    """Find the definition of JSON key ``key`` in context ``ctx``: (definition path, element, type)."""
    elements = _elements()
    path = f"{ctx}.{key}"
    el = elements.get(path)
    if el is not None:
        if "contentReference" in el:
            return path, el, el["contentReference"]
        types = el["types"]
        return path, el, types[0] if len(types) == 1 else ""
    for type_code in _choice_suffixes(key):
        base = key[: len(key) - len(type_code)]
        el = elements.get(f"{ctx}.{base}[x]")
        if el is not None:
            for t in el["types"]:
                if t[:1].upper() + t[1:] == type_code:
                    return f"{ctx}.{base}[x]", el, t
    return None


def _choice_suffixes(key: str) -> list[str]:
    return [key[i:] for i in range(1, len(key)) if key[i].isupper()]


class _Walker:
    def __init__(self) -> None:
        self.issues: list[Problem] = []
        self.references: list[tuple[str, str]] = []  # (reference, location)
        self.narratives: list[tuple[str, str]] = []  # (a Narrative.div's XHTML, location)

    def fail(self, where: str, reason: str) -> None:
        self.issues.append(Problem(reason=reason, field=where))

    def resource(self, res: object, where: str) -> None:
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            self.fail(where, "not a resource (an object with resourceType)")
            return
        rtype = res["resourceType"]
        if f"{rtype}.id" not in _elements():
            return  # a type we have no definitions for: fhir.resources still checks it
        self.complex(res, rtype, where or rtype, skip=("resourceType",))

    def complex(self, node: dict, ctx: str, where: str, skip: tuple[str, ...] = ()) -> None:
        for name in _required_children().get(ctx, ()):
            if name.endswith("[x]"):
                base = name[:-3]
                present = any(k.startswith(base) and k[len(base):len(base) + 1].isupper() for k in node)
            else:
                present = name in node or f"_{name}" in node
            if not present:
                self.fail(f"{where}.{name}", f"missing required element '{name}' of {ctx}")
        for key, value in node.items():
            if key in skip:
                continue
            if key.startswith("_"):
                continue  # primitive extensions: fhir.resources checks their shape
            found = _element(ctx, key)
            if found is None:
                self.fail(f"{where}.{key}", f"unknown element '{key}' in {ctx}")
                continue
            path, el, type_code = found
            if isinstance(value, list):
                if el["max"] == "1":
                    self.fail(f"{where}.{key}", "an array where the element allows one value")
                for i, item in enumerate(value):
                    self.value(item, path, type_code, f"{where}.{key}[{i}]")
            else:
                if el["max"] != "1":
                    self.fail(f"{where}.{key}", "a single value where the element is an array")
                self.value(value, path, type_code, f"{where}.{key}")

    def value(self, value: object, path: str, type_code: str, where: str) -> None:
        if value is None or value == "" or value == {} or value == []:
            self.fail(where, "empty value (FHIR has no nulls or empty strings, objects or arrays)")
            return
        if type_code == "":
            return
        if _is_primitive(type_code):
            self.primitive(value, path, type_code, where)
        elif not isinstance(value, dict):
            self.fail(where, f"expected a JSON object ({type_code}), found {type(value).__name__}")
        elif type_code == "Resource":
            self.resource(value, where)
        elif type_code in _COMPLEX_CONTAINERS or "." in type_code:
            self.complex(value, type_code if "." in type_code else path, where)
        else:
            self.complex(value, type_code, where)
            if type_code == "Reference" and isinstance(value.get("reference"), str):
                self.references.append((value["reference"], where))
            if type_code in ("CodeableConcept", "Coding") and path in _bindings():
                self.coded(value, path, type_code, where)

    def primitive(self, value: object, path: str, type_code: str, where: str) -> None:
        allowed = _PRIMITIVE_JSON.get(type_code, _STR)
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            self.fail(where, f"expected {type_code} as JSON {allowed[0].__name__}, found {type(value).__name__}")
            return
        if type_code == "xhtml":
            self.narratives.append((value, where))
        pattern = _PATTERNS.get(type_code)
        if pattern is not None and not pattern.match(value):
            self.fail(where, f"'{value}' is not a valid {type_code}")
        if type_code in ("unsignedInt",) and value < 0 or type_code == "positiveInt" and value < 1:
            self.fail(where, f"{value} is out of range for {type_code}")
        if type_code == "code" and path in _bindings():
            allowed_codes = set().union(*_bindings()[path].values())
            if value not in allowed_codes:
                self.fail(where, f"'{value}' is not in the required value set of {path}")

    def coded(self, value: dict, path: str, type_code: str, where: str) -> None:
        codings = value.get("coding", []) if type_code == "CodeableConcept" else [value]
        systems = _bindings()[path]
        for coding in codings:
            system = coding.get("system")
            if system not in systems or coding.get("code") not in systems[system]:
                self.fail(where, f"'{system}|{coding.get('code')}' is not in the required value set of {path}")


def _model_issues(resource: dict, where: str) -> list[Problem]:
    try:
        model = get_fhir_model_class(resource["resourceType"])
    except (KeyError, ValueError):
        return [Problem(reason=f"unknown resource type {resource.get('resourceType')!r}", field=where)]
    try:
        model.model_validate(resource)
    except PydanticError as exc:
        return [Problem(reason=err["msg"], field=".".join([where, *map(str, err["loc"])]))
                for err in exc.errors()]
    return []


def _text_issues(document: object, where: str, depth: int = MAX_JSON_DEPTH) -> list[Problem]:
    """Problems of the document as JSON text, found without recursion (so no document, however
    hostile, exhausts the stack): nesting deeper than ``depth`` levels (:data:`MAX_JSON_DEPTH` for
    a whole document), and characters FHIR strings SHALL NOT contain (below U+0020 except tab, CR
    and LF) in any key or string value."""
    try:
        check_depth(document, where, depth)
    except InvalidRequest as exc:
        return [Problem(reason=exc.diagnostics, field=where)]
    issues = []
    stack = [(document, where)]
    while stack and len(issues) < MAX_TEXT_ISSUES:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if _FORBIDDEN_CHARACTERS.search(key):
                    issues.append(Problem(reason=f"the key {key[:40]!r} contains a control character", field=path))
                stack.append((value, f"{path}.{key}"))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node))
        elif isinstance(node, str) and (found := _FORBIDDEN_CHARACTERS.search(node)):
            issues.append(Problem(reason=f"the string contains U+{ord(found.group()):04X}; FHIR strings "
                                         f"SHALL NOT contain characters below U+0020 except tab, CR and LF",
                                  field=path))
    return sorted(issues, key=lambda p: p.field or "")


def _check(resource: dict, where: str) -> _Walker:
    walker = _Walker()
    walker.issues.extend(_text_issues(resource, where))
    if walker.issues:  # too deep to walk, or text no store may keep: nothing more to say
        return walker
    walker.resource(resource, where)
    if walker.issues:  # structural problems are already named; the model would repeat them
        return walker
    if resource.get("resourceType") == "Bundle":
        # Each entry's resource through its own model class: measured 25% faster than the Bundle
        # model, which resolves every entry's class dynamically (bench/convert.py).
        shell = {k: v for k, v in resource.items() if k != "entry"}
        walker.issues.extend(_model_issues(shell, where))
        for i, entry in enumerate(resource.get("entry", [])):
            res = entry.get("resource")
            if isinstance(res, dict):
                walker.issues.extend(_model_issues(res, f"{where}.entry[{i}].resource"))
    else:
        walker.issues.extend(_model_issues(resource, where))
    return walker


def resource_issues(resource: object) -> list[Problem]:
    """Every issue of one resource on its own (references are not resolved), its narratives' too."""
    walker = _check(resource, resource.get("resourceType", "resource") if isinstance(resource, dict) else "resource")
    return walker.issues + narrative_issues(walker.narratives)


def narrative_issues(narratives: list[tuple[str, str]]) -> list[Problem]:
    """What breaks FHIR's narrative rules in each ``(div, where)``, placed at its ``where``
    (``ResearchStudy.text.div``)."""
    return [Problem(reason=reason, field=where) for div, where in narratives for reason in div_problems(div)]


ENTRY_RESOURCE_DEPTH = 3  # a Bundle's entry resource sits 3 levels down: Bundle, entry array, entry


def entry_resource_issues(resource: dict) -> tuple[list[Problem], list[tuple[str, str]]]:
    """What :func:`bundle_issues` checks of one entry's resource (the Bundle around it aside):
    its text (at most MAX_JSON_DEPTH - 3 levels deep, the depth left below an entry), the walk and
    its model class; and the references the walk found. Issues are placed under ``Bundle``."""
    where = "Bundle.entry.resource"
    walker = _Walker()
    walker.issues.extend(_text_issues(resource, where, MAX_JSON_DEPTH - ENTRY_RESOURCE_DEPTH))
    if not walker.issues:
        walker.resource(resource, where)
    if not walker.issues:
        walker.issues.extend(_model_issues(resource, where))
    return walker.issues, walker.references


def bundle_issues(bundle: object, narratives: bool = False) -> list[Problem]:
    """Every issue of a Bundle and every resource in it, and of its internal references; with
    ``narratives``, every ``Narrative.div`` in it against FHIR's narrative rules too.

    Relative references (``Type/id``) must match an entry's resource, ``urn:uuid:`` references an
    entry's fullUrl; absolute http(s) references point outside and are not followed.
    """
    walker = _check(bundle, "Bundle")
    entries = bundle.get("entry", []) if isinstance(bundle, dict) else []
    local = set()
    for entry in entries:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict):
            local.add(f"{res.get('resourceType')}/{res.get('id')}")
        if isinstance(entry, dict) and isinstance(entry.get("fullUrl"), str):
            local.add(entry["fullUrl"])
    for ref, where in walker.references:
        if ref not in local and not is_external(ref):
            walker.fail(where, f"reference '{ref}' does not resolve to an entry of the bundle")
    return walker.issues + (narrative_issues(walker.narratives) if narratives else [])


def is_external(reference: str) -> bool:
    """True for a reference a Bundle need not resolve: to a contained resource (``#``) or an
    absolute http(s) URL."""
    return reference.startswith("#") or reference.startswith(("http://", "https://"))
