"""``fhirstudy load``: convert records and store every resource, each trial in one transaction; FHIR
input (Bundles, resources, NDJSON) is stored as it is, validated like every write."""
from __future__ import annotations

import argparse
import sys

from fhirstudy.cli.arguments import add_db, add_inputs, add_no_narrative
from fhirstudy.cli.convert import convert_stream
from fhirstudy.cli.exits import EXIT_FAILED, EXIT_OK, UsageError
from fhirstudy.cli.progress import report
from fhirstudy.cli.summary import new_counts, record_failed, skipped_text
from fhirstudy.errors import StoreError

NAME = "load"
HELP = "convert records and store them in the database"
MAX_STORE_FAILURES_IN_A_ROW = 20  # load stops when the database refuses this many trials (or FHIR writes) in a row


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``load``."""
    add_inputs(p)
    add_db(p)
    add_no_narrative(p, "store the resources converted from records without their generated text (FHIR input "
                        "is stored as it is, its text checked)")


def open_db(url: str):
    """The store at ``url``; UsageError (exit 2) when it cannot be opened."""
    from fhirstudy.store import open_store

    try:
        return open_store(url)
    except StoreError as exc:
        raise UsageError(f"cannot open the database --db {url}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Convert records and store every resource (each trial in one transaction), and store FHIR
    input (Bundles, resources, NDJSON) as it is, validated (see fhirstudy.importer). A trial or an
    entry the database refuses is that record's error; the others are still stored."""
    from fhirstudy.importer import Importer
    from fhirstudy.loader import load_reference_resources, store_bundle
    from fhirstudy.sources import FhirDocument
    from fhirstudy.sources._boundary import failure_reason

    store = open_db(args.db)
    try:
        load_reference_resources(store)
    except StoreError as exc:
        store.close()
        raise UsageError(f"cannot write to the database --db {args.db}: {exc}") from None
    counts, resources, in_a_row, stopped = new_counts(), 0, 0, False
    fhir = Importer(store, lambda p: None if p.severity == "warning" and args.quiet else report(p),
                    max_refused=MAX_STORE_FAILURES_IN_A_ROW)
    try:
        stream, counts = convert_stream(args, "loading", counts, fhir=True, narrative=not args.no_narrative)
        for item in stream:
            if isinstance(item, FhirDocument):
                fhir.add(item)
                if fhir.stopped:
                    break
                continue
            fhir.flush()
            if fhir.stopped:
                break
            if not item.ok:
                continue
            try:
                resources += store_bundle(store, item.bundle)
                in_a_row = 0
            except Exception as exc:  # noqa: BLE001 - the boundary of one record
                reason = f"not stored: {exc}" if isinstance(exc, StoreError) else failure_reason(exc, "storing")
                record_failed(counts, item, reason)
                in_a_row += 1
                if in_a_row >= MAX_STORE_FAILURES_IN_A_ROW:
                    stopped = _stop(f"the database refused {in_a_row} trials in a row")
                    break
        if not stopped:
            fhir.flush()
        if fhir.stopped:
            stopped = _stop(f"the database refused {fhir.refused_in_a_row} FHIR writes in a row")
    finally:
        store.close()
        print(f"loaded {counts['converted']} trials ({resources} resources){_fhir_text(fhir)}, "
              f"failed {counts['failed'] + fhir.failed}, warnings {counts['warnings'] + fhir.warnings}"
              f"{skipped_text(counts)} -> {args.db}", file=sys.stderr)
    return EXIT_FAILED if counts["failed"] or fhir.failed or stopped else EXIT_OK


def _stop(why: str) -> bool:
    print(f"error: stopping: {why}", file=sys.stderr)
    return True


def _fhir_text(fhir) -> str:
    """The summary line's part for FHIR input (empty when there was none)."""
    if not fhir.documents:
        return ""
    deleted = f", deleted {fhir.deleted}" if fhir.deleted else ""
    return f" and {fhir.stored} FHIR resources{deleted}"
