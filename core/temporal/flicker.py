"""Flicker: the temporal consistency of a stylized sequence, measured with the render's motion vectors.

Everything is computed on the plate's display window, ``(H, W)`` pixels with centres at integer
indices, rows running down; each AOV is moved there from its own data window (empty outside it).
Colours are compared in the model's encoded [0, 1] space (``ModelEncoding.encode(rgb, alpha).image``:
display-referred, unpremultiplied, clipped), for the plate's beauty and the stylized RGBA alike, so
an emissive highlight at 15.0 weighs no more than a white at 1.0 and numbers compare with papers
that measure RGB in [0, 1].

**Pairs.** For consecutive frames (t-1, t) a reference frame r, a source frame s and a field d
(pixels, x right, y down, on r's grid, pointing to where r's pixel is in s): backward vectors give
r = t, s = t-1, d = frame t's vectors; forward vectors give r = t-1, s = t, d = frame t-1's vectors.
The source is warped onto the reference with bilinear sampling: ``Ô(x) = O_s(x + d(x))``.

**Mask** (from the plate's AOVs, shared by the plate and the stylized sequence): M(x) holds where
x + d(x) lies on screen (within the pixel centres), the depth test passes, ``|Z_s(x + d) - Z_r(x)|
≤ τ·|Z_r(x)|`` (bilinear Z_s, τ = ``motion.DEPTH_TOLERANCE``, 5%), and every bilinear neighbour of
x + d in s that has a weight carries r's object ID. That is stricter than ``motion.visible_before``
(nearest pixel): a sample blended across an object's edge is no like-for-like comparison. A test
whose AOV is missing is skipped (``FlickerReport.tests`` says which ran). Pixels on screen that
fail a test are disoccluded.

**Warp error** of a pair: ``MSE = Σ M·‖Ô - O_r‖² / (3·Σ M)`` (per-channel, Lai et al. 2018) and
``L1 = Σ M·|Ô - O_r|₁ / (3·Σ M)``. ``E_warp`` is the mean over pairs (pairs with an empty mask are
left out). ``R = E_warp(stylized) / E_warp(plate)`` with the same vectors and mask: R ≈ 1 means no
flicker beyond what the render itself has.

**D** = ``mean |S - P|`` over channels and covered pixels (plate or stylized alpha > 0; every pixel
without alpha), averaged over frames: how far the stylization moved away from the plate, the guard
against "consistent because nothing changed".

**Drift** catches slow changes that adjacent pairs miss: frame t is compared with frame 0 (the
first frame measured) along vectors composed over every step. Backward: ``C_t(x) = C_{t-1}(x + d_t(x))``
(bilinear in C), the position in frame 0 of pixel x of frame t, and ``drift_t = Σ V·‖O_0(C_t) - O_t‖²
/ (3·Σ V)`` on frame t's grid. Forward: ``C_t(x) = C_{t-1}(x) + d_{t-1}(C_{t-1}(x))``, the position in
frame t of pixel x of frame 0, and ``drift_t = Σ V·‖O_t(C_t) - O_0‖² / (3·Σ V)`` on frame 0's grid.
The chain mask V keeps only pixels visible at every step (each step's M at every weighted
bilinear neighbour of the chain's position). ``drift`` is the mean of drift_t over t ≥ 1, reported for the plate too.

**Vector conventions** (``direction-units-y``): backward or forward; units and v's direction as
``stylecomp.temporal.motion`` reads them (pixels, or NDC as fractions of the width and height; v up as in
Nuke, or down), so a name means what the job's ``consistency.vector_units/vector_y`` mean. Each
candidate warps the plate by its own vectors (unmasked, positions clamped) over up to
``DETECTION_PAIRS`` pairs spread through the range, and is scored on the pixels that change between
frames by more than their noise: median warped error / median error with no motion (``check_conventions``).
A two-way pass (Cycles' 4-channel ``Vector``) gives each direction its own pair: XY points to the previous
frame, ZW is the negated vector to the next (measured on blender_street; see the README). ``auto`` takes
the lowest score. A convention reproduces the plate when its score is at most ``REPRODUCES``; if the
chosen one (auto or named) does not, the measurement is refused: vectors that do not describe the
motion make a warp error that measures nothing.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image, ImageDraw

from ..color import ModelEncoding
from ..errors import PlateError, StyleCompError
from ..io.aovs import beauty, detect_aovs, object_ids
from ..io.atomic import atomic_target
from ..io.plates import Plate, Window, read_plate
from ..io.sequence import FrameSequence, discover
from ..io.windows import reframe
from ..stage import STYLIZED_CHANNELS
from .motion import DEPTH_TOLERANCE, VectorConvention, warp

DIRECTIONS = ("backward", "forward")
UNITS: tuple[Literal["pixels", "ndc"], ...] = ("pixels", "ndc")
Y_AXES: tuple[Literal["up", "down"], ...] = ("up", "down")
DETECTION_PAIRS = 4
DETECTION_PIXELS = 250_000  # reference pixels sampled per pair when scoring conventions
CHANGING = 1e-4  # a pixel changes between frames when its encoded MSE exceeds this (RMS 0.01)
REPRODUCES = 0.25  # score at or below which a convention reproduces the plate
NOISE_MARGIN = 9.0  # a pixel changes when its frame-to-frame error exceeds the frames' noise floor this many times
T = TypeVar("T")


@dataclass(frozen=True)
class MotionConvention:
    """How a motion AOV is stored: its direction in time, and its units and v axis (``motion``'s)."""

    direction: str  # "backward": vectors at t point to t-1; "forward": to t+1
    vectors: VectorConvention

    @property
    def name(self) -> str:
        return f"{self.direction}-{self.vectors.units}-y{self.vectors.y}"

    @classmethod
    def parse(cls, name: str) -> MotionConvention:
        """``backward-pixels-yup`` and the like; raises StyleCompError naming the choices."""
        for convention in CONVENTIONS:
            if convention.name == name:
                return convention
        raise StyleCompError(f"unknown vector convention {name!r}; use auto or one of {', '.join(CONVENTION_NAMES)}")


CONVENTIONS = tuple(
    MotionConvention(direction, VectorConvention(units, y))
    for direction, units, y in itertools.product(DIRECTIONS, UNITS, Y_AXES)
)
CONVENTION_NAMES = tuple(c.name for c in CONVENTIONS)


@dataclass(frozen=True)
class PlateFrame:
    """One plate frame on the display window: what the metric needs from it."""

    frame: int
    image: np.ndarray  # (H, W, 3) encoded [0, 1]
    alpha: np.ndarray | None  # (H, W), or None without alpha
    vectors: np.ndarray  # (H, W, 2) u, v as stored; (H, W, 4) for a two-way pass: the pair to t-1, then to t+1
    depth: np.ndarray | None  # (H, W), non-finite values made finite
    ids: np.ndarray | None  # (H, W) integer-valued

    def field(self, direction: str) -> np.ndarray:
        """The (H, W, 2) vectors a convention of ``direction`` reads: a two-way pass gives its pair for that way."""
        if self.vectors.shape[2] == 4 and direction == "forward":
            return self.vectors[..., 2:]
        return self.vectors[..., :2]


@dataclass(frozen=True)
class StylizedFrame:
    """One stylized (or comp) frame on the plate's display window."""

    image: np.ndarray  # (H, W, 3) encoded [0, 1]
    alpha: np.ndarray | None  # (H, W)


class Sampler:
    """Bilinear lookups at fixed positions ``(h, w)`` in frames of ``width`` x ``height`` pixels."""

    def __init__(self, xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> None:
        if width < 2 or height < 2:
            raise StyleCompError(f"a {width}x{height} frame is too small to warp")
        self.xs, self.ys = xs, ys  # (h, w) each, as given
        self.on_screen = (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)  # (h, w)
        xs, ys = np.clip(xs, 0, width - 1), np.clip(ys, 0, height - 1)
        x0 = np.minimum(xs.astype(np.int64), width - 2)
        y0 = np.minimum(ys.astype(np.int64), height - 2)
        fx, fy = xs - x0, ys - y0  # (h, w): the far neighbours' weights
        top_left = y0 * width + x0  # (h, w) flat indices
        self.corners = (top_left, top_left + 1, top_left + width, top_left + width + 1)
        right, down = fx > 0, fy > 0  # (h, w): the far neighbours weigh something
        left, up = fx < 1, fy < 1
        self.used = (left & up, right & up, left & down, right & down)  # neighbours with a nonzero weight

    @classmethod
    def following(cls, vectors: np.ndarray, convention: MotionConvention) -> Sampler:
        """Positions x + d(x) in the source frame of each pixel x, from its stored vectors ``(H, W, 2)``."""
        xs, ys = convention.vectors.source_positions(vectors)  # (H, W) each
        return cls(xs, ys, vectors.shape[1], vectors.shape[0])

    def offsets(self) -> np.ndarray:
        """The field d ``(h, w, 2)``: positions minus the pixel grid, x right, y down (unclamped)."""
        rows, cols = np.indices(self.xs.shape, dtype=np.float32)
        return np.stack([self.xs - cols, self.ys - rows], axis=-1)

    def bilinear(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H, W, C) or (H, W) sampled at the positions: (h, w, C) or (h, w), by ``motion.warp``
        (the sampler consistency warps with), so the metric and the mechanisms it checks sample alike."""
        if image.ndim == 2:
            return warp(image[..., None], self.xs, self.ys)[0][..., 0]
        return warp(image, self.xs, self.ys)[0]

    def all_of(self, mask: np.ndarray) -> np.ndarray:
        """True where a boolean ``(H, W)`` mask holds at every bilinear neighbour with a nonzero weight."""
        flat = mask.reshape(-1)
        return np.logical_and.reduce(
            [flat[corner] | ~used for corner, used in zip(self.corners, self.used, strict=True)]
        )

    def same_value(self, source: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """True where ``source`` (H, W) equals ``reference`` (h, w) at every neighbour with a nonzero weight."""
        flat = source.reshape(-1)
        return np.logical_and.reduce(
            [(flat[corner] == reference) | ~used for corner, used in zip(self.corners, self.used, strict=True)]
        )


def pair_roles(previous: T, current: T, convention: MotionConvention) -> tuple[T, T]:
    """(reference, source) of the pair (t-1, t): the frame whose vectors are used comes first."""
    return (current, previous) if convention.direction == "backward" else (previous, current)


@dataclass(frozen=True)
class Visibility:
    """Which reference pixels a warp may compare: on screen, and passing the depth and ID tests."""

    on_screen: np.ndarray  # (H, W) bool
    consistent: np.ndarray  # (H, W) bool: depth and ID tests pass (True where a test is skipped)

    @property
    def valid(self) -> np.ndarray:
        return self.on_screen & self.consistent

    @property
    def disoccluded(self) -> np.ndarray:
        return self.on_screen & ~self.consistent


def visibility(sampler: Sampler, reference: PlateFrame, source: PlateFrame, tolerance: float) -> Visibility:
    """The depth test (relative ``tolerance``) and object-ID match of a warp from source to reference."""
    consistent = np.ones(sampler.on_screen.shape, bool)  # (H, W)
    if reference.depth is not None and source.depth is not None:
        warped = sampler.bilinear(source.depth)
        consistent &= np.abs(warped - reference.depth) <= tolerance * np.abs(reference.depth)
    if reference.ids is not None and source.ids is not None:
        consistent &= sampler.same_value(source.ids, reference.ids)
    return Visibility(sampler.on_screen, consistent)


def masked_errors(warped: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(MSE, L1) per channel of ``(H, W, 3)`` images over a ``(H, W)`` mask; NaN for an empty mask."""
    count = int(mask.sum())
    if count == 0:
        return math.nan, math.nan
    difference = (warped[mask] - reference[mask]).astype(np.float64)  # (count, 3)
    return float(np.mean(difference**2)), float(np.mean(np.abs(difference)))


# ---------------------------------------------------------------------------------------------
# Reading frames.


def _on_display(plate: Plate, names: Sequence[str]) -> np.ndarray:
    """Channels ``(H, W, len(names))`` moved from their data window onto the display window."""
    part = plate.locate(names[0])[0]
    return reframe(plate.channels(names), part.data_window, plate.display_window)


def _encoded_on_display(
    encoding: ModelEncoding, plate: Plate, names: Sequence[str], rgb: np.ndarray, alpha: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Encode RGB over its data window, then place it on the display window (empty = encoded black)."""
    window, display = plate.locate(names[0])[0].data_window, plate.display_window
    black = encoding.encode(np.zeros((1, 1, 3), np.float32), None if alpha is None else np.zeros((1, 1))).image
    inside = reframe(np.ones(rgb.shape[:2], bool), window, display)[..., None]  # (H, W, 1)
    image = np.where(inside, reframe(encoding.encode(rgb, alpha).image, window, display), black[0, 0])
    return image, None if alpha is None else reframe(alpha, window, display)


def _check_display(plate: Plate, display: Window) -> None:
    if plate.display_window != display:
        raise PlateError(
            f"display window {plate.display_window.as_list()} differs from the first plate frame's {display.as_list()}",
            plate.path,
        )


def read_plate_frame(
    path: str, frame: int, display: Window, encoding: ModelEncoding, aovs: Mapping[str, Sequence[str]] | None = None
) -> PlateFrame:
    """A plate frame's encoded beauty, motion vectors, depth and IDs; PlateError without vectors."""
    plate = read_plate(path)
    _check_display(plate, display)
    found = detect_aovs(plate.channel_names, aovs)
    if "motion" not in found:
        raise PlateError("no motion-vector AOV found (backward.u/v, motionvector, Vector, ...); map it in 'aovs'", path)
    image, alpha = _encoded_on_display(encoding, plate, found["beauty"].channels, *beauty(plate, aovs))
    depth = ids = None
    if "depth" in found:
        depth = np.nan_to_num(_on_display(plate, found["depth"].channels)[..., 0], nan=0.0)
    if (plane := object_ids(plate, aovs)) is not None:  # Cryptomatte's dominant object, or the ID pass
        ids = np.nan_to_num(reframe(plane[0], plane[1], plate.display_window))
    motion = found["motion"].channels
    vectors = np.nan_to_num(
        _on_display(plate, motion if len(motion) == 4 else motion[:2]), nan=0.0, posinf=0.0, neginf=0.0
    )
    if vectors.shape[2] == 4:  # Cycles' Vector: ZW is (this frame - next frame), the forward vector negated
        vectors[..., 2:] *= -1
    return PlateFrame(frame, image, alpha, vectors, depth, ids)


def read_stylized_frame(path: str, display: Window, encoding: ModelEncoding) -> StylizedFrame:
    """A stylized frame: ``stylized.R/G/B/A`` (stylecomp's output) if present, else its plain RGB(A)."""
    plate = read_plate(path)
    _check_display(plate, display)
    if STYLIZED_CHANNELS[0] in plate.channel_names:
        rgba = plate.channels(STYLIZED_CHANNELS)
        return StylizedFrame(*_encoded_on_display(encoding, plate, STYLIZED_CHANNELS, rgba[..., :3], rgba[..., 3]))
    rgb, alpha = beauty(plate)
    names = detect_aovs(plate.channel_names)["beauty"].channels
    return StylizedFrame(*_encoded_on_display(encoding, plate, names, rgb, alpha))


def difference(stylized: StylizedFrame, plate: PlateFrame) -> float:
    """Mean |S - P| over channels and pixels covered by either (alpha > 0; an image without alpha covers all)."""
    covered = np.zeros(plate.image.shape[:2], bool)  # (H, W)
    for alpha in (stylized.alpha, plate.alpha):
        covered |= True if alpha is None else alpha > 0
    if not covered.any():
        return math.nan
    return float(np.mean(np.abs(stylized.image[covered] - plate.image[covered]), dtype=np.float64))


# ---------------------------------------------------------------------------------------------
# Choosing the vector convention.


@dataclass(frozen=True)
class ConventionCheck:
    """How well each convention's vectors reproduce the plate, and which one was chosen."""

    requested: str  # "auto" or a convention name
    scores: dict[str, float]  # convention name -> median warped / median static error on changing pixels
    changing: float  # share of sampled pixels that change between frames

    @property
    def best(self) -> str:
        return min(self.scores, key=lambda name: (self.scores[name], CONVENTION_NAMES.index(name)))

    @property
    def chosen(self) -> str:
        return self.best if self.requested == "auto" else self.requested

    def reproduces(self, name: str) -> bool:
        """Whether warping the plate by ``name`` removes most of its frame-to-frame change."""
        return self.scores[name] <= REPRODUCES


def noise_variance(image: np.ndarray) -> float:
    """The variance of a frame's pixel noise (mean over channels), estimated from the frame alone.

    Immerkær's operator (the second differences [[1, -2, 1], [-2, 4, -2], [1, -2, 1]], whose weights' squares sum
    to 36) cancels smooth shading; the median of its absolute response over ``(H, W, C)`` ignores the edges and
    texture that a mean would count as noise (Gaussian: sigma = median|response| / 0.6745 / 6).
    """
    if image.shape[0] < 3 or image.shape[1] < 3:
        return 0.0
    response = (
        4 * image[1:-1, 1:-1]
        - 2 * (image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:])
        + image[:-2, :-2]
        + image[:-2, 2:]
        + image[2:, :-2]
        + image[2:, 2:]
    )
    sigma = np.median(np.abs(response), axis=(0, 1)) / 0.6745 / 6  # (C,)
    return float(np.mean(sigma.astype(np.float64) ** 2))


def check_conventions(pairs: Sequence[tuple[PlateFrame, PlateFrame]], requested: str = "auto") -> ConventionCheck:
    """Score every convention on (at least one) plate pairs: unmasked, positions clamped, ~``DETECTION_PIXELS`` a pair.

    Per reference pixel x, e_0(x) = mean over RGB of (I_s(x) - I_r(x))² and e_c(x) the same with I_s
    sampled at x + d_c(x). The score is median(e_c) / median(e_0) over the pixels that change between the
    frames: 0 when the vectors explain the motion, about 1 or more when they do not. Path-traced plates are
    noisy, and noise alone changes every pixel: its share of e_0 is the floor F = var_r + var_s
    (``noise_variance``), whatever the vectors. A pixel counts as changing only when e_0 > ``NOISE_MARGIN``·F
    (and > ``CHANGING``): where the motion, not the noise, makes the difference, so that each convention is
    judged against zero motion on the same pixels however noisy the render. A plate that does not change
    scores 0 everywhere: any convention reproduces it.
    """
    if requested != "auto":
        MotionConvention.parse(requested)
    height, width = pairs[0][0].image.shape[:2]
    stride = max(1, math.ceil(math.sqrt(width * height / DETECTION_PIXELS)))
    floors = {id(frame): noise_variance(frame.image) for pair in pairs for frame in pair}
    warped: dict[str, list[np.ndarray]] = {name: [] for name in CONVENTION_NAMES}
    static: dict[str, list[np.ndarray]] = {name: [] for name in CONVENTION_NAMES}
    for previous, current in pairs:
        for convention in CONVENTIONS:
            reference, source = pair_roles(previous, current, convention)
            xs, ys = convention.vectors.source_positions(reference.field(convention.direction))  # (H, W) each
            sampler = Sampler(xs[::stride, ::stride], ys[::stride, ::stride], width, height)  # (h, w)
            target = reference.image[::stride, ::stride]  # (h, w, 3)
            still = np.mean((source.image[::stride, ::stride] - target) ** 2, axis=-1)  # (h, w)
            changing = still > max(CHANGING, NOISE_MARGIN * (floors[id(reference)] + floors[id(source)]))
            static[convention.name].append(still[changing])
            warped[convention.name].append(np.mean((sampler.bilinear(source.image) - target) ** 2, axis=-1)[changing])
    scores = {}
    for name in CONVENTION_NAMES:
        still_all, warped_all = np.concatenate(static[name]), np.concatenate(warped[name])
        scores[name] = float(np.median(warped_all) / np.median(still_all)) if still_all.size else 0.0
    grid = len(range(0, height, stride)) * len(range(0, width, stride))
    changing_share = sum(still.size for still in static[CONVENTION_NAMES[0]]) / (grid * len(pairs))
    return ConventionCheck(requested, scores, changing_share)


def require_reproduction(check: ConventionCheck, where: str) -> MotionConvention:
    """The chosen convention, or PlateError when it does not reproduce the plate."""
    chosen = check.chosen
    if check.reproduces(chosen):
        return MotionConvention.parse(chosen)
    best = check.scores[check.best]
    rule = (
        f"a convention must leave at most {REPRODUCES:g} of the plate's frame-to-frame error "
        f"(median over changing pixels)"
    )
    if check.requested == "auto":
        tried = ", ".join(f"{name} {score:.2f}" for name, score in sorted(check.scores.items(), key=lambda i: i[1]))
        raise PlateError(
            f"the motion vectors do not reproduce the plate under any convention, so flicker cannot be measured: "
            f"warping the plate by its own vectors leaves at best {best:.2f} ({check.best}); {rule}; all: {tried}",
            where,
        )
    raise PlateError(
        f"vectors read as {chosen} do not reproduce the plate: warping it by them leaves "
        f"{check.scores[chosen]:.2f} of its frame-to-frame error; {rule}; the best is {check.best} ({best:.2f})",
        where,
    )


# ---------------------------------------------------------------------------------------------
# The measurement.


@dataclass(frozen=True)
class PairResult:
    """The errors of one pair (t-1, t), labelled by frame t; drift compares t with the first frame."""

    frame: int
    mse: float
    mse_plate: float
    l1: float
    l1_plate: float
    valid: float  # share of pixels compared
    disoccluded: float  # share of pixels on screen but failing the depth or ID test
    drift: float
    drift_plate: float
    drift_valid: float  # share of pixels visible along the whole chain


@dataclass(frozen=True)
class FlickerReport:
    """Everything ``stylecomp flicker`` prints: summary values, per-frame values, convention."""

    stylized: str
    plate: str
    frames: tuple[int, ...]
    convention: MotionConvention
    check: ConventionCheck
    tests: tuple[str, ...]  # mask tests that ran: on-screen, depth, object id
    depth_tolerance: float
    pairs: tuple[PairResult, ...]
    differences: tuple[float, ...]  # D per frame

    def _mean(self, field: str) -> float:
        values = [getattr(p, field) for p in self.pairs if not math.isnan(getattr(p, field))]
        return float(np.mean(values)) if values else math.nan

    # Summary values, named as the quantities (and the JSON keys) are.

    @property
    def E_warp(self) -> float:
        return self._mean("mse")

    @property
    def E_warp_plate(self) -> float:
        return self._mean("mse_plate")

    @property
    def R(self) -> float:
        return _ratio(self.E_warp, self.E_warp_plate)

    @property
    def D(self) -> float:
        values = [d for d in self.differences if not math.isnan(d)]
        return float(np.mean(values)) if values else math.nan

    @property
    def drift(self) -> float:
        return self._mean("drift")

    @property
    def drift_plate(self) -> float:
        return self._mean("drift_plate")

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: summary keys, the convention and its check, and per-frame values (null where undefined)."""
        per_frame: list[dict[str, float | None]] = [
            {"frame": self.frames[0], "D": _json(self.differences[0])} | dict.fromkeys(_PAIR_KEYS)
        ]
        for pair, d in zip(self.pairs, self.differences[1:], strict=True):
            per_frame.append(
                {"frame": pair.frame, "D": _json(d)}
                | {key: _json(getattr(pair, field)) for key, field in _PAIR_KEYS.items()}
            )
        return {
            "R": _json(self.R),
            "E_warp": _json(self.E_warp),
            "E_warp_plate": _json(self.E_warp_plate),
            "E_warp_l1": _json(self._mean("l1")),
            "E_warp_plate_l1": _json(self._mean("l1_plate")),
            "D": _json(self.D),
            "drift": _json(self.drift),
            "drift_plate": _json(self.drift_plate),
            "R_drift": _json(_ratio(self.drift, self.drift_plate)),
            "stylized": self.stylized,
            "plate": self.plate,
            "frames": [self.frames[0], self.frames[-1]],
            "vectors": {
                "convention": self.convention.name,
                "requested": self.check.requested,
                "scores": dict(self.check.scores),
                "changing_pixels": self.check.changing,
            },
            "mask_tests": list(self.tests),
            "depth_tolerance": self.depth_tolerance,
            "per_frame": per_frame,
        }


_PAIR_KEYS = {
    "E_warp": "mse",
    "E_warp_plate": "mse_plate",
    "E_warp_l1": "l1",
    "E_warp_plate_l1": "l1_plate",
    "valid": "valid",
    "disoccluded": "disoccluded",
    "drift": "drift",
    "drift_plate": "drift_plate",
    "drift_valid": "drift_valid",
}


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; 1 for 0 / 0, inf for x / 0, NaN when either is undefined."""
    if math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    if denominator > 0:
        return numerator / denominator
    return 1.0 if numerator == 0 else math.inf


def _json(value: float) -> float | None:
    return value if math.isfinite(value) else None


class _Chain:
    """Positions composed back to the first frame, and where the chain stays visible."""

    def __init__(self, first: PlateFrame, first_stylized: StylizedFrame) -> None:
        rows, cols = np.indices(first.image.shape[:2], dtype=np.float32)
        self.first, self.first_stylized = first, first_stylized
        self.positions = np.stack([cols, rows], axis=-1)  # (H, W, 2): x, y
        self.visible = np.ones(first.image.shape[:2], bool)  # (H, W)
        self.size = first.image.shape[1], first.image.shape[0]

    def backward(self, step: Sampler, valid: np.ndarray) -> None:
        """Prepend a step: positions now live on the new frame's grid (C_t = C_{t-1}(x + d_t))."""
        self.visible = valid & step.all_of(self.visible)
        self.positions = step.bilinear(self.positions)

    def forward(self, field: np.ndarray, valid: np.ndarray) -> None:
        """Append a step: positions on the first frame's grid advance into the next frame."""
        at = Sampler(self.positions[..., 0], self.positions[..., 1], *self.size)
        self.visible &= at.on_screen & at.all_of(valid)
        self.positions = self.positions + at.bilinear(field)

    def errors(
        self, convention: MotionConvention, plate: PlateFrame, stylized: StylizedFrame
    ) -> tuple[float, float, float]:
        """(stylized MSE, plate MSE, visible share) of frame t against the first frame along the chain."""
        at = Sampler(self.positions[..., 0], self.positions[..., 1], *self.size)
        visible = self.visible & at.on_screen
        pairs = ((stylized.image, self.first_stylized.image), (plate.image, self.first.image))
        if convention.direction == "forward":  # on the first frame's grid: sample frame t
            results = [masked_errors(at.bilinear(now), first, visible)[0] for now, first in pairs]
        else:  # on frame t's grid: sample the first frame
            results = [masked_errors(at.bilinear(first), now, visible)[0] for now, first in pairs]
        return results[0], results[1], float(visible.mean())


def measure_pairs(
    plates: Iterable[PlateFrame],
    stylized: Iterable[StylizedFrame],
    convention: MotionConvention,
    tolerance: float = DEPTH_TOLERANCE,
) -> tuple[list[PairResult], list[float]]:
    """Per-pair results and per-frame D for aligned, non-empty iterables of plate and stylized frames (streamed)."""
    frames = zip(plates, stylized, strict=True)
    previous = next(frames)
    chain = _Chain(*previous)
    differences = [difference(previous[1], previous[0])]
    results: list[PairResult] = []
    for plate, styl in frames:
        differences.append(difference(styl, plate))
        reference, source = pair_roles(previous[0], plate, convention)
        ref_styl, src_styl = pair_roles(previous[1], styl, convention)
        sampler = Sampler.following(reference.field(convention.direction), convention)
        seen = visibility(sampler, reference, source, tolerance)
        valid = seen.valid
        mse, l1 = masked_errors(sampler.bilinear(src_styl.image), ref_styl.image, valid)
        mse_plate, l1_plate = masked_errors(sampler.bilinear(source.image), reference.image, valid)
        if convention.direction == "backward":
            chain.backward(sampler, valid)
        else:
            chain.forward(sampler.offsets(), valid)
        drift, drift_plate, drift_valid = chain.errors(convention, plate, styl)
        results.append(
            PairResult(
                plate.frame,
                mse,
                mse_plate,
                l1,
                l1_plate,
                float(valid.mean()),
                float(seen.disoccluded.mean()),
                drift,
                drift_plate,
                drift_valid,
            )
        )
        previous = (plate, styl)
    return results, differences


def _sequences(
    stylized: str, plate: str, frames: tuple[int, int] | None
) -> tuple[FrameSequence, FrameSequence, list[int]]:
    """Both sequences and the frames to measure; PlateError for a missing frame or fewer than two."""
    styl_seq = discover(stylized, frames)
    plate_seq = discover(plate, frames)
    if styl_seq.is_single_file or plate_seq.is_single_file:
        raise PlateError(
            "flicker needs frame sequences (name.####.exr), not single files",
            styl_seq.pattern if styl_seq.is_single_file else plate_seq.pattern,
        )
    wanted = sorted({*styl_seq.frames, *styl_seq.missing})
    for sequence in (styl_seq, plate_seq):
        absent = [f for f in wanted if f not in sequence.frames]
        if absent:
            raise PlateError("frame missing on disk", sequence.path(absent[0]))
    if len(wanted) < 2:
        raise PlateError("flicker needs at least two frames", styl_seq.pattern)
    return styl_seq, plate_seq, wanted


def detection_pairs(frames: Sequence[int], count: int = DETECTION_PAIRS) -> list[int]:
    """Indices i of up to ``count`` pairs (frames[i-1], frames[i]) spread evenly through the range."""
    indices = np.linspace(1, len(frames) - 1, min(count, len(frames) - 1))
    return sorted({round(i) for i in indices})  # numpy's round of a float64 is an int


def measure_flicker(
    stylized: str | os.PathLike[str],
    plate: str | os.PathLike[str],
    *,
    frames: tuple[int, int] | None = None,
    vectors: str = "auto",
    encoding: ModelEncoding | None = None,
    aovs: Mapping[str, Sequence[str]] | None = None,
    depth_tolerance: float = DEPTH_TOLERANCE,
) -> FlickerReport:
    """Measure a stylized sequence against its plate (frame patterns); see the module docstring.

    ``vectors`` is ``auto`` or a convention name (``CONVENTION_NAMES``); either way the convention
    must reproduce the plate. Raises PlateError for missing or damaged frames and unusable vectors.
    """
    if vectors != "auto":
        MotionConvention.parse(vectors)  # a typo fails before any frame is read
    encoding = encoding or ModelEncoding()
    styl_seq, plate_seq, wanted = _sequences(os.fspath(stylized), os.fspath(plate), frames)

    display = read_plate(plate_seq.path(wanted[0]), pixels=False).display_window

    def plate_frame(frame: int) -> PlateFrame:
        return read_plate_frame(plate_seq.path(frame), frame, display, encoding, aovs)

    sampled: dict[int, PlateFrame] = {}
    for i in detection_pairs(wanted):
        for frame in (wanted[i - 1], wanted[i]):
            if frame not in sampled:
                sampled[frame] = plate_frame(frame)
    check = check_conventions([(sampled[wanted[i - 1]], sampled[wanted[i]]) for i in detection_pairs(wanted)], vectors)
    convention = require_reproduction(check, plate_seq.pattern)
    first = sampled.pop(wanted[0])
    tests = (
        ("on-screen",)
        + (("depth",) if first.depth is not None else ())
        + (("object id",) if first.ids is not None else ())
    )
    sampled.clear()  # the measurement streams the frames again rather than hold them all
    plates = (plate_frame(frame) for frame in wanted)
    stylized_frames = (read_stylized_frame(styl_seq.path(frame), display, encoding) for frame in wanted)
    pairs, differences = measure_pairs(plates, stylized_frames, convention, depth_tolerance)
    return FlickerReport(
        styl_seq.pattern,
        plate_seq.pattern,
        tuple(wanted),
        convention,
        check,
        tests,
        depth_tolerance,
        tuple(pairs),
        tuple(differences),
    )


# ---------------------------------------------------------------------------------------------
# Presenting the report.


def vector_report(pattern: str, frames: Sequence[int], display: Window) -> dict[str, Any]:
    """The convention that reproduces a plate (``check_conventions`` on its own frames), or why none: the
    ``vectors`` section of ``stylecomp inspect``'s report. ``pattern`` is printf; ``frames`` are those readable."""
    sequence = FrameSequence(pattern)
    steps = [(a, b) for a, b in itertools.pairwise(frames) if b == a + 1]  # vectors span one frame, not a gap
    if not steps:
        return {"convention": None, "error": "no two consecutive readable frames"}
    steps = [steps[i - 1] for i in detection_pairs(list(range(len(steps) + 1)))]
    encoding = ModelEncoding()
    try:
        loaded = {f: read_plate_frame(sequence.path(f), f, display, encoding) for step in steps for f in step}
    except PlateError as exc:
        return {"convention": None, "error": f"{exc.where}: {exc.reason}"}
    check = check_conventions([(loaded[a], loaded[b]) for a, b in steps])
    return {
        "convention": check.best if check.reproduces(check.best) else None,
        "best": check.best,
        "scores": check.scores,
        "reproduces_at_most": REPRODUCES,
        "changing_pixels": check.changing,
    }


def format_report(report: FlickerReport) -> str:
    """The report as a small aligned table for a terminal."""
    values = report.as_dict()

    def number(value: object) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    how = "auto-detected" if report.check.requested == "auto" else "as requested"
    score = report.check.scores[report.convention.name]
    lines = [
        f"stylized  {report.stylized}",
        f"plate     {report.plate}",
        f"frames    {report.frames[0]}-{report.frames[-1]} ({len(report.pairs)} pairs)",
        f"vectors   {report.convention.name} ({how}; reproduces the plate: score {score:.3f} <= {REPRODUCES:g})",
        f"mask      {', '.join(report.tests)}; {np.mean([p.valid for p in report.pairs]):.1%} of pixels compared",
        "",
        f"  {'(encoded [0, 1] RGB)':<24}{'stylized':>12}{'plate':>12}",
        f"  {'warp error (MSE)':<24}{number(values['E_warp']):>12}{number(values['E_warp_plate']):>12}",
        f"  {'warp error (L1)':<24}{number(values['E_warp_l1']):>12}{number(values['E_warp_plate_l1']):>12}",
        f"  {'drift from first frame':<24}{number(values['drift']):>12}{number(values['drift_plate']):>12}",
        "",
        f"  R = E_warp(stylized) / E_warp(plate)   {number(values['R'])}",
        f"  D = mean |stylized - plate|            {number(values['D'])}",
        f"  drift(stylized) / drift(plate)         {number(values['R_drift'])}",
    ]
    return "\n".join(lines)


_PLOT_SIZE = (800, 450)
_MARGIN = (70, 20, 20, 50)  # left, top, right, bottom
_COLOURS = {"plate": (60, 110, 200), "stylized": (220, 90, 40)}


def write_plot(report: FlickerReport, path: str | os.PathLike[str]) -> None:
    """Per-frame warp error (MSE) of the plate and the stylized sequence as a line chart PNG."""
    series = {"plate": [p.mse_plate for p in report.pairs], "stylized": [p.mse for p in report.pairs]}
    frames = [p.frame for p in report.pairs]
    finite = [v for values in series.values() for v in values if math.isfinite(v)]
    top = max(finite, default=1.0) * 1.1 or 1.0
    width, height = _PLOT_SIZE
    left, upper, right, lower = _MARGIN
    plot_w, plot_h = width - left - right, height - upper - lower
    image = Image.new("RGB", _PLOT_SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(image)

    def x_of(frame: int) -> float:
        span = max(frames[-1] - frames[0], 1)
        return left + plot_w * ((frame - frames[0]) / span if len(frames) > 1 else 0.5)

    def y_of(value: float) -> float:
        return upper + plot_h * (1 - value / top)

    for k in range(5):  # horizontal grid and y labels
        value = top * k / 4
        y = y_of(value)
        draw.line([(left, y), (width - right, y)], fill=(230, 230, 230))
        draw.text((4, y - 6), f"{value:.2e}", fill=(60, 60, 60))
    step = max(1, math.ceil(len(frames) / 10))
    for frame in frames[::step]:
        draw.line([(x_of(frame), height - lower), (x_of(frame), height - lower + 4)], fill=(0, 0, 0))
        draw.text((x_of(frame) - 12, height - lower + 6), str(frame), fill=(60, 60, 60))
    draw.line([(left, upper), (left, height - lower), (width - right, height - lower)], fill=(0, 0, 0))
    draw.text((left + plot_w / 2 - 20, height - 18), "frame", fill=(0, 0, 0))
    draw.text((left + 4, 4), "warp error (MSE, encoded [0, 1])", fill=(0, 0, 0))
    for name, values in series.items():
        points = [(x_of(f), y_of(v)) for f, v in zip(frames, values, strict=True) if math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=_COLOURS[name], width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=_COLOURS[name])
    for row, name in enumerate(series):  # legend, top right
        y = upper + 8 + 16 * row
        draw.line([(width - right - 130, y + 6), (width - right - 100, y + 6)], fill=_COLOURS[name], width=3)
        draw.text((width - right - 92, y), name, fill=(0, 0, 0))
    with atomic_target(path) as temp:
        image.save(temp, format="PNG")
