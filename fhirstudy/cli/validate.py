"""``fhirstudy validate``: FHIR JSON files (a resource or Bundle per file, or NDJSON) checked."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

from fhirstudy.cli.exits import EXIT_FAILED, EXIT_OK
from fhirstudy.cli.progress import progress, report
from fhirstudy.cli.summary import new_counts, skipped_text
from fhirstudy.errors import Problem

NAME = "validate"
HELP = "validate FHIR R5 JSON files"
VALIDATE_SUFFIXES = (".json", ".ndjson", ".jsonl")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``validate``."""
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="a resource or Bundle (.json), NDJSON (.ndjson), or a folder of them")


def run(args: argparse.Namespace) -> int:
    """Validate FHIR JSON files (a resource or a Bundle per file, or NDJSON, one per line); a
    folder stands for its .json and .ndjson files."""
    counts = new_counts()
    valid = invalid = 0
    try:
        with progress("validating") as tick:
            for name in files(args.files, counts):
                for ok in _validate_file(name):
                    valid, invalid = valid + ok, invalid + (not ok)
                    tick()
    finally:
        print(f"valid {valid}, invalid {invalid}{skipped_text(counts)}", file=sys.stderr)
    return EXIT_FAILED if invalid else EXIT_OK


def files(names: list[str], counts: dict) -> Iterator[str]:
    """The files to validate: each one named, and the .json/.ndjson files of each folder named
    (sorted, recursively, hidden ones left out; other files are counted as skipped)."""
    for name in names:
        if not Path(name).is_dir():
            yield name
            continue
        for root, folders, names_here in os.walk(name, onerror=lambda exc: report(
                Problem(f"cannot list this folder: {exc.strerror}", file=exc.filename))):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            for file in sorted(f for f in names_here if not f.startswith(".")):
                path = os.path.join(root, file)
                if file.lower().endswith(VALIDATE_SUFFIXES):
                    yield path
                else:
                    counts["skipped"].append(path)


def _validate_file(name: str) -> Iterator[bool]:
    """Whether each document of one file is valid, its problems reported as found."""
    from fhirstudy.errors import ValidationFailed
    from fhirstudy.sources._boundary import failure_reason
    from fhirstudy.validation import validate_bundle, validate_resource

    try:
        text = Path(name).read_bytes()
    except OSError as exc:
        report(Problem(reason=f"cannot read: {exc.strerror}", file=name))
        yield False
        return
    ndjson = name.lower().endswith((".ndjson", ".jsonl"))
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()] if ndjson else [(None, text)]
    for record, line in lines:
        try:
            doc = orjson.loads(line)
            if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
                validate_bundle(doc, narratives=True)  # a Bundle from anywhere: its narratives too
            else:
                validate_resource(doc)
        except orjson.JSONDecodeError as exc:
            report(Problem(reason=f"not JSON: {exc}", file=name, record=record))
            yield False
        except ValidationFailed as exc:
            for issue in exc.issues:
                report(Problem(reason=issue.reason, field=issue.field, file=name, record=record))
            yield False
        except Exception as exc:  # noqa: BLE001 - the boundary of one document
            report(Problem(reason=failure_reason(exc, "validating"), file=name, record=record))
            yield False
        else:
            yield True
