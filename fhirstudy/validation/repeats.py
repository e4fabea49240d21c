"""Each distinct resource validated once: a verdict cache that is exact.

Validation is a pure function of a resource's JSON, and most of what conversion writes repeats:
the same site (a Location) in thousands of trials, the same outcome wording, the same Bundle
skeleton. What differs between two such resources is mostly their names: their ``id``, their
``meta.source``, the ``reference`` of each Reference, ``Identifier.value``, ``url`` and
``fullUrl``. So a resource is checked as two parts:

- its *template*: its compact JSON with every such name replaced by ``"x"``. The template goes
  through the exact checks of :mod:`.checks` (text, the definition-driven walk, fhir.resources)
  once; the verdict is kept under the template's bytes (a bounded LRU, :class:`VerdictCache`);
- its *names*, each checked on its own as every element of that name can be typed (an ``id`` as
  both ``id`` and ``string``, a ``reference`` as ``string`` and ``uri`` ...), by the walk's
  primitive check, the fhir.resources type and the forbidden-character rule.

Why this is the same verdict: every check on such a name depends on its value alone (its type's
pattern, no required binding: :func:`_name_rules` refuses a name where that is not so), nothing
else looks at it (the element is present in both), and ``"x"`` is valid wherever a valid name
can stand; so the resource is clean exactly when its template is clean and every name is valid.
Where that reasoning does not cover a document, the fast answer is not given: a resource type
without definitions (the walk skips it), a Python object that is not plain JSON (a tuple, a
subclass), an element whose definition has several types. The answer here is only ever "clean"
or "ask the exact checks": a document that is not clean is always checked again by :mod:`.checks`,
so its problems are exactly those it always had.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from functools import lru_cache

import orjson
from fhir.resources import fhirtypes
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError

from .checks import _FORBIDDEN_CHARACTERS, _PRIMITIVE_JSON, _bindings, _elements, _is_primitive
from .checks import entry_resource_issues, is_external, resource_issues, strings_are_valid

NAMES = ("id", "reference", "source", "value", "url", "fullUrl")  # JSON keys whose string values are names
PLACEHOLDER = "x"  # valid as every type a name can have: id, string, uri, url, canonical
_PYDANTIC_TYPES = {"id": fhirtypes.IdType, "string": fhirtypes.StringType, "uri": fhirtypes.UriType,
                   "url": fhirtypes.UrlType, "canonical": fhirtypes.CanonicalType}
CACHE_BYTES = 24 << 20  # template bytes kept per process (the verdicts of ~10,000 resources)
_PLACEHOLDER = PLACEHOLDER.encode()
_REFERENCE = b'"reference":"'
_RESOURCE_TYPE = re.compile(rb'(?<=[{,])"resourceType":"((?:[^"\\]|\\.)*)"')
_DUMPS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class VerdictCache:
    """Template bytes -> verdict (True: clean), least recently used dropped first, at most
    ``max_bytes`` of keys. It only memoizes a pure function: what it holds never changes a result."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[tuple[bytes, bool], bool] = OrderedDict()
        self.hits = self.misses = 0

    def verdict(self, template: bytes, entry: bool) -> bool:
        """Whether the template is clean (as an entry's resource, or as a document on its own)."""
        key = (template, entry)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        found = _template_is_clean(template, entry)
        self._items[key] = found
        self.size += len(template)
        while self.size > self.max_bytes and self._items:
            (old, _), _ = self._items.popitem(last=False)
            self.size -= len(old)
        return found


def _template_is_clean(template: bytes, entry: bool) -> bool:
    document = orjson.loads(template)
    if entry:
        return not entry_resource_issues(document)[0]
    return not resource_issues(document)


@lru_cache(maxsize=None)
def _name_rules() -> dict[str, tuple[tuple[str, ...], tuple[TypeAdapter, ...]]] | None:
    """For each name that can be templated: the types of the elements of that name that take a
    JSON string, and a fhir.resources validator of a list of each. A name is left out when an
    element of that name has a required binding or a type checked by more than its value; None
    (no templating at all) when some element has several types (the walk would not check below it)."""
    by_name: dict[str, list[tuple[str, str]]] = {name: [] for name in NAMES}
    refused: set[str] = set()
    for path, el in _elements().items():
        types = el.get("types") or []
        if "contentReference" not in el and len(types) != 1 and not path.endswith("[x]"):
            return None
        name = path.rsplit(".", 1)[1]
        if name not in by_name or "contentReference" in el:
            continue
        type_code = types[0]
        if not _is_primitive(type_code) or type_code in _PRIMITIVE_JSON:
            continue  # an object, a number or a boolean: the walk refuses the placeholder there
        if type_code not in _PYDANTIC_TYPES or path in _bindings():
            refused.add(name)
        else:
            by_name[name].append((path, type_code))
    # Without a binding, both validators check a value by its type alone.
    return {name: (types, tuple(TypeAdapter(list[_PYDANTIC_TYPES[t]]) for t in types))
            for name, rules in by_name.items() if name not in refused
            for types in [tuple(sorted({t for _, t in rules}))]}


@lru_cache(maxsize=None)
def _name_pattern() -> re.Pattern | None:
    """``"name":"`` (group 1) and the string's body (group 2) of every templated name. In compact
    JSON a quote inside a string is always escaped, so an unescaped ``"id":"`` starts a key."""
    rules = _name_rules()
    if not rules:
        return None
    names = "|".join(re.escape(n) for n in sorted(rules))
    return re.compile(rf'("(?:{names})":")([^"\\]*(?:\\.[^"\\]*)*)(?=")'.encode())


@lru_cache(maxsize=None)
def _defined_types() -> frozenset[bytes]:
    return frozenset(path[:-3].encode() for path in _elements() if path.endswith(".id") and "." not in path[:-3])


def _strings(bodies: list[bytes]) -> list[str]:
    """The values of JSON string bodies, in one parse."""
    joined = b"\x00".join(bodies)  # compact JSON escapes NUL, so no body holds one
    if b"\\" not in joined:
        return joined.decode().split("\x00")
    return orjson.loads(b'["' + b'","'.join(bodies) + b'"]')


def _names_are_valid(names: set[tuple[bytes, bytes]]) -> list[str] | None:
    """The references among the names (``('"reference":"', body)`` ...) when every name's value is
    valid wherever an element of that name can stand (the walk's rule and the fhir.resources type
    of every type of :func:`_name_rules`, no forbidden character); None when one is not."""
    by_key: dict[bytes, list[bytes]] = {}
    for key, raw in names:
        by_key.setdefault(key, []).append(raw)
    rules = _name_rules()
    references: list[str] = []
    for key, bodies in by_key.items():
        values = _strings(bodies)
        if any(b"\\" in b for b in bodies) and _FORBIDDEN_CHARACTERS.search("\n".join(values)):
            return None
        types, adapters = rules[key[1:-3].decode()]
        if not all(strings_are_valid(values, t) for t in types):
            return None
        try:
            for adapter in adapters:
                adapter.validate_python(values)
        except PydanticError:
            return None
        if key == _REFERENCE:
            references = values
    return references


class Repeats:
    """The fast verdict of the package's ``validate_*``: True when a document is clean, False when
    the exact checks must say (it may be clean all the same)."""

    def __init__(self, cache: VerdictCache | None = None):
        self.cache = cache or VerdictCache()

    def resource_is_clean(self, resource: object) -> bool:
        """True when ``resource`` on its own (references not resolved) passes every check."""
        names: set[tuple[bytes, bytes]] = set()
        return (_plain_json(resource) and self._template_is_clean(resource, False, names)
                and _names_are_valid(names) is not None)

    def bundle_is_clean(self, bundle: object) -> bool:
        """True when the Bundle, every entry's resource and the Bundle's internal references pass
        every check: the skeleton (the Bundle without its entries' resources) and each resource
        are documents of their own, their names checked together, their references resolved
        against the entries."""
        if type(bundle) is not dict or not _plain_json(bundle):
            return False
        entries = bundle.get("entry", [])
        if type(entries) is not list or any(type(e) is not dict or type(e.get("resource")) is not dict
                                            for e in entries):
            return False
        skeleton = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries]} \
            if entries else bundle
        names: set[tuple[bytes, bytes]] = set()
        if not self._template_is_clean(skeleton, False, names):
            return False
        if not all(self._template_is_clean(e["resource"], True, names) for e in entries):
            return False
        references = _names_are_valid(names)
        if references is None:
            return False
        if not references:
            return True
        local = {f"{e['resource'].get('resourceType')}/{e['resource'].get('id')}" for e in entries}
        local |= {e["fullUrl"] for e in entries if isinstance(e.get("fullUrl"), str)}
        return all(ref in local or is_external(ref) for ref in references)

    def _template_is_clean(self, document: dict, entry: bool, names: set[tuple[bytes, bytes]]) -> bool:
        """Whether the template of a document of plain JSON is clean (its names added to
        ``names``); False too when the template cannot stand for it (see the module docstring)."""
        pattern = _name_pattern()
        if pattern is None:
            return False
        data = orjson.dumps(document)
        kinds = data.count(b'"resourceType":"')
        if kinds > 1 and not set(_RESOURCE_TYPE.findall(data)) <= _defined_types():
            return False
        if kinds == 1 and (type(kind := document.get("resourceType")) is not str
                           or kind.encode() not in _defined_types()):
            return False
        parts = pattern.split(data)  # [text, '"name":"', body, text, '"name":"', body, ..., text]
        names.update(zip(parts[1::3], parts[2::3]))
        parts[2::3] = [_PLACEHOLDER] * (len(parts) // 3)
        return self.cache.verdict(b"".join(parts), entry)


def _plain_json(document: object) -> bool:
    """Whether ``document`` is plain JSON (dicts, lists, str, int, float, bool, None) as the
    validators see it, so its compact JSON stands for it: not a tuple, an enum, a subclass, a
    date, NaN (each serialised by orjson, but not the object the exact checks would see)."""
    if type(document) is not dict:
        return False
    try:
        data = orjson.dumps(document, option=_DUMPS)
    except TypeError:
        return False
    return orjson.loads(data) == document
