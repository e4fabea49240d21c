"""The allowed values of the Trial model and the checks a field may declare.

Enumerated values use ClinicalTrials.gov API v2 names (the value lists of its description,
../shared/reference/ctg-oas-v2.yaml), because that is the richest vocabulary of the sources; a reader
of another format translates to them. A check (``Text``, ``OneOf``, ``Pattern``, ``Between``) is
plain data: the model declares it next to a field with ``checked(...)``, and ``trial.schema`` turns
it into the marshmallow validator. Nothing here imports marshmallow.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

OVERALL_STATUSES = (
    "ACTIVE_NOT_RECRUITING", "COMPLETED", "ENROLLING_BY_INVITATION", "NOT_YET_RECRUITING",
    "RECRUITING", "SUSPENDED", "TERMINATED", "WITHDRAWN", "AVAILABLE", "NO_LONGER_AVAILABLE",
    "TEMPORARILY_NOT_AVAILABLE", "APPROVED_FOR_MARKETING", "WITHHELD", "UNKNOWN",
)
PHASES = ("NA", "EARLY_PHASE1", "PHASE1", "PHASE2", "PHASE3", "PHASE4")
STUDY_TYPES = ("EXPANDED_ACCESS", "INTERVENTIONAL", "OBSERVATIONAL")
INTERVENTION_TYPES = (
    "BEHAVIORAL", "BIOLOGICAL", "COMBINATION_PRODUCT", "DEVICE", "DIAGNOSTIC_TEST",
    "DIETARY_SUPPLEMENT", "DRUG", "GENETIC", "PROCEDURE", "RADIATION", "OTHER",
)
SEXES = ("FEMALE", "MALE", "ALL")
DATE_TYPES = ("ACTUAL", "ESTIMATED")
MAX_COUNT = 2**31 - 1  # FHIR unsignedInt: the largest enrollment a ResearchStudy can hold
OUTCOME_KINDS = ("primary", "secondary", "other")
IDENTIFIER_KINDS = ("nct", "org", "secondary", "derived")


@dataclass(frozen=True)
class Text:
    """Not empty."""


@dataclass(frozen=True)
class OneOf:
    """One of ``values``."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Pattern:
    """Matches ``regex``; ``error`` is the message when it does not."""

    regex: str
    error: str


@dataclass(frozen=True)
class Between:
    """A number within ``low`` and ``high`` (inclusive; None is unbounded)."""

    low: float | None = None
    high: float | None = None


Check = Text | OneOf | Pattern | Between

TEXT = Text()
PARTIAL_DATE = Pattern(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$",
                       "not a date of the form YYYY, YYYY-MM or YYYY-MM-DD")
MESH_ID = Pattern(r"^[A-Z]\d{6,9}$", "not a MeSH id")


def checked(check: Check | None = None, *, each: Check | None = None, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that declares its check (``check`` on the value, ``each`` on every item of
    a tuple). Without ``default`` the field is required."""
    return dataclasses.field(default=default, metadata={"check": check, "each": each})
