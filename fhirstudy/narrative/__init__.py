"""Narratives: the human-readable ``text`` of every resource fhirstudy writes.

``add_narratives(resources)`` gives each resource of one trial (the list the mappers make) a
``text`` with status ``generated`` and an XHTML ``div`` that keeps FHIR's narrative rules (txt-1:
only ``div p b ul li``, no attributes but ``xmlns``; txt-2: some text; well-formed, every source
text escaped): what a reader needs, not a copy of every element. The pipeline calls it once per
trial, after mapping and before validation; ``strip_narratives`` takes the ``text`` off again
(``push --no-narrative``). One small function per resource type, in ``NARRATORS``:

- ResearchStudy: title, NCT number, status, phase, conditions, sponsor, dates, enrollment, sites;
- EvidenceVariable: eligibility, the criteria as inclusion and exclusion lists; an outcome, its
  title, kind and time frame;
- PlanDefinition: the arms and their interventions;
- Location: name, address, recruitment status, contacts; Provenance: source record, date, counts;
- Group, Evidence, Composition (results): group name, description and size; the statistics with
  value, unit, denominator and estimates; the report's title and sections;
- any other type (CodeSystem, the R4 Organization and Practitioner ...): a short summary.

Contained resources get none (FHIR dom-1). Pure functions of the resources: same input, same bytes.

May import: the standard library only (it reads resources, not Trials).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from . import other, results, study
from .xhtml import narrative

Narrator = Callable[[dict, "TrialContext"], str]  # a resource -> the XHTML inside its div

NARRATORS: dict[str, Narrator] = {
    "ResearchStudy": study.research_study,
    "PlanDefinition": study.plan_definition,
    "EvidenceVariable": study.evidence_variable,
    "Group": results.group,
    "Evidence": results.evidence,
    "Composition": results.composition,
    "Location": other.location,
    "Provenance": other.provenance,
    "Organization": other.organization,
    "Practitioner": other.practitioner,
    "CodeSystem": other.code_system,
}


class TrialContext:
    """What one resource's narrative may need from the others of its trial (computed when first
    asked): the result groups' sizes from the participant flow."""

    def __init__(self, resources: list[dict]):
        self.resources = resources
        self._sizes: dict[str, int] | None = None

    def group_sizes(self) -> dict[str, int]:
        """``Group/<id>`` -> participants who started (see :func:`results.group_sizes`)."""
        if self._sizes is None:
            self._sizes = results.group_sizes(self.resources)
        return self._sizes


def text_of(resource: dict, context: TrialContext | None = None) -> dict:
    """The generated ``text`` of one resource (``context``: its trial's resources)."""
    narrate = NARRATORS.get(resource["resourceType"], other.summary)
    return narrative(narrate(resource, context or TrialContext([resource])) or other.summary(resource, None))


def _with_text(resource: dict, text: dict) -> dict:
    """The resource with ``text`` where FHIR JSON puts it: after ``meta`` (else after ``id``)."""
    after = "meta" if "meta" in resource else "id"
    out: dict = {}
    for key, value in resource.items():
        if key != "text":
            out[key] = value
        if key == after:
            out["text"] = text
    if "text" not in out:
        out["text"] = text
    return out


def add_narratives(resources: list[dict], only_missing: bool = False) -> list[dict]:
    """Each resource of one trial with its generated ``text`` (a new dict per resource, in the same
    order; the list is changed in place and returned). ``only_missing``: keep a ``text`` there is."""
    context = TrialContext(resources)
    for n, r in enumerate(resources):
        if only_missing and "text" in r:
            continue
        resources[n] = _with_text(r, text_of(r, context))
    return resources


def add_bundle_narratives(bundle: dict) -> dict:
    """A trial's transaction Bundle with a ``text`` on every entry's resource (changed in place)."""
    entries = bundle.get("entry", [])
    done = add_narratives([e["resource"] for e in entries])
    for entry, resource in zip(entries, done):
        entry["resource"] = resource
    return bundle


def strip_narratives(resources: Iterable[dict]) -> list[dict]:
    """The resources without their ``text`` (a section's text in a Composition stays: it is content)."""
    return [{k: v for k, v in r.items() if k != "text"} if "text" in r else r for r in resources]
