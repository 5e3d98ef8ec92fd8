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


@pytest.fixture(scope="session")
def report_run(sample_config, tmp_path_factory) -> Path:
    """One `omni run` of every notebook on the sample, shared by the report lint and browser tests.

    Set OMNI_TEST_REPORT_RUN=<reports/run folder> to reuse an existing run instead (faster
    while iterating; the tests then check that run).
    """
    import os

    reuse = os.environ.get("OMNI_TEST_REPORT_RUN")
    if reuse:
        return Path(reuse).resolve()
    from omni_lib import runner

    res = runner.run(config_path=sample_config, reports_dir=tmp_path_factory.mktemp("reports"), progress=False)
    assert res.ok, [r.failure_line() for r in res.failed]
    return res.run_dir
