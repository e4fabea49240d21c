"""fhirstudy: clinical-trial records to HL7 FHIR R5, stored, served and pushed.

Data flows one way: ``sources`` (one reader per input format) -> ``trial.Trial`` (checked by
marshmallow) -> ``mappers`` (one module per FHIR resource) -> ``validation`` -> ``store`` (the
repository) -> ``service`` (search) -> ``server`` (Flask FHIR REST), ``push`` and ``cli``, which
ties them together.  ``search`` (parameters, queries, index rows) is shared by store and service;
``errors``, ``limits``, ``config``, ``mappings`` and ``terminology`` are the foundation every room
may import.  A room never imports one downstream of it (``tests/test_imports.py``).
"""

__version__ = "0.1.0"
