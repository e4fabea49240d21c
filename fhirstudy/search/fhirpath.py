"""A small FHIRPath subset: enough to evaluate the search-parameter expressions fhirstudy serves.

Supported: path navigation over FHIR JSON (choice elements such as ``value[x]`` are found under
their typed JSON names, e.g. ``valueCodeableConcept``), ``|`` union, parentheses, string/boolean/
number literals, ``=`` and ``!=`` inside ``where(...)``, the functions ``where``, ``ofType``,
``as``, ``resolve`` and the operators ``as`` and ``is``.  ``resolve() is X`` checks the type named
in a literal reference (``X/id``) and is true when the type cannot be known.

Everything else raises :class:`UnsupportedExpression` at compile time, so a search parameter
whose expression we cannot evaluate is never registered (and never claimed in the
CapabilityStatement).

Each evaluated item is a :class:`Item` holding the JSON value and its FHIR type name when known
(from the choice-element suffix or from ``mappings/fhir-r5-elements.json``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, NamedTuple

from fhirstudy import mappings

ELEMENTS_FILE = "fhir-r5-elements.json"  # in fhirstudy.mappings
_FHIRPATH_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
# First steps that stand for "the resource at hand" whatever its type.
_ANY_RESOURCE = {"Resource", "DomainResource"}


class UnsupportedExpression(ValueError):
    """The expression uses FHIRPath this subset does not implement."""


class Item(NamedTuple):
    """One node of an evaluation result: a JSON value and its FHIR type name (or None)."""

    value: Any
    type: str | None = None
    path: str | None = None  # element path used to look up child types, e.g. "ResearchStudy.period"


@dataclass(frozen=True)
class _Resolved:
    """What ``resolve()`` gives for a reference: only the target type is known."""

    type: str | None


# ---------------------------------------------------------------------------------------------
# element types (data, loaded once)


@lru_cache(maxsize=1)
def _elements() -> dict[str, dict]:
    return mappings.load(ELEMENTS_FILE)["elements"]


@lru_cache(maxsize=1)
def _choice_types() -> dict[str, str]:
    """Choice-element JSON suffixes and the type each names (``Quantity``, ``DateTime`` -> dateTime)."""
    names: dict[str, str] = {}
    for path, element in _elements().items():
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
    element = _elements().get(path)
    if element and element.get("contentReference"):
        return {"types": [], "contentReference": element["contentReference"]}
    return element


def _child_path_and_type(parent: Item, name: str) -> tuple[str | None, str | None]:
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


# ---------------------------------------------------------------------------------------------
# tokenizer

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<op>!=|[=|().,])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise UnsupportedExpression(f"cannot read {text[pos:]!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "ident" and value.startswith("`"):
            value = value[1:-1]
        tokens.append((kind, value))
        pos = match.end()
    return tokens


# ---------------------------------------------------------------------------------------------
# parser: builds closures  (context items, root item) -> items

Evaluator = Callable[[list[Item], Item], list[Item]]


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise UnsupportedExpression(f"expected {value!r}, found {token!r}")
        self.pos += 1
        return token

    def parse(self) -> Evaluator:
        evaluator = self.equality()
        if self.peek() is not None:
            raise UnsupportedExpression(f"unexpected {self.peek()[1]!r}")
        return evaluator

    def equality(self) -> Evaluator:
        left = self.union()
        token = self.peek()
        if token and token[1] in ("=", "!="):
            self.take()
            right = self.union()
            negate = token[1] == "!="
            return lambda ctx, root: _equals(left(ctx, root), right(ctx, root), negate)
        return left

    def union(self) -> Evaluator:
        parts = [self.type_expression()]
        while self.peek() and self.peek()[1] == "|":
            self.take()
            parts.append(self.type_expression())
        if len(parts) == 1:
            return parts[0]
        return lambda ctx, root: _distinct(item for part in parts for item in part(ctx, root))

    def type_expression(self) -> Evaluator:
        term = self.term()
        token = self.peek()
        if token and token[0] == "ident" and token[1] in ("is", "as"):
            self.take()
            type_name = self.take()[1]
            if token[1] == "as":
                return lambda ctx, root: _of_type(term(ctx, root), type_name)
            return lambda ctx, root: _is_type(term(ctx, root), type_name)
        return term

    def term(self) -> Evaluator:
        evaluator = self.primary()
        while self.peek() and self.peek()[1] == ".":
            self.take()
            evaluator = _chain(evaluator, self.invocation())
        return evaluator

    def primary(self) -> Evaluator:
        kind, value = self.peek() or (None, None)
        if value == "(":
            self.take()
            inner = self.equality()
            self.take(")")
            return inner
        if kind == "string":
            self.take()
            literal = [Item(string_literal(value[1:-1]), "string")]
            return lambda ctx, root: literal
        if kind == "number":
            self.take()
            number = [Item(float(value) if "." in value else int(value), "decimal")]
            return lambda ctx, root: number
        if kind == "ident" and value in ("true", "false"):
            self.take()
            boolean = [Item(value == "true", "boolean")]
            return lambda ctx, root: boolean
        if kind == "ident" and self.peek(1) and self.peek(1)[1] == "(":
            return self.invocation()
        if kind == "ident":
            self.take()
            return lambda ctx, root: _first_step(ctx, root, value)
        raise UnsupportedExpression(f"unexpected {value!r}")

    def invocation(self) -> Evaluator:
        kind, name = self.take()
        if kind != "ident":
            raise UnsupportedExpression(f"expected a name, found {name!r}")
        if not (self.peek() and self.peek()[1] == "("):
            return lambda ctx, root: _children(ctx, name)
        self.take("(")
        if name == "where":
            criteria = self.equality()
            self.take(")")
            return lambda ctx, root: [item for item in ctx if _is_true(criteria([item], root))]
        if name in ("ofType", "as"):
            type_name = self.take()[1]
            self.take(")")
            return lambda ctx, root: _of_type(ctx, type_name)
        if name == "resolve":
            self.take(")")
            return lambda ctx, root: [_resolve(item) for item in ctx]
        raise UnsupportedExpression(f"function {name}() is not supported")


_LITERAL_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
# FHIRPath string escapes (FHIRPath N1, 'String'): \' \" \` \\ \/ \f \n \r \t and \uXXXX
_LITERAL_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r",
                    "t": "\t"}


def string_literal(body: str) -> str:
    """The text of a FHIRPath string literal (between its quotes), its escapes resolved; the
    text stays as written otherwise (``'Étude'`` is ``Étude``: FHIRPath ``=`` compares strings
    exactly).  UnsupportedExpression for an escape FHIRPath does not define."""
    def resolve(match: re.Match) -> str:
        escape = match.group(1)
        if escape[0] == "u" and len(escape) == 5:
            return chr(int(escape[1:], 16))
        if escape not in _LITERAL_ESCAPES:
            raise UnsupportedExpression(f"unknown escape \\{escape} in a string literal")
        return _LITERAL_ESCAPES[escape]

    return _LITERAL_ESCAPE.sub(resolve, body)


def _chain(first: Evaluator, then: Evaluator) -> Evaluator:
    return lambda ctx, root: then(first(ctx, root), root)


# ---------------------------------------------------------------------------------------------
# evaluation helpers


def _first_step(ctx: list[Item], root: Item, name: str) -> list[Item]:
    if len(ctx) == 1 and ctx[0] is root and (name == root.type or name in _ANY_RESOURCE):
        return [root]
    return _children(ctx, name)


def _children(ctx: list[Item], name: str) -> list[Item]:
    out: list[Item] = []
    for parent in ctx:
        if not isinstance(parent.value, dict):
            continue
        if name in parent.value:
            path, type_name = _child_path_and_type(parent, name)
            out.extend(_items(parent.value[name], type_name, path))
            continue
        if not _may_be_choice(parent.path or parent.type, name):
            continue
        # a choice element: find its typed JSON name, e.g. value -> valueCodeableConcept
        for key, value in parent.value.items():
            suffix = key[len(name):]
            if key.startswith(name) and suffix in _choice_types():
                type_name = _choice_types()[suffix]
                out.extend(_items(value, type_name, type_name if type_name[:1].isupper() else None))
    return out


@lru_cache(maxsize=None)
def _may_be_choice(base: str | None, name: str) -> bool:
    """Whether child ``name`` of ``base`` can be a choice element (``name[x]``): always when the
    definitions do not know ``base``."""
    if base is None or f"{base}.{name}[x]" in _elements():
        return True
    return base not in _known_bases()


@lru_cache(maxsize=1)
def _known_bases() -> frozenset[str]:
    return frozenset(path.rsplit(".", 1)[0] for path in _elements())


def _items(value: Any, type_name: str | None, path: str | None) -> list[Item]:
    values = value if isinstance(value, list) else [value]
    return [Item(v, type_name, path) for v in values if v is not None]


def _distinct(items) -> list[Item]:
    seen, out = set(), []
    for item in items:
        key = json.dumps(item.value, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _type_of(item: Item) -> str | None:
    if item.type is not None:
        return item.type
    if isinstance(item.value, bool):
        return "boolean"
    if isinstance(item.value, str):
        return "string"
    return None


def _same_type(actual: str | None, wanted: str) -> bool:
    return actual is not None and actual.lower() == wanted.lower()


def _of_type(ctx: list[Item], type_name: str) -> list[Item]:
    return [item for item in ctx if _type_of(item) is None or _same_type(_type_of(item), type_name)]


def _is_type(ctx: list[Item], type_name: str) -> list[Item]:
    if len(ctx) != 1:
        return []
    actual = _type_of(ctx[0])
    return [Item(actual is None or _same_type(actual, type_name), "boolean")]


def _resolve(item: Item) -> Item:
    reference = item.value.get("reference") if isinstance(item.value, dict) else item.value
    target = None
    if isinstance(reference, str) and not reference.startswith("#"):
        parts = reference.split("/_history/")[0].split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper():
            target = parts[-2]
    return Item(_Resolved(target), target)


def _equals(left: list[Item], right: list[Item], negate: bool) -> list[Item]:
    if len(left) != 1 or len(right) != 1:
        return []
    equal = left[0].value == right[0].value
    return [Item(equal != negate, "boolean")]


def _is_true(items: list[Item]) -> bool:
    return len(items) == 1 and items[0].value is True


# ---------------------------------------------------------------------------------------------
# public API


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` branches of ``expression``, outer parentheses removed."""
    branches, depth, start = [], 0, 0
    quoted = False
    for index, char in enumerate(expression):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(expression[start:index].strip())
            start = index + 1
    branches.append(expression[start:].strip())
    return [_strip_parentheses(branch) for branch in branches if branch]


def _strip_parentheses(branch: str) -> str:
    while branch.startswith("(") and branch.endswith(")") and split_union(branch[1:-1]) == [branch[1:-1].strip()]:
        if _balanced(branch[1:-1]):
            branch = branch[1:-1].strip()
        else:
            break
    return branch


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def first_step(branch: str) -> str:
    """The name a branch starts from (``ResearchStudy`` for ``ResearchStudy.title``)."""
    return re.match(r"\s*\(*\s*([A-Za-z_][A-Za-z0-9_]*)", branch).group(1)


@dataclass(frozen=True)
class Expression:
    """A compiled expression; call :meth:`evaluate` on a resource dict."""

    text: str
    _evaluator: Evaluator
    # the top-level elements the expression can reach (None: cannot tell); a resource without
    # any of them gives nothing, and is not walked
    _roots: tuple[str, ...] | None = None

    def evaluate(self, resource: dict) -> list[Item]:
        """The items the expression selects from ``resource`` (a FHIR JSON dict)."""
        roots = self._roots
        if roots is not None and not any(name in resource for name in roots) and not (
                roots[-1] == _CHOICE and any(key.startswith(roots[:-1]) for key in resource)):
            return []
        root = Item(resource, resource.get("resourceType"), resource.get("resourceType"))
        return [item for item in self._evaluator([root], root) if not isinstance(item.value, _Resolved)]

    def evaluate_on(self, item: Item) -> list[Item]:
        """The items the expression selects starting from ``item`` (a composite's component)."""
        return [found for found in self._evaluator([item], item) if not isinstance(found.value, _Resolved)]


def compile_expression(text: str) -> Expression:
    """Compile ``text``; raises :class:`UnsupportedExpression` for FHIRPath outside the subset."""
    return Expression(text, _Parser(text).parse(), _top_elements(text))


_BRANCH_HEAD = re.compile(r"^\(*\s*([A-Z][A-Za-z]*)\s*\)*\s*\.\s*([a-z][A-Za-z0-9]*)\b")


def _top_elements(text: str) -> tuple[str, ...] | None:
    """The first element name after the type in every branch (``address`` in
    ``Location.address.city | Location.address.state``), or None when a branch does not start
    ``Type.element`` (a choice element such as ``value`` covers ``valueQuantity``: prefixes)."""
    names, choice = [], False
    for branch in split_union(text):
        match = _BRANCH_HEAD.match(branch)
        if not match:
            return None
        names.append(match.group(2))
        # Resource's own elements (id, meta, language) are no choices
        choice = choice or (match.group(1) not in _ANY_RESOURCE and _may_be_choice(match.group(1), match.group(2)))
    names = list(dict.fromkeys(names))
    return (*names, _CHOICE) if choice else tuple(names)


_CHOICE = "[x]"  # last of Expression._roots when a root may be a choice element (valueQuantity)
