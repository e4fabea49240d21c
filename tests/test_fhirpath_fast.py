"""The fast path of plain chains (``search.fhirpath.paths``) gives exactly what the general
evaluator gives: same values, types, paths and order, for every registered expression on the
converted seeds and for the corner cases of the walk (lists with nulls, values that are not
objects, choice elements under typed names, ``where`` on missing or repeated elements)."""
from __future__ import annotations

import dataclasses

import pytest

from fhirstudy.search.fhirpath import compile_expression
from fhirstudy.search.registry import load_registry


def _general(expression):
    """The same expression evaluated the general way only."""
    return dataclasses.replace(expression, _fast=None)


CASES = [
    # (expression, resource, whether the fast path itself answers it)
    ("ResearchStudy.condition", {"resourceType": "ResearchStudy", "condition": [{"text": "a"}, None, {"text": "b"}]},
     True),
    ("ResearchStudy.condition.coding.code",
     {"resourceType": "ResearchStudy", "condition": [{"coding": [{"code": "x"}, {"code": "y"}]}, "text", 3]}, True),
    ("ResearchStudy.condition.text", {"resourceType": "ResearchStudy", "condition": [[{"text": "nested"}]]}, True),
    ("ResearchStudy.title", {"resourceType": "ResearchStudy"}, True),
    ("Resource.meta.source", {"resourceType": "Location", "meta": {"source": "urn:x#1"}}, True),
    ("Resource.meta.profile", {"resourceType": "Group", "meta": {"profile": ["a", None, "b"]}}, True),
    ("Location.name | Location.alias", {"resourceType": "Location", "name": "A", "alias": ["A", "B", "A"]}, True),
    ("Location.address.city", {"resourceType": "Location", "address": {"city": "Lyon"}}, True),
    # a choice element present under its typed name: left to the general evaluator
    ("Observation.value", {"resourceType": "Observation", "valueQuantity": {"value": 1}}, False),
    ("Group.characteristic.value",
     {"resourceType": "Group", "characteristic": [{"valueBoolean": True}, {"valueCodeableConcept": {"text": "x"}}]},
     False),
    # the first name is not the resource's type: the general evaluator looks for a child so named
    ("Location.name", {"resourceType": "ResearchStudy", "Location": {"name": "x"}}, False),
    ("EvidenceVariable.relatedArtifact.where(type='composed-of').resource",
     {"resourceType": "EvidenceVariable", "relatedArtifact": [
         {"type": "composed-of", "resource": "a"}, {"type": "depends-on", "resource": "b"},
         {"resource": "c"}, {"type": ["composed-of"], "resource": "d"}, {"type": ["composed-of", "x"], "resource": "e"},
         "not an object", None]}, True),
    ("Practitioner.telecom.where(system='email')",
     {"resourceType": "Practitioner", "telecom": [{"system": "email", "value": "a@b"}, {"system": "phone"}]}, True),
    ("ResearchStudy.extension.where(url = 'u').value",
     {"resourceType": "ResearchStudy", "extension": [{"url": "u", "valueCoding": {"code": "c"}}, {"url": "v"}]},
     False),
    ("ResearchStudy.extension.where(url = 'u').value",
     {"resourceType": "ResearchStudy", "extension": [{"url": "v", "valueCoding": {"code": "c"}}]}, True),
]


@pytest.mark.parametrize("text, resource, fast", CASES)
def test_fast_path_gives_what_the_general_evaluator_gives(text, resource, fast):
    expression = compile_expression(text)
    assert expression._fast is not None, "every case is an expression the fast path takes"
    assert (expression._fast.evaluate(resource) is not None) == fast
    assert expression.evaluate(resource) == _general(expression).evaluate(resource)


def test_every_registered_chain_agrees_on_the_seeds(seed_conversions):
    registry = load_registry()
    resources = [entry["resource"] for converted in seed_conversions.values() if converted.bundle
                 for entry in converted.bundle["entry"]]
    compared = 0
    for rtype in registry.served_types:
        for param in registry.params(rtype).values():
            expression = param.expression
            if expression._fast is None:
                continue
            for resource in resources:
                if resource["resourceType"] == rtype:
                    assert expression.evaluate(resource) == _general(expression).evaluate(resource), param.code
                    compared += 1
    assert compared > 500
