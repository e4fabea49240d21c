"""``fhirstudy push``: trials (converted from INPUTs, or read from a store with --from-db) sent to
another FHIR server (R4 or R5), idempotently."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from fhirstudy import config
from fhirstudy.cli.arguments import add_db, add_no_narrative, count, seconds, url
from fhirstudy.cli.convert import convert_stream
from fhirstudy.cli.exits import EXIT_FAILED, EXIT_OK
from fhirstudy.cli.progress import progress

NAME = "push"
HELP = "push trials to a FHIR server (R4 or R5), idempotently"
PUSH_IDS = {"auto": None, "keep": True, "server": False}   # --ids -> Pusher(client_ids=...)
PUSH_MAX_SECONDS = 86400.0
PUSH_MAX_RETRIES = 100
PUSH_MAX_CHUNK = 1000
PUSH_MAX_JOBS = 64
PUSH_AUTH_HINT = ("give a token the server accepts with --token or $FHIRSTUDY_PUSH_TOKEN, or SMART Backend "
                  "Services with --client-id, --private-key and --token-url")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``push``."""
    from fhirstudy.push.client import (DEFAULT_CONNECT_RETRIES, DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT,
                                       DEFAULT_RETRIES)
    from fhirstudy.push.push import DEFAULT_CHUNK_TRIALS
    from fhirstudy.sources import FORMATS

    push_seconds = seconds(PUSH_MAX_SECONDS)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="a file or a folder of records")
    p.add_argument("--from-db", action="store_true", help="push what the store at --db holds instead of INPUTs")
    add_db(p, "database URL for --from-db")
    p.add_argument("--format", choices=FORMATS, help="skip detection and read INPUT as this format")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print conversion warnings")
    p.add_argument("--to", required=True, metavar="URL", type=url,
                   help="the FHIR server's base URL (http:// or https://)")
    p.add_argument("--fhir-version", choices=("auto", "4.0", "5.0"), default="auto",
                   help="the FHIR version to send (default auto: the server's /metadata fhirVersion)")
    p.add_argument("--token", metavar="T", default=config.value("PUSH_TOKEN"),
                   help="bearer token (default $FHIRSTUDY_PUSH_TOKEN)")
    p.add_argument("--client-id", metavar="ID", help="SMART Backend Services client id")
    p.add_argument("--private-key", metavar="KEY.pem", help="SMART Backend Services private key (RSA: RS384, EC: ES384)")
    p.add_argument("--token-url", metavar="URL", type=url, help="SMART Backend Services token endpoint")
    p.add_argument("--scope", default="system/*.write", help="SMART scope to ask for (default system/*.write)")
    add_sending_choices(p)
    p.add_argument("--dry-run", action="store_true", help="read the server and report what would change; write nothing")
    p.add_argument("--resume", metavar="JOURNAL", help="journal file (SQLite): skip what arrived, record what arrives")
    p.add_argument("--report", metavar="FILE", help="write the run's report as JSON")
    p.add_argument("--install-search-parameters", action="store_true",
                   help="send the SearchParameters the server needs (R4: ResearchStudy condition) first")
    p.add_argument("--chunk", type=count("--chunk", 1, PUSH_MAX_CHUNK), default=DEFAULT_CHUNK_TRIALS,
                   metavar="N", help=f"trials per transaction at most (default {DEFAULT_CHUNK_TRIALS})")
    p.add_argument("-j", "--jobs", type=count("--jobs", 1, PUSH_MAX_JOBS), default=1, metavar="N",
                   help="send N transactions at a time (default 1)")
    p.add_argument("--ids", choices=sorted(PUSH_IDS), default="auto",
                   help="keep: new resources keep their converted ids (ResearchStudy/nct06731140); server: "
                        "the server picks them; auto (default): keep where the server's CapabilityStatement "
                        "says updateCreate and versioned-update, falling back when it refuses")
    p.add_argument("--connect-timeout", type=push_seconds, default=DEFAULT_CONNECT_TIMEOUT, metavar="S",
                   help=f"seconds to wait for a connection (default {DEFAULT_CONNECT_TIMEOUT:g})")
    p.add_argument("--timeout", type=push_seconds, default=DEFAULT_READ_TIMEOUT, metavar="S",
                   help=f"seconds to wait for an answer (default {DEFAULT_READ_TIMEOUT:g})")
    p.add_argument("--connect-retries", type=count("--connect-retries", 0, PUSH_MAX_RETRIES),
                   default=DEFAULT_CONNECT_RETRIES, metavar="N",
                   help=f"tries again when no connection can be made (default {DEFAULT_CONNECT_RETRIES})")
    p.add_argument("--retries", type=count("--retries", 0, PUSH_MAX_RETRIES), default=DEFAULT_RETRIES,
                   metavar="N", help=f"tries again after a dropped answer or 429/502/503/504 (default {DEFAULT_RETRIES})")


def add_sending_choices(p: argparse.ArgumentParser) -> None:
    """What a store is sent of each trial: ``--r4-results`` and ``--no-narrative`` (``push``, and
    ``sync --push-to``, which pushes the same way); read back by :func:`sending_choices`."""
    from fhirstudy.mappers.r4_base import RESULTS_MODES

    p.add_argument("--r4-results", choices=RESULTS_MODES, default=None,  # None: omit, and not given
                   help="what an R4 store gets of the trial results: omit (default: R4 Evidence has no "
                        "statistics, so Group, Evidence and Composition go to R5 stores only) or extensions "
                        "(sent, what R4 lacks in the R5 cross-version extensions)")
    add_no_narrative(p, "send resources without their generated text (for a store that does not want them)")


def sending_choices(args: argparse.Namespace) -> dict:
    """The :class:`~fhirstudy.push.push.Pusher` arguments :func:`add_sending_choices` gave."""
    return {"r4_results": args.r4_results or "omit", "narrative": not args.no_narrative}


def run(args: argparse.Namespace) -> int:
    """Push trials (converted from INPUTs, or read from the store with --from-db) to a FHIR server.
    A 401/403 stops the run at once with one line saying what to do, then the summary (exit 1)."""
    from fhirstudy.errors import AuthenticationFailed
    from fhirstudy.push import FhirClient, Journal, install_search_parameters, make_session
    from fhirstudy.push.push import PushReport, Pusher
    from fhirstudy.push.stored import stored_trials_at

    if bool(args.inputs) == bool(args.from_db):
        args.parser.error("give INPUT files or --from-db (not both)")
    auth = _auth(args, args.parser.error)
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
                for sp_url in install_search_parameters(client, version):
                    print(f"installed SearchParameter {sp_url}", file=sys.stderr)
            if args.from_db:
                trials = stored_trials_at(args.db)
            else:
                stream, counts = convert_stream(args, "converting", narrative=not args.no_narrative)
                trials = ([e["resource"] for e in item.bundle["entry"]] for item in stream if item.ok)
            with progress(f"pushing to {args.to}") as tick:
                def on_trial(result) -> None:
                    tick()
                    if result.outcome == "failed":
                        print(f"error: {result.trial}: {result.status or ''} {result.error}".replace("  ", " "),
                              file=sys.stderr)

                pusher = Pusher(client, version, journal, dry_run=args.dry_run, on_trial=on_trial,
                                chunk_trials=args.chunk, client_ids=PUSH_IDS[args.ids], **sending_choices(args))
                pusher.run(trials, jobs=args.jobs)
        except AuthenticationFailed as exc:
            stopped = exc
            print(f"error: {exc}", file=sys.stderr)
            print(f"error: stopped at the first authentication failure; {_auth_advice(args, exc)}",
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
    noted = sum(1 for t in report.trials if t.note)
    trials = f"{noted} trial{'s' if noted != 1 else ''}"
    if noted and report.r4_results == "extensions":
        print(f"results of {trials} sent in R5 cross-version extensions (R4 Evidence has no statistics); "
              "each trial's note in --report says what went", file=sys.stderr)
    elif noted:
        print(f"results of {trials} not sent: an R4 store cannot hold them (R4 Evidence has no statistics; "
              "--r4-results=extensions sends them in cross-version extensions); each trial's note in --report "
              "says what was left out", file=sys.stderr)
    return EXIT_FAILED if c["failed"] or failed_conversion or stopped is not None else EXIT_OK


def _auth(args: argparse.Namespace, parser_error):
    """The auth of ``push``: --token, or SMART Backend Services from --client-id/--private-key/--token-url
    (a key that cannot be read or used is a usage error)."""
    smart = (args.client_id, args.private_key, args.token_url)
    if any(smart) and not all(smart):
        parser_error("SMART Backend Services needs --client-id, --private-key and --token-url together")
    if all(smart):
        if args.token:
            parser_error("give --token or SMART Backend Services options, not both")
        from fhirstudy.errors import PushError
        from fhirstudy.push import SmartBackendAuth, make_session

        try:
            return SmartBackendAuth(args.token_url, args.client_id, Path(args.private_key), scope=args.scope,
                                    session=make_session(args.retries, connect_retries=args.connect_retries))
        except PushError as exc:
            parser_error(str(exc))
    return None


def _auth_advice(args: argparse.Namespace, exc) -> str:
    """What to do about an authentication failure, on one line."""
    if args.client_id:
        return ("check that --client-id and the public key of --private-key are registered with the token "
                "endpoint, and that --scope grants writing")
    if exc.status == 403:
        return "the credentials were refused for this request: " + PUSH_AUTH_HINT + " (with write access)"
    return ("the token was refused: " if args.token else "no credentials were given: ") + PUSH_AUTH_HINT
