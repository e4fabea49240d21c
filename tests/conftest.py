"""Shared fixtures: where the seeds, samples and peer tooling are, and the converted seed bundles."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SHARED = Path(os.environ.get("FHIRSTUDY_SHARED_DIR", ROOT.parent / "shared"))
PEER_DIR = Path(os.environ.get("FHIRSTUDY_PEER_DIR", SHARED / "peer-fhir"))
SAMPLES = SHARED / "ctgov-samples"


@pytest.fixture(scope="session")
def seed_conversions():
    """Every seed converted once: {file name: Converted}."""
    from fhirstudy.pipeline import convert

    return {Path(c.file).name: c for c in convert([SEEDS])}


@pytest.fixture(scope="session")
def peer_validate():
    """The peer's independent validator (../shared/peer-fhir/validate.sh), or a skip saying what is missing."""
    script = PEER_DIR / "validate.sh"
    if not script.exists():
        pytest.skip(f"peer validator not found at {script} (set FHIRSTUDY_PEER_DIR)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed by the peer validator")
    return script
