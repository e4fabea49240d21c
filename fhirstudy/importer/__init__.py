"""FHIR input stored as it is (``fhirstudy load`` of Bundles, resources and NDJSON): no trial, no
mapping; every resource validated and written as the server writes it.

    importer = Importer(store, report)      # report(Problem) is called for every problem found
    for document in documents:              # fhirstudy.sources.FhirDocument, from iter_raw(fhir=True)
        importer.add(document)
    importer.flush()
    importer.stored, .deleted, .failed, .warnings, .refused_in_a_row

``entries`` turns a document into its writes (a Bundle's entries by type, a resource on its own as
a PUT), each with its place; ``writer`` prepares them with the server's write processor
(:mod:`fhirstudy.server.transaction`: validation, POST ids, ``urn:uuid`` fullUrls) and stores them
in transactions, a transaction Bundle all or nothing, the rest in groups where one bad entry costs
only itself.

May import the foundation, ``fhirstudy.sources`` (upstream: the one-record failure reason),
``fhirstudy.validation``, ``fhirstudy.search``, ``fhirstudy.store``, ``fhirstudy.service`` and
``fhirstudy.server`` (its write processor, which needs no Flask, though importing the package loads
Flask); never mappers, push or the CLI.
"""
from fhirstudy.importer.entries import Entry, Unit, unit_of
from fhirstudy.importer.writer import GROUP_SIZE, Importer

__all__ = ["GROUP_SIZE", "Entry", "Importer", "Unit", "unit_of"]
