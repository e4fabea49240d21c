"""Search: parameters as data (:mod:`.registry`), a FHIRPath subset to evaluate them
(:mod:`.fhirpath`), index rows computed at write time (:mod:`.index`) and request parsing
(:mod:`.query`).  Nothing here knows SQL or HTTP."""
from fhirstudy.search.index import index_rows
from fhirstudy.search.query import SearchQuery, parse_search
from fhirstudy.search.registry import Registry, SearchParam, load_registry

__all__ = ["Registry", "SearchParam", "SearchQuery", "index_rows", "load_registry", "parse_search"]
