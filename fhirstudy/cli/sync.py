"""``fhirstudy sync``: keep a store in step with ClinicalTrials.gov, one query (or a query file's
queries) at a time, asking only for what changed (see :mod:`fhirstudy.ctgov.sync`), and push what
changed to other FHIR servers; ``--status`` says what the last runs did."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from fhirstudy.cli.arguments import add_db, count, url
from fhirstudy.cli.exits import EXIT_FAILED, EXIT_OK, UsageError
from fhirstudy.cli.fetch import add_query_arguments, client_from, query_from
from fhirstudy.cli.progress import Bar, report
from fhirstudy.cli.push import add_sending_choices, sending_choices

NAME = "sync"
HELP = "keep a store in step with ClinicalTrials.gov (nightly), and push what changed"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sync``."""
    add_query_arguments(p, status_flag="--overall-status")
    p.add_argument("--query-file", metavar="FILE", help="the queries (TOML: keys as the options above, or "
                                                        "[[query]] tables with a name)")
    p.add_argument("--name", default="default", help="the name of the query the options make (default 'default')")
    add_db(p)
    p.add_argument("--full", action="store_true", help="also list every NCT id of the query: find the studies "
                                                       "that left it or the registry")
    p.add_argument("--full-every", type=count("--full-every", 1, 3650), default=7, metavar="DAYS",
                   help="a full check when the last is older than DAYS (default 7)")
    p.add_argument("--prune", action="store_true", help="delete the studies that left the query or the registry "
                                                        "(history kept)")
    p.add_argument("--push-to", action="append", default=[], type=url, metavar="URL",
                   help="push what changed to this FHIR server (R4 or R5); may be given more than once")
    p.add_argument("--token", metavar="T", help="bearer token for --push-to (default $FHIRSTUDY_PUSH_TOKEN)")
    add_sending_choices(p)  # as push has them: what each --push-to store gets
    p.add_argument("--journal", metavar="FILE", help="the push journal (SQLite; default fhirstudy-push-journal.sqlite "
                                                     "beside a SQLite --db, else in the current folder)")
    p.add_argument("--report", metavar="FILE", help="write the run's report as JSON")
    p.add_argument("--status", action="store_true", dest="show_status", help="show what the last runs did, and stop")


def run(args: argparse.Namespace) -> int:
    from fhirstudy.cli.load import open_db
    from fhirstudy.ctgov.sync import Sync, SyncOptions

    if args.show_status:
        return _show_status(args)
    for given, option in ((args.no_narrative, "--no-narrative"), (args.r4_results, "--r4-results")):
        if given and not args.push_to:
            raise UsageError(f"{option} says what --push-to sends: give --push-to too")
    queries = _queries(args)
    store = open_db(args.db)
    client = client_from(args)
    journal, pushers = None, {}
    reports, failed, started = [], False, time.perf_counter()
    try:
        if args.push_to:
            journal, pushers = _pushers(args, store)
        options = SyncOptions(full=args.full, prune=args.prune, full_every_days=args.full_every,
                              page_size=args.page_size, jobs=args.jobs)
        for query in queries:
            with Bar(f"syncing {query.name}") as bar:
                sync = Sync(store, client, options, pushers, on_problem=lambda p: _report(args, p),
                            on_total=bar.total, on_study=bar.tick)
                try:
                    result = sync.run(query)
                except Exception as exc:  # noqa: BLE001 - one query's failure; the others still run
                    from fhirstudy.cli.exits import error_line

                    failed = True
                    print(f"error: query {query.name}: {error_line(exc)[1].removeprefix('error: ')}", file=sys.stderr)
                    continue
            reports.append(result)
            failed |= result.counts["failed"] > 0
            print(_line(result), file=sys.stderr)
    finally:
        client.close()
        store.close()
        if journal is not None:
            journal.close()
    if args.report:
        data = {"queries": [r.to_dict() for r in reports], "requests": client.requests,
                "seconds": round(time.perf_counter() - started, 3)}
        Path(args.report).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    return EXIT_FAILED if failed else EXIT_OK


def _report(args, problem) -> None:
    if not (problem.severity == "warning" and args.quiet):
        report(problem)


def _queries(args):
    """The queries to sync: the query file's, or the one the options make (not both)."""
    from fhirstudy.ctgov.query import QueryError, read_query_file

    given = [k for k in ("condition", "term", "location", "title", "intervention", "outcome", "sponsor", "status",
                         "near", "nct", "advanced", "sort") if getattr(args, k) is not None]
    if args.query_file:
        if given:
            flag = "overall-status" if given[0] == "status" else given[0]
            raise UsageError(f"give --query-file or query options (--{flag}), not both")
        try:
            return read_query_file(args.query_file)
        except QueryError as exc:
            raise UsageError(str(exc)) from None
    return [query_from(args, args.name)]


def _pushers(args, store):
    """A push function per --push-to target (see fhirstudy.ctgov.sync.Sync), and the journal."""
    from fhirstudy import config
    from fhirstudy.push import FhirClient, Journal
    from fhirstudy.push.push import Pusher
    from fhirstudy.push.stored import stored_trials

    path = args.journal or _default_journal(args.db)
    journal = Journal(path)
    token = args.token or config.value("PUSH_TOKEN")
    pushers, choices = {}, sending_choices(args)
    for target in args.push_to:
        def push(study_ids, target=target):
            client = FhirClient(target, token=token)
            try:
                pusher = Pusher(client, journal=journal, **choices)
                pusher.run(stored_trials(store, ids=study_ids))
                arrived = [r.trial for r in pusher.report.trials if r.outcome != "failed"]
                for r in pusher.report.trials:
                    if r.outcome == "failed":
                        print(f"error: pushing {r.trial} to {target}: {r.status or ''} {r.error}", file=sys.stderr)
                return arrived, dict(pusher.report.counts)
            finally:
                client.close()
        pushers[target] = push
    return journal, pushers


def _default_journal(db: str) -> str:
    if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        return str(Path(db.removeprefix("sqlite:///")).with_name("fhirstudy-push-journal.sqlite"))
    return "fhirstudy-push-journal.sqlite"


def _line(r) -> str:
    c = r.counts
    if r.unchanged_registry:
        what = f"the registry has not changed since the last run (dataTimestamp {r.data_timestamp})"
    else:
        what = (f"new {c['new']}, updated {c['updated']}, unchanged {c['unchanged']}, left the query {c['left']}, "
                f"gone {c['gone']}" + (f", pruned {c['pruned']}" if c["pruned"] else "") + f", failed {c['failed']}")
    since = f" since {r.since}" if r.since else ""
    pushed = "".join(f"; pushed {p['arrived']} of {p['sent']} to {t}" for t, p in r.pushed.items())
    return (f"synced {r.query} ({r.mode}{since}{', resumed' if r.resumed else ''}): {what}{pushed}; "
            f"{r.requests} requests in {r.seconds:.1f} s")


def _show_status(args) -> int:
    from fhirstudy.cli.load import open_db
    from fhirstudy.ctgov.state import SyncState

    store = open_db(args.db)
    try:
        state = SyncState(store.engine)
        runs = state.runs()
    finally:
        store.close()
    if not runs:
        print(f"no sync has run on {args.db}", file=sys.stderr)
        return EXIT_OK
    for run in runs:
        counts = orjson.loads(run.counts or "{}")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.started))
        took = f"{run.finished - run.started:.1f} s" if run.finished else "not ended"
        shown = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing changed"
        print(f"{when}Z  {run.query:<20} {run.mode:<6} {run.status:<8} {took:>10}  {shown}"
              + (f"  error: {run.error}" if run.error else ""))
    return EXIT_OK
