"""Each distinct shape validated once: a verdict cache that is exact.

Validation is a pure function of a resource's JSON, and what conversion writes repeats in shape
far more than in bytes: the same site in thousands of trials, the same Evidence structure for
every group of a results table, the same Bundle skeleton, each with other titles, dates, counts
and names. So a document is checked as two parts (:mod:`.shapes` says how it is split and why
that gives the same verdict):

- its *shape*: the document with each primitive value replaced by a placeholder of its element's
  type. The shape goes through the exact checks of :mod:`.checks` (text, the definition-driven
  walk, fhir.resources) once; the verdict is kept under the shape's bytes (a bounded LRU,
  :class:`VerdictCache`);
- its *values*, checked in one batch per element type by the walk's rule for that type, the
  fhir.resources type of the field and the forbidden-character rule.

The answer here is only ever "clean" or "ask the exact checks": a document that is not clean is
always checked again by :mod:`.checks`, so its problems are exactly those it always had. Where
the reasoning does not cover a document (a Python object that is not plain JSON: a tuple, a
subclass, NaN; a resource type without definitions), the fast answer is not given.
"""
from __future__ import annotations

from collections import OrderedDict

import orjson

from .checks import entry_resource_issues, is_external, resource_issues
from .narrative import div_problems
from .shapes import AcceptedValues, Values, shape

CACHE_BYTES = 24 << 20  # shape bytes kept per process (the verdicts of tens of thousands of shapes)
_DUMPS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class VerdictCache:
    """Shape bytes -> verdict (True: clean), least recently used dropped first, at most
    ``max_bytes`` of keys. It only memoizes a pure function: what it holds never changes a result."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[tuple[bytes, bool], bool] = OrderedDict()
        self.hits = self.misses = 0
        self.accepted = AcceptedValues()  # the values set aside that passed their checks

    def verdict(self, shape: bytes, entry: bool) -> bool:
        """Whether the shape is clean (as an entry's resource, or as a document on its own)."""
        key = (shape, entry)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        found = _shape_is_clean(shape, entry)
        self._items[key] = found
        self.size += len(shape)
        while self.size > self.max_bytes and self._items:
            (old, _), _ = self._items.popitem(last=False)
            self.size -= len(old)
        return found


def _shape_is_clean(shape: bytes, entry: bool) -> bool:
    document = orjson.loads(shape)
    if entry:
        return not entry_resource_issues(document)[0]
    return not resource_issues(document)


class Repeats:
    """The fast verdict of the package's ``validate_*``: True when a document is clean, False when
    the exact checks must say (it may be clean all the same)."""

    def __init__(self, cache: VerdictCache | None = None):
        self.cache = cache or VerdictCache()

    def resource_is_clean(self, resource: object) -> bool:
        """True when ``resource`` on its own (references not resolved) passes every check, its
        narratives' rules too (:func:`.checks.resource_issues` checks them there)."""
        values = Values()
        return (self._shape_is_clean(resource, False, values) and values.valid(self.cache.accepted)
                and not any(div_problems(div) for div in values.of_type("xhtml")))

    def bundle_is_clean(self, bundle: object, narratives: bool = False) -> bool:
        """True when the Bundle, every entry's resource and the Bundle's internal references pass
        every check (with ``narratives``, every narrative's rules too): the skeleton (the Bundle without its entries' resources) and each resource
        are documents of their own, their values checked together, their references resolved
        against the entries."""
        if type(bundle) is not dict:
            return False
        entries = bundle.get("entry", [])
        if type(entries) is not list or any(type(e) is not dict or type(e.get("resource")) is not dict
                                            for e in entries):
            return False
        skeleton = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries]} \
            if entries else bundle
        values = Values()
        if not self._shape_is_clean(skeleton, False, values):
            return False
        if not all(self._shape_is_clean(e["resource"], True, values) for e in entries):
            return False
        if not values.valid(self.cache.accepted):
            return False
        if narratives and any(div_problems(div) for div in values.of_type("xhtml")):
            return False
        if not values.references:
            return True
        local = {f"{e['resource'].get('resourceType')}/{e['resource'].get('id')}" for e in entries}
        local |= {e["fullUrl"] for e in entries if isinstance(e.get("fullUrl"), str)}
        return all(ref in local or is_external(ref) for ref in values.references)

    def _shape_is_clean(self, document: dict, entry: bool, values: Values) -> bool:
        """Whether the shape of a document of plain JSON is clean (its values added to
        ``values``); False too when there is no shape for it (see :func:`.shapes.shape`)."""
        found = shape(document, values)
        return found is not None and self.cache.verdict(orjson.dumps(found, option=_DUMPS), entry)
