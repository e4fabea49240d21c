"""Search: parameters as data (:mod:`.registry`), a FHIRPath subset to evaluate them
(:mod:`.fhirpath`, a package), index rows computed at write time (:mod:`.index`) and request parsing
(:mod:`.query`, with the values of each parameter type in :mod:`.values` and the paging cursor in
:mod:`.cursor`); :mod:`.subset` cuts resources down for ``_summary`` and ``_elements``.

May import: ``fhirstudy.errors``, ``fhirstudy.limits``, ``fhirstudy.mappings`` and the standard
library (plus orjson); nothing here knows SQL or HTTP, and nothing imports the store or the server."""
from fhirstudy.search.index import index_rows
from fhirstudy.search.query import SearchQuery, parse_search
from fhirstudy.search.registry import Registry, SearchParam, load_registry

__all__ = ["Registry", "SearchParam", "SearchQuery", "index_rows", "load_registry", "parse_search"]
