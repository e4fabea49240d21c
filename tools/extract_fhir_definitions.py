"""Extract what fhirstudy needs from the official FHIR R5 package into fhirstudy/mappings/.

Reads the npm package ``hl7.fhir.r5.core@5.0.0`` (install it with
``npm pack hl7.fhir.r5.core@5.0.0`` or point ``--package`` at an unpacked copy, such as the one the
peer FHIR server installs under ``~/.cache/peer-fhir/node_modules/hl7.fhir.r5.core``) and writes:

- ``mappings/fhir-r5-search-parameters.json``: every SearchParameter whose base includes one of
  the resource types fhirstudy serves (code, base, type, expression, url, and for composites the
  components), copied from the package unchanged.
- ``mappings/fhir-r5-elements.json``: for the same types and the datatypes they use, every
  element path with its type codes, maximum cardinality, content reference and ``isSummary`` flag
  (only when true), so that validation can check JSON types and find the datatype of every node,
  and search can answer ``_summary=true``.
- ``mappings/fhir-r5-codesystems.json``: the codes and displays of every official CodeSystem that
  ``mappings/ctgov-to-fhir.json`` uses, so that a test can prove each mapped code exists. A
  CodeSystem the core package does not hold (the terminology.hl7.org ones the core binds Evidence
  to: statistic-type, attribute-estimate-type, variable-role) is read from HL7's terminology package
  ``hl7.terminology.r5@7.0.1`` (``npm pack hl7.terminology.r5@7.0.1``, unpacked, as
  ``--terminology``).
- ``mappings/fhir-r5-required-bindings.json``: for the same types, every element with a
  *required* binding and the codes its value set allows, expanded from the package's CodeSystems
  where the value set composes whole code systems or enumerated concepts.

Run it only on purpose (the outputs are checked in):  python tools/extract_fhir_definitions.py
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fhirstudy.search.registry import SERVED_TYPES  # the types of fhirstudy/mappings/resource-types.json

VALIDATED_TYPES = [*SERVED_TYPES, "Bundle"]
DATATYPES = [
    "Element", "BackboneElement", "Extension", "Narrative", "Meta", "Identifier", "HumanName",
    "Address", "ContactPoint", "ContactDetail", "CodeableConcept", "CodeableReference", "Coding",
    "Reference", "Period", "Quantity", "Duration", "Age", "Range", "Ratio", "Annotation",
    "Attachment", "RelatedArtifact", "UsageContext", "Expression", "Timing", "Dosage",
    "DataRequirement", "TriggerDefinition", "RelatedArtifact", "Signature", "VirtualServiceDetail",
    "Availability", "ExtendedContactDetail", "Money", "SampledData", "ParameterDefinition",
    "Count", "Distance", "Resource", "DomainResource",
]
DEFAULT_PACKAGE = Path.home() / ".cache/peer-fhir/node_modules/hl7.fhir.r5.core"
TERMINOLOGY_PACKAGE = "hl7.terminology.r5@7.0.1"
ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _search_parameters(pkg: Path) -> list[dict]:
    out = []
    for path in sorted(pkg.glob("SearchParameter-*.json")):
        sp = _load(path)
        bases = [b for b in sp.get("base", []) if b in SERVED_TYPES or b == "Resource"]
        if not bases:
            continue
        keep = {k: sp[k] for k in ("url", "code", "base", "type", "expression", "description",
                                   "target", "modifier", "comparator", "multipleOr", "multipleAnd",
                                   "component") if k in sp}
        keep["source"] = f"hl7.fhir.r5.core@5.0.0/{path.name}"
        out.append(keep)
    return out


def _codes(concepts: list[dict]) -> list[str]:
    codes = []
    for c in concepts:
        codes.append(c["code"])
        codes.extend(_codes(c.get("concept", [])))
    return codes


def _expand(pkg: Path, vs_url: str, code_systems: dict[str, dict]) -> list[dict] | None:
    name = vs_url.split("|")[0].rsplit("/", 1)[-1]
    path = pkg / f"ValueSet-{name}.json"
    if not path.exists():
        return None
    vs = _load(path)
    compose = vs.get("compose", {})
    if compose.get("exclude"):
        return None
    systems = []
    for inc in compose.get("include", []):
        if inc.get("filter") or inc.get("valueSet") or "system" not in inc:
            return None
        if inc.get("concept"):
            codes = [c["code"] for c in inc["concept"]]
        else:
            cs = code_systems.get(inc["system"])
            if cs is None or cs.get("content") != "complete":
                return None
            codes = _codes(cs.get("concept", []))
        systems.append({"system": inc["system"], "codes": codes})
    return systems


def _required_bindings(pkg: Path) -> dict:
    code_systems = {}
    for path in pkg.glob("CodeSystem-*.json"):
        cs = _load(path)
        code_systems[cs["url"]] = cs
    out: dict[str, dict] = {}
    for rtype in VALIDATED_TYPES + DATATYPES:
        sd = _load(pkg / f"StructureDefinition-{rtype}.json")
        for el in sd["snapshot"]["element"]:
            binding = el.get("binding") or {}
            if binding.get("strength") != "required" or "valueSet" not in binding:
                continue
            types = sorted({t["code"] for t in el.get("type", [])})
            out[el["path"]] = {
                "valueSet": binding["valueSet"],
                "types": types,
                "include": _expand(pkg, binding["valueSet"], code_systems),
            }
    return out


def _type_code(t: dict) -> str:
    """The FHIR type of an element; System.String ids and the like carry it in the fhir-type extension."""
    for ext in t.get("extension", []):
        if ext.get("url") == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type":
            return ext["valueUrl"]
    return t["code"]


def _elements(pkg: Path) -> dict:
    out: dict[str, dict] = {}
    for name in VALIDATED_TYPES + DATATYPES:
        sd = _load(pkg / f"StructureDefinition-{name}.json")
        for el in sd["snapshot"]["element"]:
            if "." not in el["path"]:
                continue
            entry = {"types": [_type_code(t) for t in el.get("type", [])], "max": el.get("max", "*"),
                     "min": el.get("min", 0)}
            if "contentReference" in el:
                entry["contentReference"] = el["contentReference"].split("#", 1)[1]
            if el.get("isSummary"):
                entry["isSummary"] = True  # part of _summary=true (FHIR R5 3.2.1.7.5)
            out[el["path"]] = entry
    return out


def _code_systems(pkg: Path, terminology: Path | None) -> dict:
    """Codes of every official CodeSystem that ``mappings/ctgov-to-fhir.json`` draws from: from the
    core package, else from the terminology package."""
    table = json.loads((ROOT / "fhirstudy/mappings/ctgov-to-fhir.json").read_text(encoding="utf-8"))
    wanted = {section["system"] for key, section in table.items() if not key.startswith("_")}
    out = {}
    packages = [(pkg, "hl7.fhir.r5.core@5.0.0")] + ([(terminology, TERMINOLOGY_PACKAGE)] if terminology else [])
    for folder, name in packages:
        for path in sorted(folder.glob("CodeSystem-*.json")):
            cs = _load(path)
            if cs["url"] in wanted and cs["url"] not in out and cs.get("content") == "complete":
                out[cs["url"]] = {"source": f"{name}/{path.name}", "codes": _displays(cs.get("concept", []))}
    missing = wanted - set(out)
    if missing:
        raise SystemExit(f"CodeSystems not found in the packages: {sorted(missing)} (give --terminology)")
    return out


def _displays(concepts: list[dict]) -> dict:
    out = {}
    for c in concepts:
        out[c["code"]] = c.get("display")
        out.update(_displays(c.get("concept", [])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=DEFAULT_PACKAGE)
    parser.add_argument("--terminology", type=Path, default=None,
                        help=f"an unpacked {TERMINOLOGY_PACKAGE} (for the terminology.hl7.org CodeSystems)")
    args = parser.parse_args()
    pkg = args.package / "package" if (args.package / "package").is_dir() else args.package
    terminology = args.terminology
    if terminology is not None and (terminology / "package").is_dir():
        terminology = terminology / "package"
    header = {"source": "hl7.fhir.r5.core@5.0.0 (npm)", "generatedBy": "tools/extract_fhir_definitions.py"}
    sps = _search_parameters(pkg)
    (ROOT / "fhirstudy/mappings/fhir-r5-search-parameters.json").write_text(
        json.dumps({**header, "parameters": sps}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    bindings = _required_bindings(pkg)
    (ROOT / "fhirstudy/mappings/fhir-r5-required-bindings.json").write_text(
        json.dumps({**header, "bindings": bindings}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    elements = _elements(pkg)
    (ROOT / "fhirstudy/mappings/fhir-r5-elements.json").write_text(
        json.dumps({**header, "elements": elements}, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    code_systems = _code_systems(pkg, terminology)
    (ROOT / "fhirstudy/mappings/fhir-r5-codesystems.json").write_text(
        json.dumps({**header, "codeSystems": code_systems}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(code_systems)} code systems, {len(elements)} element paths, {len(sps)} search parameters, {len(bindings)} required bindings")


if __name__ == "__main__":
    main()
