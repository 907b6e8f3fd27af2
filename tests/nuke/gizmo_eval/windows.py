"""Pixel windows (EXR data windows: x, y down from the top, width, height) and moving planes between them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    x: int
    y: int
    width: int
    height: int


def union(windows: list) -> Window:
    """The smallest window holding every window."""
    x0, y0 = min(w.x for w in windows), min(w.y for w in windows)
    x1, y1 = max(w.x + w.width for w in windows), max(w.y + w.height for w in windows)
    return Window(x0, y0, x1 - x0, y1 - y0)


def place(plane: np.ndarray, window: Window, target: Window) -> np.ndarray:
    """A (H, W) plane over ``window`` on ``target`` (which holds it), black around it."""
    out = np.zeros((target.height, target.width), np.float32)
    top, left = window.y - target.y, window.x - target.x
    out[top : top + window.height, left : left + window.width] = plane
    return out
