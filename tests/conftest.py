"""Shared fixtures: the read-only test data beside the checkout (../shared/testdata); GPU tests skip without CUDA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTDATA = Path(os.environ.get("STYLECOMP_TESTDATA", Path(__file__).resolve().parents[2] / "shared" / "testdata"))
BEACHBALL = TESTDATA / "plates" / "beachball" / "singlepart.####.exr"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    no_data = pytest.mark.skip(reason=f"shared test data not found at {TESTDATA} (set STYLECOMP_TESTDATA)")
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "testdata" in item.fixturenames and not TESTDATA.is_dir():
            item.add_marker(no_data)
        if item.get_closest_marker("gpu") and not torch.cuda.is_available():
            item.add_marker(no_gpu)


@pytest.fixture
def testdata() -> Path:
    return TESTDATA
