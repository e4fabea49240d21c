"""The search page: ``GET /`` (the form) and ``GET /ResearchStudy?...`` asked for as HTML (the form,
filled in from the URL, and the FHIR search's results), and ``GET /_pages/find``, the form's target.

The page's URL is the FHIR search URL. The form's fields are named after the search parameters
(``condition``, ``recruitment-status``, ``phase``, ``eligible-age``, ``eligible-sex``,
``biomarker``, ``_count``); ``/_pages/find`` drops the empty ones, turns a condition group's name
into its code (other text: ``condition:text``) and a ZIP code or city with a radius into
``site.near=lat|lng|radius|mi``, and redirects to ``/ResearchStudy?...``. Parameters the form has
no field for stay in the URL (hidden fields) and are listed above the results. With a place, each
result shows its nearest site within the radius (the page's studies' sites read by id and measured).
"""
from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import orjson
from flask import Response, redirect, render_template, request
from werkzeug.exceptions import MethodNotAllowed

from fhirstudy.errors import FhirError
from fhirstudy.pages import bp, present
from fhirstudy.pages.negotiation import wants_html
from fhirstudy.search import geo
from fhirstudy.search.places import place_position
from fhirstudy.search.values import BadValue, near_value
from fhirstudy.server.routes import base_url, get_service, get_store

PAGE_COUNT = "20"
COUNTS = ("10", "20", "50", "100")
RADII = ("10", "25", "50", "100", "250")
FIELDS = ("condition", "condition:text", "recruitment-status", "phase", "eligible-age", "eligible-sex",
          "biomarker", "site.near", "_count", "_format")
NEAR_PARAMETERS = ("site.near", "site:Location.near")
MILE_KM = 1.609344


@bp.get("/")
def home() -> Response:
    """The search form (a FHIR client's ``GET /`` stays 405: ``POST /`` takes a Bundle)."""
    if not wants_html():
        raise MethodNotAllowed(valid_methods=["POST"])
    return _page(form=_form([]), results=None)


@bp.get("/_pages/find")
def find() -> Response:
    """Turn the form's fields into the FHIR search URL and go there (303)."""
    params, form = [], request.args
    for name, value in form.items(multi=True):
        value = value.strip()
        if not value or name in ("place", "radius", "condition"):
            continue
        params.append((name, value))
    condition = form.get("condition", "").strip()
    if condition:
        code = present.condition_code(condition)
        params.insert(0, ("condition", code) if code else ("condition:text", condition))
    place = form.get("place", "").strip()
    if place:
        radius = form.get("radius", "").strip() or "50"
        try:
            latitude, longitude = place_position(place, "place")
            float(radius)
        except (FhirError, ValueError) as error:
            message = getattr(error, "diagnostics", f"{radius!r} is not a distance in miles")
            return _page(form=_form(list(form.items(multi=True))), results=None, error=message, status=400)
        params.append(("site.near", f"{latitude:.4f}|{longitude:.4f}|{radius}|mi"))
    if not any(name == "_count" for name, _ in params):
        params.append(("_count", PAGE_COUNT))
    return redirect("/ResearchStudy?" + urlencode(params), code=303)


def render_search() -> Response:
    """The search page for the ResearchStudy search in the query string."""
    args = [(k, v) for k, v in request.args.items(multi=True)]
    if not any(name == "_count" for name, _ in args):   # a page of a few, in the URL itself
        return redirect(request.path + "?" + urlencode([*args, ("_count", PAGE_COUNT)]), code=302)
    criteria = [(k, v) for k, v in args if k != "_format"]
    bundle = orjson.loads(get_service().searchset("ResearchStudy", criteria, base_url()))
    studies = [e["resource"] for e in bundle.get("entry") or [] if (e.get("search") or {}).get("mode") == "match"]
    near = _near(criteria)
    nearest = _nearest_sites(studies, near) if near else {}
    results = [{"id": s["id"], "title": s.get("title") or s["id"], "conditions": present.conditions(s),
                "phase": present.phase(s), "status": present.recruitment_status(s), "sponsor": present.sponsor(s),
                "sites": len(s.get("site") or []), "nearest": nearest.get(s["id"])} for s in studies]
    keep_format = [("_format", v) for k, v in args if k == "_format"]
    links = {link["relation"]: relative_link(link["url"], keep_format) for link in bundle.get("link") or []}
    return _page(form=_form(args), results={"total": bundle.get("total"), "studies": results, "links": links,
                                            "near": near, "json": relative_link(links.get("self", ""), [("_format", "json")])})


def _page(form: dict, results: dict | None, error: str | None = None, status: int = 200) -> Response:
    body = render_template("search.html", form=form, results=results, error=error, choices=present.choices(),
                           counts=COUNTS, radii=RADII)
    return Response(body, status=status, mimetype="text/html")


def _form(args: list[tuple[str, str]]) -> dict:
    """The form's values from the URL's parameters (or from a refused form), and the others."""
    values: dict[str, str] = {}
    others = []
    for name, value in args:
        if name == "condition" and "condition" not in values:
            values["condition"] = dict(present.choices()["condition"]).get(value, value)
        elif name == "condition:text" and "condition" not in values:
            values["condition"] = value
        elif name in NEAR_PARAMETERS or name in ("place", "radius"):
            values.update(_place_fields(name, value))
        elif name in FIELDS and name not in values:
            values[name] = value
        elif name not in FIELDS and not name.startswith("_cursor") and name not in ("_before", "_offset"):
            others.append((name, value))
    return {"values": values, "others": others}


def _place_fields(name: str, value: str) -> dict[str, str]:
    if name in ("place", "radius"):
        return {name: value}
    parts = value.split("|")
    if len(parts) >= 3 and parts[3:4] in ([], ["mi"]):
        return {"place": f"{parts[0]}, {parts[1]}", "radius": parts[2]}
    return {"place": value}


def _near(criteria: list[tuple[str, str]]) -> dict | None:
    """The point, radius and unit of the search's ``site.near``, if it has one that parses."""
    for name, value in criteria:
        if name in NEAR_PARAMETERS:
            parts = value.split("|")
            try:
                unit = parts[3] if len(parts) > 3 and parts[3] else "km"
                return {"value": value, "point": geo.position(float(parts[0]), float(parts[1])),
                        "unit": "mi" if unit in ("mi", "[mi_i]", "[mi_us]") else "km"}
            except (ValueError, IndexError, geo.PositionError):
                return None
    return None


def _nearest_sites(studies: list[dict], near: dict) -> dict[str, dict]:
    """Each study's nearest site within the search's radius: name, place and distance.  A study's
    ``site-near`` rows hold each distinct position of its sites with the site it was read from
    (``source``), so one index lookup for the page finds every study's nearest site; only those
    sites are then read.  A study whose nearest row names no site it still has (rows written
    before storage layout 7, until a reindex) has its sites' positions read by id instead.  Both
    test distances as the search does (the squared chord of the unit vectors)."""
    try:
        wanted = near_value(near["value"])
    except BadValue:
        return {}
    refs = {s["id"]: [(r.get("reference") or "").removeprefix("Location/") for r in s.get("site") or []
                      if isinstance(r, dict)] for s in studies}
    store = get_store()
    center, limit = wanted.center, geo.chord_limit(wanted.km)   # the search's own test (store/compiler.py)

    def nearest(placed: list, source=None) -> tuple[float, str | None] | None:
        found = None
        for p, site in placed:
            chord = (p.x - center.x) ** 2 + (p.y - center.y) ** 2 + (p.z - center.z) ** 2
            if chord <= limit and (found is None or chord < found[0]):
                found = (chord, site if source is None else source)
        return found

    best: dict[str, tuple[float, str]] = {}
    unnamed = []
    for sid, placed in store.positions("ResearchStudy", list(refs), "site-near").items():
        found = nearest(placed)
        if found is not None and found[1] in refs[sid]:
            best[sid] = found
        elif found is not None:
            unnamed.append(sid)
    if unnamed:
        ids = sorted({rid for sid in unnamed for rid in refs[sid] if rid})
        places = store.positions("Location", ids)
        for sid in unnamed:
            found = [nearest(places[rid], rid) for rid in refs[sid] if rid in places]
            found = [f for f in found if f is not None]
            if found:
                best[sid] = min(found, key=lambda f: f[0])
    sites = {rid: orjson.loads(stored.json)
             for rid, stored in store.read_many("Location", sorted({rid for _, rid in best.values()})).items()}
    out = {}
    for sid, (chord, rid) in best.items():
        site = sites.get(rid)
        if site is None:  # deleted between the two reads
            continue
        km = geo.chord_km(chord)
        distance = km / MILE_KM if near["unit"] == "mi" else km
        out[sid] = {"name": site.get("name") or "", "place": present.place(site),
                    "distance": f"{distance:.1f} {near['unit']}", "id": site["id"]}
    return out


def relative_link(url: str, extra: list[tuple[str, str]]) -> str:
    """A link of the searchset as a path and query on this server (``extra`` parameters added)."""
    if not url:
        return ""
    parts = urlsplit(url)
    query = parts.query + ("&" + urlencode(extra) if extra else "")
    return parts.path + ("?" + query if query else "")
