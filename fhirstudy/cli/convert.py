"""``fhirstudy convert``: records to one transaction Bundle per trial, and the stream of converted
records that ``load`` and ``push`` read too."""
from __future__ import annotations

import argparse
import sys

from fhirstudy.cli.arguments import add_inputs, add_no_narrative
from fhirstudy.cli.exits import EXIT_FAILED, EXIT_OK
from fhirstudy.cli.progress import progress, report
from fhirstudy.cli.summary import new_counts, record_failed, report_bytes, skipped_text
from fhirstudy.errors import Problem

NAME = "convert"
HELP = "convert records to one FHIR transaction Bundle per trial"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``convert``."""
    add_inputs(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="a folder for <ResearchStudy id>.json files; NAME.ndjson for one Bundle a line in a "
                        "file; NAME.json for one transaction Bundle holding every trial; - for NDJSON on stdout")
    add_no_narrative(p, "write the resources without their generated text (for a store that does not want them; "
                        "validation still runs on what is written)")
    p.add_argument("--report", metavar="FILE",
                   help="write a JSON report: counts, every source field not mapped (with counts), skipped files")


def convert_stream(args: argparse.Namespace, label: str, counts: dict | None = None, fhir: bool = False,
                   encode=None, narrative: bool = True):
    """Yield converted records, reporting problems as they come; returns counts through a dict.
    With ``fhir=True`` (``load``) the documents of FHIR JSON files are yielded too, as
    ``fhirstudy.sources.FhirDocument``: their problems and counts are the caller's. With
    ``encode`` (an output's) the Bundles come as the bytes to write (``item.encoded``);
    ``narrative=False`` (``--no-narrative``) converts without the resources' generated ``text``.

    Files of a folder that are not records are counted in ``counts["skipped"]`` and not yielded.
    A second record of the same trial (the same ResearchStudy id) in one run is an error: the
    first one is kept, the second reported and yielded as failed, so nothing is overwritten."""
    from fhirstudy.pipeline import convert
    from fhirstudy.sources import FhirDocument

    counts = new_counts() if counts is None else counts
    seen: dict[str, str] = {}

    def stream():
        with progress(label) as tick:
            for item in convert(args.inputs, format=args.format, jobs=args.jobs,
                                unmapped=bool(getattr(args, "report", None)), fhir=fhir, encode=encode,
                                narrative=narrative):
                if isinstance(item, FhirDocument):
                    tick()
                    yield item
                    continue
                if item.skipped:
                    counts["skipped"].append(item.file)
                    continue
                item = first_of_its_id(item, seen)
                counts["unmapped"].update(item.unmapped)
                for p in item.problems:
                    if p.severity == "warning" and args.quiet:
                        continue
                    report(p)
                counts["warnings"] += sum(p.severity == "warning" for p in item.problems)
                counts["converted" if item.ok else "failed"] += 1
                tick()
                yield item

    return stream(), counts


def first_of_its_id(item, seen: dict[str, str]):
    """``item``, or ``item`` failed when an earlier record of this run had the same study id."""
    if not item.ok:
        return item
    here = f"{item.file}:{item.record}"
    first = seen.setdefault(item.study_id, here)
    if first == here:
        return item
    problem = Problem(f"the same trial as {first} (ResearchStudy/{item.study_id}): kept from there, not written "
                      "again", field="identifiers", file=item.file, record=item.record)
    return type(item)(item.file, item.record, None, (*item.problems, problem), item.unmapped)


def run(args: argparse.Namespace) -> int:
    """Convert records to one transaction Bundle per trial (a folder of files, an NDJSON file or
    stdout, or one Bundle file: see fhirstudy.outputs)."""
    from fhirstudy.outputs import AtomicFile, OutputError, open_output

    output = open_output(args.output, args.inputs)  # OutputError (exit 2) before any work
    try:
        run_report = AtomicFile(args.report, "the report") if args.report else None
    except OutputError:
        output.close(commit=False)
        raise
    stream, counts = convert_stream(args, "converting", encode=output.encode, narrative=not args.no_narrative)
    done = stopped = False
    try:
        for item in stream:
            if item.ok:
                try:
                    output.write_encoded(item.study_id, item.encoded)
                except OutputError as exc:  # a full disk: every later write would fail too
                    record_failed(counts, item, f"not written: {exc}")
                    print(f"error: stopping: {exc}", file=sys.stderr)
                    stopped = True
                    break
        done = True
    finally:
        _finish(args, output, run_report, counts, committed=done)
    return EXIT_FAILED if counts["failed"] or stopped else EXIT_OK


def _finish(args: argparse.Namespace, output, run_report, counts: dict, committed: bool) -> None:
    """Put the output and the report in place (or leave them as they were when the run broke
    off), then the summary line, whatever happened."""
    try:
        output.close(commit=committed)
        if run_report is not None:
            run_report.stream.write(report_bytes(counts))
            run_report.commit() if committed else run_report.discard()
    finally:
        where = output.where if committed or output.where == "stdout" else f"nothing written to {output.where}"
        unmapped = f", unmapped source fields {len(counts['unmapped'])}" if args.report else ""
        print(f"converted {counts['converted']}, failed {counts['failed']}, warnings {counts['warnings']}"
              f"{unmapped}{skipped_text(counts)} -> {where}", file=sys.stderr)
