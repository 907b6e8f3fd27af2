"""Normal space: bring a plate's normals AOV into camera space, from world space when needed.

stylecomp's camera space is +X right, +Y up, +Z toward the camera (OpenGL's, Blender's; see
``conditioning.normal_condition``). Cycles, Arnold and Karma write *world*-space normals. The
world-to-camera rotation comes from the header where the renderer writes one (``HEADER_MATRICES``),
else it is estimated from the depth pass: normals derived from depth are camera space, and the
rotation that best takes the plate's normals onto them (Wahba's problem, solved by SVD) is the
camera's. The focal length that the depth-derived normals need is found by the same fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import PlateError
from .aovs import AovMatch
from .plates import Plate, Window
from .windows import reframe

NORMAL_SPACES: tuple[str, ...] = ("auto", "camera", "world")

# Header attributes holding the camera, matched case-insensitively, also behind Nuke's "exr/"
# metadata prefix: (name, what it maps). They are the OpenEXR standard's Imath matrices (row
# vectors, p * M); a matrix with its translation in the last column is read as column vectors.
# Arnold, RenderMan and Houdini (Karma, Mantra) write them; Nuke's Write node passes them on.
HEADER_MATRICES: tuple[tuple[str, str], ...] = (
    ("worldtocamera", "world_to_camera"),
    ("worldtondc", "world_to_projection"),
    ("worldtoscreen", "world_to_projection"),
)
# OpenImageIO reports an EXR's "cameraTransform" (V-Ray's camera, whose convention V-Ray does not
# document) as "worldtocamera", all lower case; it is not taken for the standard worldToCamera.
_OIIO_CAMERA_TRANSFORM = "worldtocamera"
WORLD_LAYER_HINTS = ("world",)  # a normals layer named n_world, normal_world, world_normals...
CAMERA_LAYER_HINTS = ("cam",)  # n_cam, normal_camera, camera_normals...
IDENTITY_DEGREES = 3.0  # auto: a depth fit this close to the identity means the normals are camera space
FIT_SIZE = 256  # pixels along the longer side that a depth fit samples
MIN_FIT_PIXELS = 500  # planar pixels the depth fit needs
_PLANAR = 1e-3  # second difference of inverse depth, relative to it, that still counts as a plane
_SMOOTH_COS = math.cos(math.radians(2.0))  # neighbouring normals this close: inside a surface
_INLIER_DEGREES = 5.0  # after a first fit, pixels further off than this are left out of the second
_FOV_RANGE = (5.0, 150.0)  # horizontal field of view searched for the focal length, degrees


@dataclass(frozen=True)
class DepthFit:
    """A world-to-camera rotation estimated from depth, and how well it fits."""

    rotation: np.ndarray  # (3, 3), n_cam = rotation @ n_world
    residual_degrees: float  # RMS angle between rotated normals and depth normals, inliers
    focal_pixels: float  # the focal length the fit found, in display-window pixels
    pixels: int  # planar pixels used


@dataclass(frozen=True)
class CameraNormals:
    """A frame's normals in camera space, and how their space and rotation were found."""

    normals: np.ndarray  # (H, W, 3) camera space
    space: str  # what the plate holds: "camera" or "world"
    decided_by: str  # "job", "layer name", "Blender header", "depth fit" or "assumed"
    rotation_source: str | None = None  # "header <attribute>" or "estimated from depth"
    rotation: np.ndarray | None = None  # world-to-camera (3, 3) applied
    fit: DepthFit | None = None  # the depth fit, when one was made

    def as_dict(self) -> dict[str, object]:
        """The report ``stylecomp inspect`` prints."""
        report: dict[str, object] = {"space": self.space, "decided_by": self.decided_by}
        if self.rotation_source is not None:
            report["rotation_source"] = self.rotation_source
        if self.fit is not None:
            report |= {
                "residual_degrees": round(self.fit.residual_degrees, 3),
                "focal_pixels": round(self.fit.focal_pixels, 1),
                "fit_pixels": self.fit.pixels,
            }
        return report


def _matrix(value: object) -> np.ndarray | None:
    """A 4x4 matrix from a header value of 16 finite numbers; None for anything else."""
    try:
        numbers = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if numbers.size != 16 or not np.isfinite(numbers).all():
        return None
    return numbers.reshape(4, 4)


def _column_form(matrix: np.ndarray) -> np.ndarray:
    """The 4x4 for column vectors (p' = M @ p): Imath's row-vector form unless the translation is in the last column."""
    translation_in_last_column = np.allclose(matrix[3, :3], 0.0, atol=1e-6) and not np.allclose(
        matrix[:3, 3], 0.0, atol=1e-6
    )
    return matrix if translation_in_last_column else matrix.T


def _nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The orthogonal matrix nearest a (3, 3) (polar decomposition): drops scale and shear."""
    u, _, vt = np.linalg.svd(matrix)
    return u @ vt


def _projection_rotation(world_to_ndc: np.ndarray) -> np.ndarray:
    """World-to-camera rotation from a world-to-NDC or -screen projection (column form), by RQ decomposition.

    The x, y and w rows of a projection are K @ [R | t] with K upper triangular; w is depth along
    the view axis, so R's third row is the forward axis and camera +Z (toward the camera) its
    negative. A y axis pointing down (RenderMan's NDC) is turned up, taking the world to be
    right-handed, as every DCC's is.
    """
    a = world_to_ndc[[0, 1, 3], :3]
    q, r = np.linalg.qr(np.flipud(a).T)  # RQ of a through QR of its flipped transpose
    upper, rotation = np.flipud(np.fliplr(r.T)), np.flipud(q.T)
    signs = np.sign(np.diag(upper))
    rotation = signs[:, None] * rotation  # K with a positive diagonal
    camera = np.stack([rotation[0], rotation[1], -rotation[2]])
    if np.linalg.det(camera) < 0:
        camera[1] = -camera[1]
    return camera


def header_rotation(attributes: Mapping[str, object]) -> tuple[np.ndarray, str] | None:
    """The world-to-camera rotation (3, 3) a renderer wrote in the header, and the attribute's name.

    Camera space as the renderer has it; ``_facing_camera`` turns a camera looking down +Z.
    """
    by_name: dict[str, tuple[str, object]] = {}
    for name, value in attributes.items():
        key = name.lower().removeprefix("exr/")
        if name != _OIIO_CAMERA_TRANSFORM:
            by_name.setdefault(key, (name, value))
    for spelling, kind in HEADER_MATRICES:
        if spelling not in by_name:
            continue
        name, value = by_name[spelling]
        matrix = _matrix(value)
        if matrix is None or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            continue
        matrix = _column_form(matrix)
        if kind == "world_to_projection":
            return _projection_rotation(matrix), name
        return _nearest_rotation(matrix[:3, :3]), name
    return None


def _facing_camera(normals: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``rotation`` with camera Z negated when the rotated normals mostly face away from the camera.

    Visible surfaces face the camera, so most camera-space normals have z > 0; a left-handed
    camera space looking down +Z (RenderMan's, Mantra's) gives the opposite, and is turned here.
    """
    camera = normals.reshape(-1, 3) @ rotation.T
    length = np.linalg.norm(camera, axis=1)
    usable = np.isfinite(length) & (length > 1e-6)
    if usable.any() and np.median(camera[usable, 2] / length[usable]) < 0:
        return rotation * np.array([[1.0], [1.0], [-1.0]])
    return rotation


def _planar_samples(normals: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pixels inside flat surfaces: (ys, xs, unit normals (N, 3), d(1/z)/dx / (1/z), d(1/z)/dy / (1/z)).

    A plane's inverse depth is affine across the image, so its second differences vanish;
    its normals agree with all four neighbours. Edges, background and noise fall out.
    """
    hidden = ~np.isfinite(depth) | (depth <= 0.0) | (depth >= 1.0e9)
    inverse = np.where(hidden, 0.0, 1.0 / np.where(hidden, 1.0, depth))
    length = np.linalg.norm(normals, axis=2)
    usable = np.isfinite(length) & (length > 0.5)
    unit = np.where(usable[..., None], normals / np.where(usable, length, 1.0)[..., None], 0.0)
    keep = ~hidden & usable
    keep[0] = keep[-1] = False
    keep[:, 0] = keep[:, -1] = False
    centre = inverse[1:-1, 1:-1]
    inner = keep[1:-1, 1:-1]
    inner &= np.abs(inverse[1:-1, 2:] - 2 * centre + inverse[1:-1, :-2]) < _PLANAR * centre
    inner &= np.abs(inverse[2:, 1:-1] - 2 * centre + inverse[:-2, 1:-1]) < _PLANAR * centre
    middle = unit[1:-1, 1:-1]
    for neighbour in (unit[1:-1, 2:], unit[1:-1, :-2], unit[2:, 1:-1], unit[:-2, 1:-1]):
        inner &= np.sum(middle * neighbour, axis=2) > _SMOOTH_COS
    ys, xs = np.nonzero(np.pad(inner, 1))
    w = inverse[ys, xs]
    gx = -(inverse[ys, xs + 1] - inverse[ys, xs - 1]) / (2.0 * w)
    gy = -(inverse[ys + 1, xs] - inverse[ys - 1, xs]) / (2.0 * w)
    return ys, xs, unit[ys, xs], gx, gy


def _wahba(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation R (3, 3) minimising sum |R @ source_i - target_i|^2 (Kabsch, by SVD)."""
    u, _, vt = np.linalg.svd(target.T @ source)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def estimate_rotation(
    normals: np.ndarray,
    depth: np.ndarray,
    size: tuple[float, float] | None = None,
    origin: tuple[float, float] = (0.0, 0.0),
) -> DepthFit:
    """Estimate world-to-camera from normals (H, W, 3) and camera Z depth (H, W) of the same pixels.

    ``size`` is the display window (width, height) whose centre is the principal point, and
    ``origin`` where these pixels start in it (default: the arrays are the display window). The
    depth is distance along the view axis (Cycles', Arnold's and RenderMan's Z). Normals from
    depth need the focal length: it is searched over ``_FOV_RANGE`` for the smallest residual.
    Raises PlateError when the frame holds too few flat pixels, or one orientation only.
    """
    height, width = depth.shape
    display_width, display_height = size or (width, height)
    ys, xs, world, gx, gy = _planar_samples(np.asarray(normals, np.float64), np.asarray(depth, np.float64))
    if len(ys) < MIN_FIT_PIXELS:
        raise PlateError(f"only {len(ys)} flat pixels with depth and normals; a rotation fit needs {MIN_FIT_PIXELS}")
    spread = np.linalg.eigvalsh(world.T @ world / len(world))
    if spread[1] < 1e-3:
        raise PlateError("the frame shows one surface orientation only; the camera's rotation cannot be fitted")
    px = xs + 0.5 + origin[0] - display_width / 2.0
    py = ys + 0.5 + origin[1] - display_height / 2.0

    def fit(focal: float, inliers: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
        ray = np.stack([px / focal, -py / focal, -np.ones_like(px)], axis=1)  # camera looks down -Z
        along_x = gx[:, None] * ray + (1.0 / focal, 0.0, 0.0)  # dP/dx over z
        along_y = gy[:, None] * ray + (0.0, -1.0 / focal, 0.0)  # dP/dy over z
        from_depth = np.cross(along_x, along_y)
        from_depth /= np.linalg.norm(from_depth, axis=1, keepdims=True)
        from_depth *= -np.sign(np.sum(from_depth * ray, axis=1))[:, None]  # facing the camera
        chosen = slice(None) if inliers is None else inliers
        rotation = _wahba(world[chosen], from_depth[chosen])
        cosine = np.clip(np.sum((world @ rotation.T) * from_depth, axis=1), -1.0, 1.0)
        return float(np.mean(1.0 - cosine[chosen])), rotation, cosine

    half_width = display_width / 2.0
    low, high = (math.log(half_width / math.tan(math.radians(fov) / 2.0)) for fov in _FOV_RANGE[::-1])
    grid = np.linspace(low, high, 24)
    costs = [fit(math.exp(g))[0] for g in grid]
    best = int(np.argmin(costs))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(30):  # golden section between the best grid point's neighbours
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if fit(math.exp(c))[0] < fit(math.exp(d))[0]:
            b = d
        else:
            a = c
    focal = math.exp((a + b) / 2.0)
    _, rotation, cosine = fit(focal)
    inliers = cosine > math.cos(math.radians(_INLIER_DEGREES))
    if inliers.sum() >= MIN_FIT_PIXELS:
        _, rotation, cosine = fit(focal, inliers)
    residual = math.degrees(math.sqrt(np.mean(np.arccos(cosine[inliers]) ** 2))) if inliers.any() else 180.0
    return DepthFit(rotation, residual, focal, int(inliers.sum()))


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    """The angle in degrees of the rotation taking ``b`` to ``a`` (both (3, 3) rotations)."""
    return math.degrees(math.acos(np.clip((np.trace(a @ b.T) - 1.0) / 2.0, -1.0, 1.0)))


def _layer_hint(layer: str) -> str | None:
    """The space a normals layer's name declares (``N_world``, ``normal_camera``), if any."""
    name = layer.lower().rpartition(".")[2]
    if any(hint in name for hint in WORLD_LAYER_HINTS):
        return "world"
    if any(hint in name for hint in CAMERA_LAYER_HINTS):
        return "camera"
    return None


def _is_blender(attributes: Mapping[str, object]) -> bool:
    """Blender writes this attribute in its multilayer EXRs; its Normal pass is world space."""
    return any(name.lower().removeprefix("exr/") == "blendermultichannel" for name in attributes)


def sampled_fit(
    normals: np.ndarray, depth: np.ndarray, size: tuple[int, int] | None = None, origin: tuple[int, int] = (0, 0)
) -> DepthFit:
    """``estimate_rotation`` on every n-th pixel, so that at most FIT_SIZE span the longer side.

    Sample k*i's centre, k*i + 0.5, is i + 0.5/k on the sampled grid: the origin carries that
    shift, so the fit is as close as at full size (measured on the street shot: 3e-5 to 5e-5
    degrees both ways) at a fraction of the cost (0.04 s against 0.7 s a frame at 480x270).
    """
    step = max(1, math.ceil(max(depth.shape) / FIT_SIZE))
    width, height = size or (depth.shape[1], depth.shape[0])
    shift = 0.5 / step - 0.5
    fit = estimate_rotation(
        normals[::step, ::step],
        depth[::step, ::step],
        (width / step, height / step),
        (origin[0] / step + shift, origin[1] / step + shift),
    )
    return DepthFit(fit.rotation, fit.residual_degrees, fit.focal_pixels * step, fit.pixels)


def camera_normals(
    normals: np.ndarray,
    space: str,
    attributes: Mapping[str, object],
    layer: str,
    depth: np.ndarray | None,
    size: tuple[int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
    shot: str = "",
) -> CameraNormals:
    """The normals (H, W, 3) in camera space, with how their space and rotation were decided.

    ``space`` is the job's ``normals_space``: ``camera`` and ``world`` are taken as said; ``auto``
    reads the layer name (``N_world``, ``N_cam``), then Blender's header (world), then asks the
    depth fit whether the normals are already camera space; without depth it assumes camera.
    World normals use the header's matrix (``header_rotation``), else a depth fit. ``depth`` is
    camera Z over the same pixels, ``size``/``origin`` as in ``estimate_rotation``. Raises
    PlateError naming ``shot`` when world normals have neither a matrix nor a usable depth.
    """
    vectors = np.asarray(normals, dtype=np.float64)
    if space not in NORMAL_SPACES:
        raise PlateError(f"normals_space must be one of {', '.join(NORMAL_SPACES)}, got {space!r}")
    header = header_rotation(attributes)
    fit: DepthFit | None = None
    decided_by = "job"
    if space == "auto":
        hint = _layer_hint(layer)
        if hint is not None:
            space, decided_by = hint, "layer name"
        elif _is_blender(attributes):
            space, decided_by = "world", "Blender header"
        elif depth is not None:
            try:
                fit = sampled_fit(vectors, depth, size, origin)
            except PlateError:
                fit = None
            if fit is not None:
                near_identity = angle_between(fit.rotation, np.eye(3)) < IDENTITY_DEGREES
                space, decided_by = ("camera" if near_identity else "world"), "depth fit"
            else:
                space, decided_by = "camera", "assumed"
        else:
            space, decided_by = "camera", "assumed"
    if space == "camera":
        return CameraNormals(normals.astype(np.float32, copy=False), "camera", decided_by, fit=fit)
    if header is not None:
        rotation, name = header
        rotation = _facing_camera(vectors, rotation)
        source = f"header {name}"
        fit = None
    else:
        if fit is None:
            if depth is None:
                raise PlateError(
                    f"shot {shot!r}: the normals are world space and the plate has neither a worldToCamera header "
                    "matrix nor a depth AOV to estimate the camera from; add a depth pass (or map it in 'aovs'), "
                    "or set the shot's normals_space to 'camera' if they are camera space"
                )
            try:
                fit = sampled_fit(vectors, depth, size, origin)
            except PlateError as exc:
                raise PlateError(
                    f"shot {shot!r}: world-space normals, no camera matrix in the header, and the "
                    f"depth fit failed: {exc}; add worldToCamera to the header or set normals_space "
                    "to 'camera'"
                ) from None
        rotation, source = fit.rotation, "estimated from depth"
    camera = (vectors @ rotation.T).astype(np.float32)
    return CameraNormals(camera, "world", decided_by, source, rotation, fit)


def plate_normals(
    plate: Plate, found: Mapping[str, AovMatch], window: Window, space: str = "auto", shot: str = ""
) -> CameraNormals:
    """A plate's normals AOV over ``window`` (its depth reframed to match) in camera space.

    Header attributes of every part count, the normals' own part first.
    """
    match = found["normals"]
    part = plate.locate(match.channels[0])[0]
    normals = reframe(plate.channels(match.channels), part.data_window, window)
    depth = None
    if "depth" in found:
        depth_channel = found["depth"].channels[0]
        depth = reframe(plate.channel(depth_channel), plate.locate(depth_channel)[0].data_window, window)
    attributes: dict[str, object] = {}
    for source in (part, *plate.parts):
        for name, value in source.attributes.items():
            attributes.setdefault(name, value)
    display = plate.display_window
    try:
        return camera_normals(
            normals,
            space,
            attributes,
            match.layer,
            depth,
            (display.width, display.height),
            (window.x - display.x, window.y - display.y),
            shot,
        )
    except PlateError as exc:
        raise PlateError(exc.reason, plate.path) from None
