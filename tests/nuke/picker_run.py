"""The candidate picker in a fresh interpreter under one bare Qt binding, as Nuke ships it: run by test_picker.py.

Arguments: a folder for the candidates' thumbnails and manifest, and the binding (PySide2 or PySide6). Qt.py and the
other binding cannot be imported. Shows the picker offscreen, double-clicks candidate 2, then picks candidate 1
through the button, and prints what it saw as one JSON line.
"""

import importlib
import json
import os
import sys

binding, other = sys.argv[2], {"PySide2": "PySide6", "PySide6": "PySide2"}[sys.argv[2]]


class NukeShipsNoSuchModule:
    """A meta-path guard: Qt.py and the binding this Nuke lacks cannot be imported."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("Qt", other):
            raise ModuleNotFoundError(f"No module named {name!r} (not shipped with Nuke)", name=name)
        return None


sys.meta_path.insert(0, NukeShipsNoSuchModule())
QtCore, QtGui, QtTest, QtWidgets = (
    importlib.import_module(f"{binding}.{part}") for part in ("QtCore", "QtGui", "QtTest", "QtWidgets")
)

app = QtWidgets.QApplication([])
folder = sys.argv[1]
colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
entries = []
for k, colour in enumerate([*colours, None]):
    if colour is not None:  # the last candidate has no thumbnail on disk
        image = QtGui.QImage(64, 48, QtGui.QImage.Format_RGB32)
        image.fill(QtGui.QColor(*colour))
        assert image.save(os.path.join(folder, f"candidate_{k:02d}.png"))
    entries.append(
        {
            "index": k,
            "seed": 1000 + 7 * k,
            "strength": 0.5,
            "prompt": "ink",
            "exr": f"candidate_{k:02d}.exr",
            "thumbnail": f"candidate_{k:02d}.png",
        }
    )
path = os.path.join(folder, "manifest.json")
with open(path, "w") as handle:
    json.dump(
        {
            "shot": "sh010",
            "frame": 1001,
            "job": "/jobs/job.json",
            "contact_sheet": "contact_sheet.png",
            "candidates": entries,
        },
        handle,
    )

from stylecomp_nuke import manifest, picker  # noqa: E402 - imported once the guard above is in place

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
print(
    json.dumps(
        {
            "binding": picker.QtWidgets.__name__.split(".")[0],
            "qt_py": "Qt" in sys.modules,
            "title": first.windowTitle(),
            "labels": [item.text() for item in items],
            "shown": shown,
            "double_click": after_double_click,
            "seeds": [c.seed for c in picked],
            "closed": [not first.isVisible(), not second.isVisible()],
            "open": len(picker._OPEN),
        }
    )
)
