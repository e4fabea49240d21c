"""Tokenizer and parser of the FHIRPath subset: text -> an evaluator closure; anything outside the
subset raises :class:`UnsupportedExpression`."""
from __future__ import annotations

import re

from fhirstudy.search.fhirpath.evaluate import (children, distinct, equals, exists, first_step_items, is_true,
                                               is_type, of_type, resolve)
from fhirstudy.search.fhirpath.nodes import Evaluator, Item, UnsupportedExpression

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

class Parser:
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
            return lambda ctx, root: equals(left(ctx, root), right(ctx, root), negate)
        return left

    def union(self) -> Evaluator:
        parts = [self.type_expression()]
        while self.peek() and self.peek()[1] == "|":
            self.take()
            parts.append(self.type_expression())
        if len(parts) == 1:
            return parts[0]
        return lambda ctx, root: distinct(item for part in parts for item in part(ctx, root))

    def type_expression(self) -> Evaluator:
        term = self.term()
        token = self.peek()
        if token and token[0] == "ident" and token[1] in ("is", "as"):
            self.take()
            type_name = self.take()[1]
            if token[1] == "as":
                return lambda ctx, root: of_type(term(ctx, root), type_name)
            return lambda ctx, root: is_type(term(ctx, root), type_name)
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
            return lambda ctx, root: first_step_items(ctx, root, value)
        raise UnsupportedExpression(f"unexpected {value!r}")

    def invocation(self) -> Evaluator:
        kind, name = self.take()
        if kind != "ident":
            raise UnsupportedExpression(f"expected a name, found {name!r}")
        if not (self.peek() and self.peek()[1] == "("):
            return lambda ctx, root: children(ctx, name)
        self.take("(")
        if name == "where":
            criteria = self.equality()
            self.take(")")
            return lambda ctx, root: [item for item in ctx if is_true(criteria([item], root))]
        if name in ("ofType", "as"):
            type_name = self.take()[1]
            self.take(")")
            return lambda ctx, root: of_type(ctx, type_name)
        if name == "resolve":
            self.take(")")
            return lambda ctx, root: [resolve(item) for item in ctx]
        if name in ("exists", "empty"):
            self.take(")")
            negate = name == "empty"
            return lambda ctx, root: exists(ctx, negate)
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
