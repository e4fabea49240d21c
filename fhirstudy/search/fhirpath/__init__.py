"""A small FHIRPath subset: enough to evaluate the search-parameter expressions fhirstudy serves.

Supported: path navigation over FHIR JSON (choice elements such as ``value[x]`` are found under
their typed JSON names, e.g. ``valueCodeableConcept``), ``|`` union, parentheses, string/boolean/
number literals, ``=`` and ``!=`` inside ``where(...)``, the functions ``where``, ``ofType``,
``as``, ``resolve``, ``exists``, ``empty`` and the operators ``as`` and ``is``.  ``resolve() is X``
checks the type named in a literal reference (``X/id``) and is true when the type cannot be known;
within :func:`resolving` (a lookup the store gives when it indexes), ``resolve()`` gives the
referenced resource itself and an expression walks on into it.

Everything else raises :class:`UnsupportedExpression` at compile time, so a search parameter
whose expression we cannot evaluate is never registered (and never claimed in the
CapabilityStatement).

Each evaluated item is a :class:`Item` holding the JSON value and its FHIR type name when known
(from the choice-element suffix or from ``fhirstudy/mappings/fhir-r5-elements.json``).

    nodes.py       Item, the evaluator signature, UnsupportedExpression
    elements.py    element definitions: child types, choice-element names (data, loaded once)
    parser.py      tokenizer and parser: text -> evaluator closure
    evaluate.py    the evaluation steps the closures call
    paths.py       the fast path of plain chains (most search parameters), same answers
    expression.py  Expression, compile_expression, split_union, first_step

May import: ``fhirstudy.mappings`` (the element definitions) and the standard library; nothing of
the store, the server, Flask or SQL.
"""
from fhirstudy.search.fhirpath.elements import ELEMENTS_FILE, elements
from fhirstudy.search.fhirpath.evaluate import resolve, resolving
from fhirstudy.search.fhirpath.expression import Expression, compile_expression, first_step, split_union
from fhirstudy.search.fhirpath.nodes import Evaluator, Item, UnsupportedExpression
from fhirstudy.search.fhirpath.parser import string_literal

__all__ = ["ELEMENTS_FILE", "Evaluator", "Expression", "Item", "UnsupportedExpression", "compile_expression",
           "elements", "first_step", "resolve", "resolving", "split_union", "string_literal"]
