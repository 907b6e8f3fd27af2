"""Colour on OpenColorIO: scene-linear plates to the model's [0, 1] space and back, HDR kept.

Diffusion models expect display-referred [0, 1] images; plates are scene-linear HDR. A view
transform there and back clips highlights and, after 8-bit quantisation in the model, loses
precision. So decoding transfers the model's *change* onto the source instead of inverting the
model's output: with ``a = inv(enc(src))`` and ``b = inv(model(enc(src)))``,

    out = src · b / a           where |a| is well above zero (ratio transfer)
    out = src + alpha · (b − a)  near zero (additive transfer, blended in smoothly)

so an identity model returns the plate bit for bit, values far above 1 and negative ones
included. Alpha: RGB is unpremultiplied before the transform; the result is premultiplied by
the plate's own alpha. NaN/Inf never reach the model and never come out.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PyOpenColorIO as ocio

from .errors import ColorError

PINNED_CONFIG = "ocio://cg-config-v5.0.0_aces-v2.1_ocio-v2.6"
"""The built-in config used unless the job or $OCIO names another. Pinned by full name:
``ocio://default`` changes with every OCIO release, and view names change with it."""

DEFAULT_PLATE_SPACE = "ACEScg"
DEFAULT_DISPLAY = "sRGB - Display"
DEFAULT_VIEW = "ACES 2.0 - SDR 100 nits (Rec.709)"
DEFAULT_LOG_SPACE = "ACEScct"
ENCODINGS = ("view", "log")

# Below this magnitude (scene-linear) the ratio transfer fades into the additive one.
_RATIO_FLOOR = 1e-3
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def config_uri(explicit: str | None = None) -> str:
    """The config to use: the job's, else ``$OCIO``, else the pinned built-in config."""
    return explicit or os.environ.get("OCIO") or PINNED_CONFIG


@functools.lru_cache(maxsize=8)
def load_config(uri: str) -> ocio.Config:
    """Load an OCIO config from a file path or an ``ocio://`` built-in URI."""
    try:
        return ocio.Config.CreateFromFile(uri)
    except Exception as exc:  # noqa: BLE001 - OCIO raises its own Exception type with the reason
        raise ColorError(f"cannot load OCIO config: {exc}", uri) from None


@dataclass(frozen=True)
class EncodedPlate:
    """A plate ready for the model, plus what decoding needs to restore it."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1], display-referred, unpremultiplied
    source: np.ndarray  # (H, W, 3) float32 premultiplied scene-linear, NaN/Inf replaced by 0
    alpha: np.ndarray | None  # (H, W) float32, or None for an opaque plate
    nonfinite: np.ndarray  # (H, W) bool: pixels whose source held NaN or Inf


class ModelEncoding:
    """Forward and inverse transforms between a plate's colour space and the model's."""

    def __init__(
        self,
        config: str | None = None,
        plate_space: str = DEFAULT_PLATE_SPACE,
        encoding: str = "view",
        display: str = DEFAULT_DISPLAY,
        view: str = DEFAULT_VIEW,
        log_space: str = DEFAULT_LOG_SPACE,
    ) -> None:
        if encoding not in ENCODINGS:
            raise ColorError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
        self.config_uri = config_uri(config)
        cfg = load_config(self.config_uri)
        self.plate_space, self.encoding = plate_space, encoding
        _check_space(cfg, plate_space, self.config_uri)
        if encoding == "view":
            if display not in cfg.getDisplays():
                raise ColorError(
                    f"no display {display!r}; displays are: {', '.join(cfg.getDisplays())}", self.config_uri
                )
            if view not in cfg.getViews(display):
                raise ColorError(
                    f"no view {view!r} for {display!r}; views are: {', '.join(cfg.getViews(display))}",
                    self.config_uri,
                )
            transform = ocio.DisplayViewTransform(src=plate_space, display=display, view=view)
            self.description = f"{plate_space} -> {display} / {view}"
        else:
            _check_space(cfg, log_space, self.config_uri)
            transform = ocio.ColorSpaceTransform(src=plate_space, dst=log_space)
            self.description = f"{plate_space} -> {log_space}"
        try:
            self._forward = cfg.getProcessor(transform, ocio.TRANSFORM_DIR_FORWARD).getDefaultCPUProcessor()
            self._inverse = cfg.getProcessor(transform, ocio.TRANSFORM_DIR_INVERSE).getDefaultCPUProcessor()
        except Exception as exc:  # noqa: BLE001 - OCIO raises its own Exception type with the reason
            raise ColorError(f"cannot build {self.description}: {exc}", self.config_uri) from None

    def _apply(self, processor: ocio.CPUProcessor, rgb: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        processor.applyRGB(out)  # in place
        return out

    def encode(self, rgb: np.ndarray, alpha: np.ndarray | None = None) -> EncodedPlate:
        """Scene-linear premultiplied ``(H, W, 3)`` to the model's [0, 1] image."""
        rgb = np.asarray(rgb, dtype=np.float32)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected (H, W, 3) RGB, got {rgb.shape}")
        finite = np.isfinite(rgb)
        nonfinite = ~finite.all(axis=2)
        source = np.where(finite, rgb, np.float32(0))
        straight = source
        if alpha is not None:
            alpha = np.asarray(alpha, dtype=np.float32)
            nonfinite |= ~np.isfinite(alpha)
            alpha = np.nan_to_num(alpha, nan=0.0, posinf=1.0, neginf=0.0)
            covered = alpha > 0
            straight = np.where(covered[..., None], source / np.where(covered, alpha, 1)[..., None], source)
        image = np.clip(self._apply(self._forward, straight), 0.0, 1.0)
        image = np.nan_to_num(image, nan=0.0)
        return EncodedPlate(image, source, alpha, nonfinite)

    def to_scene_linear(self, model_image: np.ndarray) -> np.ndarray:
        """A generated ``(H, W, 3)`` [0, 1] image (no plate behind it) to opaque scene-linear RGB."""
        model_image = np.clip(np.nan_to_num(np.asarray(model_image, dtype=np.float32), nan=0.0), 0.0, 1.0)
        return self._apply(self._inverse, model_image)

    def decode(self, encoded: EncodedPlate, model_image: np.ndarray) -> np.ndarray:
        """The model's ``(H, W, 3)`` [0, 1] output back to premultiplied scene-linear.

        The model's change relative to ``encoded.image`` is transferred onto the source, so
        unchanged pixels come back exactly as they were in the plate.
        """
        model_image = np.nan_to_num(np.asarray(model_image, dtype=np.float32), nan=0.0)
        if model_image.shape != encoded.image.shape:
            raise ValueError(f"model image {model_image.shape} != encoded {encoded.image.shape}")
        a = self._apply(self._inverse, encoded.image).astype(np.float64)
        b = self._apply(self._inverse, np.clip(model_image, 0.0, 1.0)).astype(np.float64)
        src = encoded.source.astype(np.float64)
        cover = np.ones(src.shape[:2]) if encoded.alpha is None else np.where(encoded.alpha > 0, encoded.alpha, 1.0)
        cover = cover[..., None]

        weight = np.clip(np.abs(a) / _RATIO_FLOOR, 0.0, 1.0)
        ratio_minus_one = (b - a) / np.where(a == 0, 1.0, a)
        delta = weight * src * ratio_minus_one + (1.0 - weight) * cover * (b - a)
        out = src + delta
        out[encoded.nonfinite] = (b * cover)[encoded.nonfinite]
        return np.clip(np.nan_to_num(out), -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)


def _check_space(cfg: ocio.Config, name: str, uri: str) -> None:
    if cfg.getColorSpace(name) is None:
        known = ", ".join(cfg.getColorSpaceNames())
        raise ColorError(f"no colour space {name!r}; colour spaces are: {known}", uri)


@dataclass(frozen=True)
class RoundTripError:
    """Relative error of decode(model(encode(plate))) against the plate, over finite pixels."""

    median: float
    p99: float
    max: float
    pixels: int

    def __str__(self) -> str:
        return (
            f"relative error over {self.pixels} finite values: median {self.median:.3g}, "
            f"99th percentile {self.p99:.3g}, max {self.max:.3g}"
        )


def quantize(bits: int) -> Callable[[np.ndarray], np.ndarray]:
    """A stand-in 'model' that only quantises to ``bits`` per channel, as 8-bit VAEs do."""
    levels = float(2**bits - 1)
    return lambda image: np.round(image * levels) / levels


def roundtrip_error(
    encoding: ModelEncoding,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    model: Callable[[np.ndarray], np.ndarray] = lambda image: image,
) -> RoundTripError:
    """Measure what the round trip through ``model`` costs on a plate (finite values only).

    Relative error is ``|out - src| / max(|src|, 1e-3)`` so that near-black noise is not
    reported as huge relative errors.
    """
    encoded = encoding.encode(rgb, alpha)
    out = encoding.decode(encoded, model(encoded.image))
    finite = np.isfinite(np.asarray(rgb)) & ~encoded.nonfinite[..., None]
    src = encoded.source[finite].astype(np.float64)
    rel = np.abs(out[finite] - src) / np.maximum(np.abs(src), _RATIO_FLOOR)
    if rel.size == 0:
        return RoundTripError(0.0, 0.0, 0.0, 0)
    return RoundTripError(float(np.median(rel)), float(np.percentile(rel, 99)), float(rel.max()), int(rel.size))
