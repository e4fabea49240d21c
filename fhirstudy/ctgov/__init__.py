"""Straight from ClinicalTrials.gov: the API v2 client (:mod:`.client`), the query a user asks
(:mod:`.query`), studies as the pipeline's records (:mod:`.records`), and the nightly sync
(:mod:`.sync`) with what it remembers in the store's database (:mod:`.state`).

The room at the head of the flow beside :mod:`fhirstudy.sources`: API -> records -> pipeline ->
store (-> push). May import sources, pipeline, loader, push (its HTTP session and errors), store
(engine helpers) and mappings; nothing but the CLI imports it.
"""
