"""The ``fhirstudy`` command: convert, load, serve, validate.

Exit codes: 0 when every record converted (or every file is valid), 1 when some failed (each
reported on stderr with file, record number, field and reason), 2 on usage errors. Every command
ends with a one-line summary on stderr; on a terminal a progress bar shows the work as it goes.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from . import __version__
from .errors import FhirStudyError, Problem

DEFAULT_DB = "sqlite:///fhirstudy.db"
DEFAULT_PORT = 8080
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _report(problem: Problem) -> None:
    level = "warning" if problem.severity == "warning" else "error"
    print(f"{level}: {problem}", file=sys.stderr)


@contextmanager
def _progress(label: str) -> Iterator:
    """A progress display on a terminal; a no-op in pipes and files."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} records"),
                  TimeElapsedColumn(), transient=True) as progress:
        task = progress.add_task(label, total=None)
        yield lambda: progress.advance(task)


def _convert_stream(args: argparse.Namespace, label: str):
    """Yield converted records, reporting problems as they come; returns counts through a dict."""
    from .pipeline import convert

    counts = {"converted": 0, "failed": 0, "warnings": 0}
    unmapped: Counter[str] = Counter()
    counts["unmapped"] = unmapped

    def run():
        with _progress(label) as tick:
            for item in convert(args.inputs, format=args.format, jobs=args.jobs):
                unmapped.update(item.unmapped)
                for p in item.problems:
                    if p.severity == "warning" and args.quiet:
                        continue
                    _report(p)
                counts["warnings"] += sum(p.severity == "warning" for p in item.problems)
                counts["converted" if item.ok else "failed"] += 1
                tick()
                yield item

    return run(), counts


def _missing_inputs(inputs: list[str]) -> list[str]:
    return [i for i in inputs if not Path(i).exists()]


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert records to one transaction Bundle per trial (a file each, or NDJSON on stdout)."""
    to_stdout = args.output == "-"
    out_dir = None if to_stdout else Path(args.output)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    stream, counts = _convert_stream(args, "converting")
    for item in stream:
        if not item.ok:
            continue
        data = orjson.dumps(item.bundle)
        if to_stdout:
            sys.stdout.buffer.write(data + b"\n")
        else:
            (out_dir / f"{item.study_id}.json").write_bytes(orjson.dumps(item.bundle, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
    where = "stdout" if to_stdout else str(out_dir)
    if args.report:
        _write_report(args.report, counts)
    print(f"converted {counts['converted']}, failed {counts['failed']}, warnings {counts['warnings']}, "
          f"unmapped source fields {len(counts['unmapped'])} -> {where}", file=sys.stderr)
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _write_report(path: str, counts: dict) -> None:
    """The run's report: record counts and every source field that did not reach FHIR, with how
    many records held it (fields on the documented ignore list are not reported)."""
    unmapped = counts["unmapped"]
    report = {
        "records": counts["converted"] + counts["failed"],
        "converted": counts["converted"],
        "failed": counts["failed"],
        "warnings": counts["warnings"],
        "unmappedFields": dict(sorted(unmapped.items())),
        "ignoreList": "mappings/ctgov-ignored-fields.json",
    }
    Path(path).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


def cmd_load(args: argparse.Namespace) -> int:
    """Convert records and store every resource (each trial in one transaction)."""
    from .loader import load_reference_resources, store_bundle
    from .store import open_store

    store = open_store(args.db)
    try:
        load_reference_resources(store)
        stream, counts = _convert_stream(args, "loading")
        resources = 0
        for item in stream:
            if item.ok:
                resources += store_bundle(store, item.bundle)
    finally:
        store.close()
    print(f"loaded {counts['converted']} trials ({resources} resources), failed {counts['failed']}, "
          f"warnings {counts['warnings']} -> {args.db}", file=sys.stderr)
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate FHIR JSON files (a resource or a Bundle per file, or NDJSON, one per line)."""
    from .errors import ValidationFailed
    from .validation import validate_bundle, validate_resource

    valid = invalid = 0
    for name in args.files:
        try:
            text = Path(name).read_bytes()
        except OSError as exc:
            _report(Problem(reason=f"cannot read: {exc.strerror}", file=name))
            invalid += 1
            continue
        lines = [text] if not name.endswith(".ndjson") else [ln for ln in text.splitlines() if ln.strip()]
        for n, line in enumerate(lines, 1):
            record = n if name.endswith(".ndjson") else None
            try:
                doc = orjson.loads(line)
                (validate_bundle if isinstance(doc, dict) and doc.get("resourceType") == "Bundle"
                 else validate_resource)(doc)
            except orjson.JSONDecodeError as exc:
                _report(Problem(reason=f"not JSON: {exc}", file=name, record=record))
                invalid += 1
            except ValidationFailed as exc:
                for issue in exc.issues:
                    _report(Problem(reason=issue.reason, field=issue.field, file=name, record=record))
                invalid += 1
            else:
                valid += 1
    print(f"valid {valid}, invalid {invalid}", file=sys.stderr)
    return EXIT_FAILED if invalid else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the FHIR REST endpoint: gunicorn by default, Flask's server with --dev."""
    from .server import create_app

    config = {"DATABASE_URL": args.db}
    if args.write_token:
        config["WRITE_TOKEN"] = args.write_token
    app = create_app(config)
    print(f"serving FHIR R5 at http://{args.host}:{args.port}/ from {args.db}", file=sys.stderr)
    if args.dev:
        app.run(host=args.host, port=args.port)
        return EXIT_OK
    from .server.wsgi import run_gunicorn

    run_gunicorn(app, host=args.host, port=args.port, workers=args.workers)
    return EXIT_OK


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    from .sources import FORMATS

    parser = argparse.ArgumentParser(prog="fhirstudy", description="Clinical-trial records to FHIR R5.")
    parser.add_argument("--version", action="version", version=f"fhirstudy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def inputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="a file or a folder of records")
        p.add_argument("--format", choices=FORMATS, help="skip detection and read INPUT as this format")
        p.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
        p.add_argument("-j", "--jobs", type=_positive, default=1, metavar="N",
                       help="map and validate in N processes (default 1)")

    p = sub.add_parser("convert", help="convert records to one FHIR transaction Bundle per trial")
    inputs(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for <ResearchStudy id>.json files, or - for NDJSON on stdout")
    p.add_argument("--report", metavar="FILE",
                   help="write a JSON report: counts and every source field not mapped, with counts")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("load", help="convert records and store them in the database")
    inputs(p)
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL", help=f"database URL (default {DEFAULT_DB})")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("serve", help="serve the FHIR REST endpoint")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL", help=f"database URL (default {DEFAULT_DB})")
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    p.add_argument("--dev", action="store_true", help="use Flask's development server instead of gunicorn")
    p.add_argument("--write-token", metavar="TOKEN", default=os.environ.get("FHIRSTUDY_WRITE_TOKEN"),
                   help="accept writes (PUT, POST, DELETE) from clients presenting this bearer token "
                        "(default: $FHIRSTUDY_WRITE_TOKEN; without one, writes are refused)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("validate", help="validate FHIR R5 JSON files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fhirstudy`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    missing = _missing_inputs(getattr(args, "inputs", []))
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    try:
        return args.func(args)
    except FhirStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
