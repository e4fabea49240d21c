"""The counts a run keeps, and what is made of them: the summary line's parts and the report."""
from __future__ import annotations

from collections import Counter

import orjson

from fhirstudy.cli.progress import report
from fhirstudy.errors import Problem

SKIPPED_NAMES_SHOWN = 3  # skipped files named in a summary line; the --report lists them all


def new_counts() -> dict:
    """Empty counts: converted, failed, warnings, unmapped source fields, skipped files."""
    return {"converted": 0, "failed": 0, "warnings": 0, "unmapped": Counter(), "skipped": []}


def record_failed(counts: dict, item, reason: str) -> None:
    """Count a converted record as failed after all (it could not be written or stored)."""
    report(Problem(reason, file=item.file, record=item.record))
    counts["converted"] -= 1
    counts["failed"] += 1


def skipped_text(counts: dict) -> str:
    """The summary line's part naming the files skipped as not records (empty when none)."""
    skipped = counts["skipped"]
    if not skipped:
        return ""
    names = ", ".join(skipped[:SKIPPED_NAMES_SHOWN]) + (f" and {len(skipped) - SKIPPED_NAMES_SHOWN} more"
                                                      if len(skipped) > SKIPPED_NAMES_SHOWN else "")
    files = "file that is not a record" if len(skipped) == 1 else "files that are not records"
    return f", skipped {len(skipped)} {files}: {names}"


def report_bytes(counts: dict) -> bytes:
    """The run's report: record counts, every source field that did not reach FHIR with how
    many records held it (fields on the documented ignore list are not reported), and the files
    of folders that were skipped as not records."""
    unmapped = counts["unmapped"]
    data = {
        "records": counts["converted"] + counts["failed"],
        "converted": counts["converted"],
        "failed": counts["failed"],
        "warnings": counts["warnings"],
        "skippedFiles": counts["skipped"],
        "unmappedFields": dict(sorted(unmapped.items())),
        "ignoreList": "fhirstudy/mappings/ctgov-ignored-fields.json",
    }
    return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
