"""Compiled expressions (:func:`compile_expression`) and the textual helpers on them: top-level
``|`` branches and the name a branch starts from."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from fhirstudy.search.fhirpath.elements import ANY_RESOURCE, may_be_choice
from fhirstudy.search.fhirpath.nodes import Evaluator, Item, Resolved
from fhirstudy.search.fhirpath.parser import Parser
from fhirstudy.search.fhirpath.paths import FastPath, fast_path


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
    # a chain of element names (or a union of them) walked straight on the JSON: same answer
    _fast: FastPath | None = field(default=None, compare=False)

    @property
    def roots(self) -> tuple[str, ...] | None:
        """The top-level elements the expression can reach: a resource with none of them gives
        nothing (None: cannot tell, or one may be a choice element found under a typed name)."""
        roots = self._roots
        return None if roots is None or roots[-1] == _CHOICE else roots

    def evaluate(self, resource: dict) -> list[Item]:
        """The items the expression selects from ``resource`` (a FHIR JSON dict)."""
        if self._fast is not None:  # first: its walk ends at once on a resource without the roots
            found = self._fast.evaluate(resource)
            if found is not None:
                return found
        roots = self._roots
        if roots is not None and not any(name in resource for name in roots) and not (
                roots[-1] == _CHOICE and any(key.startswith(roots[:-1]) for key in resource)):
            return []
        root = Item(resource, resource.get("resourceType"), resource.get("resourceType"))
        return [item for item in self._evaluator([root], root) if not isinstance(item.value, Resolved)]

    def evaluate_on(self, item: Item) -> list[Item]:
        """The items the expression selects starting from ``item`` (a composite's component)."""
        return [found for found in self._evaluator([item], item) if not isinstance(found.value, Resolved)]


def compile_expression(text: str) -> Expression:
    """Compile ``text``; raises :class:`UnsupportedExpression` for FHIRPath outside the subset."""
    return Expression(text, Parser(text).parse(), _top_elements(text), fast_path(text))


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
        choice = choice or (match.group(1) not in ANY_RESOURCE and may_be_choice(match.group(1), match.group(2)))
    names = list(dict.fromkeys(names))
    return (*names, _CHOICE) if choice else tuple(names)


_CHOICE = "[x]"  # last of Expression._roots when a root may be a choice element (valueQuantity)
