"""Bulk Data export (the Bulk Data Access IG, STU2 with STU3's additions): whole sets as NDJSON.

- :mod:`.request`: a kick-off's parameters (``_type``, ``_since``, ``_until``, ``_typeFilter``,
  ``_elements``, ``_outputFormat`` ...) as one :class:`~.request.ExportRequest`, checked.
- :mod:`.writer`: writes one export from one snapshot of the store into a directory of NDJSON
  files (one type per file, split at a size) and answers the manifest's parts.
- :mod:`.jobs`: export jobs kept in the database (they survive a restart; a dead worker's job is
  run again from the start, never published half done), run by a thread of the server.

The server's routes are in :mod:`fhirstudy.server.bulk`, the command line in
:mod:`fhirstudy.cli.export`. May import the foundation, ``search``, ``store`` (its repository and
snapshot; the jobs table beside the store's) and ``service`` (to parse ``_typeFilter``); no
Flask, no HTTP.
"""
