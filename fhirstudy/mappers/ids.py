"""Stable resource ids: derived from the trial's business identifier, never from a clock or random.

The ResearchStudy of NCT06731140 is ``nct06731140``; the other resources of the trial hang off it
(``nct06731140-protocol``, ``nct06731140-eligibility``, ``nct06731140-outcome-primary-1``,
``nct06731140-site-1``). A trial without an NCT number uses its first org identifier, hashed
(``fs-<16 hex>``); a trial with neither (a text record: only the identifier derived from its
title) is identified by its content: the title identifier and a digest of everything the record
says, so two different records with the same title get two ids, and the same record gets the same
id on every run and machine (text is NFC-normalised first, so composed and decomposed accents
agree). Editing such a record makes it a new trial; give it a Registration Number (NCT) to keep
its id across edits.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid

import orjson

from ..trial import Trial, dump_trial

NAMESPACE = uuid.UUID("6f1c3a52-0d55-5b7e-9c1e-f3a7d0e2b4c1")  # fhirstudy's own uuid5 namespace
_NAMESPACE_BYTES = NAMESPACE.bytes
ID_HEX_DIGITS = 16
_NCT = re.compile(r"^NCT\d{8}$")


def study_id(trial: Trial) -> str:
    """The ResearchStudy id of a trial."""
    nct = trial.nct_id
    if nct and _NCT.match(nct):
        return nct.lower()
    org = next((i for i in trial.identifiers if i.kind == "org"), None)
    if org is not None:
        key = f"{org.system or ''}|{org.value}"
    else:
        derived = next((i for i in trial.identifiers if i.kind == "derived"), None)
        key = f"{derived.system or ''}|{derived.value}" if derived else trial.brief_title
        key = f"{key}|{content_digest(trial)}"
    return "fs-" + _hex(key)


def content_digest(trial: Trial) -> str:
    """A digest of what a trial says (every field but its provenance: where it was read from),
    NFC-normalised: the same for the same record wherever it lies. Empty fields are left out, so
    that a field the Trial gains later (``condition_ancestors``) does not change the id of a
    record that has nothing in it (at any depth: a criterion's ``items`` too)."""
    content = _filled({k: v for k, v in dump_trial(trial).items() if k != "provenance"})
    return _hex(orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode("utf-8"))


def _filled(value):
    """``value`` without its empty fields (None, "", [], {}), at every depth."""
    if isinstance(value, dict):
        kept = {k: _filled(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_filled(v) for v in value]
    return value


def _hex(text: str) -> str:
    return hashlib.sha256(unicodedata.normalize("NFC", text).encode("utf-8")).hexdigest()[:ID_HEX_DIGITS]


def child_id(trial_id: str, *parts: object) -> str:
    """The id of a resource that belongs to one trial (``<trial id>-protocol``); the named
    functions below are the ids in use, so a mapper never spells a suffix itself."""
    return "-".join([trial_id, *map(str, parts)])


def protocol_id(trial_id: str) -> str:
    """The PlanDefinition of the trial's interventions: ``<trial>-protocol``."""
    return child_id(trial_id, "protocol")


def eligibility_id(trial_id: str) -> str:
    """The eligibility EvidenceVariable: ``<trial>-eligibility``."""
    return child_id(trial_id, "eligibility")


def outcome_id(trial_id: str, kind: str, n: int) -> str:
    """The EvidenceVariable of the n-th (from 1) outcome of one kind: ``<trial>-outcome-primary-1``."""
    return child_id(trial_id, "outcome", kind, n)


def site_id(trial_id: str, n: int) -> str:
    """The Location of the n-th (from 1) site: ``<trial>-site-1``."""
    return child_id(trial_id, "site", n)


def provenance_id(trial_id: str) -> str:
    """The Provenance of the trial's resources: ``<trial>-provenance``."""
    return child_id(trial_id, "provenance")


def result_group_id(trial_id: str, n: int) -> str:
    """The Group of the n-th (from 1) distinct result group of the posted results: ``<trial>-result-group-1``."""
    return child_id(trial_id, "result-group", n)


def outcome_result_id(trial_id: str, measure: int, group: int) -> str:
    """The Evidence of the n-th (from 1) results outcome measure for its n-th group:
    ``<trial>-outcome-result-3-group-1``."""
    return child_id(trial_id, "outcome-result", measure, "group", group)


def analysis_result_id(trial_id: str, measure: int, analysis: int) -> str:
    """The Evidence of the n-th analysis of the n-th results outcome measure:
    ``<trial>-outcome-result-3-analysis-1``."""
    return child_id(trial_id, "outcome-result", measure, "analysis", analysis)


def baseline_result_id(trial_id: str, measure: int, group: int) -> str:
    """The Evidence of the n-th baseline measure for the n-th baseline group: ``<trial>-baseline-2-group-1``."""
    return child_id(trial_id, "baseline", measure, "group", group)


def flow_result_id(trial_id: str, period: int, group: int) -> str:
    """The Evidence of the n-th participant-flow period for the n-th flow group: ``<trial>-flow-1-group-2``."""
    return child_id(trial_id, "flow", period, "group", group)


def adverse_events_id(trial_id: str, kind: str, group: int) -> str:
    """The Evidence of one kind of adverse events (``deaths``, ``serious``, ``other``) in the n-th
    event group: ``<trial>-adverse-events-serious-group-1``."""
    return child_id(trial_id, "adverse-events", kind, "group", group)


def report_id(trial_id: str, report: str) -> str:
    """A results report Composition (``results``, ``participant-flow``, ``baseline``,
    ``outcome-measures``, ``adverse-events``): ``<trial>-outcome-measures-report``."""
    return child_id(trial_id, report, "report")


def enrollment_id(trial_id: str) -> str:
    """The R4 enrollment Group: ``<trial>-enrollment``."""
    return child_id(trial_id, "enrollment")


def group_variable_id(group_id: str) -> str:
    """The R4 EvidenceVariable standing for a result Group in R4 Evidence (which can reference
    only EvidenceVariables): ``<trial>-result-group-1-variable``."""
    return child_id(group_id, "variable")


def results_population_id(trial_id: str) -> str:
    """The R4 EvidenceVariable "participants of the study", for R4 Evidence with no population
    variable when the trial has no eligibility EvidenceVariable: ``<trial>-results-population``."""
    return child_id(trial_id, "results-population")


def sponsor_id(trial_id: str) -> str:
    """The R4 sponsor Organization: ``<trial>-sponsor``."""
    return child_id(trial_id, "sponsor")


def investigator_id(trial_id: str) -> str:
    """The R4 principal investigator Practitioner: ``<trial>-principal-investigator``."""
    return child_id(trial_id, "principal-investigator")


def contained_person_id(n: int) -> str:
    """A Practitioner contained in the ResearchStudy (the n-th person, from 1): ``person-1``."""
    return f"person-{n}"


def full_url(resource_type: str, resource_id: str) -> str:
    """A bundle entry's fullUrl: a urn:uuid derived from type and id, stable everywhere: the
    version-5 UUID of ``Type/id`` in :data:`NAMESPACE` (RFC 4122 4.3, what ``uuid.uuid5`` computes,
    without building UUID objects: every resource of every trial has one)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{resource_type}/{resource_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
