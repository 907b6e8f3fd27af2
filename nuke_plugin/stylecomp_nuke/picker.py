"""The candidate picker: thumbnails and seeds of a frame's candidates; choosing one calls back.

Qt through the binding Nuke ships: PySide6 in Nuke 16+, PySide2 in Nuke 13-15. Nuke does not
ship Qt.py, so the picker imports the binding itself and uses only API both bindings share.
"""

from __future__ import annotations

import os

try:
    from PySide6 import QtCore, QtGui, QtWidgets
except ImportError:
    from PySide2 import QtCore, QtGui, QtWidgets

from .manifest import Candidate, Manifest

THUMBNAIL_SIZE = 256
_OPEN: list = []  # pickers on screen, kept alive until they close


class CandidatePicker(QtWidgets.QWidget):
    """A grid of candidate thumbnails; double-click (or Use Candidate) picks one."""

    def __init__(self, found: Manifest, on_pick, parent=None) -> None:
        super().__init__(parent)
        self.setWindowFlags(QtCore.Qt.Window)
        self.setWindowTitle(f"StyleComp candidates: {found.shot}, frame {found.frame}")
        self._candidates = {candidate.index: candidate for candidate in found.candidates}
        self._on_pick = on_pick

        self.grid = QtWidgets.QListWidget()
        self.grid.setViewMode(QtWidgets.QListView.IconMode)
        self.grid.setIconSize(QtCore.QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.grid.setResizeMode(QtWidgets.QListView.Adjust)
        self.grid.setMovement(QtWidgets.QListView.Static)
        self.grid.setSpacing(8)
        for candidate in found.candidates:
            item = QtWidgets.QListWidgetItem(QtGui.QIcon(thumbnail(candidate.thumbnail)), label(candidate))
            if not os.path.isfile(candidate.thumbnail):
                item.setText(item.text() + "\n(no thumbnail)")
            item.setData(QtCore.Qt.UserRole, candidate.index)
            item.setToolTip(candidate.prompt or "")
            self.grid.addItem(item)
        self.grid.itemActivated.connect(self._pick_item)

        self.use_button = QtWidgets.QPushButton("Use Candidate")
        self.use_button.clicked.connect(self._pick_current)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel("Double-click a candidate to lock its seed and render the frame with it."))
        layout.addWidget(self.grid)
        layout.addWidget(self.use_button)
        self.resize(4 * (THUMBNAIL_SIZE + 24), 2 * (THUMBNAIL_SIZE + 48))

    def pick(self, index: int) -> None:
        """Choose candidate ``index``: call back with it and close."""
        self._on_pick(self._candidates[index])
        self.close()

    def _pick_item(self, item) -> None:
        self.pick(int(item.data(QtCore.Qt.UserRole)))

    def _pick_current(self) -> None:
        item = self.grid.currentItem()
        if item is not None:
            self._pick_item(item)

    def closeEvent(self, event) -> None:
        if self in _OPEN:
            _OPEN.remove(self)
        super().closeEvent(event)


def label(candidate: Candidate) -> str:
    """The text under a thumbnail."""
    text = f"#{candidate.index}  seed {candidate.seed}"
    return text if candidate.strength is None else f"{text}\nstrength {candidate.strength:g}"


def thumbnail(path: str):
    """The thumbnail image, or a grey tile when it cannot be read."""
    pixmap = QtGui.QPixmap(path)
    if pixmap.isNull():
        pixmap = QtGui.QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        pixmap.fill(QtGui.QColor(60, 60, 60))
    return pixmap


def show(found: Manifest, on_pick) -> CandidatePicker:
    """Open a picker over Nuke's main window."""
    picker = CandidatePicker(found, on_pick, QtWidgets.QApplication.activeWindow())
    _OPEN.append(picker)
    picker.show()
    picker.raise_()
    return picker
