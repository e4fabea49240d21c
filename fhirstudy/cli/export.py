"""``fhirstudy export -o DIR``: a Bulk Data export from the command line, the same files and
manifest a ``$export`` job writes, with a static ``manifest.json`` beside them (the
``$bulk-publish`` shape: a catalogue published as files, its URLs relative to the manifest)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

from fhirstudy.cli.arguments import add_db
from fhirstudy.cli.exits import EXIT_OK, UsageError
from fhirstudy.errors import InvalidRequest

NAME = "export"
HELP = "write stored resources as Bulk Data NDJSON files with a manifest (as $export does)"
LEVELS = ("system", "ResearchStudy", "Group")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``export``."""
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write (new or empty)")
    p.add_argument("--level", choices=LEVELS, default="system",
                   help="system: every resource; ResearchStudy: the studies and all they reference; "
                        "Group: --group's studies and all they reference (default system)")
    p.add_argument("--group", metavar="ID", help="with --level Group: the Group's id")
    p.add_argument("--type", action="append", metavar="T[,T]", help="only these resource types (_type)")
    p.add_argument("--since", metavar="INSTANT", help="only resources updated after this instant (_since)")
    p.add_argument("--until", metavar="INSTANT", help="only resources updated up to this instant (_until)")
    p.add_argument("--type-filter", action="append", metavar="TYPE?QUERY",
                   help="a FHIR search per type (_typeFilter; several for one type are OR)")
    p.add_argument("--elements", action="append", metavar="[T.]E[,...]", help="only these elements (_elements)")
    p.add_argument("--max-file-mb", type=float, default=None, metavar="MB",
                   help="split a type's file past this size (default 64)")
    add_db(p)


def _pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    pairs = [("_type", t) for t in args.type or []] + [("_typeFilter", f) for f in args.type_filter or []]
    pairs += [("_elements", e) for e in args.elements or []]
    pairs += [(name, value) for name, value in (("_since", args.since), ("_until", args.until)) if value]
    return pairs


def _target(directory: str) -> Path:
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"-o {directory}: not an empty folder (an export is written into a new or empty one)")
    return target


def run(args: argparse.Namespace) -> int:
    """Export from the store at --db into -o DIR: files are written into a folder beside it and
    moved into place when complete, so DIR never holds half an export."""
    from fhirstudy.cli.load import open_db
    from fhirstudy.export.request import parse_kickoff
    from fhirstudy.export.writer import MAX_FILE_BYTES, write_export
    from fhirstudy.service import SearchService

    target = _target(args.output)
    if (args.level == "Group") != bool(args.group):
        raise UsageError("--group ID goes with --level Group, and --level Group needs it")
    store = open_db(args.db)
    try:
        service = SearchService(store, store.registry, 0)
        try:
            request = parse_kickoff(args.level, args.group, _pairs(args), service, request_url="fhirstudy export")
        except InvalidRequest as exc:
            raise UsageError(str(exc)) from None
        limit = MAX_FILE_BYTES if args.max_file_mb is None else max(1, int(args.max_file_mb * 2**20))
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        began = time.monotonic()
        try:
            with _bar() as tick:
                result = write_export(store, service, request, work, max_file_bytes=limit, progress=tick)
            (work / "manifest.json").write_bytes(orjson.dumps(manifest(result, request), option=orjson.OPT_INDENT_2))
            if target.exists():
                target.rmdir()
            os.replace(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    finally:
        store.close()
    files = len(result.output) + len(result.error) + len(result.deleted)
    print(f"exported {sum(f.count for f in result.output)} resources of {len({f.type for f in result.output})} "
          f"types in {files} files to {target} (transactionTime {result.transaction_time}, "
          f"{sum(f.count for f in result.deleted)} deleted, {sum(f.count for f in result.error)} errors) "
          f"in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return EXIT_OK


def manifest(result, request) -> dict:
    """The Bulk Data manifest of ``result``, its file URLs relative to the manifest."""
    def listed(files):
        return [{"type": f.type, "url": f.name, "count": f.count} for f in files]
    return {"transactionTime": result.transaction_time, "request": request.request_url,
            "requiresAccessToken": False, "output": listed(result.output), "error": listed(result.error),
            "deleted": listed(result.deleted)}


def _bar():
    """A progress bar on a terminal's stderr (resources written, of the total when known); a
    no-op in pipes."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        if not sys.stderr.isatty():
            yield lambda done, total: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress("exporting", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as p:
            task = p.add_task("export", total=None)
            yield lambda done, total: p.update(task, completed=done, total=total)
    return bar()
