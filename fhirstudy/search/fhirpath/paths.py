"""The fast path of the commonest expressions: plain chains of element names
(``ResearchStudy.condition``, ``Resource.meta.source``, ``Location.address.city``), possibly
filtered by an element's text (``EvidenceVariable.relatedArtifact.where(type='composed-of').resource``),
and unions of them (``Location.name | Location.alias``), walked over the JSON directly.

Most search parameters are such chains, and a load evaluates every one of them on every resource
it stores; the general evaluator (closures, an :class:`Item` for every node on the way) costs
several times the walk itself.  A chain gives exactly what the general evaluator gives (same
values, types, paths and order): the element path and type of each step follow from the
resource type alone (:func:`~fhirstudy.search.fhirpath.elements.child_path_and_type`), so they
are looked up once per resource type.  Where the general evaluator would do something else (the
first name is not the resource's type, or a step absent from the JSON could be a choice element
found under a typed name, ``value`` -> ``valueQuantity``), :meth:`FastPath.evaluate` answers None
and the caller evaluates the general way.
"""
from __future__ import annotations

import re

from fhirstudy.search.fhirpath.elements import ANY_RESOURCE, child_path_and_type, may_be_choice
from fhirstudy.search.fhirpath.evaluate import distinct
from fhirstudy.search.fhirpath.nodes import Item

_NAME = r"[a-z][A-Za-z0-9]*"
_STEP = re.compile(rf"\.(?:where\(\s*({_NAME})\s*=\s*'([^'\\]*)'\s*\)|({_NAME})(?![\w(]))")
_HEAD = re.compile(r"[A-Z][A-Za-z0-9]*")
_MAX_PLANS = 256  # resource types remembered per expression (a client may send any type name)


class FastPath:
    """A union of chains of element names, evaluated straight on the JSON (see the module)."""

    def __init__(self, chains: list[tuple[str, ...]]):
        self.chains = chains
        self._plans: dict[str, list | None] = {}  # resource type -> per chain: steps, or None

    def evaluate(self, resource: dict) -> list[Item] | None:
        """The items the expression selects from ``resource``; None: evaluate the general way."""
        rtype = resource.get("resourceType")
        plans = self._plans.get(rtype, False)
        if plans is False:
            plans = _plans(self.chains, rtype)
            if len(self._plans) < _MAX_PLANS:
                self._plans[rtype] = plans
        if plans is None:
            return None
        found: list[Item] = []
        for steps, path, type_name in plans:
            values = _walk(resource, steps)
            if values is None:
                return None
            found.extend(Item(v, type_name, path) for v in values)
        return found if len(plans) == 1 else distinct(found)


def fast_path(text: str) -> FastPath | None:
    """The fast path of ``text`` when it is a chain or a union of chains, else None."""
    branches = [branch.strip() for branch in text.split("|")]
    chains = []
    for branch in branches:
        head = _HEAD.match(branch)
        if head is None:
            return None
        steps, position = [], head.end()
        while position < len(branch):
            step = _STEP.match(branch, position)
            if step is None:
                return None
            # a name, or (name, text): where(name = 'text')
            steps.append(step.group(3) or (step.group(1), step.group(2)))
            position = step.end()
        if not steps or isinstance(steps[0], tuple):
            return None
        chains.append((head.group(), *steps))
    return FastPath(chains)


def _plans(chains: list[tuple[str, ...]], rtype) -> list | None:
    """Per chain on a resource of ``rtype``: its steps (name, whether an absent name could be a
    choice element, and for a ``where`` the text the name must hold), and the path and type of
    what it selects; None when a chain does not start at the resource."""
    plans = []
    for head, *names in chains:
        if not isinstance(rtype, str) or (head != rtype and head not in ANY_RESOURCE):
            return None  # the general evaluator looks for a child named ``head``
        parent = Item(None, rtype, rtype)
        steps = []
        for name in names:
            if isinstance(name, tuple):  # where(name = 'text'): the items stay what they are
                steps.append((name[0], may_be_choice(parent.path or parent.type, name[0]), name[1]))
                continue
            steps.append((name, may_be_choice(parent.path or parent.type, name), None))
            path, type_name = child_path_and_type(parent, name)
            parent = Item(None, type_name, path)
        plans.append((tuple(steps), parent.path, parent.type))
    return plans


def _walk(resource: dict, steps: tuple) -> list | None:
    """The JSON values at the end of ``steps`` (lists flattened, None dropped, as the general
    evaluator's children); None when a step is absent where it could be a choice element."""
    values = [resource]
    for name, may_choose, text in steps:
        out = []
        if text is not None:  # where(name = 'text'): the values whose one ``name`` is ``text``
            for value in values:
                if not isinstance(value, dict):
                    continue
                if name not in value:
                    if may_choose:
                        return None
                    continue
                found = value[name]
                found = [f for f in found if f is not None] if isinstance(found, list) else \
                    ([] if found is None else [found])
                if len(found) == 1 and found[0] == text:
                    out.append(value)
            if not out:
                return []
            values = out
            continue
        for value in values:
            if not isinstance(value, dict):
                continue
            if name in value:
                child = value[name]
                if isinstance(child, list):
                    out.extend(c for c in child if c is not None)
                elif child is not None:
                    out.append(child)
            elif may_choose:
                return None
        if not out:
            return []
        values = out
    return values
