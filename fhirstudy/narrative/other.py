"""Narratives of the other resources: a Location (name, address, recruitment status, contacts),
the Provenance (which source record, when, what it made), the Organization and Practitioner the
R4 conversion adds, a CodeSystem and, for any other type, a one-line summary."""
from __future__ import annotations

from .xhtml import concept_text, heading, items, labelled, para, text


def _telecom(points) -> list[str]:
    return [p["value"] for p in points or () if p.get("value")]


def _contact(c: dict) -> str | None:
    names = [n.get("text") for n in c.get("name", ()) if n.get("text")] if isinstance(c.get("name"), list) \
        else [(c.get("name") or {}).get("text")]
    who = ", ".join(n for n in names if n)
    purpose = concept_text(c.get("purpose"))
    parts = [who + (f" ({purpose})" if purpose else "") if who or purpose else None, *_telecom(c.get("telecom"))]
    line = "; ".join(p for p in parts if p)
    return text(line) if line else None


def address_line(address: dict | None) -> str | None:
    """An Address on one line: lines, city, state and postal code, country."""
    if not address:
        return None
    place = " ".join(p for p in (address.get("state"), address.get("postalCode")) if p)
    parts = [*address.get("line", ()), address.get("city"), place, address.get("country")]
    return ", ".join(p for p in parts if p) or address.get("text")


def location(loc: dict, context) -> str:
    """A site: its name, address, recruitment status and contacts."""
    status = "; ".join(t for t in (concept_text(c) for c in loc.get("characteristic", ())) if t)
    contacts = [c for c in (_contact(c) for c in loc.get("contact", ())) if c]
    return "".join((
        heading(loc.get("name") or loc["id"]),
        para(address_line(loc["address"])) if address_line(loc.get("address")) else "",
        para(status) if status else "",
        ("<p><b>Contacts</b></p>" + items(contacts)) if contacts else "",
    ))


def provenance(prov: dict, context) -> str:
    """Where the trial's resources came from and when, and how many of each type it made."""
    sources = "; ".join(((e.get("what") or {}).get("display") or "") for e in prov.get("entity", ()))
    agents = "; ".join(((a.get("who") or {}).get("display") or "") for a in prov.get("agent", ()))
    counts: dict[str, int] = {}
    for t in prov.get("target", ()):
        rtype = t.get("reference", "").split("/", 1)[0]
        if rtype:
            counts[rtype] = counts.get(rtype, 0) + 1
    made = ", ".join(f"{n} {t}" for t, n in counts.items())
    return "".join((
        heading((prov.get("activity") or {}).get("text") or "Provenance"),
        labelled("Source", sources or None),
        labelled("Source version date", prov.get("occurredDateTime")),
        labelled("Recorded", prov.get("recorded")),
        labelled("By", agents or None),
        labelled("Resources", made or None),
    ))


def organization(org: dict, context) -> str:
    """An organization: its name and contacts."""
    contacts = [c for c in (_contact(c) for c in org.get("contact", ())) if c]
    return heading(org.get("name") or org["id"]) + items(contacts)


def practitioner(person: dict, context) -> str:
    """A person: name and qualification."""
    names = [n.get("text") or " ".join([*n.get("given", ()), n.get("family", "")]).strip()
             for n in person.get("name", ())]
    return heading("; ".join(n for n in names if n) or person["id"])


def code_system(cs: dict, context) -> str:
    """A CodeSystem: its title, url and how many concepts."""
    return "".join((
        heading(cs.get("title") or cs.get("name") or cs["id"]),
        labelled("System", cs.get("url")),
        labelled("Concepts", len(cs.get("concept", ())) or cs.get("count")),
    ))


def summary(resource: dict, context) -> str:
    """Any other resource in one line: its type and its title, name or id."""
    name = resource.get("title") or resource.get("name") or resource.get("id") or ""
    if not isinstance(name, str):
        name = resource.get("id") or ""
    return para(f"{resource['resourceType']} {name}".strip())
