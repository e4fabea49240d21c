"""The direct path of ``load_trial``: the schema's own fields and validators, compiled once into
plain functions, for a reader's dict that holds exactly the types the schema would return.

marshmallow spends most of a load on its machinery (hooks, error bookkeeping, a call per field),
not on the checks. This path reads the schema instances (``fields``, ``required``,
``allow_none``, ``validators``, a List's ``inner``, a Nested's ``schema``) and does what
``Schema.load`` does for a value already of its field's type: a ``str`` for a String, an ``int``
for a strict Integer, a ``bool`` for a Boolean, an ``int`` or finite ``float`` for a Float (made a
``float``, as marshmallow does), a ``list`` for a List, a ``dict`` with known keys only for a
Nested; then the field's own validator objects, then the dataclass (lists as tuples, the
``post_load`` of ``schema._Base``). Anything else (a missing required field, a None where none is
allowed, a validator that refuses, a numeric string, bytes, a tuple, an unknown key, a field type
it does not know) is :class:`Slow`: the caller then runs marshmallow itself, which gives the same
Trial for what it accepts and the errors, exactly as before, for what it refuses.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, ValidationError, fields, missing


class Slow(Exception):
    """This value needs marshmallow itself (it converts, or it is wrong)."""


Loader = Callable[[Any], Any]


def compile_schema(schema: Schema) -> Loader | None:
    """The direct loader of a schema instance, or None when one of its fields is of a kind this
    path does not know (then every load goes through marshmallow)."""
    try:
        return _schema_loader(schema)
    except TypeError:
        return None


_HOOKS = {"post_load": [("_make", False, {"pass_original": False})]}  # schema._Base's, the only one known


def _schema_loader(schema: Schema) -> Loader:
    if dict(schema._hooks) != _HOOKS:
        raise TypeError(f"{type(schema).__name__}: hooks this path does not run")
    names = frozenset(schema.fields)
    specs = tuple((name, f.required, _field_loader(f)) for name, f in schema.fields.items())
    for name, f in schema.fields.items():
        if (f.data_key or name) != name or (f.attribute or name) != name:
            raise TypeError(f"{name}: a data key or attribute of its own")
    model = schema.model

    def load(data: Any) -> Any:
        if type(data) is not dict or not names.issuperset(data):  # marshmallow refuses unknown keys
            raise Slow
        kwargs = {}
        for name, required, field_loader in specs:
            if name in data:
                value = field_loader(data[name])
                kwargs[name] = tuple(value) if type(value) is list else value
            elif required:
                raise Slow
        return model(**kwargs)

    return load


def _field_loader(field: fields.Field) -> Loader:
    """``Field.deserialize`` for a value of the field's own type: None where allowed, the value
    converted, then the field's validators."""
    convert = _converter(field)
    allow_none = field.allow_none
    validators = tuple(field.validators)
    if field.load_default is not missing:
        raise TypeError("a load default")
    if field.pre_load or field.post_load:
        raise TypeError("field hooks")

    def load(value: Any) -> Any:
        if value is None:
            if allow_none:
                return None
            raise Slow
        value = convert(value)
        try:
            for validator in validators:
                validator(value)
        except ValidationError:
            raise Slow from None
        return value

    return load


def _converter(field: fields.Field) -> Loader:
    kind = type(field)
    if kind is fields.String:
        return _exact(str)
    if kind is fields.Integer and field.strict:
        return _exact(int)
    if kind is fields.Boolean:
        return _exact(bool)
    if kind is fields.Float and field.allow_nan is False:
        return _float
    if kind is fields.List:
        inner = _field_loader(field.inner)

        def each(value: Any) -> list:
            if type(value) is not list:
                raise Slow
            return [inner(v) for v in value]
        return each
    if kind is fields.Nested and not field.many and field.unknown is None and not field.only and not field.exclude:
        return _schema_loader(field.schema)
    raise TypeError(f"no direct path for {kind.__name__}")


def _exact(cls: type) -> Loader:
    def same(value: Any) -> Any:
        if type(value) is not cls:
            raise Slow
        return value
    return same


def _float(value: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise Slow
    try:
        number = float(value)
    except OverflowError:
        raise Slow from None
    if not math.isfinite(number):
        raise Slow
    return number
