"""Trial results -> FHIR R5 Evidence, in the shape of the HL7 EBM IG (as FEvIR's
ClinicalTrials.gov converter makes them): participant flow (:mod:`.results_flow_events`), baseline
measures and outcome measures with their analyses (:mod:`.results_measures`), adverse events
(:mod:`.results_flow_events`). Each Evidence's groups are the result Groups
(:mod:`.results_groups`); the report Compositions listing them are :mod:`.composition`.

R4 Evidence has no ``statistic`` (nor ``variableDefinition`` as R5 has it), so the R4
down-conversion leaves results out (``push`` sends them to R5 stores only and says so), unless
asked to carry them in cross-version extensions (``push --r4-results=extensions``; :mod:`.r4_results`).
"""
from __future__ import annotations

from ..trial import Trial
from . import r4_results, results_groups
from .results_flow_events import adverse_event_evidence, flow_evidence
from .results_measures import baseline_evidence, outcome_evidence

RESOURCE_TYPE = "Evidence"


def map_trial(trial: Trial) -> list[dict]:
    """The Evidence of a trial's posted results: participant flow, baseline, outcome measures
    (each measure's groups, then its analyses), adverse events; none without results."""
    if trial.results is None:
        return []
    groups = results_groups.index(trial)
    return [*(r for _, r in flow_evidence(trial, groups)), *(r for _, r in baseline_evidence(trial, groups)),
            *(r for _, _, r in outcome_evidence(trial, groups)),
            *(r for _, r in adverse_event_evidence(trial, groups))]


def to_r4(evidence: dict, context=None) -> list[dict]:
    """Nothing: R4 Evidence cannot carry the statistics (results go to R5 stores only); with
    ``context.results == "extensions"`` the R4 Evidence with them in cross-version extensions."""
    if context is not None and context.results == "extensions":
        return r4_results.evidence(evidence, context)
    return []
