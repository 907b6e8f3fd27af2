"""The candidate picker under bare PySide2 and bare PySide6, as Nuke ships them, offscreen, one subprocess each.

Nuke does not ship Qt.py: each subprocess makes ``import Qt`` (and the other binding) fail, so the
picker must find the binding on its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nuke.stylize_node import PLUGIN_FOLDER

PICKER_RUN = Path(__file__).with_name("picker_run.py")


@pytest.mark.parametrize("binding", ["PySide2", "PySide6"])
def test_picker_shows_thumbnails_and_reports_the_choice(binding: str, tmp_path: Path) -> None:
    if importlib.util.find_spec(binding) is None:  # looked up, not imported: Qt stays out of this process
        pytest.skip(f"{binding} is not installed")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(tmp_path), PYTHONPATH=str(PLUGIN_FOLDER))
    env.pop("QT_PREFERRED_BINDING", None)
    done = subprocess.run(
        [sys.executable, str(PICKER_RUN), str(tmp_path), binding],
        env=env,
        check=False,  # the exit status is asserted below, with the subprocess's stderr
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["binding"] == binding and result["qt_py"] is False
    assert result["title"] == "StyleComp candidates: sh010, frame 1001"
    assert result["labels"] == [f"#{k}  seed {1000 + 7 * k}\nstrength 0.5" for k in range(3)] + [
        "#3  seed 1021\nstrength 0.5\n(no thumbnail)"
    ]
    assert result["shown"] == [[200, 30, 30], [30, 200, 30], [30, 30, 200], [60, 60, 60]]  # last: placeholder
    assert result["double_click"] == [1014]  # candidate 2
    assert result["seeds"] == [1014, 1007]  # then candidate 1 through the button
    assert result["closed"] == [True, True] and result["open"] == 0
