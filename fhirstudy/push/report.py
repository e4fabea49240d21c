"""What a push run did: a :class:`TrialResult` per trial and the :class:`PushReport` of the run."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

OUTCOMES = ("created", "updated", "unchanged", "failed")


@dataclass
class TrialResult:
    """What happened to one trial."""

    trial: str
    outcome: str                                    # created | updated | unchanged | failed
    resources: dict[str, int] = field(default_factory=dict)   # created/updated/unchanged counts
    server_ids: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    operation_outcome: dict | None = None
    status: int | None = None
    from_journal: bool = False
    source: str | None = None
    note: str | None = None  # what was not sent and why, or how (results to an R4 store)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, False)}


@dataclass
class PushReport:
    """The run's results, trial by trial, and its totals."""

    target: str
    fhir_version: str
    dry_run: bool = False
    trials: list[TrialResult] = field(default_factory=list)
    seconds: float = 0.0
    transactions: int = 0
    ids_kept: bool = False              # the store took our ids (client ids) rather than picking its own
    stopped: str | None = None          # why the run stopped early (an authentication failure)
    r4_results: str | None = None       # to an R4 store: "omit" (results left out) or "extensions"

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(t.outcome for t in self.trials)
        return {k: c.get(k, 0) for k in OUTCOMES}

    @property
    def resources(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for t in self.trials:
            c.update(t.resources)
        return {k: c.get(k, 0) for k in ("created", "updated", "unchanged")}

    def to_dict(self) -> dict:
        sent = self.resources["created"] + self.resources["updated"]
        return {"target": self.target, "fhirVersion": self.fhir_version, "dryRun": self.dry_run,
                "counts": self.counts, "resources": self.resources, "transactions": self.transactions,
                "seconds": round(self.seconds, 3), "idsKept": self.ids_kept,
                **({"stopped": self.stopped} if self.stopped else {}),
                **({"r4Results": self.r4_results} if self.r4_results else {}),
                "resourcesPerSecond": round(sent / self.seconds, 1) if self.seconds else None,
                "trials": [t.to_dict() for t in self.trials]}
