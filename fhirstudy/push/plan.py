"""Reading what a store holds for a chunk of trials, and planning the transaction that brings it
to them (nothing for what it already holds; conditional creates and updates, ``ifMatch``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import RemoteRejected
from ..mappers import ids
from .client import FhirClient
from .prepare import PreparedTrial, _escape, criteria

SEARCH_BATCH = 40              # identifiers per OR search

_Key = tuple[str, str]  # (resourceType, our stable id)


def _key(r: dict) -> _Key:
    return r["resourceType"], r["id"]


_Wanted = dict[tuple[str, str], dict[str, _Key]]   # (type, parameter) -> token -> key


def read_existing(client: FhirClient, trials: list[PreparedTrial], batch_search: bool = True) -> dict[_Key, dict]:
    """What the store holds for the trials' resources, found by business identifier (by the
    ``urn:fhirstudy:resource-id`` tag for types without identifiers): one batch of searches when
    ``batch_search`` (falling back to OR searches if the store refuses it), else OR searches."""
    wanted = wanted_tokens(trials)
    if batch_search:
        try:
            return read_by_batch(client, wanted)
        except RemoteRejected:  # the store answers no searches in a batch
            pass
    return read_by_search(client, wanted)


def wanted_tokens(trials: list[PreparedTrial]) -> _Wanted:
    """The identifier (or tag) tokens to look for, by type and search parameter."""
    wanted: _Wanted = {}
    for trial in trials:
        for r in trial.resources:
            crit = criteria(r)
            if crit is not None:
                param, token = crit.split("=", 1)
                wanted.setdefault((r["resourceType"], param), {})[token] = _key(r)
    return wanted


def read_by_search(client: FhirClient, wanted: _Wanted) -> dict[_Key, dict]:
    """OR searches per type, :data:`SEARCH_BATCH` tokens each (any FHIR store answers them)."""
    found: dict[_Key, dict] = {}
    for (rtype, param), tokens in wanted.items():
        values = list(tokens)
        for i in range(0, len(values), SEARCH_BATCH):
            part = values[i:i + SEARCH_BATCH]
            for stored in client.search(rtype, {param: ",".join(part), "_count": str(len(part) * 2)}):
                held = (stored.get("identifier", []) if param == "identifier" else
                        [{"system": t.get("system"), "value": t.get("code")} for t in (stored.get("meta") or {}).get("tag", [])])
                for ident in held:
                    token = f"{_escape(ident.get('system') or '')}|{_escape(ident.get('value') or '')}"
                    if token in tokens:
                        found[tokens[token]] = stored
    return found


def read_by_batch(client: FhirClient, wanted: _Wanted) -> dict[_Key, dict]:
    """One batch of single-value searches (a store indexes ``identifier=x`` better than ``x,y,z``),
    :meth:`FhirClient.batch_search`; RemoteRejected when the store does not search in a batch."""
    order = [(rtype, param, token) for (rtype, param), tokens in wanted.items() for token in tokens]
    if not order:
        return {}
    answers = client.batch_search([(rtype, {param: token}) for rtype, param, token in order])
    return {wanted[(rtype, param)][token]: matches[0]
            for (rtype, param, token), matches in zip(order, answers, strict=True) if matches}


def _rewrite(node: Any, refs: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: (refs.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, refs))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, refs) for v in node]
    return node


def _comparable(resource: dict) -> dict:
    """A resource without what a server adds on write (meta.versionId, meta.lastUpdated)."""
    body = dict(resource)
    meta = {k: v for k, v in (body.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        body["meta"] = meta
    return body


def same_content(stored: dict, wanted: dict) -> bool:
    """Whether the store already holds ``wanted`` (server-kept meta aside)."""
    a, b = _comparable(stored), _comparable(wanted)
    src_a, src_b = (a.get("meta") or {}).get("source"), (b.get("meta") or {}).get("source")
    if src_a and src_b and src_a != src_b and src_a.startswith(src_b):  # a store that appends #request-id
        a["meta"] = {**a["meta"], "source": src_b}
    return a == b


@dataclass
class _Plan:
    trial: PreparedTrial
    entries: list[dict]
    sent: list[tuple[_Key, str]]            # (key, "created" | "updated") per entry, in order
    unchanged: list[_Key]
    server_ids: dict[str, str]


def plan_trial(trial: PreparedTrial, found: dict[_Key, dict], conditional: bool = True,
               client_ids: bool = False) -> _Plan:
    """The transaction entries that bring the store to ``trial`` (nothing for what it holds);
    ``client_ids``: new resources keep our ids (conditional update) instead of store-picked ones."""
    server_id = {k: found[k]["id"] for k in (_key(r) for r in trial.resources) if k in found}
    settled = {f"{t}/{i}": f"{t}/{server_id.get((t, i), i)}" for t, i in (_key(r) for r in trial.resources)}
    changed: list[dict] = []
    unchanged: list[_Key] = []
    for r in trial.resources:
        key = _key(r)
        if key in found and same_content(found[key], _rewrite({**r, "id": server_id[key]}, settled)):
            unchanged.append(key)
        else:
            changed.append(r)
    through_urn = {f"{r['resourceType']}/{r['id']}": ids.full_url(*_key(r)) for r in changed}
    refs = {**settled, **through_urn}
    entries, sent = [], []
    for r in changed:
        key = _key(r)
        body = _rewrite(r, refs)
        stored = found.get(key)
        crit = criteria(r)
        entry: dict = {"fullUrl": ids.full_url(*key)}
        if stored is not None:
            body["id"] = stored["id"]
            version = (stored.get("meta") or {}).get("versionId")
            url = f"{key[0]}?{crit}" if conditional and crit else f"{key[0]}/{stored['id']}"
            entry["request"] = {"method": "PUT", "url": url, **({"ifMatch": f'W/"{version}"'} if version else {})}
            sent.append((key, "updated"))
        elif conditional and crit and client_ids:  # update-as-create with our id, matched by identifier
            entry["request"] = {"method": "PUT", "url": f"{key[0]}?{crit}"}
            sent.append((key, "created"))
        elif conditional and crit:
            body.pop("id", None)
            entry["request"] = {"method": "POST", "url": key[0], "ifNoneExist": crit}
            sent.append((key, "created"))
        else:  # no conditional support: PUT by our stable id
            entry["request"] = {"method": "PUT", "url": f"{key[0]}/{key[1]}"}
            sent.append((key, "created"))
        entry["resource"] = body
        entries.append(entry)
    ids_now = {f"{t}/{i}": f"{t}/{sid}" for (t, i), sid in server_id.items()}
    return _Plan(trial, entries, sent, unchanged, ids_now)


def _location_id(location: str | None) -> str | None:
    """``Type/id`` from a response location (absolute or relative, with or without _history)."""
    if not location:
        return None
    parts = location.split("?")[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else None
