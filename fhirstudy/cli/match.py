"""``fhirstudy match PATIENT.json``: the stored studies a patient could join, as a table (or the
``$match`` searchset Bundle with ``--json``)."""
from __future__ import annotations

import argparse
import sys
from datetime import date

import orjson

from fhirstudy.cli.arguments import add_db, count
from fhirstudy.cli.exits import EXIT_OK
from fhirstudy.errors import InvalidRequest

NAME = "match"
HELP = "the stored studies a patient (a FHIR Bundle) could join, best first, with the reasons"
CRITERION_URL = "https://fhirstudy.org/fhir/StructureDefinition/match-criterion"
DISTANCE_URL = "http://hl7.org/fhir/StructureDefinition/location-distance"
KM_PER_MILE = 1.609344


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``match``."""
    p.add_argument("patient", metavar="PATIENT.json",
                   help="the patient's data: a Bundle (Patient, Condition, Observation ...) or a $match Parameters body")
    p.add_argument("--near", metavar="ZIP", help="only studies with a recruiting site near this US ZIP code")
    p.add_argument("--radius", metavar="MI", help="with --near: the travel radius in miles (default 50)")
    p.add_argument("--phase", help="comma-separated phases (phase-2 or PHASE2)")
    p.add_argument("--status", help="comma-separated recruitment statuses (default recruiting,not-yet-recruiting)")
    p.add_argument("--include-ineligible", action="store_true",
                   help="also list the studies the patient certainly fails, with the failing criteria")
    p.add_argument("--count", type=count("--count", 1, 500), default=20, metavar="N",
                   help="how many studies (default 20)")
    p.add_argument("--date", help="the day ages and result windows are reckoned on (default today)")
    p.add_argument("--details", action="store_true", help="list every computable criterion under each study")
    p.add_argument("--json", action="store_true", help="print the searchset Bundle instead of a table")
    add_db(p)


def _parameters(args: argparse.Namespace) -> dict:
    try:
        with open(args.patient, "rb") as f:
            body = orjson.loads(f.read())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InvalidRequest(f"{args.patient}: cannot read it as JSON ({exc})") from None
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        return body
    parameters = [{"name": "trialMatchClinicalData", "resource": body}]
    for name, value, kind in (("zipCode", args.near, "valueString"), ("travelRadius", args.radius, "valueString"),
                              ("phase", args.phase, "valueString"), ("recruitmentStatus", args.status, "valueString"),
                              ("date", args.date, "valueDate")):
        if value is not None:
            parameters.append({"name": name, kind: value})
    parameters.append({"name": "count", "valueInteger": args.count})
    if args.include_ineligible:
        parameters.append({"name": "includeIneligible", "valueBoolean": True})
    return {"resourceType": "Parameters", "parameter": parameters}


def _parts(extension: dict) -> dict:
    out: dict = {}
    for part in extension.get("extension", []):
        value = next(v for k, v in part.items() if k.startswith("value"))
        out.setdefault(part["url"], []).append(value)
    return out


def _table(bundle: dict, details: bool) -> list[str]:
    lines = [f"{'score':>5}  {'miles':>5}  {'pass':>4} {'?':>3} {'fail':>4}  study  title"]
    for entry in bundle["entry"]:
        if entry["search"].get("mode") != "match":
            continue
        study, search = entry["resource"], entry["search"]
        criteria = [_parts(e) for e in search.get("extension", []) if e["url"] == CRITERION_URL]
        computable = [c for c in criteria if c.get("computable") == [True]]
        tally = {k: sum(c["fit"] == [k] for c in computable) for k in ("pass", "unknown", "fail")}
        km = next((e["valueDistance"]["value"] for e in search.get("extension", []) if e["url"] == DISTANCE_URL), None)
        miles = f"{km / KM_PER_MILE:.0f}" if km is not None else "-"
        nct = next((i["value"] for i in study.get("identifier", []) if str(i.get("value", "")).startswith("NCT")), None)
        title = (study.get("title") or "")[:70]
        lines.append(f"{search['score']:5.2f}  {miles:>5}  {tally['pass']:4d} {tally['unknown']:3d} "
                     f"{tally['fail']:4d}  {nct or study['id']}  {title}")
        for c in computable if details else [c for c in computable if c["fit"] == ["fail"]]:
            reason = (c.get("reason") or [""])[0]
            lines.append(f"{'':>26}{c['fit'][0]:>7}  {c['linkId'][0]}: {(c.get('description') or [''])[0][:60]}"
                         f"{' (' + reason + ')' if reason else ''}")
    shown = sum(e["search"].get("mode") == "match" for e in bundle["entry"])
    lines.append(f"{bundle['total']} studies found, {shown} shown")
    return lines


def run(args: argparse.Namespace) -> int:
    """Match the patient against the store at --db and print the table (or the Bundle)."""
    from fhirstudy.matching import run_match
    from fhirstudy.service import SearchService
    from fhirstudy.store import open_store

    body = _parameters(args)
    store = open_store(args.db)
    try:
        bundle = run_match(SearchService(store, store.registry, 0), body, "urn:fhirstudy", date.today())
    finally:
        store.close()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print("\n".join(_table(bundle, args.details)))
    for entry in bundle["entry"]:
        if entry["search"].get("mode") == "outcome":
            for issue in entry["resource"]["issue"]:
                print(f"warning: {issue['diagnostics']}", file=sys.stderr)
    return EXIT_OK
