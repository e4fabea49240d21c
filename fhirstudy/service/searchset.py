"""The searchset Bundle of a search result, as bytes.

Stored resources are not parsed on the way out: the Bundle is an envelope serialised with orjson
with the stored bytes spliced in.  The one exception is a subset (``_summary=true|text|data``,
``_elements``), which needs the JSON.

Paging: the ``next`` link carries ``_cursor``, the sort values and primary key of the page's last
entry, so the next page starts right after it whatever was written in between; the ``previous``
link carries ``_before``, those of the page's first entry, and gives the ``_count`` entries just
before it (keyset paging; an offset would shift when a match is created or deleted before the page,
repeating or skipping one).  It needs no state on the server, so it holds across gunicorn workers
and machines sharing one PostgreSQL.  A resource whose own sort value changes between two pages may
move, as in any search that is not a stored snapshot.
"""
from __future__ import annotations

from urllib.parse import urlencode

import orjson

from fhirstudy.search.query import SearchQuery, encode_cursor
from fhirstudy.search.subset import subset
from fhirstudy.store import SearchResult


def searchset_bytes(query: SearchQuery, result: SearchResult, base: str) -> bytes:
    """The searchset Bundle: an orjson envelope with the stored resource bytes spliced in (matches
    first, then what ``_include``/``_revinclude`` added); matches subsetted when asked."""
    head = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        head["total"] = result.total
    head["link"] = links(query, result, f"{base}/{query.resource_type}")
    envelope = orjson.dumps(head)
    entries = [_entry(base, e, b"match", query) for e in result.entries]
    entries += [_entry(base, e, b"include", None) for e in result.included]
    return envelope[:-1] + b',"entry":[' + b",".join(entries) + b"]}" if entries else envelope


def _entry(base: str, stored, mode: bytes, query: SearchQuery | None) -> bytes:
    body = stored.json
    if query is not None and query.subsetted:
        body = orjson.dumps(subset(orjson.loads(body), query.summary, query.elements))
    return (b'{"fullUrl":' + orjson.dumps(f"{base}/{stored.type}/{stored.id}") + b',"resource":' + body
            + b',"search":{"mode":"' + mode + b'"}}')


def links(query: SearchQuery, result: SearchResult, url: str) -> list[dict]:
    """The ``self``, ``first``, ``previous`` and ``next`` links of a page of ``url``."""
    def page(*extra: tuple[str, object]) -> str:
        return url + "?" + urlencode([*query.echo, ("_count", query.count), *extra])

    here = []
    if query.offset and query.before is None:
        here.append(("_offset", query.offset))
    if query.cursor is not None:
        here.append(("_cursor", encode_cursor(query.cursor)))
    if query.before is not None:
        here.append(("_before", encode_cursor(query.before)))
    out = [{"relation": "self", "url": page(*here)}]
    if query.cursor is not None or query.before is not None or query.offset:
        out.append({"relation": "first", "url": page()})
    if query.count and result.prev_cursor is not None:
        out.append({"relation": "previous", "url": page(("_before", encode_cursor(result.prev_cursor)))})
    if query.count and result.next_cursor is not None:
        out.append({"relation": "next", "url": page(("_cursor", encode_cursor(result.next_cursor)))})
    return out
