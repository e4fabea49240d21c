"""Trial results -> FHIR R5 Groups: one per distinct result group.

ClinicalTrials.gov names the groups of each results module on its own (participant flow FG000,
baseline BG000, each outcome measure its OG000..., adverse events EG000; legacy P1, B1, O1, E1).
The same arm is usually the same title and description in every module, so a group is one
Group per distinct (title, description), numbered in the order first met (flow, baseline,
outcome measures, adverse events): ``<trial>-result-group-1``. Each module's group id is kept on
the Group as an identifier (type text ``ClinicalTrials.gov result group id``), so a reader can
tell which module rows it stands for.

A Group is linked to the study's comparison group (arm) when ClinicalTrials.gov's own titles link
them: the ResearchStudy's ``comparisonGroup.observedGroup`` points at the one Group whose title is
the arm's label (case and spacing ignored); nothing is guessed beyond that.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..terminology import fold
from ..trial import Trial
from . import ids, r4_results
from .common import compact, concept, meta

RESOURCE_TYPE = "Group"
GROUP_ID_TYPE = "ClinicalTrials.gov result group id"
MODULE_NAMES = {"flow": "participant flow", "baseline": "baseline", "outcome": "outcome measure",
                "events": "adverse events"}


@dataclass
class _Entry:
    title: str | None
    description: str | None
    number: int
    module_ids: list[tuple[str, str]] = field(default_factory=list)  # (module name, registry group id)


@dataclass
class GroupIndex:
    """The distinct result groups of a trial and which Group each module's group id stands for."""

    study_id: str
    entries: list[_Entry] = field(default_factory=list)
    by_key: dict[tuple, int] = field(default_factory=dict)  # (module, [measure n,] group id) -> number

    def add(self, key: tuple, group, module: str) -> None:
        text = (group.title or "", group.description or "")
        entry = next((e for e in self.entries if (e.title or "", e.description or "") == text), None)
        if entry is None:
            entry = _Entry(group.title, group.description, len(self.entries) + 1)
            self.entries.append(entry)
        if (module, group.id) not in entry.module_ids:
            entry.module_ids.append((module, group.id))
        self.by_key[key] = entry.number

    def reference(self, key: tuple) -> dict | None:
        """The Reference to the Group of a module's group (``("flow", "FG000")``,
        ``("outcome", 3, "OG001")``), with its title; None for a group id the module does not list."""
        number = self.by_key.get(key)
        if number is None:
            return None
        entry = self.entries[number - 1]
        out = {"reference": f"Group/{ids.result_group_id(self.study_id, number)}"}
        if entry.title:
            out["display"] = entry.title
        return out

    def title(self, key: tuple) -> str | None:
        number = self.by_key.get(key)
        return self.entries[number - 1].title if number else None


def index(trial: Trial) -> GroupIndex:
    """The result groups of a trial, in the order first met."""
    out = GroupIndex(ids.study_id(trial))
    results = trial.results
    if results is None:
        return out
    for g in results.participant_flow.groups if results.participant_flow else ():
        out.add(("flow", g.id), g, MODULE_NAMES["flow"])
    for g in results.baseline.groups if results.baseline else ():
        out.add(("baseline", g.id), g, MODULE_NAMES["baseline"])
    for n, measure in enumerate(results.outcome_measures, 1):
        for g in measure.groups:
            out.add(("outcome", n, g.id), g, MODULE_NAMES["outcome"])
    for g in results.adverse_events.groups if results.adverse_events else ():
        out.add(("events", g.id), g, MODULE_NAMES["events"])
    return out


def arm_group(trial: Trial, label: str) -> dict | None:
    """The Reference to the one result Group titled as the arm ``label`` (case and spacing
    ignored), or None when none or several are."""
    found = [e for e in index(trial).entries if e.title and fold(e.title) == fold(label)]
    if len(found) != 1:
        return None
    return {"reference": f"Group/{ids.result_group_id(ids.study_id(trial), found[0].number)}"}


def map_trial(trial: Trial) -> list[dict]:
    """One Group per distinct result group (none for a trial without posted results)."""
    groups = index(trial)
    out = []
    for entry in groups.entries:
        out.append(compact({
            "resourceType": RESOURCE_TYPE,
            "id": ids.result_group_id(groups.study_id, entry.number),
            "meta": meta(trial),
            "identifier": [{"type": concept(text=f"{GROUP_ID_TYPE} ({module})"), "value": gid}
                           for module, gid in entry.module_ids],
            "name": entry.title,
            "description": entry.description,
            "type": "person",
            "membership": "definitional",
        }))
    return out


def to_r4(group: dict, context=None) -> list[dict]:
    """Nothing: results go to R5 stores only (R4 Evidence cannot carry statistics, so the groups
    they are about stay out too; ``push`` says so per trial). With ``context.results ==
    "extensions"``: the R4 Group and the EvidenceVariable R4 Evidence references it by
    (:mod:`.r4_results`)."""
    if context is not None and context.results == "extensions":
        return r4_results.group(group, context)
    return []
