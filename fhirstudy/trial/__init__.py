"""The Trial room: the one normalized model of a clinical trial, whatever the source, checked by
marshmallow.

Readers in ``fhirstudy.sources`` build a plain dict in the shape of ``TrialSchema`` and call
``load_trial(data)``; the schema checks it and returns a ``Trial`` (frozen dataclasses all the way
down). Mappers read only ``Trial``.

    vocabulary.py  allowed values (statuses, phases, ...) and the checks a field may declare
    model.py       the dataclasses: the one declaration of the model, each field with its check
    results.py     the dataclasses of posted results (Trial.results), declared the same way
    schema.py      marshmallow schemas derived from the dataclasses; load_trial, dump_trial

May import: ``fhirstudy.errors`` and marshmallow; nothing downstream (sources, mappers,
validation, store, search, server, push, cli) and no web or SQL library.
"""
from .model import (Arm, Criterion, DateStruct, Flag, Identifier, Intervention, IpdSharing, MeshTerm, Outcome,
                    Party, Provenance, Reference, Site, Trial)
from .schema import (ArmSchema, CriterionSchema, DateStructSchema, FlagSchema, IdentifierSchema,
                     InterventionSchema, IpdSharingSchema, MeshTermSchema, OutcomeSchema, PartySchema,
                     ProvenanceSchema, ReferenceSchema, SiteSchema, TrialSchema, dump_trial, load_trial)
from .vocabulary import (DATE_TYPES, IDENTIFIER_KINDS, INTERVENTION_TYPES, MAX_COUNT, OUTCOME_KINDS,
                         OVERALL_STATUSES, PHASES, SEXES, STUDY_TYPES)

__all__ = [
    "Arm", "ArmSchema", "Criterion", "CriterionSchema", "DATE_TYPES", "DateStruct", "DateStructSchema", "Flag",
    "FlagSchema", "IDENTIFIER_KINDS", "INTERVENTION_TYPES", "Identifier", "IdentifierSchema", "Intervention",
    "InterventionSchema", "IpdSharing", "IpdSharingSchema", "MAX_COUNT", "MeshTerm", "MeshTermSchema",
    "OUTCOME_KINDS", "OVERALL_STATUSES", "Outcome", "OutcomeSchema", "PHASES", "Party", "PartySchema",
    "Provenance", "ProvenanceSchema", "Reference", "ReferenceSchema", "SEXES", "STUDY_TYPES",
    "Site", "SiteSchema", "Trial", "TrialSchema", "dump_trial", "load_trial",
]
