"""Precision and recall of :func:`fhirstudy.eligibility.facts` over a hand-labelled table.

The table is JSON lines, one real criterion a line: ``text``, ``exclude``, ``source`` (the record)
and ``expected``, the facts a careful reader finds in the text, each ``{analyte, comparator, value,
unit}``, ``{analyte, low, high, unit}`` or ``{analyte, interpretation}`` ([] when the text must stay
text). A produced fact is correct when analyte, comparator, value(s) and unit (or interpretation)
all match an expected one.

    python -m fhirstudy.eligibility.measure [tests/data/eligibility-facts-labelled.jsonl]

prints precision (correct / produced), recall (correct / expected) and every miss.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fhirstudy.eligibility.facts import facts, flat

DEFAULT_TABLE = Path("tests/data/eligibility-facts-labelled.jsonl")


@dataclass
class Measurement:
    """Counts over a table, and the rows where produced and expected facts differ."""

    produced: int = 0
    expected: int = 0
    correct: int = 0
    misses: list = field(default_factory=list)   # (row, wrong produced, missed expected)

    @property
    def precision(self) -> float:
        return self.correct / self.produced if self.produced else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.expected if self.expected else 1.0


def key(row: dict) -> tuple:
    """One fact as a comparable tuple."""
    if "interpretation" in row:
        return (row["analyte"], "is", row["interpretation"])
    unit = row.get("unit", "")
    if "low" in row:
        return (row["analyte"], "range", round(float(row["low"]), 6), round(float(row["high"]), 6), unit)
    return (row["analyte"], row.get("comparator", "="), round(float(row["value"]), 6), unit)


def load(path: Path | str = DEFAULT_TABLE) -> list[dict]:
    """The rows of a labelled table."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def measure(rows: list[dict]) -> Measurement:
    """Run :func:`facts` on every row and count."""
    out = Measurement()
    for row in rows:
        got = Counter(key(r) for r in flat(facts(row["text"], exclude=bool(row.get("exclude")))))
        want = Counter(key(r) for r in row["expected"])
        hit = sum((got & want).values())
        out.produced += sum(got.values())
        out.expected += sum(want.values())
        out.correct += hit
        if got != want:
            out.misses.append((row, sorted(got - want), sorted(want - got)))
    return out


def report(m: Measurement) -> str:
    """The measurement in words, misses first."""
    lines = []
    for row, wrong, missed in m.misses:
        lines.append(f"{row['source']}: {row['text'][:160]}")
        for w in wrong:
            lines.append(f"    produced, not expected: {w}")
        for w in missed:
            lines.append(f"    expected, not produced: {w}")
    lines.append(f"precision {m.precision:.3f} ({m.correct}/{m.produced})  "
                 f"recall {m.recall:.3f} ({m.correct}/{m.expected})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(report(measure(load(args[0] if args else DEFAULT_TABLE))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
