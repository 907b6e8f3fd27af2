"""Where the read-only shared test data lives: ../shared/testdata beside the checkout, or $STYLECOMP_TESTDATA."""

from __future__ import annotations

import os
from pathlib import Path

TESTDATA = Path(os.environ.get("STYLECOMP_TESTDATA", Path(__file__).resolve().parents[2] / "shared" / "testdata"))
