"""Shared fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The default sample (data/sample), generated once if it is missing."""
    out = ROOT / "data" / "sample"
    if not (out / "meta.json").exists():
        from omni_lib.sample import generate

        generate(out_dir=out)
    return out


@pytest.fixture(scope="session")
def sample_config(sample_dir) -> Path:
    return ROOT / "omni.yaml"
