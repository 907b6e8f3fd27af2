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
import textwrap
from pathlib import Path

import pytest

from tests.nuke.stylize_node import PLUGIN_FOLDER

SCRIPT = textwrap.dedent(r'''
    import importlib, json, os, sys
    binding, other = sys.argv[2], {"PySide2": "PySide6", "PySide6": "PySide2"}[sys.argv[2]]


    class NukeShipsNoSuchModule:
        """A meta-path guard: Qt.py and the binding this Nuke lacks cannot be imported."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("Qt", other):
                raise ModuleNotFoundError("No module named %r (not shipped with Nuke)" % name, name=name)
            return None


    sys.meta_path.insert(0, NukeShipsNoSuchModule())
    QtCore, QtGui, QtTest, QtWidgets = (importlib.import_module(binding + "." + part)
                                        for part in ("QtCore", "QtGui", "QtTest", "QtWidgets"))

    app = QtWidgets.QApplication([])
    folder = sys.argv[1]
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    entries = []
    for k, colour in enumerate(colours + [None]):
        if colour is not None:  # the last candidate has no thumbnail on disk
            image = QtGui.QImage(64, 48, QtGui.QImage.Format_RGB32)
            image.fill(QtGui.QColor(*colour))
            assert image.save(os.path.join(folder, "candidate_%02d.png" % k))
        entries.append({"index": k, "seed": 1000 + 7 * k, "strength": 0.5, "prompt": "ink",
                        "exr": "candidate_%02d.exr" % k, "thumbnail": "candidate_%02d.png" % k})
    path = os.path.join(folder, "manifest.json")
    with open(path, "w") as handle:
        json.dump({"shot": "sh010", "frame": 1001, "job": "/jobs/job.json", "contact_sheet": "contact_sheet.png",
                   "candidates": entries}, handle)

    from stylecomp_nuke import manifest, picker

    found = manifest.load(path)
    picked = []
    first = picker.show(found, picked.append)
    app.processEvents()
    grid = first.grid
    items = [grid.item(i) for i in range(grid.count())]
    shown = []
    for item in items:
        pixmap = item.icon().pixmap(QtCore.QSize(picker.THUMBNAIL_SIZE, picker.THUMBNAIL_SIZE))
        colour = pixmap.toImage().pixelColor(pixmap.width() // 2, pixmap.height() // 2)
        shown.append([colour.red(), colour.green(), colour.blue()])
    rect = grid.visualItemRect(items[2])
    for gesture in (QtTest.QTest.mouseClick, QtTest.QTest.mouseDClick):  # a double-click is a click, then a dclick
        gesture(grid.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, rect.center())
    app.processEvents()
    after_double_click = [c.seed for c in picked]

    second = picker.show(found, picked.append)
    second.grid.setCurrentRow(1)
    second.use_button.click()
    app.processEvents()
    print(json.dumps({
        "binding": picker.QtWidgets.__name__.split(".")[0], "qt_py": "Qt" in sys.modules, "title": first.windowTitle(), "labels": [item.text() for item in items],
        "shown": shown, "double_click": after_double_click, "seeds": [c.seed for c in picked],
        "closed": [not first.isVisible(), not second.isVisible()], "open": len(picker._OPEN),
    }))
''')


@pytest.mark.parametrize("binding", ["PySide2", "PySide6"])
def test_picker_shows_thumbnails_and_reports_the_choice(binding: str, tmp_path: Path) -> None:
    if importlib.util.find_spec(binding) is None:  # looked up, not imported: Qt stays out of this process
        pytest.skip(f"{binding} is not installed")
    script = tmp_path / "run_picker.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(tmp_path), PYTHONPATH=str(PLUGIN_FOLDER))
    env.pop("QT_PREFERRED_BINDING", None)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), binding],
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
