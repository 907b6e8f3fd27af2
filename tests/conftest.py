"""Shared fixtures: the read-only test data beside the checkout (../shared/testdata)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTDATA = Path(os.environ.get("STYLECOMP_TESTDATA", Path(__file__).resolve().parents[2] / "shared" / "testdata"))
BEACHBALL = TESTDATA / "plates" / "beachball" / "singlepart.####.exr"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TESTDATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared test data not found at {TESTDATA} (set STYLECOMP_TESTDATA)")
    for item in items:
        if "testdata" in item.fixturenames:
            item.add_marker(skip)


@pytest.fixture
def testdata() -> Path:
    return TESTDATA
