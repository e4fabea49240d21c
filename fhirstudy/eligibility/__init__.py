"""Eligibility criterion text -> computable facts, in FHIR R5 terms.

:func:`facts` reads one criterion's text ("ANC >= 1.5 x 10^9/L; platelets >= 100 x 10^9/L",
"ECOG performance status 0-1", "HER2-negative") and returns the part of an R5
``EvidenceVariable.characteristic`` that states it (``definitionByTypeAndValue``, or a
``definitionByCombination`` of several), or None when the text states nothing checkable without
doubt. Precision first: a wrong fact is worse than none, because a matcher excludes patients on it.

What is read (analytes and their codes with sources, units, comparator phrases, wording that makes
a criterion doubtful) is data in ``fhirstudy/mappings/eligibility-facts.json``; this room holds no
analyte name or unit. Pure functions of their input. The room may import only the standard library,
``fhirstudy.terminology`` (``load_mapping``) and ``fhirstudy.errors``.
"""
from __future__ import annotations

from fhirstudy.eligibility.facts import facts

__all__ = ["facts"]
