"""The marshmallow schemas of the Trial model, derived from its dataclasses (``trial.model``).

One schema per dataclass, field by field, from the type and the declared check:

    str / int / float / bool  -> String / Integer(strict) / Float / Boolean
    a dataclass               -> Nested(its schema)
    tuple[X, ...]             -> List(field of X, with the ``each`` check)
    X | None                  -> allow_none
    no default                -> required
    Text / OneOf / Pattern / Between -> Length(min=1) / OneOf / Regexp / Range

Unknown keys are errors (marshmallow's default): a reader that invents a field should hear about
it. ``load_trial`` and ``dump_trial`` are the room's entry points. marshmallow-dataclass would do
this, but its 8.7 line does not work with marshmallow 4 (lovasoa/marshmallow_dataclass#281).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from marshmallow import Schema, ValidationError, fields, post_load, validate

from ..errors import TrialError
from .loading import Slow, compile_schema
from .model import (Arm, Criterion, DateStruct, Flag, Identifier, Intervention, IpdSharing, MeshTerm, Outcome,
                    Party, Provenance, Reference, Site, Trial)
from .vocabulary import Between, Check, OneOf, Pattern, Text

_SCALARS: Mapping[type, Any] = types.MappingProxyType({
    str: fields.String, bool: fields.Boolean, float: fields.Float,
    int: lambda **kw: fields.Integer(strict=True, **kw),
})


class _Base(Schema):
    """Builds the model's dataclass from what loaded; lists become tuples."""

    model: type = object

    @post_load
    def _make(self, data: dict, **_: Any) -> Any:
        return self.model(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _validator(check: Check | None) -> validate.Validator | None:
    if check is None:
        return None
    if isinstance(check, Text):
        return validate.Length(min=1)
    if isinstance(check, OneOf):
        return validate.OneOf(check.values)
    if isinstance(check, Pattern):
        return validate.Regexp(check.regex, error=check.error)
    if isinstance(check, Between):
        return validate.Range(min=check.low, max=check.high)
    raise TypeError(f"not a check: {check!r}")


def _optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"only X | None unions are supported, not {hint}")
        return rest[0], True
    return hint, False


def _field(hint: Any, check: Check | None, each: Check | None, made: dict[type, type[Schema]],
           **kw: Any) -> fields.Field:
    hint, allow_none = _optional(hint)
    if allow_none:
        kw["allow_none"] = True
    if check is not None:
        kw["validate"] = _validator(check)
    if typing.get_origin(hint) is tuple:
        item, ellipsis = typing.get_args(hint)
        if ellipsis is not Ellipsis:
            raise TypeError(f"only tuple[X, ...] is supported, not {hint}")
        return fields.List(_field(item, each, None, made), **kw)
    if dataclasses.is_dataclass(hint):
        return fields.Nested(derive(hint, made), **kw)
    if hint in _SCALARS:
        return _SCALARS[hint](**kw)
    raise TypeError(f"no marshmallow field for {hint}")


def derive(model: type, made: dict[type, type[Schema]] | None = None) -> type[Schema]:
    """The schema class of a dataclass (and of the dataclasses it nests, once each in ``made``)."""
    made = {} if made is None else made
    if model in made:
        return made[model]
    hints = typing.get_type_hints(model)
    attrs: dict[str, Any] = {}
    for f in dataclasses.fields(model):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        kw = {"required": True} if required else {}
        attrs[f.name] = _field(hints[f.name], f.metadata.get("check"), f.metadata.get("each"), made, **kw)
    name = f"{model.__name__}Schema"
    schema = type(name, (_Base,), {**attrs, "model": model, "__module__": __name__, "__qualname__": name,
                                   "__doc__": f"The schema of ``{model.__name__}``, derived from it."})
    made[model] = schema
    return schema


def _derive_all() -> Mapping[type, type[Schema]]:
    made: dict[type, type[Schema]] = {}
    derive(Trial, made)
    return types.MappingProxyType(made)


SCHEMAS = _derive_all()
TrialSchema = SCHEMAS[Trial]
IdentifierSchema = SCHEMAS[Identifier]
DateStructSchema = SCHEMAS[DateStruct]
PartySchema = SCHEMAS[Party]
SiteSchema = SCHEMAS[Site]
ArmSchema = SCHEMAS[Arm]
InterventionSchema = SCHEMAS[Intervention]
OutcomeSchema = SCHEMAS[Outcome]
CriterionSchema = SCHEMAS[Criterion]
MeshTermSchema = SCHEMAS[MeshTerm]
ReferenceSchema = SCHEMAS[Reference]
FlagSchema = SCHEMAS[Flag]
IpdSharingSchema = SCHEMAS[IpdSharing]
ProvenanceSchema = SCHEMAS[Provenance]

_SCHEMA = TrialSchema()
_DIRECT = compile_schema(_SCHEMA)


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict -> {"outcomes.2.name": ["..."]}."""
    if isinstance(messages, list):
        return {prefix or "_schema": [str(m) for m in messages]}
    out: dict[str, list[str]] = {}
    for key, value in messages.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def load_trial(data: dict) -> Trial:
    """Check a reader's dict against ``TrialSchema`` and build the Trial.

    Raises ``TrialError`` naming every field that is wrong (``outcomes.2.kind``), with the file and
    record number of the provenance when it is readable. A dict of exactly the schema's types takes
    the direct path (:mod:`.loading`: the same checks, the same Trial); anything else marshmallow.
    """
    if _DIRECT is not None:
        try:
            return _DIRECT(data)
        except Slow:
            pass  # marshmallow converts it, or names what is wrong
    try:
        return _SCHEMA.load(data)
    except ValidationError as exc:
        prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
        raise TrialError(_flatten(exc.messages), file=prov.get("file"), record=prov.get("record")) from None


def dump_trial(trial: Trial) -> dict:
    """The Trial as a plain dict in the schema's shape (for debugging and golden tests)."""
    return _SCHEMA.dump(trial)
