"""Near a place: ``Location?near=``, chained search from studies to their sites, ``_has``, and ZIP
codes to positions; on a SQLite file and a real PostgreSQL server."""
from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _server_fixtures import fixed_clock, pg_server, pg_url  # noqa: F401
from fhirstudy.errors import InvalidRequest, UnknownPlace
from fhirstudy.search import index_rows, load_registry, parse_search
from fhirstudy.search.geo import (DEFAULT_NEAR_KM, EARTH_RADIUS_KM, MAX_CELLS, bounding_box, cell, cells,
                                  great_circle_km, position, to_km)
from fhirstudy.search.places import zip_position
from fhirstudy.search.query import NearValue
from fhirstudy.server import STORE_EXTENSION, close_store, create_app
from fhirstudy.store import open_store

# name: (latitude, longitude, city, country)
PLACES = {
    "mgh": (42.3626, -71.0695, "Boston", "US"),           # Massachusetts General Hospital
    "dfci": (42.3375, -71.1081, "Boston", "US"),          # Dana-Farber, 3.3 km from MGH
    "msk": (40.7644, -73.9565, "New York", "US"),         # 298.76 km from MGH
    "mayo": (44.0225, -92.4668, "Rochester", "US"),
    "paris": (48.8738, 2.3688, "Paris", "FR"),
    "suva": (-18.1416, 178.4419, "Suva", "FJ"),          # across the antimeridian from Apia
    "apia": (-13.8333, -171.7667, "Apia", "WS"),
    "alert": (82.5018, -62.3481, "Alert", "CA"),          # near the north pole
    "svalbard": (78.2232, 15.6267, "Longyearbyen", "NO"),
    "equator-0": (0.0, 0.0, None, None),
    "equator-1": (0.0, 1.0, None, None),                  # one degree of arc from equator-0
    "equator-corner": (0.8, 0.8, None, None),             # 125.8 km from equator-0: a corner of its box
}


def _location(name: str) -> dict:
    lat, lon, city, country = PLACES[name]
    address = {k: v for k, v in (("city", city), ("country", country)) if v}
    return {"resourceType": "Location", "id": name, "status": "active", "name": name,
            "position": {"latitude": lat, "longitude": lon}, **({"address": address} if address else {})}


def _resources() -> list[dict]:
    locations = [_location(name) for name in PLACES]
    locations.append({"resourceType": "Location", "id": "nowhere", "name": "No position",
                      "address": {"city": "Boston", "country": "US"}})
    organization = {"resourceType": "Organization", "id": "org-paris", "name": "AP-HP",
                    "contact": [{"address": {"city": "Paris", "country": "FR"}}]}
    studies = [
        {"resourceType": "ResearchStudy", "id": "rs-boston", "status": "active",
         "site": [{"reference": "Location/mgh"}, {"reference": "Location/dfci"}]},
        {"resourceType": "ResearchStudy", "id": "rs-east", "status": "completed",
         "site": [{"reference": "Location/msk"}, {"reference": "Location/mayo"}]},
        {"resourceType": "ResearchStudy", "id": "rs-paris", "status": "active",
         "site": [{"reference": "Organization/org-paris"}]},
        {"resourceType": "ResearchStudy", "id": "rs-pacific", "status": "active",
         "site": [{"reference": "Location/apia"}, {"reference": "Location/nowhere"}]},
        {"resourceType": "ResearchStudy", "id": "rs-none", "status": "active"},
    ]
    return locations + [organization] + studies


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'near.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = open_store(url, clock=fixed_clock)
    opened.put_many(_resources())
    yield opened
    opened.close()


def _ids(store, rtype: str, *pairs: tuple[str, str]) -> list[str]:
    result = store.search(parse_search(rtype, list(pairs) + [("_count", "100")], load_registry()))
    assert result.total == len(result.entries)
    return sorted(e.id for e in result.entries)


def _brute_force(lat: float, lon: float, km: float) -> list[str]:
    center = position(lat, lon)
    return sorted(name for name, (la, lo, *_) in PLACES.items() if great_circle_km(center, position(la, lo)) <= km)


# --- the geometry ---------------------------------------------------------------------------------

def test_great_circle_distances():
    mgh, msk = position(*PLACES["mgh"][:2]), position(*PLACES["msk"][:2])
    assert great_circle_km(mgh, msk) == pytest.approx(298.76, abs=0.01)
    one_degree = great_circle_km(position(0, 0), position(0, 1))
    assert one_degree == pytest.approx(EARTH_RADIUS_KM * math.pi / 180, rel=1e-12)
    assert great_circle_km(position(0, 0), position(0, 180)) == pytest.approx(EARTH_RADIUS_KM * math.pi)


@pytest.mark.parametrize("distance,unit,km", [
    (10, None, 10.0), (10, "", 10.0), (10, "km", 10.0), (1500, "m", 1.5),
    (10, "mi", 16.09344), (10, "[mi_i]", 16.09344), (10, "[mi_us]", 16.093472186944),
])
def test_distance_units(distance, unit, km):
    assert to_km(distance, unit) == pytest.approx(km, rel=1e-12)


def test_bounding_box_across_the_antimeridian_and_round_a_pole():
    (south, north), ranges = bounding_box(position(-16, 179.5), 200)
    assert south < -16 < north
    assert len(ranges) == 2 and ranges[0][1] == 180.0 and ranges[1][0] == -180.0
    assert bounding_box(position(89, 0), 500)[1] == [(-180.0, 180.0)]
    assert bounding_box(position(0, 0), 30000) == ((-90.0, 90.0), [(-180.0, 180.0)])



@settings(max_examples=300, deadline=None)
@given(lat=st.floats(-90, 90), lng=st.floats(-180, 180), km=st.floats(0, 3000),
       bearing=st.floats(0, 360), share=st.floats(0, 1))
def test_every_position_within_the_distance_lies_in_a_cell_of_the_box(lat, lng, km, bearing, share):
    """The index looks positions up by one-degree cell: a point within ``km`` of the centre (any
    bearing, up to the distance, across the antimeridian, round a pole, on cell edges) has a cell
    ``cells`` lists; a box of too many cells gives None (read by its latitude band)."""
    center = position(lat, lng)
    angle, theta, phi = share * km / EARTH_RADIUS_KM, math.radians(bearing), math.radians(lat)
    to_lat = math.asin(math.sin(phi) * math.cos(angle) + math.cos(phi) * math.sin(angle) * math.cos(theta))
    to_lng = math.radians(lng) + math.atan2(math.sin(theta) * math.sin(angle) * math.cos(phi),
                                            math.cos(angle) - math.sin(phi) * math.sin(to_lat))
    point = position(max(-90.0, min(90.0, math.degrees(to_lat))), (math.degrees(to_lng) + 540) % 360 - 180)
    assume(great_circle_km(center, point) <= km)
    covered = cells(bounding_box(center, km))
    if covered is None:
        return
    assert len(covered) <= MAX_CELLS
    assert cell(point.latitude, point.longitude) in covered, (point, covered[:5])


@pytest.mark.parametrize("lat, lng", [(0.0, 0.0), (-90.0, -180.0), (90.0, 180.0), (-0.0, 179.99999999), (41.0, -71.0)])
def test_cells_on_the_grid_edges(lat, lng):
    """The edges: a cell per whole degree, both longitudes ±180 and both poles in range."""
    assert cell(lat, lng) == math.floor(lat + 90) * 361 + math.floor(lng + 180)
    assert cell(lat, lng) in cells(bounding_box(position(lat, lng), 0.001))

# --- parsing ----------------------------------------------------------------------------------

def _near(raw: str) -> NearValue:
    return parse_search("Location", [("near", raw)], load_registry()).clauses[0].values[0]


def test_near_values_parse_with_defaults():
    value = _near("42.3626|-71.0695|10|mi")
    assert (value.center.latitude, value.center.longitude) == (42.3626, -71.0695)
    assert value.km == pytest.approx(16.09344)
    assert _near("42.3626|-71.0695|10").km == 10.0  # no units: km
    assert _near("42.3626|-71.0695").km == DEFAULT_NEAR_KM  # no distance: the server's choice
    assert _near("42.3626|-71.0695||km").km == DEFAULT_NEAR_KM


BAD_NEAR = [
    ("42.36", "near takes latitude|longitude|distance|units"),
    ("42.36|-71.06|10|km|x", "near takes latitude|longitude|distance|units"),
    ("north|-71.06|10|km", "the latitude is not a number: 'north'"),
    ("42.36||10|km", "the longitude is not a number: ''"),
    ("91|-71.06|10|km", "the latitude must lie between -90 and 90 degrees, not 91.0"),
    ("42.36|-181|10|km", "the longitude must lie between -180 and 180 degrees, not -181.0"),
    ("42.36|-71.06|-5|km", "the distance must be a number of at least 0, not -5.0"),
    ("42.36|-71.06|ten|km", "the distance is not a number: 'ten'"),
    ("42.36|-71.06|10|furlong", "the unit must be one of km, m, mi, [mi_i], [mi_us], not 'furlong'"),
    ("42.36|-71.06||furlong", "the unit must be one of"),
    ("1e999|0|10|km", "the latitude must be a number, not inf"),
]


@pytest.mark.parametrize("raw,message", BAD_NEAR)
def test_bad_near_values_say_what_is_wrong(raw, message):
    with pytest.raises(InvalidRequest) as caught:
        parse_search("Location", [("near", raw)], load_registry())
    assert message in str(caught.value)
    assert caught.value.expression == "near"


def test_position_rows_skip_what_is_not_a_position():
    near = load_registry().get("Location", "near")
    rows = index_rows(_location("mgh"), [near])["special"]
    assert [(r["latitude"], r["longitude"]) for r in rows] == [(42.3626, -71.0695)]
    assert rows[0]["x"] ** 2 + rows[0]["y"] ** 2 + rows[0]["z"] ** 2 == pytest.approx(1.0)
    for bad in ({"latitude": 95, "longitude": 0}, {"latitude": 10}, {"latitude": "10", "longitude": 5}):
        assert index_rows({"resourceType": "Location", "id": "x", "position": bad}, [near])["special"] == []


BAD_CHAINS = [
    ("site.nope", "Organization or ResearchStudy or Location has no search parameter 'nope'"),
    ("site:Group.name", "site does not point at a 'Group'"),
    ("site.name.family", "chains go one level deep"),
    ("status.name", "'status' is not a reference search parameter of ResearchStudy"),
    ("site.address-city:nope", "has no search parameter 'address-city:nope'"),
]


@pytest.mark.parametrize("name,message", BAD_CHAINS)
def test_bad_chains_say_what_is_wrong(name, message):
    with pytest.raises(InvalidRequest) as caught:
        parse_search("ResearchStudy", [(name, "x")], load_registry())
    assert message in str(caught.value) and caught.value.expression == name
    assert parse_search("ResearchStudy", [(name, "x")], load_registry(), lenient=True).ignored == [name]


def test_a_chain_names_each_type_that_serves_the_parameter():
    clause = parse_search("ResearchStudy", [("site.address-city", "Boston")], load_registry()).clauses[0]
    assert clause.param.code == "site" and clause.modifier is None
    assert sorted(c.param.resource_type for c in clause.chain) == ["Location", "Organization"]
    typed = parse_search("ResearchStudy", [("site:Location.address-city", "Boston")], load_registry()).clauses[0]
    assert [c.param.resource_type for c in typed.chain] == ["Location"] and typed.modifier == "Location"
    missing = parse_search("ResearchStudy", [("site.near:missing", "true")], load_registry()).clauses[0]
    assert [c.param.resource_type for c in missing.chain] == ["Location"]  # only Location has near
    for name in ("site.near", "site:Location.near"):  # answered from the study's own rows (site-near)
        near = parse_search("ResearchStudy", [(name, "42|-71|5|km")], load_registry()).clauses[0]
        assert (near.param.code, near.chain) == ("site-near", ())


# --- near on the databases ----------------------------------------------------------------------

NEAR_CASES = [
    # lat, lon, distance, unit, the places expected
    (42.3626, -71.0695, 1, "km", ["mgh"]),
    (42.3626, -71.0695, 5, "km", ["dfci", "mgh"]),
    (42.3626, -71.0695, 310, "km", ["dfci", "mgh", "msk"]),
    (42.3626, -71.0695, 180, "mi", ["dfci", "mgh"]),
    (42.3626, -71.0695, 190, "[mi_i]", ["dfci", "mgh", "msk"]),
    (-18.1416, 178.4419, 1200, "km", ["apia", "suva"]),     # across the antimeridian
    (-13.8333, -171.7667, 1200, "km", ["apia", "suva"]),
    (85.0, 0.0, 900, "km", ["alert", "svalbard"]),           # round the pole
    (88.0, 150.0, 1100, "km", ["alert"]),                    # across the pole from Alert
    (88.0, 150.0, 1500, "km", ["alert", "svalbard"]),
    (0.0, 0.0, 111.19, "km", ["equator-0"]),                 # one degree is 111.195 km
    (0.0, 0.0, 111.20, "km", ["equator-0", "equator-1"]),  # not the corner: inside the box, outside the circle
    (0.0, 0.0, 125.9, "km", ["equator-0", "equator-1", "equator-corner"]),
    (0.0, 0.0, 0, "km", ["equator-0"]),
    (0.0, 0.5, 30000, "km", sorted(PLACES)),
]


@pytest.mark.parametrize("lat,lon,distance,unit,expected", NEAR_CASES)
def test_near_finds_exactly_the_places_within_the_distance(store, lat, lon, distance, unit, expected):
    assert _ids(store, "Location", ("near", f"{lat}|{lon}|{distance}|{unit}")) == expected
    assert expected == _brute_force(lat, lon, to_km(distance, unit))


def test_near_combines_with_other_criteria_sorting_and_or(store):
    assert _ids(store, "Location", ("near", "42.3626|-71.0695|5|km"), ("name", "dfci")) == ["dfci"]
    assert _ids(store, "Location", ("near", "42.3626|-71.0695|1|km,48.87|2.37|1|km")) == ["mgh", "paris"]
    result = store.search(parse_search("Location", [("near", "42.3626|-71.0695|310|km"), ("_sort", "-name")],
                                       load_registry()))
    assert [e.id for e in result.entries] == ["msk", "mgh", "dfci"]
    assert _ids(store, "Location", ("near:missing", "true")) == ["nowhere"]


def test_near_follows_updates_and_deletes(store):
    moved = {**_location("dfci"), "position": {"latitude": 48.8566, "longitude": 2.3522}}
    store.put_many([moved])
    assert _ids(store, "Location", ("near", "42.3626|-71.0695|5|km")) == ["mgh"]
    assert _ids(store, "Location", ("near", "48.8738|2.3688|5|km")) == ["dfci", "paris"]
    store.delete("Location", "paris")
    assert _ids(store, "Location", ("near", "48.8738|2.3688|5|km")) == ["dfci"]


def _plan(store, rtype: str, *pairs: tuple[str, str]) -> str:
    """SQLite's plan of the count of a search's matches (what the store runs first)."""
    import sqlalchemy as sa

    from fhirstudy.store.compiler import index_matches

    statement = sa.select(sa.func.count()).select_from(index_matches(parse_search(rtype, list(pairs), load_registry())))
    with store.engine.connect() as conn:
        compiled = statement.compile(conn, compile_kwargs={"render_postcompile": True})
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), compiled.positiontup and tuple(
            compiled.params[name] for name in compiled.positiontup)).all()
    return "\n".join(row[-1] for row in rows)


def test_near_reads_the_index_alone_and_a_chain_looks_sites_up_by_key(tmp_path):
    """At 100,000 studies, 5,648 sites near Boston: the exact test on the index's unit vectors (no
    table row read: 200 ms to 17 ms); ``site.near`` from the studies' own position rows alone
    (``site-near``; through the sites it took 2 s); another chain looks each site up by primary key
    (matching on its type too scanned every Location)."""
    store = open_store(f"sqlite:///{tmp_path / 'plan.db'}", clock=fixed_clock)
    store.put_many(_resources())
    plan = _plan(store, "Location", ("near", "42.3626|-71.0695|310|km"))
    assert "USING COVERING INDEX ix_idx_position_0 (pid=? AND cell=? AND latitude>? AND latitude<?)" in plan, plan
    plan = _plan(store, "ResearchStudy", ("site.near", "42.3626|-71.0695|310|km"))
    assert "USING COVERING INDEX ix_idx_position_0 (pid=? AND cell=? AND latitude>? AND latitude<?)" in plan, plan
    assert "idx_reference" not in plan and "resource" not in plan, plan
    plan = _plan(store, "ResearchStudy", ("site.address-city", "Boston"))
    assert "USING INTEGER PRIMARY KEY" in plan, plan
    assert "ix_resource_type" not in plan and "SCAN resource" not in plan, plan
    store.close()


def _as_layout(store, version: int, index: str):
    """``store``'s database turned back into storage layout ``version`` (``5`` or ``6``: no cell
    or source columns, the position index on ``index``), then opened again (upgraded)."""
    import sqlalchemy as sa

    from fhirstudy.store.schema import schema

    url = store.engine.url
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_idx_position_0"))
        conn.execute(sa.text("ALTER TABLE idx_position DROP COLUMN cell"))
        conn.execute(sa.text("ALTER TABLE idx_position DROP COLUMN source"))
        conn.execute(sa.text(f"CREATE INDEX ix_idx_position_0 ON idx_position ({index})"))
        conn.execute(sa.delete(schema))
        conn.execute(sa.insert(schema).values(version=version))
    store.close()
    return open_store(url.render_as_string(hide_password=False), clock=fixed_clock)


def test_a_database_of_layout_5_gets_the_new_position_index_in_place(store):
    """Layout 5's position index lacked the unit vectors (and 6's rows their cell); opening such a
    database rebuilds the index and records layout 7, and its answers stay the same."""
    import sqlalchemy as sa

    from fhirstudy.store.schema import SCHEMA_VERSION, schema

    reopened = _as_layout(store, 5, "pid, latitude, longitude, resource_pk")
    with reopened.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.max(schema.c.version))).scalar() == SCHEMA_VERSION == 7
    (index,) = (i for i in sa.inspect(reopened.engine).get_indexes("idx_position") if i["name"] == "ix_idx_position_0")
    assert index["column_names"] == ["pid", "cell", "latitude", "longitude", "x", "y", "z", "resource_pk"]
    assert _ids(reopened, "ResearchStudy", ("site.near", "42.3626|-71.0695|310|km")) == ["rs-boston", "rs-east"]
    reopened.close()


def test_a_database_of_layout_6_gets_each_positions_cell_in_place(store):
    """Layout 6's position rows had no grid cell and no source: opening such a database computes
    each row's cell in SQL, the same as the rows written now (``geo.cell``), and answers as
    before; sources stay empty until a reindex (the near page without them: the test below)."""
    import sqlalchemy as sa

    from fhirstudy.search.geo import cell
    from fhirstudy.store.schema import INDEX_TABLES, SCHEMA_VERSION, schema

    position = INDEX_TABLES["special"]
    before = {name: _ids(store, "Location", ("near", f"{lat}|{lng}|{km}|km"))
              for name, (lat, lng, km) in {"boston": (42.3626, -71.0695, 310), "antimeridian": (-16.0, 179.9, 1200),
                                           "far": (10, 10, 15000)}.items()}
    reopened = _as_layout(store, 6, "pid, latitude, longitude, x, y, z, resource_pk")
    with reopened.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.max(schema.c.version))).scalar() == SCHEMA_VERSION
        rows = conn.execute(sa.select(position.c.latitude, position.c.longitude, position.c.cell,
                                      position.c.source)).all()
    assert rows and all(got == cell(lat, lng) and source is None for lat, lng, got, source in rows), rows
    assert {name: _ids(reopened, "Location", ("near", f"{lat}|{lng}|{km}|km"))
            for name, (lat, lng, km) in {"boston": (42.3626, -71.0695, 310), "antimeridian": (-16.0, 179.9, 1200),
                                         "far": (10, 10, 15000)}.items()} == before
    reopened.close()


def test_positions_are_read_from_the_index_by_id(store):
    """``positions``: what the near rows hold for the ids asked, the live ones with a position only."""
    got = store.positions("Location", ["mgh", "paris", "nowhere", "missing"])
    assert got == {"mgh": [(position(*PLACES["mgh"][:2]), None)], "paris": [(position(*PLACES["paris"][:2]), None)]}
    store.delete("Location", "paris")
    assert store.positions("Location", ["paris", "dfci"]) == {"dfci": [(position(*PLACES["dfci"][:2]), None)]}
    near_boston = store.positions("ResearchStudy", ["rs-boston"], "site-near")  # its sites', through site-near
    assert sorted(near_boston["rs-boston"]) == sorted([(position(*PLACES[rid][:2]), rid) for rid in ("dfci", "mgh")])


def test_positions_look_rows_up_by_key_for_many_ids(tmp_path, monkeypatch):
    """Asked for 500 ids, ``positions`` finds them by key: one statement joining ``resource`` to
    the index made SQLite read every position row of the parameter (1.6 s at 100,000 studies)."""
    from fhirstudy.store import reads

    store = open_store(f"sqlite:///{tmp_path / 'positions.db'}", clock=fixed_clock)
    store.put_many(_resources())
    seen, through = [], reads.driver_rows

    def driver_rows(conn, sql, values, *before):
        rows = through(conn, sql, values, *before)
        seen.append((sql.format(", ".join(["?"] * len(values))), (*before, *values)))
        return rows

    monkeypatch.setattr(reads, "driver_rows", driver_rows)
    ids = ["mgh", "dfci"] + [f"site-{n}" for n in range(498)]
    assert set(store.positions("Location", ids)) == {"mgh", "dfci"}
    assert len(seen) == 2, seen
    plans = []
    with store.engine.connect() as conn:
        for statement, params in seen:
            if statement.lstrip().upper().startswith("SELECT"):
                plans += [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]
    assert plans and not [p for p in plans if "SCAN" in p or ("idx_position" in p and "PRIMARY KEY" not in p)], plans
    store.close()


# --- chained search and _has ----------------------------------------------------------------------

CHAIN_CASES = [
    ([("site.address-city", "Boston")], ["rs-boston", "rs-pacific"]),  # rs-pacific: its site without a position
    ([("site:Location.address-city", "paris")], []),  # the Paris site is an Organization
    ([("site.address-city", "paris")], ["rs-paris"]),
    ([("site:Organization.address-city", "Paris")], ["rs-paris"]),
    ([("site.address-country", "US")], ["rs-boston", "rs-east", "rs-pacific"]),
    ([("site.address-country", "WS,FJ")], ["rs-pacific"]),
    ([("site.address-country:exact", "us")], []),
    ([("site.near", "40.7644|-73.9565|10|km")], ["rs-east"]),
    ([("site.near", "42.3626|-71.0695|310|km")], ["rs-boston", "rs-east"]),
    ([("site.near", "42.3626|-71.0695|310|km"), ("status", "active")], ["rs-boston"]),
    ([("site.near", "42.3626|-71.0695|310|km"), ("site.address-city", "New York")], ["rs-east"]),
    ([("site:Location.near", "-18.1416|178.4419|1200|km")], ["rs-pacific"]),
    ([("site._id", "mayo,apia")], ["rs-east", "rs-pacific"]),
    ([("site.name:contains", "fc")], ["rs-boston"]),
    ([("site.near:missing", "true")], ["rs-pacific"]),
    ([("site.address-city:exact", "Boston")], ["rs-boston", "rs-pacific"]),
    ([("site.status:not", "active")], ["rs-pacific"]),  # a site without a status
]


@pytest.mark.parametrize("pairs,expected", CHAIN_CASES)
def test_chained_search_from_studies_to_their_sites(store, pairs, expected):
    assert _ids(store, "ResearchStudy", *pairs) == sorted(expected)
    sorted_by_status = store.search(parse_search("ResearchStudy", pairs + [("_sort", "status")], load_registry()))
    assert sorted(e.id for e in sorted_by_status.entries) == sorted(expected)


def test_a_chain_sees_the_site_as_it_is_now(store):
    store.put_many([{**_location("msk"), "address": {"city": "Boston", "country": "US"}}])
    assert _ids(store, "ResearchStudy", ("site.address-city", "Boston")) == ["rs-boston", "rs-east", "rs-pacific"]
    store.delete("Location", "mayo")
    store.delete("Location", "msk")
    assert _ids(store, "ResearchStudy", ("site.address-country", "US")) == ["rs-boston", "rs-pacific"]


def _chained_ids(store, *pairs: tuple[str, str]) -> list[str]:
    """The studies the chain itself finds (a registry without ``site-near``, which answers it)."""
    from fhirstudy.search.registry import Registry, read_definitions

    registry = Registry([d for d in read_definitions() if d["code"] != "site-near"])
    query = parse_search("ResearchStudy", list(pairs) + [("_count", "100")], registry)
    assert query.clauses[0].chain, "the chain itself"
    return sorted(e.id for e in store.search(query).entries)


SITE_NEAR = ["42.3626|-71.0695|5|km", "42.3626|-71.0695|310|km", "40.7644|-73.9565|10|km", "-18.1416|178.4419|1200|km",
             "0|0|30000|km", "48.8738|2.3688|5|km", "44.0225|-92.4668|1|km,-13.8333|-171.7667|1|km"]


def test_site_near_answers_the_chain_as_the_chain_does_as_sites_change(store):
    """``site.near`` from the studies' own rows (``site-near``) finds what the chain through every
    site finds: after a site moves, a site is deleted, a study changes its sites, and a study is
    stored before its sites."""
    def same() -> None:
        for value in SITE_NEAR:
            assert _ids(store, "ResearchStudy", ("site.near", value)) == _chained_ids(store, ("site.near", value)), value
            assert _ids(store, "ResearchStudy", ("site-near", value)) == _ids(store, "ResearchStudy", ("site.near", value))

    same()
    assert _ids(store, "ResearchStudy", ("site.near", "42.3626|-71.0695|5|km")) == ["rs-boston"]
    store.put_many([{**_location("msk"), "position": {"latitude": 42.36, "longitude": -71.07}}])  # moved to Boston
    assert _ids(store, "ResearchStudy", ("site.near", "42.3626|-71.0695|5|km")) == ["rs-boston", "rs-east"]
    same()
    store.delete("Location", "mgh")
    store.delete("Location", "dfci")
    assert _ids(store, "ResearchStudy", ("site.near", "42.3626|-71.0695|5|km")) == ["rs-east"]
    same()
    store.put_many([{"resourceType": "ResearchStudy", "id": "rs-east", "status": "completed",
                     "site": [{"reference": "Location/paris"}]}])
    assert _ids(store, "ResearchStudy", ("site.near", "42.3626|-71.0695|5|km")) == []
    same()
    store.put_many([{"resourceType": "ResearchStudy", "id": "rs-later", "status": "active",
                     "site": [{"reference": "Location/later"}]}])  # its site comes in a later write
    assert _ids(store, "ResearchStudy", ("site.near", "35.0|139.0|5|km")) == []
    store.put_many([{"resourceType": "Location", "id": "later", "position": {"latitude": 35.0, "longitude": 139.0}}])
    assert _ids(store, "ResearchStudy", ("site.near", "35.0|139.0|5|km")) == ["rs-later"]
    same()


def test_site_near_in_one_transaction_written_a_resource_at_a_time(store, monkeypatch):
    """A transaction Bundle's entries are written one at a time: the study's linked rows are made
    once, at the end, seeing every site as the transaction left it (made once per site write, a
    trial with hundreds of sites cost minutes); a study whose rows were made with its sites in one
    batch is rebuilt when one of them is written again later in the same transaction."""
    calls = []
    real = store.indexer.linked_rows
    monkeypatch.setattr(store.indexer, "linked_rows", lambda doc, lookup: calls.append(doc["id"]) or real(doc, lookup))
    study = {"resourceType": "ResearchStudy", "id": "rs-tx", "status": "active",
             "site": [{"reference": f"Location/tx-{n}"} for n in range(30)]}
    sites = [{"resourceType": "Location", "id": f"tx-{n}", "position": {"latitude": 10.0 + n, "longitude": 20.0}}
             for n in range(30)]

    def one_at_a_time(tx):
        for resource in [study, *sites, {**sites[0], "position": {"latitude": 50.0, "longitude": 20.0}}]:
            tx.put([resource])
        tx.delete("Location", "tx-29")
    store.write(one_at_a_time)
    assert calls.count("rs-tx") == 1
    assert _ids(store, "ResearchStudy", ("site.near", "50.0|20.0|1|km")) == ["rs-tx"]
    assert _ids(store, "ResearchStudy", ("site.near", "10.0|20.0|1|km")) == []   # tx-0 moved away
    assert _ids(store, "ResearchStudy", ("site.near", "39.0|20.0|1|km")) == []   # tx-29 deleted
    assert _ids(store, "ResearchStudy", ("site.near", "38.0|20.0|1|km")) == ["rs-tx"]

    def batch_then_a_site_again(tx):
        tx.put([{**study, "id": "rs-tx2", "site": [{"reference": "Location/tx-1"}]}, sites[1]])  # linked in its batch
        tx.put([{**sites[1], "position": {"latitude": -40.0, "longitude": 20.0}}])
    store.write(batch_then_a_site_again)
    assert _ids(store, "ResearchStudy", ("site.near", "-40.0|20.0|1|km")) == ["rs-tx", "rs-tx2"]
    assert _ids(store, "ResearchStudy", ("site.near", "11.0|20.0|1|km")) == []


HAS_CASES = [
    ("_has:ResearchStudy:site:status", "active", ["apia", "dfci", "mgh", "nowhere"]),
    ("_has:ResearchStudy:site:status", "completed", ["mayo", "msk"]),
    ("_has:ResearchStudy:site:_id", "rs-east,rs-none", ["mayo", "msk"]),
    ("_has:ResearchStudy:site:status:not", "active", ["mayo", "msk"]),
]


@pytest.mark.parametrize("name,value,expected", HAS_CASES)
def test_has_finds_sites_by_their_studies(store, name, value, expected):
    assert _ids(store, "Location", (name, value)) == expected
    assert _ids(store, "Location", (name, value), ("near", "42.3626|-71.0695|5|km")) == \
        [e for e in expected if e in ("mgh", "dfci")]


# --- over HTTP --------------------------------------------------------------------------------------

@pytest.fixture
def client(tmp_path):
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'http.db'}",
                      "BASE_URL": "https://fhir.example.org/r5"})
    app.extensions[STORE_EXTENSION].put_many(_resources())
    yield app.test_client()
    close_store(app)


def test_near_and_chains_over_http(client):
    bundle = client.get("/Location", query_string={"near": "42.3626|-71.0695|5|km"}).get_json()
    assert sorted(e["resource"]["id"] for e in bundle["entry"]) == ["dfci", "mgh"]
    bundle = client.get("/ResearchStudy?site.near=42.3626|-71.0695|310|km&status=active").get_json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["rs-boston"]
    assert "site.near=42.3626" in next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    bundle = client.get("/Location?_has:ResearchStudy:site:status=completed").get_json()
    assert sorted(e["resource"]["id"] for e in bundle["entry"]) == ["mayo", "msk"]


@pytest.mark.parametrize("query,expression,message", [
    ("/Location?near=91|0|10|km", "near", "the latitude must lie between -90 and 90 degrees"),
    ("/Location?near=42|-71|10|furlong", "near", "the unit must be one of km, m, mi"),
    ("/ResearchStudy?site.near=42|-71|10|furlong", "site.near", "the unit must be one of km, m, mi"),
    ("/ResearchStudy?site.nope=x", "site.nope", "has no search parameter 'nope'"),
    ("/Location?_has:ResearchStudy:site:nope=x", "_has:ResearchStudy:site:nope", "ResearchStudy has no search"),
])
def test_bad_near_and_chains_are_400_saying_what_is_wrong(client, query, expression, message):
    response = client.get(query)
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [expression]
    assert message in outcome["issue"][0]["diagnostics"]


# --- ZIP codes to positions -------------------------------------------------------------------------

@pytest.mark.parametrize("zip_code,near", [
    ("02114", (42.36, -71.07)),        # Boston, Massachusetts General Hospital's ZIP code
    (" 02114-2696 ", (42.36, -71.07)),  # ZIP+4, spaces around
    ("55905", (44.02, -92.47)),        # Rochester, Minnesota (Mayo Clinic)
    ("96801", (21.33, -157.83)),       # Honolulu
    ("99501", (61.22, -149.86)),       # Anchorage
])
def test_zip_codes_give_positions(zip_code, near):
    lat, lon = zip_position(zip_code)
    assert lat == pytest.approx(near[0], abs=0.05) and lon == pytest.approx(near[1], abs=0.05)


@pytest.mark.parametrize("zip_code,message", [
    ("00000", "ZIP code 00000 is not in the US ZIP code table"),
    ("1234", "'1234' is not a US ZIP code"),
    ("02114x", "'02114x' is not a US ZIP code"),
    ("", "'' is not a US ZIP code"),
    (None, "None is not a US ZIP code"),
])
def test_unknown_zip_codes_are_a_clear_400(zip_code, message):
    with pytest.raises(UnknownPlace) as caught:
        zip_position(zip_code, expression="zipCode")
    assert message in str(caught.value)
    assert caught.value.status == 400 and caught.value.expression == "zipCode"


def test_a_zip_code_feeds_a_near_search(store):
    lat, lon = zip_position("02115")  # Longwood, Boston
    assert _ids(store, "ResearchStudy", ("site.near", f"{lat}|{lon}|5|km")) == ["rs-boston"]
    assert _ids(store, "Location", ("near", f"{lat}|{lon}|25|mi")) == ["dfci", "mgh"]


def test_site_near_rows_name_the_site_each_position_was_read_from():
    """``site-near`` rows: the positions the expression itself gives (in its order, no repeats),
    each with the first site read at it; a site not found, without a position or of another
    type adds nothing."""
    import dataclasses

    from fhirstudy.search.fhirpath import resolving

    registry = load_registry()
    param = registry.get("ResearchStudy", "site-near")
    docs = {f"Location/{d['id']}": d for d in _resources() if d["resourceType"] == "Location"}
    docs["Location/mgh-twin"] = {**docs["Location/mgh"], "id": "mgh-twin"}  # the same position as mgh
    study = {"resourceType": "ResearchStudy", "id": "rs", "site": [
        {"reference": "Location/dfci"}, {"reference": "Location/missing"}, {"reference": "Location/nowhere"},
        {"reference": "Location/mgh-twin"}, {"reference": "Location/mgh"}, {"reference": "Organization/org-paris"},
        {"reference": "Location/dfci"}, {"reference": "Location/paris"}]}
    with resolving(docs.get):
        rows = index_rows(study, [param])["special"]
        generic = index_rows(study, [dataclasses.replace(param, via=None)])["special"]
    assert [r["source"] for r in rows] == ["dfci", "mgh-twin", "paris"]
    assert [{k: v for k, v in r.items() if k != "source"} for r in rows] == generic
    assert [(r["latitude"], r["longitude"]) for r in rows] == [PLACES[n][:2] for n in ("dfci", "mgh", "paris")]


def _nearest_shown(client, url: str) -> dict[str, str]:
    import re

    page = client.get(url, headers={"Accept": "text/html"}).get_data(as_text=True)
    return dict(re.findall(r'href="/ResearchStudy/([\w-]+)".*?Nearest site</dt><dd>([^<]*: <strong>[^<]*)</strong>',
                           page, re.S))


def test_the_near_page_finds_nearest_sites_from_the_study_rows_and_without_sources_too(client, monkeypatch):
    """The near page's nearest sites come from the studies' ``site-near`` rows (no Location's
    position read); rows without a source (written before layout 7) give the same answer by
    reading the sites' positions."""
    import sqlalchemy as sa

    from fhirstudy.store import SqlStore
    from fhirstudy.store.schema import INDEX_TABLES

    url = "/ResearchStudy?site.near=42.3611|-71.0682|500|km&_count=20"
    asked, through = [], SqlStore.positions
    monkeypatch.setattr(SqlStore, "positions", lambda self, rtype, ids, code="near": (
        asked.append(rtype), through(self, rtype, ids, code))[1])
    shown = _nearest_shown(client, url)
    assert set(shown) == {"rs-boston", "rs-east"} and asked == ["ResearchStudy"]
    assert shown["rs-boston"].startswith("mgh, Boston") and shown["rs-east"].startswith("msk, New York")
    store = client.application.extensions[STORE_EXTENSION]
    with store.engine.begin() as conn:
        conn.execute(sa.update(INDEX_TABLES["special"]).values(source=None))
    asked.clear()
    assert _nearest_shown(client, url) == shown and asked == ["ResearchStudy", "Location"]
