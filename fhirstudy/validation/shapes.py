"""A document's shape and its values, taken apart for :mod:`.repeats`.

Two trials' resources rarely repeat byte for byte (their titles, dates, counts and names
differ) but their *shapes* do: the same elements, nested the same way, with the same codes. So a
document is split, in one walk driven by the same definitions as :mod:`.checks`, into

- its *shape*: the document with each primitive value replaced by a placeholder of its element's
  type (``"x"`` for a string, ``"2000"`` for a date, ``1`` for a positiveInt ...), chosen so that
  both the walk's rule and the fhir.resources type of that element accept it; and
- its *values*: each replaced value, grouped by element type (the definitions' type for the
  walk's rule, the model field's own annotation for fhir.resources), to be checked in one batch
  per type.

Kept as they are (so the shape's exact check judges them): booleans, values of an element with a
required binding and everything inside a bound Coding or CodeableConcept, ``resourceType``,
primitive extensions (``_name``), elements the definitions or the models do not know, values
whose JSON type is not their element's, and whatever the walk itself does not descend into (an
element of several types, a resource type without definitions).

Why a clean shape and valid values make a clean document: every check of :mod:`.checks` on such a
value depends on the value and its element's type alone (the walk: JSON type, emptiness, pattern,
range; fhir.resources: the field's type; the text rules: forbidden characters), and every other
check (structure, cardinality, required elements, choice elements, nesting depth, keys) sees the
same thing in the shape as in the document, since a placeholder is present wherever the value
was. A placeholder is used only where it passes both checks of its element, so the shape is
clean exactly when the document's structure is.
"""
from __future__ import annotations

import math
import typing
from collections import defaultdict
from functools import lru_cache

from fhir.resources import get_fhir_model_class
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from ..limits import MAX_JSON_DEPTH
from .checks import _COMPLEX_CONTAINERS, _FORBIDDEN_CHARACTERS, _PRIMITIVE_JSON, _Walker
from .checks import _bindings, _element, _elements, _is_primitive, narrative_issues, strings_are_valid

# Candidate placeholders by JSON kind, tried in order: the first both checks of an element accept.
_STRING_CANDIDATES = ("x", "1", "2000", "2000-01-01T00:00:00Z", "00:00:00", "urn:oid:1.2",
                      "urn:uuid:00000000-0000-0000-0000-000000000000", "AAAA",
                      '<div xmlns="http://www.w3.org/1999/xhtml">x</div>')
_NUMBER_CANDIDATES = (1,)
_RANGES = {"unsignedInt": 0, "positiveInt": 1}  # the walk's lower bounds


class Primitive:
    """How a primitive element's values are handled: ``placeholder`` None keeps them as they are.
    One object per element (compared by identity: values are grouped by it as they are met)."""

    __slots__ = ("type_code", "json_types", "placeholder", "adapter")

    def __init__(self, type_code: str, json_types: tuple[type, ...], placeholder: object = None,
                 adapter: TypeAdapter | None = None):
        self.type_code = type_code
        self.json_types = json_types
        self.placeholder = placeholder
        self.adapter = adapter  # fhir.resources' check of a list of the field's values


class Values:
    """The values set aside from one or more documents, and the references the walk met."""

    __slots__ = ("by_rule", "references")

    def __init__(self) -> None:
        self.by_rule: defaultdict[Primitive, list] = defaultdict(list)
        self.references: list[str] = []

    def of_type(self, type_code: str) -> list:
        """The values set aside of elements of ``type_code`` (``xhtml``: every narrative's div)."""
        return [v for rule, found in self.by_rule.items() if rule.type_code == type_code for v in found]

    def valid(self, accepted: AcceptedValues | None = None) -> bool:
        """Whether every value set aside passes the checks of its element (see the module).
        ``accepted``: values that passed before, not checked again (exact: every check of a
        value depends on the value and its batch's rule alone)."""
        batches: dict[tuple[str, int], tuple[Primitive, list]] = {}
        for rule, found in self.by_rule.items():  # one batch per element type and model type
            key = (rule.type_code, id(rule.adapter))
            if key in batches:
                batches[key][1].extend(found)
            else:
                batches[key] = (rule, list(found))
        for key, (rule, values) in batches.items():
            known = accepted.of(key) if accepted is not None else None
            if rule.json_types != (int, float):  # str or int alone: equal values are the same value
                values = list(dict.fromkeys(values))
            if known:  # a float is never looked up: 1.0 == 1 (an int of another batch rule's past)
                values = [v for v in values if type(v) is float or v not in known]
                if not values:
                    continue
            if rule.json_types == (str,):
                if not strings_are_valid(values, rule.type_code) or _FORBIDDEN_CHARACTERS.search("\n".join(values)):
                    return False
            elif not all(map(math.isfinite, values)) or \
                    rule.type_code in _RANGES and min(values) < _RANGES[rule.type_code]:
                return False
            try:
                rule.adapter.validate_python(values)
            except PydanticError:
                return False
            if known is not None:
                accepted.add(known, values)
        return True


class AcceptedValues:
    """Values that passed every check of their batch (element type, model type), by batch: the
    memo of a pure function, so what it holds never changes a verdict. Only short strings and
    ints are kept (names, codes, counts recur across trials; a narrative does not), at most
    ``max_values`` in all (then it starts again)."""

    MAX_LENGTH = 128

    def __init__(self, max_values: int = 100_000):
        self.max_values = max_values
        self.count = 0
        self._by_batch: dict[tuple[str, int], set] = {}

    def of(self, key: tuple[str, int]) -> set:
        """The values accepted of one batch (a set to pass back to :meth:`add`)."""
        found = self._by_batch.get(key)
        if found is None:
            found = self._by_batch[key] = set()
        return found

    def add(self, known: set, values: list) -> None:
        """Remember ``values``, which passed every check of the batch whose set is ``known``."""
        limit = self.MAX_LENGTH
        before = len(known)
        known.update(v for v in values if type(v) is int or type(v) is str and len(v) <= limit)
        self.count += len(known) - before
        if self.count > self.max_values:
            for kept in self._by_batch.values():
                kept.clear()
            self.count = 0


_PRIMITIVE, _RESOURCE, _COMPLEX = "primitive", "resource", "complex"
_KEEP = ("keep",)  # a plan: the value stays as it is


class _NotPlain(Exception):
    """A value that is not plain JSON: the exact checks would not see what its JSON says."""


def shape(document: object, values: Values) -> dict | None:
    """The shape of a resource (its values added to ``values``); None when there is none: a
    resource type without definitions (the walk would not check it), or a document that is not
    plain JSON (dicts, lists, str, int, finite float, bool, None, each exactly that type: not a
    tuple, an enum, a subclass, a date, NaN, a key that is not a string)."""
    if type(document) is not dict:
        return None
    rtype = document.get("resourceType")
    if type(rtype) is not str or f"{rtype}.id" not in _elements():
        return None
    try:
        return _complex(document, rtype, values, False)
    except _NotPlain:
        return None


_SCALARS = (str, int, bool, type(None))


def _plain(value: object, depth: int = 0) -> object:
    """``value`` when it is plain JSON (see :func:`shape`); raises _NotPlain when it is not."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _NotPlain
        return value
    if depth > MAX_JSON_DEPTH:
        raise _NotPlain
    if kind is list:
        for item in value:
            _plain(item, depth + 1)
        return value
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            _plain(item, depth + 1)
        return value
    raise _NotPlain


def _complex(node: dict, ctx: str, values: Values, literal: bool, depth: int = 1) -> dict:
    # The hottest loop of conversion (every element of every resource): plans are flat tuples
    # read by position, scalars kept without a call, a placeholder set aside without a lookup.
    if depth > MAX_JSON_DEPTH:
        raise _NotPlain  # too deep to walk: the exact checks say so without recursion
    depth += 1
    plans = _plans(ctx)
    by_rule = values.by_rule
    out = {}
    for key, value in node.items():
        try:
            plan = plans[key]
        except KeyError:
            if type(key) is not str:
                raise _NotPlain from None
            plan = plans[key] = _plan(ctx, key)
        kind = plan[0]
        kind_of_value = type(value)
        if kind is _PRIMITIVE and not literal:
            _, rule, placeholder, json_types = plan
            if kind_of_value in json_types:
                by_rule[rule].append(value)
                out[key] = placeholder
            elif kind_of_value is list:
                items = []
                for item in value:
                    if type(item) in json_types:
                        by_rule[rule].append(item)
                        items.append(placeholder)
                    else:
                        items.append(_plain(item, depth))
                out[key] = items
            else:
                out[key] = _plain(value, depth)
        elif kind is _COMPLEX:
            _, child, bound, reference = plan
            inner = literal or bound
            if kind_of_value is dict and value:
                out[key] = _complex(value, child, values, inner, depth)
                if reference and type(value.get("reference")) is str:
                    values.references.append(value["reference"])
            elif kind_of_value is list:
                items = []
                for item in value:
                    if type(item) is dict and item:
                        items.append(_complex(item, child, values, inner, depth))
                        if reference and type(item.get("reference")) is str:
                            values.references.append(item["reference"])
                    else:
                        items.append(_plain(item, depth))  # the shape's check faults it as the walk would
                out[key] = items
            else:
                out[key] = _plain(value, depth)
        elif kind is _RESOURCE:
            if kind_of_value is list:
                out[key] = [_resource(item, values, literal, depth) for item in value]
            else:
                out[key] = _resource(value, values, literal, depth)
        elif kind_of_value in _SCALARS:  # kept as it is (_KEEP, or a primitive inside a bound element)
            out[key] = value
        else:
            out[key] = _plain(value, depth)
    return out


def _resource(value: object, values: Values, literal: bool, depth: int) -> object:
    """The shape of a resource inside a resource (``contained``, an entry's resource)."""
    if type(value) is not dict:
        return _plain(value, depth)
    rtype = value.get("resourceType")
    if type(rtype) is not str or f"{rtype}.id" not in _elements():
        return _plain(value, depth)  # the walk does not look inside: its exact check on the shape judges it
    return _complex(value, rtype, values, literal, depth)


@lru_cache(maxsize=None)
def _plans(ctx: str) -> dict[str, tuple]:
    """The plans of ``ctx``'s keys met so far (filled in as keys are met)."""
    return {}


def _plan(ctx: str, key: str) -> tuple:
    """What the walk does with ``key`` in ``ctx``: ``_KEEP`` (the value stays as it is: unknown
    there, a primitive extension, of several types), ``(_PRIMITIVE, Primitive)``,
    ``(_PRIMITIVE, Primitive, its placeholder, its JSON types)`` (a primitive without a placeholder
    is kept), ``(_RESOURCE,)`` or ``(_COMPLEX, child context, bound, is a Reference)``."""
    found = _element(ctx, key) if key[:1] != "_" else None
    if found is None:
        return _KEEP
    path, _el, type_code = found
    if type_code == "":
        return _KEEP
    if _is_primitive(type_code):
        rule = _primitive(ctx, key, path, type_code)
        return _KEEP if rule.placeholder is None else (_PRIMITIVE, rule, rule.placeholder, rule.json_types)
    if type_code == "Resource":
        return (_RESOURCE,)
    if type_code in _COMPLEX_CONTAINERS or "." in type_code:
        return _COMPLEX, type_code if "." in type_code else path, False, False
    bound = type_code in ("CodeableConcept", "Coding") and path in _bindings()
    return _COMPLEX, type_code, bound, type_code == "Reference"


@lru_cache(maxsize=None)
def _primitive(ctx: str, key: str, path: str, type_code: str) -> Primitive:
    json_types = _PRIMITIVE_JSON.get(type_code, (str,))
    annotation = _field_annotation(ctx, key)
    if type_code == "boolean" or path in _bindings() or annotation is None:
        return Primitive(type_code, json_types, None, None)
    adapter = _adapter(annotation)
    for candidate in (_STRING_CANDIDATES if json_types == (str,) else _NUMBER_CANDIDATES):
        walker = _Walker()
        walker.value(candidate, path, type_code, "x")
        if walker.issues or narrative_issues(walker.narratives):  # a div must be one a client may write
            continue
        try:
            adapter.validate_python([candidate])
        except PydanticError:
            continue
        return Primitive(type_code, json_types, candidate, adapter)
    return Primitive(type_code, json_types, None, None)


_ADAPTERS: dict[str, TypeAdapter] = {}


def _adapter(annotation) -> TypeAdapter:
    key = repr(annotation)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(list[annotation])
    return _ADAPTERS[key]


def _field_annotation(ctx: str, key: str):
    """The fhir.resources type of element ``key`` of ``ctx`` (a type, or a backbone element's
    path), unwrapped of Optional and List; None when the models do not say."""
    field = _model_fields(ctx).get(key)
    return None if field is None else unwrap(field.annotation)


@lru_cache(maxsize=None)
def _model_fields(ctx: str) -> dict:
    """The model fields of ``ctx`` by JSON name (empty when there is no model for it)."""
    model = _model_class(ctx)
    return {} if model is None else {f.alias or name: f for name, f in model.model_fields.items()}


@lru_cache(maxsize=None)
def _model_class(ctx: str):
    if "." not in ctx:
        try:
            return get_fhir_model_class(ctx)
        except (KeyError, ValueError):
            return None
    parent, step = ctx.rsplit(".", 1)
    field = _model_fields(parent).get(step)
    klass = getattr(unwrap(field.annotation), "get_model_klass", None) if field is not None else None
    return klass() if klass is not None else None


def unwrap(annotation):
    """``X | None`` -> X; ``list[X]`` -> X."""
    while typing.get_origin(annotation) in (typing.Union, list, typing.List) or \
            str(typing.get_origin(annotation)) == "<class 'types.UnionType'>":
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation
