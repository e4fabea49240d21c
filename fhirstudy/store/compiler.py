"""Search criteria to SQL conditions over ``resource`` and the index tables.

Each clause of a :class:`~fhirstudy.search.query.SearchQuery` becomes a condition on a
resource's primary key: ``pk IN (index rows of the parameter with one of the values)``, ``NOT
IN`` for ``:not`` and ``:missing=true``; ``_id`` and ``_lastUpdated`` are answered from
``resource.id`` and ``resource.last_updated`` themselves, a composite by items whose components
all match (same ``grp``).  Without ``_sort``, a query with a clause that selects index rows is
answered from the index tables alone (:func:`index_matches`): deleted resources have no index
rows and a ``pid`` belongs to one resource type, so ``resource`` need not be read.  Values are
compared as they were indexed: cut to the column's length, texts through their terms
(:mod:`~fhirstudy.store.terms`: "starts with" is a byte-wise range scan of ``idx_term``), dates
as ranges (FHIR R5 3.2.1.5.6).
"""
from __future__ import annotations

import sqlalchemy as sa

from fhirstudy.search.geo import bounding_box, cells, chord_limit
from fhirstudy.search.index import STRING_INDEX_LENGTH
from fhirstudy.search.query import (Clause, CompositeValue, NearValue, RangeValue, ReferenceValue, SearchQuery,
                                    StringValue, TokenValue, UriValue)
from fhirstudy.store import terms
from fhirstudy.store.guards import check_integer, check_values
from fhirstudy.store.schema import INDEX_TABLES, RESOURCE_COLUMNS, TERM_COLUMNS, exact_hash, param_id, resource


def check_query(query: SearchQuery) -> None:
    """No NUL and no integer past 64 bits in what ``query`` would send to the database."""
    check_integer(query.count, "_count")
    check_integer(query.offset, "_offset")
    for clause in query.clauses:
        check_values(clause.values + clause.chain, clause.param.code)
    for name, position in (("_cursor", query.cursor), ("_before", query.before)):
        if position is not None:
            check_values(position, name)


def search_conditions(query: SearchQuery) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions on ``resource`` of the live resources that meet every clause."""
    clauses = [_clause_condition(query.resource_type, clause) for clause in query.clauses]
    where = [*clauses, resource.c.deleted.is_(False)]
    if not any(_narrows(clause) for clause in query.clauses):
        # index rows already carry the type; matching on it here too would make SQLite scan
        # every resource of the type instead of looking up the matches by primary key
        where.append(resource.c.type == query.resource_type)
    return where


def _clause_condition(rtype: str, clause: Clause, pk: sa.ColumnElement = resource.c.pk) -> sa.ColumnElement[bool]:
    """Whether the resource whose primary key is ``pk`` meets ``clause``."""
    if clause.reverse:
        return pk.in_(_pointed_at(rtype, clause))
    if clause.chain:
        return pk.in_(_matching_rows(rtype, clause))
    if clause.param.type == "composite":
        return sa.or_(*(_composite_condition(rtype, clause, value, pk) for value in clause.values))
    own = RESOURCE_COLUMNS.get(clause.param.expression.text)
    if own is not None:
        if pk is resource.c.pk:
            return _own_condition(clause, own)
        other = resource.alias()  # never correlated with a ``resource`` of an enclosing query
        return pk.in_(sa.select(other.c.pk).where(other.c.type == rtype, _own_condition(clause, other.c[own.name])))
    if clause.modifier == "missing":
        rows = _matching_rows(rtype, clause, any_value=True)
        return pk.not_in(rows) if clause.missing else pk.in_(rows)
    matches = _matching_rows(rtype, clause)
    if clause.modifier == "not":
        return pk.not_in(matches)
    if clause.param.absent_admits:  # no value at all admits every value
        return sa.or_(pk.in_(matches), pk.not_in(_matching_rows(rtype, clause, any_value=True)))
    return pk.in_(matches)


def _matching_rows(rtype: str, clause: Clause, any_value: bool = False) -> sa.Select:
    """``resource_pk`` of the index rows of ``clause``'s parameter with one of its values (any
    value with ``any_value``); not for composites or ``_id``.  For a chained clause, the rows of
    the reference parameter pointing at a live resource that meets one of its chained clauses."""
    if clause.chain and not clause.reverse:
        return _chained_rows(rtype, clause)
    table = INDEX_TABLES[clause.param.type]
    if clause.modifier == "below":  # the parameter's rows and those of the broader codes (registry ``below``)
        pids = [param_id(rtype, code) for code in (clause.param.code, *clause.param.below)]
        parameter = table.c.pid.in_(pids)
    else:
        parameter = param_rows(table, rtype, clause.param)
    rows = sa.select(table.c.resource_pk)
    if any_value:
        return rows.where(parameter)
    values = [_value_condition(table, clause.modifier, v) for v in clause.values]
    if len(values) == 1:
        return rows.where(parameter, values[0])
    # the parameter in every alternative, so that each one is an index range of its own (SQLite
    # otherwise reads every row of the parameter for "condition:text=a,b")
    return rows.where(sa.or_(*(sa.and_(parameter, v) for v in values)))


def param_rows(table: sa.Table, rtype: str, param) -> sa.ColumnElement[bool]:
    """The rows of ``param`` in its index table: those of its ``pid``, or for a part of another
    string parameter (``address-city``) that parameter's rows of the part."""
    if param.part_of is not None:
        whole, part = param.part_of
        return sa.and_(table.c.pid == param_id(rtype, whole), table.c.part == part)
    return table.c.pid == param_id(rtype, param.code)


def _chained_rows(rtype: str, clause: Clause) -> sa.Select:
    """``resource_pk`` of the rows of ``clause.param`` (a reference) whose target, by type and id,
    is a live resource meeting the chained clause of its type (``site.address-city=Boston``)."""
    ref = INDEX_TABLES["reference"]
    targets = []
    for inner in clause.chain:
        ttype = inner.param.resource_type
        target = resource.alias()
        # index rows carry their type (``pid``): matching on ``type`` too would make SQLite scan
        # every resource of the type (every Location) instead of looking the matches up by key
        typed = [] if _narrows(inner) else [target.c.type == ttype]
        ids = sa.select(target.c.id).where(*typed, target.c.deleted.is_(False),
                                           _clause_condition(ttype, inner, target.c.pk))
        targets.append(sa.and_(terms.equals(ref.c.target_type, ttype), terms.one_of(ref.c.target_id, ids)))
    return sa.select(ref.c.resource_pk).where(ref.c.pid == param_id(rtype, clause.param.code), sa.or_(*targets))


def _pointed_at(rtype: str, clause: Clause) -> sa.Select:
    """Primary keys of the resources of ``rtype`` that a resource meeting ``clause.chain[0]``
    points at with ``clause.param`` (``_has``); index rows belong to live resources only."""
    ref = INDEX_TABLES["reference"]
    source_type, (inner,) = clause.param.resource_type, clause.chain
    ids = (sa.select(terms.term.c.text).select_from(ref.join(terms.term, terms.term.c.tid == ref.c.target_id))
           .where(ref.c.pid == param_id(source_type, clause.param.code), terms.equals(ref.c.target_type, rtype),
                  _clause_condition(source_type, inner, ref.c.resource_pk)))
    target = resource.alias()
    return sa.select(target.c.pk).where(target.c.type == rtype, target.c.id.in_(ids))


def index_matches(query: SearchQuery) -> sa.Subquery | None:
    """The primary keys of the matches read from the index tables alone (one row each, as
    ``pk``), or None when no clause selects from an index table.

    Deleted resources have no index rows, and a parameter's rows belong to one resource type
    (``pid``), so the ``resource`` table is not read: at 100,000 studies a common condition
    matches thousands, and looking each up in ``resource`` costs milliseconds.
    """
    first = next((c for c in query.clauses if _narrows(c) and c.param.type != "composite"), None)
    if first is None:
        return None
    rows = _matching_rows(query.resource_type, first, any_value=first.modifier == "missing").subquery("base")
    pk = rows.c.resource_pk
    others = [_clause_condition(query.resource_type, c, pk) for c in query.clauses if c is not first]
    return sa.select(pk.label("pk")).where(*others).distinct().subquery("matches")


def _own_condition(clause: Clause, column: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """A parameter answered from a column of ``resource`` (or an alias's): ``_id`` from ``id``,
    ``_lastUpdated`` from ``last_updated`` (every resource has both: ``:missing=true`` matches
    none), ``_source`` from ``source`` (a term id, None without one)."""
    if column.name == "source":
        if clause.modifier == "missing":
            return column.is_(None) if clause.missing else column.is_not(None)
        return sa.or_(*(terms.equals(column, _cut(v.uri, "uri", "uri")) for v in clause.values))
    if clause.modifier == "missing":
        return sa.false() if clause.missing else sa.true()
    if column.name == "last_updated":  # one instant: a date range whose low and high are it
        return sa.or_(*(_date_condition(column, column, v) for v in clause.values))
    match = sa.or_(*(_id_condition(column, v) for v in clause.values))
    return sa.not_(match) if clause.modifier == "not" else match


def _id_condition(column: sa.ColumnElement, value: TokenValue) -> sa.ColumnElement[bool]:
    """``resource.id`` as a token: a code without system or text (``|x`` matches, ``s|x`` and
    ``:text`` do not)."""
    if value.text is not None or value.system is not None or value.code is None:
        return sa.false()
    return column == value.code


def _composite_condition(rtype: str, clause: Clause, value: CompositeValue,
                         pk: sa.ColumnElement = resource.c.pk) -> sa.ColumnElement[bool]:
    """Resources with one item of the composite whose components all match (same ``grp``)."""
    table = INDEX_TABLES["composite"]
    aliases = [table.alias(f"comp_{n}") for n in range(len(value.parts))]
    first = aliases[0]
    statement = sa.select(first.c.resource_pk)
    conditions = []
    for number, (alias, component, part) in enumerate(zip(aliases, clause.param.components, value.parts)):
        conditions += [alias.c.pid == param_id(rtype, clause.param.code), alias.c.comp == number,
                       _component_condition(alias.c, component.type, part)]
        if number:
            conditions += [alias.c.resource_pk == first.c.resource_pk, alias.c.grp == first.c.grp]
    return pk.in_(statement.select_from(*aliases).where(*conditions))


def _component_condition(c, kind: str, value) -> sa.ColumnElement[bool]:
    if kind == "token":
        return _token_condition(c, value)
    if kind == "date":
        return _date_condition(c.low, c.high, value)
    if kind == "number":
        return sa.or_(_number_condition(c.num, value), _admits(c.num, c.num_low, c.num_high, value))
    if kind == "string":
        return terms.starts_with(c.text, value.normalized)
    if kind == "uri":
        return terms.equals(c.code, value.uri)
    return terms.equals(c.code, value.url or f"{value.target_type}/{value.target_id}")  # reference


def _token_condition(c, value: TokenValue) -> sa.ColumnElement[bool]:
    """A token value against the term columns ``c.system``, ``c.code`` and ``c.text`` (of
    ``idx_token`` or ``idx_composite``)."""
    if value.text is not None:
        return terms.starts_with(c.text, value.text)
    parts = []
    if value.code is not None:
        parts.append(terms.equals(c.code, _cut(value.code, "token", "code")))
    if value.system is not None:
        parts.append(terms.equals(c.system, _cut(value.system, "token", "system")))
    elif value.no_system:
        parts.append(c.system.is_(None))
    return sa.and_(*parts) if parts else sa.false()


def _narrows(clause: Clause) -> bool:
    """Whether ``clause`` selects from index rows of its type (not :not / :missing=true, not ``_id``)."""
    if clause.reverse:
        return False
    if clause.chain:
        return True
    if clause.param.expression.text in RESOURCE_COLUMNS:
        return False
    if clause.param.absent_admits and clause.modifier != "missing":
        return False
    return clause.modifier != "not" and not (clause.modifier == "missing" and clause.missing)


def _value_condition(table: sa.Table, modifier: str | None, value) -> sa.ColumnElement[bool]:
    c = table.c
    if isinstance(value, TokenValue):
        return _token_condition(c, value)
    if isinstance(value, StringValue):
        head = value.normalized[:STRING_INDEX_LENGTH]  # what ``value`` holds of a text it matches
        if modifier == "exact":  # the same text has the same normalised value, then the same hash
            return sa.and_(terms.equals(c.value, head), c.exact == exact_hash(value.exact))
        if modifier == "contains":  # ``value`` is the start of ``full`` when there is one
            pattern = "%" + _escape_like(value.normalized) + "%"
            return sa.or_(c.full.like(pattern, escape="\\"), terms.like(c.value, pattern))
        if len(value.normalized) > STRING_INDEX_LENGTH:  # longer than ``value`` keeps: only ``full`` can match
            return sa.and_(terms.equals(c.value, head), c.full.like(_escape_like(value.normalized) + "%", escape="\\"))
        return terms.starts_with(c.value, value.normalized)
    if isinstance(value, ReferenceValue):
        by_id = sa.and_(terms.equals(c.target_id, _cut(value.target_id, "reference", "target_id")),
                        *([terms.equals(c.target_type, _cut(value.target_type, "reference", "target_type"))]
                          if value.target_type else []))
        # a row keeps ``url`` only when it says more than its target (never for a relative
        # ``Type/id``, which a search value names by type and id, never by url)
        url = _cut(value.url, "reference", "url")
        if value.url and value.target_id:
            return sa.or_(terms.equals(c.url, url), by_id)
        return terms.equals(c.url, url) if value.url else by_id
    if isinstance(value, RangeValue) and table is INDEX_TABLES["date"]:
        return _date_condition(c.low, c.high, value)
    if isinstance(value, RangeValue):
        return sa.or_(_number_condition(c.value, value), _admits(c.value, c.low, c.high, value))
    if isinstance(value, UriValue):
        return terms.equals(c.uri, _cut(value.uri, "uri", "uri"))
    if isinstance(value, NearValue):
        return _near_condition(c, value)
    raise TypeError(f"no SQL for {value!r}")  # pragma: no cover - query.py only builds the above


def _near_condition(c, v: NearValue) -> sa.ColumnElement[bool]:
    """Positions within ``v.km`` of ``v.center`` along the great circle: in the grid cells the
    bounding box covers (the index's lookups; a box of too many cells is read by its latitude
    band), inside the box, then the exact test on the unit vectors (:mod:`fhirstudy.search.geo`)."""
    box = bounding_box(v.center, v.km)
    (south, north), ranges = box
    covered = cells(box)
    where = [] if covered is None else [c.cell.in_(covered)]
    where.append(c.latitude.between(south, north))
    if ranges != [(-180.0, 180.0)]:
        where.append(sa.or_(*(c.longitude.between(west, east) for west, east in ranges)))
    p = v.center
    chord = (c.x - p.x) * (c.x - p.x) + (c.y - p.y) * (c.y - p.y) + (c.z - p.z) * (c.z - p.z)
    return sa.and_(*where, chord <= chord_limit(v.km))


def _cut(text: str | None, kind: str, name: str) -> str | None:
    """``text`` cut to the length of the term column ``name`` of index table ``kind``, as index
    values are when written (so a long value still finds itself)."""
    length = TERM_COLUMNS[kind][name]
    return text if text is None or len(text) <= length else text[:length]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _date_condition(low, high, v: RangeValue) -> sa.ColumnElement[bool]:
    """Resource range [low, high] against search range [v.low, v.high] (FHIR R5 3.2.1.5.6)."""
    return {
        "eq": lambda: sa.and_(low >= v.low, high <= v.high),
        "ne": lambda: sa.or_(low < v.low, high > v.high),
        "gt": lambda: high > v.high,
        "lt": lambda: low < v.low,
        "ge": lambda: high >= v.low,
        "le": lambda: low <= v.high,
        "sa": lambda: low > v.high,
        "eb": lambda: high < v.low,
        "ap": lambda: sa.and_(low <= v.high, high >= v.low),
    }[v.prefix]()


def _admits(value, low, high, v: RangeValue) -> sa.ColumnElement[bool]:
    """A row of admitted numbers (``value`` None, ``low``..``high``, None unbounded) against the
    search number: ``eq`` when it is admitted, ``gt``/``ge`` when some number above it (or it)
    is, ``lt``/``le`` likewise below, ``sa``/``eb`` when all admitted lie above/below it."""
    contains = sa.and_(sa.or_(low.is_(None), low <= v.value), sa.or_(high.is_(None), high >= v.value))
    margin = abs(v.value) * 0.1
    test = {
        "eq": lambda: contains,
        "ne": lambda: sa.not_(contains),
        "gt": lambda: sa.or_(high.is_(None), high > v.value),
        "ge": lambda: sa.or_(high.is_(None), high >= v.value),
        "lt": lambda: sa.or_(low.is_(None), low < v.value),
        "le": lambda: sa.or_(low.is_(None), low <= v.value),
        "sa": lambda: sa.and_(low.is_not(None), low > v.value),
        "eb": lambda: sa.and_(high.is_not(None), high < v.value),
        "ap": lambda: sa.and_(sa.or_(low.is_(None), low <= v.value + margin),
                              sa.or_(high.is_(None), high >= v.value - margin)),
    }[v.prefix]()
    return sa.and_(value.is_(None), sa.or_(low.is_not(None), high.is_not(None)), test)


def _number_condition(column, v: RangeValue) -> sa.ColumnElement[bool]:
    """A number against the search value (eq/ne use the implicit precision range)."""
    margin = abs(v.value) * 0.1
    return {
        "eq": lambda: sa.and_(column >= v.low, column < v.high),
        "ne": lambda: sa.or_(column < v.low, column >= v.high),
        "gt": lambda: column > v.value,
        "lt": lambda: column < v.value,
        "ge": lambda: column >= v.value,
        "le": lambda: column <= v.value,
        "sa": lambda: column > v.value,
        "eb": lambda: column < v.value,
        "ap": lambda: sa.and_(column >= v.value - margin, column <= v.value + margin),
    }[v.prefix]()
