"""The search parameters fhirstudy serves, loaded once from data under ``mappings/``.

``mappings/fhir-r5-search-parameters.json`` holds the official R5 definitions;
``mappings/search-parameters-local.json`` holds the ones fhirstudy defines itself (full
SearchParameter resources), and under ``below`` the parameters whose rows a token parameter's
``:below`` also searches (``ResearchStudy.condition`` -> ``condition-ancestor``).  A definition
is served for a resource type when its type is one the index supports and the branches of its expression that start from that type compile in the
FHIRPath subset (:mod:`fhirstudy.search.fhirpath`).  Anything else is left out, and listed by
:meth:`Registry.unsupported` with the reason.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from fhirstudy import mappings
from fhirstudy.search.fhirpath import (Expression, Item, UnsupportedExpression, compile_expression,
                                       first_step, split_union)

DEFINITION_FILES = ("fhir-r5-search-parameters.json", "search-parameters-local.json")  # in fhirstudy.mappings
BELOW_FILE = "search-parameters-local.json"  # its ``below`` table: what ``:below`` searches besides the parameter
RESOURCE_TYPES_FILE = "resource-types.json"  # in fhirstudy.mappings: the one list of resource types
SERVED_TYPES = tuple(row["type"] for row in mappings.load(RESOURCE_TYPES_FILE)["resourceTypes"])
# Parameters defined on Resource that we serve on every type (``_in``, ``_list``, ``_has``... are not).
COMMON_PARAMETERS = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_language")
# Parameter types the index can answer, and the modifiers each accepts.
MODIFIERS = {
    "token": ("missing", "not", "text"),
    "string": ("missing", "exact", "contains"),
    "reference": ("missing",),  # plus a target type name, e.g. site:Location=x
    "date": ("missing",),
    "number": ("missing",),
    "uri": ("missing",),
    "composite": (),
    "special": ("missing",),  # only the specials of SPECIAL_EXPRESSIONS
}
PREFIXED_TYPES = ("date", "number")
# Special parameters the index answers, by expression: ``near`` on a position (search.geo).
SPECIAL_EXPRESSIONS = ("Location.position", "ResearchStudy.site.resolve().position")
# Codes whose definition asks for matching we do not do (the generic string search would lie).
UNSERVED_CODES = {"phonetic": "phonetic matching is not implemented"}
_ANY_RESOURCE = ("Resource", "DomainResource")
# An extension of fhirstudy's own SearchParameters: true when a resource without any value of the
# parameter admits every value (``eligible-age=67`` finds a study without an age limit).
ABSENT_ADMITS = "https://fhirstudy.org/fhir/StructureDefinition/searchparameter-absent-admits"
# Another: the chain (``site.near``) a parameter answers from the searched resource's own index
# rows, kept up to date through ``via`` (what HAPI FHIR calls an uplifted refchain): a chain
# otherwise looks up every target that matches, then every resource pointing at one.
ANSWERS_CHAIN = "https://fhirstudy.org/fhir/StructureDefinition/searchparameter-answers-chain"
# The parts of complex datatypes a string parameter searches (HumanName, Address, Annotation...),
# in the order their index rows number them (``part`` 1 on; 0: a plain string).
STRING_PARTS = ("text", "family", "given", "prefix", "suffix", "line", "city", "district", "state",
                "postalCode", "country")
# ``X.ref.resolve().more``: a branch that walks into the referenced resource (linked parameter)
_WALKS_ON = re.compile(r"^(?P<reference>[A-Za-z][A-Za-z0-9_.]*)\.resolve\(\)\.\s*[A-Za-z]")


@dataclass(frozen=True)
class Component:
    """One component of a composite parameter: its type, code and expression relative to the
    composite's items."""

    type: str
    code: str
    expression: Expression


@dataclass(frozen=True)
class SearchParam:
    """One served search parameter of one resource type."""

    code: str
    type: str
    url: str
    resource_type: str
    expression: Expression
    target: tuple[str, ...] = ()
    description: str | None = field(default=None, compare=False)
    components: tuple[Component, ...] = ()
    # a linked parameter walks into the resource another (reference) parameter of the same type
    # points at: ``via`` is that parameter's code, and its rows change when the target does
    via: str | None = None
    absent_admits: bool = False
    below: tuple[str, ...] = ()  # codes of the parameters indexing broader codes, searched by :below
    # a string parameter on one part of what another string parameter of the type searches
    # (``address-city``: ``Location.address.city`` of ``address``'s ``Location.address``): that
    # parameter's code and the part's number (STRING_PARTS); its rows are that parameter's rows
    # of that part
    part_of: tuple[str, int] | None = None
    answers_chain: str | None = None  # ``reference.code`` (ANSWERS_CHAIN), served through ``via``

    def evaluate(self, resource: dict) -> list[Item]:
        """The items of ``resource`` this parameter indexes."""
        return self.expression.evaluate(resource)

    @property
    def modifiers(self) -> tuple[str, ...]:
        """The modifiers this parameter accepts (besides target types of references); ``below``
        for a token parameter whose broader codes another parameter indexes."""
        return MODIFIERS[self.type] + (("below",) if self.below else ())


class Registry:
    """Served search parameters by resource type and code."""

    def __init__(self, definitions: list[dict], served_types: tuple[str, ...] = SERVED_TYPES,
                 below: dict[str, list[str]] | None = None):
        self.served_types = served_types
        self._below = read_below() if below is None else below
        self._params: dict[str, dict[str, SearchParam]] = {t: {} for t in served_types}
        self._unsupported: dict[str, dict[str, str]] = {t: {} for t in served_types}
        self._by_url = {d["url"]: d for d in definitions if d.get("url")}
        self.definitions = list(definitions)
        for definition in definitions:
            for resource_type in self._types_of(definition):
                self._add(resource_type, definition)
        for resource_type in served_types:
            self._link(resource_type)
            self._parts(resource_type)

    def _parts(self, resource_type: str) -> None:
        """Mark each string parameter whose expression is another string parameter's plus one
        of STRING_PARTS as that parameter's part (``part_of``)."""
        params = self._params[resource_type]
        by_expression = {p.expression.text: p.code for p in params.values() if p.type == "string"}
        for code, param in list(params.items()):
            whole, _, part = param.expression.text.rpartition(".")
            if param.type == "string" and part in STRING_PARTS and by_expression.get(whole, code) != code:
                params[code] = replace(param, part_of=(by_expression[whole], STRING_PARTS.index(part) + 1))

    def _link(self, resource_type: str) -> None:
        """Give each parameter that walks into a referenced resource the reference parameter it
        walks through (same expression up to ``resolve()``); one without such a parameter is not
        served (its rows could not be kept up to date when the target changes)."""
        params = self._params[resource_type]
        for code, param in list(params.items()):
            references = {m.group("reference") for m in map(_WALKS_ON.match, split_union(param.expression.text)) if m}
            if not references:
                continue
            via = [p.code for p in params.values() if p.type == "reference" and p.expression.text in references]
            if len(references) == 1 and via:
                params[code] = replace(param, via=via[0])
            else:
                del params[code]
                self._unsupported[resource_type][code] = (
                    f"resolve() needs one reference parameter with the expression {sorted(references)}")

    def _types_of(self, definition: dict) -> list[str]:
        bases = definition.get("base") or []
        if any(base in _ANY_RESOURCE for base in bases):
            return list(self.served_types) if definition["code"] in COMMON_PARAMETERS else []
        return [base for base in bases if base in self.served_types]

    def _add(self, resource_type: str, definition: dict) -> None:
        code = definition["code"]
        if code in self._params[resource_type]:
            return  # the first definition of a code wins (the package repeats a few examples)
        reason = UNSERVED_CODES.get(code)
        expression, components = None, ()
        if reason:
            pass
        elif definition["type"] not in MODIFIERS:
            reason = f"type {definition['type']} is not supported"
        elif definition["type"] == "special" and definition.get("expression") not in SPECIAL_EXPRESSIONS:
            reason = "a special parameter the index does not answer"
        else:
            branches = [b for b in split_union(definition.get("expression") or "")
                        if first_step(b) in (resource_type, *_ANY_RESOURCE)]
            if not branches:
                reason = f"no expression for {resource_type}"
            else:
                try:
                    expression = compile_expression(" | ".join(branches))
                    components = self._components(definition)
                except UnsupportedExpression as exc:
                    reason = f"expression not supported: {exc}"
        if reason:
            self._unsupported[resource_type].setdefault(code, reason)
            return
        self._unsupported[resource_type].pop(code, None)
        self._params[resource_type][code] = SearchParam(
            code=code, type=definition["type"], url=definition["url"], resource_type=resource_type,
            expression=expression, target=tuple(definition.get("target") or ()),
            description=definition.get("description"), components=components,
            absent_admits=any(e.get("url") == ABSENT_ADMITS and e.get("valueBoolean") is True
                              for e in definition.get("extension") or []),
            below=tuple(self._below.get(f"{resource_type}.{code}", ())) if definition["type"] == "token" else (),
            answers_chain=next((e.get("valueString") for e in definition.get("extension") or []
                                if e.get("url") == ANSWERS_CHAIN), None),
        )

    def _components(self, definition: dict) -> tuple[Component, ...]:
        """The components of a composite (empty for other types); UnsupportedExpression when one
        cannot be served."""
        if definition["type"] != "composite":
            return ()
        components = []
        for component in definition.get("component") or []:
            target = self._by_url.get(component.get("definition"))
            if target is None or target["type"] not in MODIFIERS or target["type"] == "composite":
                raise UnsupportedExpression(f"component {component.get('definition')} is not defined")
            if target["type"] == "special":  # Composition section-code-text: a text search the index does not answer
                raise UnsupportedExpression(f"component {component.get('definition')} is a special parameter")
            components.append(Component(target["type"], target["code"],
                                        compile_expression(component["expression"])))
        if not components:
            raise UnsupportedExpression("a composite without components")
        return tuple(components)

    def params(self, resource_type: str) -> dict[str, SearchParam]:
        """Served parameters of ``resource_type`` by code (empty for a type we do not serve)."""
        return self._params.get(resource_type, {})

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        """The parameter ``code`` of ``resource_type``, or None when not served."""
        return self.params(resource_type).get(code)

    def answering(self, resource_type: str, chain: str) -> SearchParam | None:
        """The linked parameter of ``resource_type`` that answers the chain ``reference.code``
        (ANSWERS_CHAIN) through that reference, or None."""
        return next((p for p in self.params(resource_type).values()
                     if p.answers_chain == chain and p.via == chain.partition(".")[0]), None)

    def definition(self, url: str) -> dict | None:
        """The definition (a SearchParameter resource, or the package's extract) at ``url``."""
        return self._by_url.get(url)

    def unsupported(self, resource_type: str) -> dict[str, str]:
        """Parameters defined for ``resource_type`` that we do not serve, with the reason."""
        return dict(self._unsupported.get(resource_type, {}))


def read_below(name: str = BELOW_FILE) -> dict[str, list[str]]:
    """The ``below`` table of ``name``: ``{"Type.code": [codes of the parameters :below also
    searches]}`` (keys starting with ``_`` are comments)."""
    table = mappings.load(name).get("below", {})
    return {key: list(codes) for key, codes in table.items() if not key.startswith("_")}


def read_definitions(names=DEFINITION_FILES) -> list[dict]:
    """Every SearchParameter definition in the tables ``names`` of :mod:`fhirstudy.mappings`
    (each ``{"parameters": [...]}``), read afresh: the caller may change them."""
    definitions: list[dict] = []
    for name in names:
        definitions.extend(json.loads((mappings.folder() / name).read_text(encoding="utf-8"))["parameters"])
    return definitions


@lru_cache(maxsize=1)
def load_registry() -> Registry:
    """The registry built from the definition files of :mod:`fhirstudy.mappings` (loaded once)."""
    return Registry(read_definitions())
