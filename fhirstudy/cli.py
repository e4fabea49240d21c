"""The ``fhirstudy`` command: convert, load, serve, validate, push.

Exit codes: 0 when every record converted (or every file is valid), 1 when some failed (each
reported on stderr with file, record number, field and reason), 2 on usage errors (one line on
stderr saying what and where, before any work), 70 on an internal error (one line; set
FHIRSTUDY_DEBUG=1 for the traceback). No traceback reaches the user. convert, load and validate
end with a one-line summary on stderr, also when they fail; on a terminal a progress display on
stderr shows the work as it goes (stdout carries only the output).
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from . import __version__
from .errors import FhirStudyError, Problem, StoreError

DEFAULT_DB = "sqlite:///fhirstudy.db"
DEFAULT_PORT = 8080
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 70, 130
DEBUG_ENV = "FHIRSTUDY_DEBUG"
MAX_JOBS = 256  # worker processes at most (-j)
SKIPPED_NAMES_SHOWN = 3  # skipped files named in a summary line; the --report lists them all
MAX_STORE_FAILURES_IN_A_ROW = 20  # load stops when the database refuses this many trials in a row


class UsageError(FhirStudyError):
    """A mistake in the command line or its files, found before any work: exit 2."""


def _report(problem: Problem) -> None:
    level = "warning" if problem.severity == "warning" else "error"
    print(f"{level}: {problem}", file=sys.stderr)


@contextmanager
def _progress(label: str) -> Iterator:
    """A progress display on stderr when stderr is a terminal; a no-op in pipes and files.
    Nothing of it goes to stdout, which carries the output alone."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed} records"),
                  TimeElapsedColumn(), console=console, transient=True, redirect_stdout=False) as progress:
        task = progress.add_task(label, total=None)
        yield lambda: progress.advance(task)


def _new_counts() -> dict:
    return {"converted": 0, "failed": 0, "warnings": 0, "unmapped": Counter(), "skipped": []}


def _convert_stream(args: argparse.Namespace, label: str, counts: dict | None = None):
    """Yield converted records, reporting problems as they come; returns counts through a dict.

    Files of a folder that are not records are counted in ``counts["skipped"]`` and not yielded.
    A second record of the same trial (the same ResearchStudy id) in one run is an error: the
    first one is kept, the second reported and yielded as failed, so nothing is overwritten."""
    from .pipeline import convert

    counts = _new_counts() if counts is None else counts
    seen: dict[str, str] = {}

    def run():
        with _progress(label) as tick:
            for item in convert(args.inputs, format=args.format, jobs=args.jobs,
                                unmapped=bool(getattr(args, "report", None))):
                if item.skipped:
                    counts["skipped"].append(item.file)
                    continue
                item = _first_of_its_id(item, seen)
                counts["unmapped"].update(item.unmapped)
                for p in item.problems:
                    if p.severity == "warning" and args.quiet:
                        continue
                    _report(p)
                counts["warnings"] += sum(p.severity == "warning" for p in item.problems)
                counts["converted" if item.ok else "failed"] += 1
                tick()
                yield item

    return run(), counts


def _first_of_its_id(item, seen: dict[str, str]):
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


def _record_failed(counts: dict, item, reason: str) -> None:
    """Count a converted record as failed after all (it could not be written or stored)."""
    _report(Problem(reason, file=item.file, record=item.record))
    counts["converted"] -= 1
    counts["failed"] += 1


def _skipped_text(counts: dict) -> str:
    skipped = counts["skipped"]
    if not skipped:
        return ""
    names = ", ".join(skipped[:SKIPPED_NAMES_SHOWN]) + (f" and {len(skipped) - SKIPPED_NAMES_SHOWN} more"
                                                      if len(skipped) > SKIPPED_NAMES_SHOWN else "")
    files = "file that is not a record" if len(skipped) == 1 else "files that are not records"
    return f", skipped {len(skipped)} {files}: {names}"


def _missing_inputs(inputs: list[str]) -> list[str]:
    return [i for i in inputs if not os.path.lexists(i)]


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert records to one transaction Bundle per trial (a folder of files, an NDJSON file or
    stdout, or one Bundle file: see fhirstudy.outputs)."""
    from .outputs import AtomicFile, OutputError, open_output

    output = open_output(args.output, args.inputs)  # OutputError (exit 2) before any work
    try:
        report = AtomicFile(args.report, "the report") if args.report else None
    except OutputError:
        output.close(commit=False)
        raise
    stream, counts = _convert_stream(args, "converting")
    done = stopped = False
    try:
        for item in stream:
            if item.ok:
                try:
                    output.write(item.study_id, item.bundle)
                except OutputError as exc:  # a full disk: every later write would fail too
                    _record_failed(counts, item, f"not written: {exc}")
                    print(f"error: stopping: {exc}", file=sys.stderr)
                    stopped = True
                    break
        done = True
    finally:
        _finish_convert(args, output, report, counts, committed=done)
    return EXIT_FAILED if counts["failed"] or stopped else EXIT_OK


def _finish_convert(args: argparse.Namespace, output, report, counts: dict, committed: bool) -> None:
    """Put the output and the report in place (or leave them as they were when the run broke
    off), then the summary line, whatever happened."""
    try:
        output.close(commit=committed)
        if report is not None:
            report.stream.write(_report_bytes(counts))
            report.commit() if committed else report.discard()
    finally:
        where = output.where if committed or output.where == "stdout" else f"nothing written to {output.where}"
        unmapped = f", unmapped source fields {len(counts['unmapped'])}" if args.report else ""
        print(f"converted {counts['converted']}, failed {counts['failed']}, warnings {counts['warnings']}"
              f"{unmapped}{_skipped_text(counts)} -> {where}", file=sys.stderr)


def _report_bytes(counts: dict) -> bytes:
    """The run's report: record counts, every source field that did not reach FHIR with how
    many records held it (fields on the documented ignore list are not reported), and the files
    of folders that were skipped as not records."""
    unmapped = counts["unmapped"]
    report = {
        "records": counts["converted"] + counts["failed"],
        "converted": counts["converted"],
        "failed": counts["failed"],
        "warnings": counts["warnings"],
        "skippedFiles": counts["skipped"],
        "unmappedFields": dict(sorted(unmapped.items())),
        "ignoreList": "fhirstudy/mappings/ctgov-ignored-fields.json",
    }
    return orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"


def _open_db(url: str):
    """The store at ``url``; UsageError (exit 2) when it cannot be opened."""
    from .store import open_store

    try:
        return open_store(url)
    except StoreError as exc:
        raise UsageError(f"cannot open the database --db {url}: {exc}") from None


def cmd_load(args: argparse.Namespace) -> int:
    """Convert records and store every resource (each trial in one transaction). A trial the
    database refuses is that record's error; the others are still stored."""
    from .loader import load_reference_resources, store_bundle
    from .sources._boundary import failure_reason

    store = _open_db(args.db)
    try:
        load_reference_resources(store)
    except StoreError as exc:
        store.close()
        raise UsageError(f"cannot write to the database --db {args.db}: {exc}") from None
    counts, resources, in_a_row, stopped = _new_counts(), 0, 0, False
    try:
        stream, counts = _convert_stream(args, "loading", counts)
        for item in stream:
            if not item.ok:
                continue
            try:
                resources += store_bundle(store, item.bundle)
                in_a_row = 0
            except Exception as exc:  # noqa: BLE001 - the boundary of one record
                reason = f"not stored: {exc}" if isinstance(exc, StoreError) else failure_reason(exc, "storing")
                _record_failed(counts, item, reason)
                in_a_row += 1
                if in_a_row >= MAX_STORE_FAILURES_IN_A_ROW:
                    print(f"error: stopping: the database refused {in_a_row} trials in a row", file=sys.stderr)
                    stopped = True
                    break
    finally:
        store.close()
        print(f"loaded {counts['converted']} trials ({resources} resources), failed {counts['failed']}, "
              f"warnings {counts['warnings']}{_skipped_text(counts)} -> {args.db}", file=sys.stderr)
    return EXIT_FAILED if counts["failed"] or stopped else EXIT_OK


VALIDATE_SUFFIXES = (".json", ".ndjson", ".jsonl")


def _validate_files(names: list[str], counts: dict) -> Iterator[str]:
    """The files to validate: each one named, and the .json/.ndjson files of each folder named
    (sorted, recursively, hidden ones left out; other files are counted as skipped)."""
    for name in names:
        if not Path(name).is_dir():
            yield name
            continue
        for root, folders, files in os.walk(name, onerror=lambda exc: _report(
                Problem(f"cannot list this folder: {exc.strerror}", file=exc.filename))):
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            for file in sorted(f for f in files if not f.startswith(".")):
                path = os.path.join(root, file)
                if file.lower().endswith(VALIDATE_SUFFIXES):
                    yield path
                else:
                    counts["skipped"].append(path)


def cmd_reindex(args: argparse.Namespace) -> int:
    """Rebuild the search index of the store at --db for the search parameters this fhirstudy
    serves (online: searches and writes go on; a progress bar on a terminal)."""
    from .store import open_store
    from .store.reindex import reindex

    store = open_store(args.db, check_index=False)
    try:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            with Progress("reindexing", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          transient=True) as bar:
                task = bar.add_task("reindex", total=None)
                report = reindex(store, batch=args.batch,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            report = reindex(store, batch=args.batch)
    finally:
        store.close()
    print(f"reindexed {report.resources} resources ({report.rewritten} written meanwhile, done again) "
          f"in {report.transactions} transactions, {report.seconds:.1f} s -> {args.db}", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate FHIR JSON files (a resource or a Bundle per file, or NDJSON, one per line); a
    folder stands for its .json and .ndjson files."""
    counts = _new_counts()
    valid = invalid = 0
    try:
        with _progress("validating") as tick:
            for name in _validate_files(args.files, counts):
                for ok in _validate_file(name):
                    valid, invalid = valid + ok, invalid + (not ok)
                    tick()
    finally:
        print(f"valid {valid}, invalid {invalid}{_skipped_text(counts)}", file=sys.stderr)
    return EXIT_FAILED if invalid else EXIT_OK


def _validate_file(name: str) -> Iterator[bool]:
    """Whether each document of one file is valid, its problems reported as found."""
    from .errors import ValidationFailed
    from .sources._boundary import failure_reason
    from .validation import validate_bundle, validate_resource

    try:
        text = Path(name).read_bytes()
    except OSError as exc:
        _report(Problem(reason=f"cannot read: {exc.strerror}", file=name))
        yield False
        return
    ndjson = name.lower().endswith((".ndjson", ".jsonl"))
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()] if ndjson else [(None, text)]
    for record, line in lines:
        try:
            doc = orjson.loads(line)
            (validate_bundle if isinstance(doc, dict) and doc.get("resourceType") == "Bundle"
             else validate_resource)(doc)
        except orjson.JSONDecodeError as exc:
            _report(Problem(reason=f"not JSON: {exc}", file=name, record=record))
            yield False
        except ValidationFailed as exc:
            for issue in exc.issues:
                _report(Problem(reason=issue.reason, field=issue.field, file=name, record=record))
            yield False
        except Exception as exc:  # noqa: BLE001 - the boundary of one document
            _report(Problem(reason=failure_reason(exc, "validating"), file=name, record=record))
            yield False
        else:
            yield True


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the FHIR REST endpoint: gunicorn by default, Flask's server with --dev."""
    from .server import create_app

    config = {"DATABASE_URL": args.db}
    if args.cache_mb is not None:
        config["SEARCH_CACHE_BYTES"] = int(args.cache_mb * 2**20)
    if args.max_body_mb is not None:
        config["MAX_BODY_BYTES"] = int(args.max_body_mb * 2**20)
    if args.base_url:
        config["BASE_URL"] = args.base_url
    if args.write_token:
        config["WRITE_TOKEN"] = args.write_token
    _check_listen(args.host, args.port)
    from .errors import StoreError

    try:
        app = create_app(config)
    except StoreError as exc:
        raise UsageError(f"cannot open the database --db {args.db}: {exc}") from None
    print(f"serving FHIR R5 at http://{args.host}:{args.port}/ from {args.db}", file=sys.stderr)
    if args.dev:
        app.run(host=args.host, port=args.port)
        return EXIT_OK
    from .server.wsgi import run_gunicorn

    run_gunicorn(app, host=args.host, port=args.port, workers=args.workers, threads=args.threads)
    return EXIT_OK


def _check_listen(host: str, port: int) -> None:
    """UsageError unless the server can listen on ``host``:``port`` (checked the way gunicorn binds,
    with SO_REUSEADDR, before anything else is started)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: not an address this machine has ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is in use (another fhirstudy serve?); "
                                 f"stop it or choose another with --port (PORT= for make run)") from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _port(text: str) -> int:
    """An argparse type: a TCP port (1 to 65535, ASCII digits)."""
    from .limits import parse_integer

    try:
        return parse_integer(text, "--port", minimum=1, maximum=65535)
    except FhirStudyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _megabytes_or_zero(text: str) -> float:
    """An argparse type: a size in MB, 0 or more (``--cache-mb``)."""
    return 0.0 if text.strip() in ("0", "0.0") else _megabytes(text)


def _megabytes(text: str) -> float:
    """An argparse type: a size in MB above zero (``--max-body-mb``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return value


def _push_auth(args: argparse.Namespace, parser_error):
    """The auth of ``push``: --token, or SMART Backend Services from --client-id/--private-key/--token-url
    (a key that cannot be read or used is a usage error)."""
    smart = (args.client_id, args.private_key, args.token_url)
    if any(smart) and not all(smart):
        parser_error("SMART Backend Services needs --client-id, --private-key and --token-url together")
    if all(smart):
        if args.token:
            parser_error("give --token or SMART Backend Services options, not both")
        from .errors import PushError
        from .push import SmartBackendAuth, make_session

        try:
            return SmartBackendAuth(args.token_url, args.client_id, Path(args.private_key), scope=args.scope,
                                    session=make_session(args.retries, connect_retries=args.connect_retries))
        except PushError as exc:
            parser_error(str(exc))
    return None


PUSH_AUTH_HINT = ("give a token the server accepts with --token or $FHIRSTUDY_PUSH_TOKEN, or SMART Backend "
                  "Services with --client-id, --private-key and --token-url")


def _push_auth_advice(args: argparse.Namespace, exc) -> str:
    """What to do about an authentication failure, on one line."""
    if args.client_id:
        return ("check that --client-id and the public key of --private-key are registered with the token "
                "endpoint, and that --scope grants writing")
    if exc.status == 403:
        return "the credentials were refused for this request: " + PUSH_AUTH_HINT + " (with write access)"
    return ("the token was refused: " if args.token else "no credentials were given: ") + PUSH_AUTH_HINT


def _db_trials(db: str) -> Iterator[list[dict]]:
    """The trials a fhirstudy store holds: each ResearchStudy with the resources whose ids hang off
    it (``<study id>-...``, see fhirstudy.mappers.ids), ResearchStudy first, Provenance last."""
    from .search import load_registry, parse_search
    from .search.query import encode_cursor
    from .store import open_store

    order = ("ResearchStudy", "PlanDefinition", "EvidenceVariable", "Location", "Provenance")
    store = open_store(db)
    try:
        def every(rtype: str) -> list[dict]:
            # page by position (keyset), as the next links do: _offset stops at limits.MAX_OFFSET
            out, position = [], []
            while True:
                query = parse_search(rtype, [("_count", "500"), *position], load_registry())
                page = store.search(query)
                out.extend(orjson.loads(e.json) if hasattr(e, "json") else orjson.loads(e) for e in page.entries)
                if page.next_cursor is None:
                    return out
                position = [("_cursor", encode_cursor(page.next_cursor))]

        studies = sorted(every("ResearchStudy"), key=lambda r: r["id"])
        members: dict[str, list[dict]] = {s["id"]: [] for s in studies}
        for rtype in order[1:]:
            for r in every(rtype):
                owner = next((sid for sid in _prefixes(r["id"]) if sid in members), None)
                if owner is not None:
                    members[owner].append(r)
        for study in studies:
            rest = sorted(members[study["id"]], key=lambda r: (order.index(r["resourceType"]), _natural(r["id"])))
            yield [_without_server_meta(r) for r in [study, *rest]]
    finally:
        store.close()


def _prefixes(rid: str) -> list[str]:
    parts = rid.split("-")
    return ["-".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]


def _natural(text: str) -> list:
    import re

    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def _without_server_meta(resource: dict) -> dict:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    return {"resourceType": out.pop("resourceType"), "id": out.pop("id"), **({"meta": meta} if meta else {}), **out}


def cmd_push(args: argparse.Namespace) -> int:
    """Push trials (converted from INPUTs, or read from the store with --from-db) to a FHIR server.
    A 401/403 stops the run at once with one line saying what to do, then the summary (exit 1)."""
    from .errors import AuthenticationFailed
    from .push import FhirClient, Journal, install_search_parameters, make_session
    from .push.push import PushReport, Pusher

    if bool(args.inputs) == bool(args.from_db):
        args.parser.error("give INPUT files or --from-db (not both)")
    auth = _push_auth(args, args.parser.error)
    session = make_session(args.retries, connect_retries=args.connect_retries)
    client = FhirClient(args.to, session=session, token=args.token, auth=auth,
                        timeout=(args.connect_timeout, args.timeout))
    version = None if args.fhir_version == "auto" else args.fhir_version
    journal = None
    failed_conversion = 0
    counts: dict = {"failed": 0}
    pusher = None
    stopped = None
    try:
        journal = Journal(args.resume) if args.resume else None
        try:
            version = version or client.fhir_version()
            if args.install_search_parameters and not args.dry_run:
                for url in install_search_parameters(client, version):
                    print(f"installed SearchParameter {url}", file=sys.stderr)
            if args.from_db:
                trials = _db_trials(args.db)
            else:
                stream, counts = _convert_stream(args, "converting")
                trials = ([e["resource"] for e in item.bundle["entry"]] for item in stream if item.ok)
            with _progress(f"pushing to {args.to}") as tick:
                def on_trial(result) -> None:
                    tick()
                    if result.outcome == "failed":
                        print(f"error: {result.trial}: {result.status or ''} {result.error}".replace("  ", " "),
                              file=sys.stderr)

                pusher = Pusher(client, version, journal, dry_run=args.dry_run, on_trial=on_trial,
                                chunk_trials=args.chunk, client_ids=PUSH_IDS[args.ids])
                pusher.run(trials, jobs=args.jobs)
        except AuthenticationFailed as exc:
            stopped = exc
            print(f"error: {exc}", file=sys.stderr)
            print(f"error: stopped at the first authentication failure; {_push_auth_advice(args, exc)}",
                  file=sys.stderr)
        failed_conversion = counts["failed"]
    finally:
        client.close()
        if auth is not None:
            auth.session.close()
        if journal:
            journal.close()
    report = pusher.report if pusher else PushReport(client.base_url, version or "?", args.dry_run)
    if stopped is not None and not report.stopped:
        report.stopped = str(stopped)
    data = report.to_dict()
    data["conversionFailed"] = failed_conversion
    if args.report:
        Path(args.report).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    c = report.counts
    what = "would push" if args.dry_run else "pushed"
    print(f"{what} to {args.to} (FHIR {report.fhir_version}): created {c['created']}, updated {c['updated']}, "
          f"unchanged {c['unchanged']}, failed {c['failed']}"
          + (f", not converted {failed_conversion}" if failed_conversion else "")
          + f" ({report.resources['created'] + report.resources['updated']} resources sent, {report.seconds:.1f} s)"
          + ("; stopped: authentication failed" if stopped is not None else ""),
          file=sys.stderr)
    return EXIT_FAILED if c["failed"] or failed_conversion or stopped is not None else EXIT_OK


def _push_url(text: str) -> str:
    """An argparse type: a FHIR base (or token) URL with http:// or https://."""
    from .errors import PushError
    from .push.client import check_base_url

    try:
        return check_base_url(text, "the URL")
    except PushError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _push_count(where: str, minimum: int, maximum: int):
    """An argparse type: a whole number from ``minimum`` to ``maximum`` (fhirstudy.limits.parse_integer)."""
    from .errors import FhirStudyError
    from .limits import parse_integer

    def parse(text: str) -> int:
        try:
            return parse_integer(text, where, minimum=minimum, maximum=maximum)
        except FhirStudyError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _push_seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0 (at most PUSH_MAX_SECONDS)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= PUSH_MAX_SECONDS:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {PUSH_MAX_SECONDS:g}, "
                                         f"not {text!r}")
    return value


PUSH_IDS = {"auto": None, "keep": True, "server": False}   # --ids -> Pusher(client_ids=...)
PUSH_MAX_SECONDS = 86400.0
PUSH_MAX_RETRIES = 100
PUSH_MAX_CHUNK = 1000
PUSH_MAX_JOBS = 64


def _positive(text: str, maximum: int | None = None) -> int:
    from .limits import MAX_INTEGER, parse_integer

    try:
        return parse_integer(text, "the value", minimum=1, maximum=maximum or MAX_INTEGER)
    except FhirStudyError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("the value ")) from None


def _jobs(text: str) -> int:
    return _positive(text, MAX_JOBS)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (what, and where to read more)."""

    def error(self, message: str):
        """Print the one line and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from .sources import FORMATS

    parser = _Parser(prog="fhirstudy", description="Clinical-trial records to FHIR R5.")
    parser.add_argument("--version", action="version", version=f"fhirstudy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def inputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("inputs", nargs="+", metavar="INPUT", help="a file or a folder of records")
        p.add_argument("--format", choices=FORMATS, help="skip detection and read INPUT as this format")
        p.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
        p.add_argument("-j", "--jobs", type=_jobs, default=1, metavar="N",
                       help=f"map and validate in N processes (default 1, at most {MAX_JOBS})")

    p = sub.add_parser("convert", help="convert records to one FHIR transaction Bundle per trial")
    inputs(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="a folder for <ResearchStudy id>.json files; NAME.ndjson for one Bundle a line in a "
                        "file; NAME.json for one transaction Bundle holding every trial; - for NDJSON on stdout")
    p.add_argument("--report", metavar="FILE",
                   help="write a JSON report: counts, every source field not mapped (with counts), skipped files")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("load", help="convert records and store them in the database")
    inputs(p)
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL", help=f"database URL (default {DEFAULT_DB})")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("reindex", help="rebuild the search index for the search parameters served (online)")
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL", help=f"database URL (default {DEFAULT_DB})")
    p.add_argument("--batch", type=_positive, default=500, metavar="N",
                   help="resources per transaction (default 500)")
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("serve", help="serve the FHIR REST endpoint")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT)
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL", help=f"database URL (default {DEFAULT_DB})")
    p.add_argument("--workers", type=_positive, default=2, help="gunicorn worker processes (default 2)")
    p.add_argument("--threads", type=_positive, default=32,
                   help="requests each worker serves at once (gunicorn gthread; default 32)")
    p.add_argument("--dev", action="store_true", help="use Flask's development server instead of gunicorn")
    p.add_argument("--cache-mb", type=_megabytes_or_zero, default=None, metavar="MB",
                   help="search responses kept per worker until the next write (default 64; 0: none)")
    p.add_argument("--max-body-mb", type=_megabytes, default=None, metavar="MB",
                   help="largest request body taken, larger ones get 413 (default 8, or "
                        "$FHIRSTUDY_MAX_BODY_BYTES in bytes)")
    p.add_argument("--base-url", metavar="URL", default=None,
                   help="the public base URL put in fullUrl, Location and links (default "
                        "$FHIRSTUDY_BASE_URL; without one, taken from each request's Host header)")
    p.add_argument("--write-token", metavar="TOKEN", default=os.environ.get("FHIRSTUDY_WRITE_TOKEN"),
                   help="accept writes (PUT, POST, DELETE) from clients presenting this bearer token "
                        "(default: $FHIRSTUDY_WRITE_TOKEN; without one, writes are refused)")
    p.set_defaults(func=cmd_serve)

    from .push.client import DEFAULT_CONNECT_RETRIES, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, DEFAULT_RETRIES
    from .push.push import DEFAULT_CHUNK_TRIALS

    p = sub.add_parser("push", help="push trials to a FHIR server (R4 or R5), idempotently")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="a file or a folder of records")
    p.add_argument("--from-db", action="store_true", help="push what the store at --db holds instead of INPUTs")
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL", help=f"database URL for --from-db (default {DEFAULT_DB})")
    p.add_argument("--format", choices=FORMATS, help="skip detection and read INPUT as this format")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print conversion warnings")
    p.add_argument("--to", required=True, metavar="URL", type=_push_url,
                   help="the FHIR server's base URL (http:// or https://)")
    p.add_argument("--fhir-version", choices=("auto", "4.0", "5.0"), default="auto",
                   help="the FHIR version to send (default auto: the server's /metadata fhirVersion)")
    p.add_argument("--token", metavar="T", default=os.environ.get("FHIRSTUDY_PUSH_TOKEN"),
                   help="bearer token (default $FHIRSTUDY_PUSH_TOKEN)")
    p.add_argument("--client-id", metavar="ID", help="SMART Backend Services client id")
    p.add_argument("--private-key", metavar="KEY.pem", help="SMART Backend Services private key (RSA: RS384, EC: ES384)")
    p.add_argument("--token-url", metavar="URL", type=_push_url, help="SMART Backend Services token endpoint")
    p.add_argument("--scope", default="system/*.write", help="SMART scope to ask for (default system/*.write)")
    p.add_argument("--dry-run", action="store_true", help="read the server and report what would change; write nothing")
    p.add_argument("--resume", metavar="JOURNAL", help="journal file (SQLite): skip what arrived, record what arrives")
    p.add_argument("--report", metavar="FILE", help="write the run's report as JSON")
    p.add_argument("--install-search-parameters", action="store_true",
                   help="send the SearchParameters the server needs (R4: ResearchStudy condition) first")
    p.add_argument("--chunk", type=_push_count("--chunk", 1, PUSH_MAX_CHUNK), default=DEFAULT_CHUNK_TRIALS,
                   metavar="N", help=f"trials per transaction at most (default {DEFAULT_CHUNK_TRIALS})")
    p.add_argument("-j", "--jobs", type=_push_count("--jobs", 1, PUSH_MAX_JOBS), default=1, metavar="N",
                   help="send N transactions at a time (default 1)")
    p.add_argument("--ids", choices=sorted(PUSH_IDS), default="auto",
                   help="keep: new resources keep their converted ids (ResearchStudy/nct06731140); server: "
                        "the server picks them; auto (default): keep where the server's CapabilityStatement "
                        "says updateCreate and versioned-update, falling back when it refuses")
    p.add_argument("--connect-timeout", type=_push_seconds, default=DEFAULT_CONNECT_TIMEOUT, metavar="S",
                   help=f"seconds to wait for a connection (default {DEFAULT_CONNECT_TIMEOUT:g})")
    p.add_argument("--timeout", type=_push_seconds, default=DEFAULT_READ_TIMEOUT, metavar="S",
                   help=f"seconds to wait for an answer (default {DEFAULT_READ_TIMEOUT:g})")
    p.add_argument("--connect-retries", type=_push_count("--connect-retries", 0, PUSH_MAX_RETRIES),
                   default=DEFAULT_CONNECT_RETRIES, metavar="N",
                   help=f"tries again when no connection can be made (default {DEFAULT_CONNECT_RETRIES})")
    p.add_argument("--retries", type=_push_count("--retries", 0, PUSH_MAX_RETRIES), default=DEFAULT_RETRIES,
                   metavar="N", help=f"tries again after a dropped answer or 429/502/503/504 (default {DEFAULT_RETRIES})")
    p.set_defaults(func=cmd_push, parser=p)

    p = sub.add_parser("validate", help="validate FHIR R5 JSON files")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="a resource or Bundle (.json), NDJSON (.ndjson), or a folder of them")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fhirstudy`` console script: the one place where errors become one line
    on stderr and an exit code (a traceback only with FHIRSTUDY_DEBUG=1)."""
    parser = _parser()
    args = parser.parse_args(argv)
    missing = _missing_inputs(getattr(args, "inputs", None) or getattr(args, "files", None) or [])
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader went away (| head): nothing more to say to it
        _quiet_stdout()
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the last boundary: never a traceback
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        code, line = _error_line(exc)
        print(line, file=sys.stderr)
        return code


def _error_line(exc: Exception) -> tuple[int, str]:
    """The exit code and the one line for an error that ended a command."""
    from .outputs import OutputError

    message = " ".join(str(exc).split())
    if isinstance(exc, (UsageError, OutputError)):
        return EXIT_USAGE, f"error: {message}"
    if isinstance(exc, FhirStudyError):
        return EXIT_FAILED, f"error: {message}"
    return EXIT_INTERNAL, (f"error: internal error: {type(exc).__name__}: {message}; "
                           f"run with {DEBUG_ENV}=1 for the traceback")


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
