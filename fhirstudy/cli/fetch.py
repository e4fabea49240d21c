"""``fhirstudy fetch``: studies straight from the ClinicalTrials.gov API v2, through the pipeline,
into files (``-o``, as ``convert`` writes them) or a store (``--db``); constant memory whatever the
number of studies (one page of at most 1,000 at a time)."""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from fhirstudy.cli.arguments import add_no_narrative, count, jobs, seconds
from fhirstudy.cli.exits import EXIT_FAILED, EXIT_OK, UsageError
from fhirstudy.cli.progress import Bar, report

NAME = "fetch"
HELP = "fetch studies from the ClinicalTrials.gov API and convert them (to files or a store)"
MAX_INTERVAL = 3600.0


def add_query_arguments(p: argparse.ArgumentParser, status_flag: str = "--status") -> None:
    """The options that make a query (fetch, sync) and those of the API client (``sync`` calls its
    status filter ``--overall-status``: its ``--status`` shows the last runs)."""
    from fhirstudy.ctgov.client import DEFAULT_INTERVAL, MAX_PAGE_SIZE
    from fhirstudy.ctgov.query import STATUSES

    q = p.add_argument_group("what to ask ClinicalTrials.gov for")
    q.add_argument("--condition", help='conditions or disease (query.cond), e.g. "breast cancer"')
    q.add_argument("--term", help="other terms, anywhere in the record (query.term)")
    q.add_argument("--location", help="location terms: facility, city, state, country (query.locn)")
    q.add_argument("--title", help="title or acronym (query.titles)")
    q.add_argument("--intervention", help="intervention or treatment (query.intr)")
    q.add_argument("--outcome", help="outcome measure (query.outc)")
    q.add_argument("--sponsor", help="sponsor or collaborator (query.spons)")
    q.add_argument(status_flag, dest="status", metavar="S,S", help=f"overall statuses, comma-separated: {', '.join(STATUSES)}")
    q.add_argument("--near", metavar="LAT,LON,DIST", help="a site within DIST (mi or km) of LAT,LON, e.g. 42.36,-71.06,50mi")
    q.add_argument("--nct", metavar="NCT,NCT", help="these studies (NCT numbers, comma-separated)")
    q.add_argument("--advanced", metavar="ESSIE", help="an Essie expression (filter.advanced), e.g. AREA[Phase]PHASE3")
    q.add_argument("--sort", metavar="FIELD[:asc|:desc]", help="the API's order, e.g. LastUpdatePostDate:desc")
    a = p.add_argument_group("the API")
    a.add_argument("--api", metavar="URL", help="the API's base URL (default $FHIRSTUDY_CTGOV_API, else "
                                               "https://clinicaltrials.gov/api/v2)")
    a.add_argument("--interval", type=seconds(MAX_INTERVAL), default=DEFAULT_INTERVAL, metavar="S",
                   help=f"seconds between two requests at least (default {DEFAULT_INTERVAL:g}: be polite)")
    a.add_argument("--page-size", type=count("--page-size", 1, MAX_PAGE_SIZE), default=MAX_PAGE_SIZE, metavar="N",
                   help=f"studies per request (default and at most {MAX_PAGE_SIZE})")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print conversion warnings")
    p.add_argument("-j", "--jobs", type=jobs, default=1, metavar="N", help="map and validate in N processes")


def query_from(args: argparse.Namespace, name: str = "default"):
    """The Query the options make; UsageError (exit 2) saying what is wrong."""
    from fhirstudy.ctgov.query import QueryError, query

    try:
        return query(name, condition=args.condition, term=args.term, location=args.location, title=args.title,
                     intervention=args.intervention, outcome=args.outcome, sponsor=args.sponsor,
                     status=args.status, near=args.near, nct=args.nct, advanced=args.advanced,
                     sort=args.sort)
    except QueryError as exc:
        raise UsageError(str(exc)) from None


def client_from(args: argparse.Namespace):
    """The API client the options ask for; UsageError for a bad --api."""
    from fhirstudy.ctgov.client import CtgovClient
    from fhirstudy.errors import PushError

    try:
        return CtgovClient(args.api, interval=args.interval)
    except PushError as exc:
        raise UsageError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``fetch``."""
    add_query_arguments(p)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="OUT", help="files, as convert -o writes them (a folder, "
                                                           "NAME.ndjson, NAME.json or - for stdout)")
    out.add_argument("--db", metavar="URL", help="store the trials in this database")
    p.add_argument("--limit", type=count("--limit", 1, 10 ** 9), metavar="N", help="stop after N studies")
    add_no_narrative(p, "write or store the resources without their generated text (for a store that does not "
                        "want them)")
    p.add_argument("--report", metavar="FILE", help="write the run's report as JSON")


def run(args: argparse.Namespace) -> int:
    """Fetch the query's studies and write or store each converted trial."""
    from fhirstudy.ctgov.records import raw_record
    from fhirstudy.errors import FhirStudyError, StoreError
    from fhirstudy.outputs import OutputError, open_output
    from fhirstudy.pipeline import convert_records

    query = query_from(args)
    client = client_from(args)
    output = store = None
    if args.output:
        output = open_output(args.output)
    else:
        from fhirstudy.cli.load import open_db
        from fhirstudy.loader import load_reference_resources, store_trial

        store = open_db(args.db)
    counts, started, committed, total = Counter(), time.perf_counter(), False, None
    try:
        if store is not None:
            load_reference_resources(store)
        with Bar(f"fetching {query.describe()}") as bar:
            def records():
                nonlocal total
                number = 0
                for page in client.pages(query.params(), args.page_size, count_total=True):
                    if page.total is not None:
                        total = page.total
                        bar.total(min(total, args.limit or total))
                    for study in page.studies:
                        number += 1
                        yield raw_record(study, client.base_url, number)
                        if args.limit and number >= args.limit:
                            return

            for item in convert_records(records(), args.jobs, narrative=not args.no_narrative):
                for problem in item.problems:
                    if not (problem.severity == "warning" and args.quiet):
                        report(problem)
                counts["warnings"] += sum(p.severity == "warning" for p in item.problems)
                bar.tick()
                if not item.ok:
                    counts["failed"] += 1
                    continue
                try:
                    if output is not None:
                        output.write(item.study_id, item.bundle)
                        counts["converted"] += 1
                    else:
                        counts[store_trial(store, item.bundle)] += 1
                except (OutputError, StoreError) as exc:
                    report_line = f"error: {item.file}: not {'written' if output else 'stored'}: {exc}"
                    print(report_line, file=sys.stderr)
                    counts["failed"] += 1
                    if isinstance(exc, OutputError):
                        break
        committed = True
    except FhirStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        counts["stopped"] = 1
    finally:
        if output is not None:
            output.close(commit=committed or counts["converted"] > 0)
        if store is not None:
            store.close()
        client.close()
        seconds_taken = time.perf_counter() - started
        _summary(args, query, counts, client.requests, seconds_taken, total)
    return EXIT_FAILED if counts["failed"] or counts["stopped"] else EXIT_OK


def _summary(args, query, counts: Counter, requests: int, seconds_taken: float, total: int | None) -> None:
    where = args.output or args.db
    if args.db:
        done = f"new {counts['new']}, updated {counts['updated']}, unchanged {counts['unchanged']}"
    else:
        done = f"converted {counts['converted']}"
    print(f"fetched {query.describe()}: {done}, failed {counts['failed']}, warnings {counts['warnings']}"
          f"{'' if total is None else f' (the registry lists {total})'}; {requests} requests in "
          f"{seconds_taken:.1f} s -> {where}" + ("; stopped early" if counts["stopped"] else ""), file=sys.stderr)
    if args.report:
        data = {"query": query.params(), "counts": {k: counts[k] for k in
                                                    ("converted", "new", "updated", "unchanged", "failed", "warnings")},
                "totalCount": total, "requests": requests, "seconds": round(seconds_taken, 3),
                "stopped": bool(counts["stopped"]), "output": where}
        Path(args.report).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
