"""``_include`` and ``_revinclude``: the resources a page of matches brings with it.

Forward includes follow the reference index rows of the page's resources to their targets;
reverse includes find the resources whose reference rows point at the page's.  ``:iterate``
ones are applied again to what was added, up to :data:`ITERATE_ROUNDS` more times; each
resource comes once, none of the matches, at most :data:`MAX_INCLUDED` per page.
"""
from __future__ import annotations

import sqlalchemy as sa

from fhirstudy.search.query import Include, SearchQuery
from fhirstudy.store.content import Codec
from fhirstudy.store.engine import chunks
from fhirstudy.store.reads import load
from fhirstudy.store.repository import StoredResource
from fhirstudy.store import terms
from fhirstudy.store.schema import INDEX_TABLES, param_id, resource, term

ITERATE_ROUNDS = 3  # rounds of _include:iterate / _revinclude:iterate after the first
MAX_INCLUDED = 1000  # included resources per page at most


def included(conn: sa.Connection, codec: Codec, query: SearchQuery,
             matches: list[StoredResource]) -> list[StoredResource]:
    """The resources ``query.includes`` add to the page ``matches`` (each once, none of the
    matches); ``:iterate`` ones are applied again to what was added, up to ITERATE_ROUNDS times."""
    seen = {(e.type, e.id) for e in matches}
    added: list[StoredResource] = []
    sources = matches
    for round_number in range(1 + ITERATE_ROUNDS):
        includes = [i for i in query.includes if round_number == 0 or i.iterate]
        found: list[int] = []
        for include in includes:
            found.extend(_include_pks(conn, include, sources))
        fresh = [r for r in load(conn, codec, list(dict.fromkeys(found))) if (r.type, r.id) not in seen]
        fresh = fresh[:MAX_INCLUDED - len(added)]
        if not fresh:
            break
        seen.update((r.type, r.id) for r in fresh)
        added.extend(fresh)
        sources = fresh
        if not any(i.iterate for i in query.includes) or len(added) >= MAX_INCLUDED:
            break
    return added


def _include_pks(conn: sa.Connection, include: Include, sources: list[StoredResource]) -> list[int]:
    ref = INDEX_TABLES["reference"]
    param = include.param
    if not include.reverse:
        source_ids = [s.id for s in sources if s.type == param.resource_type]
        if not source_ids:
            return []
        source_pks = sa.select(resource.c.pk).where(resource.c.type == param.resource_type,
                                                      resource.c.id.in_(source_ids))
        target_type, target_id = term.alias("target_type"), term.alias("target_id")
        targets = (sa.select(target_type.c.text, target_id.c.text)
                   .select_from(ref.join(target_type, target_type.c.tid == ref.c.target_type)
                                .join(target_id, target_id.c.tid == ref.c.target_id))
                   .where(ref.c.resource_pk.in_(source_pks), ref.c.pid == param_id(param.resource_type, param.code)))
        if include.target_type:
            targets = targets.where(terms.equals(ref.c.target_type, include.target_type))
        by_type: dict[str, list[str]] = {}
        for target_type, target_id in conn.execute(targets):
            by_type.setdefault(target_type, []).append(target_id)
        pks: list[int] = []
        for target_type, ids in sorted(by_type.items()):
            for chunk in chunks(sorted(set(ids))):
                pks.extend(conn.execute(sa.select(resource.c.pk).where(
                    resource.c.type == target_type, resource.c.id.in_(chunk),
                    resource.c.deleted.is_(False)).order_by(resource.c.id)).scalars())
        return pks
    pks = []
    by_type = {}
    for s in sources:
        if include.target_type in (None, s.type) and (not param.target or s.type in param.target):
            by_type.setdefault(s.type, []).append(s.id)
    for target_type, ids in sorted(by_type.items()):
        pks.extend(conn.execute(
            sa.select(ref.c.resource_pk).distinct()
            .where(ref.c.pid == param_id(param.resource_type, param.code),
                   terms.equals(ref.c.target_type, target_type), terms.one_of(ref.c.target_id, ids))
            .order_by(ref.c.resource_pk)).scalars())
    return pks
