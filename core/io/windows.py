"""Pixel windows: EXR data/display windows, and images moved between them.

Plates, mattes, AOVs and stylized frames each cover their own data window; these put them over one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import StyleCompError


@dataclass(frozen=True)
class Window:
    """A pixel rectangle: origin and size, as EXR data/display windows are reported."""

    x: int
    y: int
    width: int
    height: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.width, self.height]


def union_window(a: Window, b: Window) -> Window:
    """The smallest window holding both ``a`` and ``b`` (origins may be negative)."""
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    x1, y1 = max(a.x + a.width, b.x + b.width), max(a.y + a.height, b.y + b.height)
    return Window(x0, y0, x1 - x0, y1 - y0)


def reframe(pixels: np.ndarray, window: Window, target: Window) -> np.ndarray:
    """Pixels (H, W, ...) over ``window`` moved onto ``target``: zero (transparent black) outside, cropped beyond.

    Works for RGBA images and AOV planes alike; rows run down from the window's ``y`` as EXR
    stores them.
    """
    array = np.asarray(pixels)
    if array.shape[:2] != (window.height, window.width):
        raise StyleCompError(
            f"pixels shaped {array.shape} do not fill data window {window.as_list()} (x, y, width, height)"
        )
    out = np.zeros((target.height, target.width, *array.shape[2:]), dtype=array.dtype)
    x0, y0 = max(window.x, target.x), max(window.y, target.y)
    x1 = min(window.x + window.width, target.x + target.width)
    y1 = min(window.y + window.height, target.y + target.height)
    if x0 < x1 and y0 < y1:
        out[y0 - target.y : y1 - target.y, x0 - target.x : x1 - target.x] = array[
            y0 - window.y : y1 - window.y, x0 - window.x : x1 - window.x
        ]
    return out


def align(a: np.ndarray, a_window: Window, b: np.ndarray, b_window: Window) -> tuple[np.ndarray, np.ndarray, Window]:
    """Two images over different data windows as two arrays over their union window, and that window.

    Nuke: a ``Merge``/``Keymix`` with ``bbox`` set to ``union`` does the same implicitly.
    """
    union = union_window(a_window, b_window)
    return reframe(a, a_window, union), reframe(b, b_window, union), union
