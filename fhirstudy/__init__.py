"""fhirstudy: clinical-trial records to HL7 FHIR R5, stored, served and pushed.

Data flows one way: ``sources`` (one reader per input format) -> ``trial.Trial`` (checked by
marshmallow) -> ``mappers`` (one module per FHIR resource) -> ``validation`` -> ``store`` ->
``server`` (Flask FHIR REST) and ``push``; ``cli`` ties them together.
"""

__version__ = "0.1.0"
