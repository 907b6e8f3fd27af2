"""The built-in demo shot: a small procedural scene that stylecomp renders itself.

It is the ground truth for temporal-consistency metrics, so every AOV is exact: one ray per
pixel through the pixel centre, analytic intersections, view-independent shading (Lambert
sun + sky ambient + emission, no specular, no shadows) and textures fixed in object space.
Warping frame t-1 by the backward vectors therefore reproduces frame t everywhere except at
disocclusions.

The scene: a soft-checkered ground, a striped globe, a checkered crate, an emissive lamp
(scene-linear values well above 1.0) and a dotted ball that slides across the frame in front
of the globe and the crate, under a camera that dollies forward, trucks right and pans.
Motion is analytic in time, so frame t-1 is defined for any frame, the first one included.
Numpy only, deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..io.plates import ImagePart, write_plate
from ..io.sequence import FrameSequence, discover

DEMO_PATTERN = "demo.%04d.exr"
CHANNELS = ("R", "G", "B", "A", "Z", "N.X", "N.Y", "N.Z", "backward.u", "backward.v", "id")
CHANNEL_TYPES = {"Z": "float", "backward.u": "float", "backward.v": "float", "id": "uint"}
SKY_DEPTH = 1.0e4  # Z written for the sky: finite, so depth-based conversions never see Inf
OBJECT_NAMES = {0: "sky", 1: "ground", 2: "globe", 3: "crate", 4: "lamp", 5: "ball"}
FRAMES_PER_SECOND = 24

# Scene-linear light: a warm sun from the upper left-front and a cool hemispherical sky.
SUN_DIRECTION = np.array([-0.45, 0.8, 0.4]) / np.linalg.norm([-0.45, 0.8, 0.4])  # towards the sun
SUN_COLOUR = np.array([3.2, 2.9, 2.5])
SKY_AMBIENT = np.array([0.35, 0.45, 0.6])
HORIZONTAL_FOV_DEGREES = 50.0

Texture = Callable[[np.ndarray], np.ndarray]  # object-space points (N, 3) -> albedo (N, 3)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at edge0 to 1 at edge1: soft texture edges instead of aliasing."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def mix(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Blend two colours (3,) by a per-point weight (N,) -> (N, 3)."""
    return a + (b - a) * weight[:, None]


# ---------------------------------------------------------------------------------------------
# Textures, all in object space so they travel with their object.


def ground_texture(p: np.ndarray) -> np.ndarray:
    """Soft 1 m checker whose contrast fades with distance from the set, so it never aliases."""
    checker = smoothstep(-0.5, 0.5, np.sin(np.pi * p[:, 0]) * np.sin(np.pi * p[:, 2]))
    fade = np.exp(-(p[:, 0] ** 2 + p[:, 2] ** 2) / 9.0**2)
    return mix(np.array([0.34, 0.3, 0.26]), np.array([0.12, 0.12, 0.13]), checker * fade)


def globe_texture(p: np.ndarray) -> np.ndarray:
    """Blue and white latitude bands."""
    bands = smoothstep(-0.4, 0.4, np.sin(7.0 * p[:, 1]))
    return mix(np.array([0.05, 0.12, 0.45]), np.array([0.7, 0.72, 0.75]), bands)


def crate_texture(p: np.ndarray) -> np.ndarray:
    """Orange soft checker in all three axes, so every face is patterned."""
    wave = np.sin(8.0 * p[:, 0]) * np.sin(8.0 * p[:, 1]) * np.sin(8.0 * p[:, 2])
    return mix(np.array([0.6, 0.25, 0.05]), np.array([0.25, 0.08, 0.02]), smoothstep(-0.5, 0.5, wave))


def lamp_texture(p: np.ndarray) -> np.ndarray:
    """A dim frosted-glass albedo; the lamp's look comes from its emission."""
    return np.broadcast_to(np.array([0.2, 0.2, 0.2]), p.shape)


def ball_texture(p: np.ndarray) -> np.ndarray:
    """Red ball with soft white dots."""
    dots = np.cos(9.0 * p[:, 0]) * np.cos(9.0 * p[:, 1]) * np.cos(9.0 * p[:, 2])
    return mix(np.array([0.55, 0.05, 0.04]), np.array([0.75, 0.75, 0.7]), smoothstep(0.0, 0.7, dots))


# ---------------------------------------------------------------------------------------------
# Objects. Each one translates rigidly (``velocity`` in metres per frame); none rotates, so a
# surface point keeps its world normal and its shading from frame to frame.


@dataclass(frozen=True)
class SceneObject:
    """Common fields: ID, object-space texture, emission and rigid translation over time."""

    id: int
    texture: Texture
    origin: tuple[float, float, float]
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    emission: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def position(self, time: float) -> np.ndarray:
        """World position (3,) of the object-space origin at ``time`` frames into the shot."""
        return np.add(self.origin, np.multiply(self.velocity, time))

    def intersect(self, origins: np.ndarray, dirs: np.ndarray, time: float) -> np.ndarray:
        """Ray parameter (N,) of the hit, inf where the ray misses; each shape has its own."""
        raise NotImplementedError

    def normal(self, local: np.ndarray) -> np.ndarray:
        """World normals (N, 3) at object-space points; each shape has its own."""
        raise NotImplementedError


@dataclass(frozen=True)
class GroundPlane(SceneObject):
    """A disc on the plane y = origin.y, facing up; finite, so its depth stays below the sky's."""

    radius: float = 1000.0

    def intersect(self, origins: np.ndarray, dirs: np.ndarray, time: float) -> np.ndarray:
        """Ray parameter (N,) of the hit, inf where the ray misses."""
        offset = origins - self.position(time)  # (N, 3)
        with np.errstate(divide="ignore"):
            t = -offset[:, 1] / dirs[:, 1]
        local = offset + t[:, None] * dirs
        inside = local[:, 0] ** 2 + local[:, 2] ** 2 < self.radius**2
        return np.where((t > 0.0) & inside, t, np.inf)

    def normal(self, local: np.ndarray) -> np.ndarray:
        """World normals (N, 3) at object-space points."""
        return np.broadcast_to(np.array([0.0, 1.0, 0.0]), local.shape)


@dataclass(frozen=True)
class Sphere(SceneObject):
    """A sphere around its origin."""

    radius: float = 1.0

    def intersect(self, origins: np.ndarray, dirs: np.ndarray, time: float) -> np.ndarray:
        """Ray parameter (N,) of the nearest hit in front of the ray, inf where it misses."""
        offset = origins - self.position(time)  # (N, 3)
        a = np.einsum("ij,ij->i", dirs, dirs)
        half_b = np.einsum("ij,ij->i", offset, dirs)
        c = np.einsum("ij,ij->i", offset, offset) - self.radius**2
        discriminant = half_b * half_b - a * c
        root = np.sqrt(np.maximum(discriminant, 0.0))
        near = (-half_b - root) / a
        far = (-half_b + root) / a
        t = np.where(near > 0.0, near, far)
        return np.where((discriminant >= 0.0) & (t > 0.0), t, np.inf)

    def normal(self, local: np.ndarray) -> np.ndarray:
        return local / self.radius


@dataclass(frozen=True)
class Box(SceneObject):
    """An axis-aligned box of half sizes ``half`` around its origin."""

    half: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def intersect(self, origins: np.ndarray, dirs: np.ndarray, time: float) -> np.ndarray:
        """Slab test: ray parameter (N,) of the entry point, inf where the ray misses."""
        offset = origins - self.position(time)  # (N, 3)
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1.0 / dirs
            t0 = (-np.asarray(self.half) - offset) * inverse
            t1 = (np.asarray(self.half) - offset) * inverse
        enter = np.nanmax(np.minimum(t0, t1), axis=1)
        leave = np.nanmin(np.maximum(t0, t1), axis=1)
        return np.where((enter <= leave) & (enter > 0.0), enter, np.inf)

    def normal(self, local: np.ndarray) -> np.ndarray:
        """The face normal: the axis along which the point is furthest out, relative to size."""
        scaled = local / np.asarray(self.half)
        axis = np.argmax(np.abs(scaled), axis=1)
        normals = np.zeros_like(local)
        rows = np.arange(len(local))
        normals[rows, axis] = np.sign(scaled[rows, axis])
        return normals


SCENE: tuple[SceneObject, ...] = (
    GroundPlane(1, ground_texture, origin=(0.0, 0.0, 0.0)),
    Sphere(2, globe_texture, origin=(-1.7, 1.0, -1.2), radius=1.0),
    Box(3, crate_texture, origin=(1.9, 0.6, -0.6), half=(0.6, 0.6, 0.6)),
    Sphere(4, lamp_texture, origin=(0.2, 2.4, -3.5), radius=0.35, emission=(14.0, 11.0, 7.0)),
    Sphere(5, ball_texture, origin=(-2.2, 0.45, 1.5), radius=0.45, velocity=(0.2, 0.0, 0.0)),
)


@dataclass(frozen=True)
class Lighting:
    """A sun (unit direction towards it, scene-linear colour) and a hemispherical sky ambient."""

    sun_direction: np.ndarray
    sun_colour: np.ndarray
    sky_ambient: np.ndarray


# ---------------------------------------------------------------------------------------------
# Camera: a pinhole looking down its -Z axis, +Y up, +X right.


@dataclass(frozen=True)
class Camera:
    """World position (3,), world-to-camera rotation (3, 3) and intrinsics in pixels."""

    position: np.ndarray
    rotation: np.ndarray
    focal: float
    centre_x: float
    centre_y: float


def camera_at(time: float, width: int, height: int) -> Camera:
    """The camera ``time`` frames into the shot: a dolly forward, a truck right and a pan."""
    position = np.array([-1.6 + 0.05 * time, 1.7 + 0.01 * time, 8.0 - 0.09 * time])
    target = np.array([-0.6 + 0.06 * time, 0.9, -1.0])
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rotation = np.stack([right, up, -forward])  # rows: camera axes in world space
    focal = 0.5 * width / np.tan(np.radians(HORIZONTAL_FOV_DEGREES) / 2.0)
    return Camera(position, rotation, focal, 0.5 * width, 0.5 * height)


def primary_rays(camera: Camera, width: int, height: int) -> np.ndarray:
    """World ray directions (H*W, 3) through pixel centres, scaled so camera-space z is -1.

    With that scaling the ray parameter of a hit is its depth along the view axis.
    """
    xs = (np.arange(width) + 0.5 - camera.centre_x) / camera.focal
    ys = (camera.centre_y - np.arange(height) - 0.5) / camera.focal  # row 0 is the top
    grid_x, grid_y = np.meshgrid(xs, ys)  # (H, W) each
    camera_dirs = np.stack([grid_x, grid_y, -np.ones_like(grid_x)], axis=-1).reshape(-1, 3)
    return camera_dirs @ camera.rotation  # camera -> world is the transpose


def project(camera: Camera, points: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image positions (N,) x right, (N,) y down, of homogeneous world points (w=0: at infinity)."""
    local = (points - w[:, None] * camera.position) @ camera.rotation.T  # (N, 3) camera space
    depth = -local[:, 2]
    x = camera.centre_x + camera.focal * local[:, 0] / depth
    y = camera.centre_y - camera.focal * local[:, 1] / depth
    return x, y


@dataclass(frozen=True)
class Scene:
    """Everything a frame is rendered from: objects, a camera path (time, width, height) -> Camera, and light."""

    objects: tuple[SceneObject, ...]
    camera: Callable[[float, int, int], Camera]
    lighting: Lighting


DEMO_SCENE = Scene(SCENE, camera_at, Lighting(SUN_DIRECTION, SUN_COLOUR, SKY_AMBIENT))


@dataclass(frozen=True)
class SurfaceLayers:
    """What a frame was shaded from, for computing ground-truth looks: (H, W, 3) or (H, W) float32 each."""

    albedo: np.ndarray  # surface colour; the sky's own colour where there is no surface
    direct: np.ndarray  # max(N . sun, 0): the sun's cosine term, 0 for the sky
    ambient: np.ndarray  # the sky ambient reaching the surface (scene-linear RGB), 0 for the sky
    emission: np.ndarray  # scene-linear emission; 0 where none
    sky: np.ndarray  # bool: no surface


# ---------------------------------------------------------------------------------------------
# Rendering.


def trace(
    origin: np.ndarray, dirs: np.ndarray, time: float, objects: tuple[SceneObject, ...] = SCENE
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit per ray: ray parameter (N,) (inf for sky) and object index (N,) (-1 for sky)."""
    hits = np.stack([obj.intersect(origin[None, :], dirs, time) for obj in objects])  # (objects, N)
    nearest = np.argmin(hits, axis=0)
    t = hits[nearest, np.arange(len(dirs))]
    return t, np.where(np.isfinite(t), nearest, -1)


def sky_colour(dirs: np.ndarray) -> np.ndarray:
    """A horizon-to-zenith gradient (N, 3) that depends on direction only (the sky is at infinity)."""
    elevation = dirs[:, 1] / np.linalg.norm(dirs, axis=1)
    return mix(np.array([0.9, 0.85, 0.8]), np.array([0.25, 0.4, 0.8]), smoothstep(-0.05, 0.6, elevation))


def direct_and_ambient(normals: np.ndarray, lighting: Lighting) -> tuple[np.ndarray, np.ndarray]:
    """The sun's cosine term (N,) and the sky ambient (N, 3) at world normals (N, 3)."""
    direct = np.maximum(normals @ lighting.sun_direction, 0.0)
    return direct, (0.5 + 0.5 * normals[:, 1])[:, None] * lighting.sky_ambient


def shade(
    albedo: np.ndarray, normals: np.ndarray, emission: np.ndarray, lighting: Lighting = DEMO_SCENE.lighting
) -> np.ndarray:
    """View-independent radiance (N, 3): Lambert sun + hemispherical sky ambient + emission."""
    direct, ambient = direct_and_ambient(normals, lighting)
    return albedo * (direct[:, None] * lighting.sun_colour + ambient) + emission


def render_frame(
    frame: int, width: int = 960, height: int = 540, first_frame: int = 1001, scene: Scene = DEMO_SCENE
) -> dict[str, np.ndarray]:
    """Render one frame: float32 (H, W) arrays keyed by channel name (``id`` as float too)."""
    return render_layers(frame, width, height, first_frame, scene)[0]


def render_layers(
    frame: int, width: int, height: int, first_frame: int, scene: Scene
) -> tuple[dict[str, np.ndarray], SurfaceLayers]:
    """Render one frame's channels (see ``render_frame``) and the layers it was shaded from."""
    time = float(frame - first_frame)
    camera = scene.camera(time, width, height)
    previous_camera = scene.camera(time - 1.0, width, height)
    dirs = primary_rays(camera, width, height)  # (N, 3), N = H*W
    t, index = trace(camera.position, dirs, time, scene.objects)

    count = len(dirs)
    beauty = sky_colour(dirs)  # (N, 3); surfaces overwrite their pixels below
    albedo, direct = beauty.copy(), np.zeros(count)
    ambient, emission = np.zeros((count, 3)), np.zeros((count, 3))
    depth = np.full(count, SKY_DEPTH)
    normals = np.tile([0.0, 0.0, 1.0], (count, 1))  # sky: the far plane facing the camera
    object_id = np.zeros(count)
    previous_points = dirs.copy()  # sky: its direction, a homogeneous point at infinity
    w = np.zeros(count)

    for i, obj in enumerate(scene.objects):
        rows = np.flatnonzero(index == i)
        points = camera.position + t[rows, None] * dirs[rows]  # (n, 3) world
        local = points - obj.position(time)  # object space: translation only
        world_normals = obj.normal(local)
        albedo[rows] = obj.texture(local)
        direct[rows], ambient[rows] = direct_and_ambient(world_normals, scene.lighting)
        emission[rows] = obj.emission
        beauty[rows] = shade(albedo[rows], world_normals, emission[rows], scene.lighting)
        depth[rows] = t[rows]
        normals[rows] = world_normals @ camera.rotation.T
        object_id[rows] = obj.id
        previous_points[rows] = local + obj.position(time - 1.0)
        w[rows] = 1.0

    x_prev, y_prev = project(previous_camera, previous_points, w)
    x_now = np.tile(np.arange(width) + 0.5, height)
    y_now = np.repeat(np.arange(height) + 0.5, width)
    planes = {
        "R": beauty[:, 0],
        "G": beauty[:, 1],
        "B": beauty[:, 2],
        "A": np.ones(count),
        "Z": depth,
        "N.X": normals[:, 0],
        "N.Y": normals[:, 1],
        "N.Z": normals[:, 2],
        "backward.u": x_prev - x_now,
        "backward.v": -(y_prev - y_now),  # y-up, as Nuke reads vectors
        "id": object_id,
    }

    def image(values: np.ndarray) -> np.ndarray:
        return values.reshape(height, width, *values.shape[1:]).astype(np.float32)

    layers = SurfaceLayers(
        albedo=image(albedo),
        direct=image(direct),
        ambient=image(ambient),
        emission=image(emission),
        sky=(index < 0).reshape(height, width),
    )
    return {name: image(plane) for name, plane in planes.items()}, layers


# ---------------------------------------------------------------------------------------------
# Writing the shot.


def header_attributes() -> dict[str, str]:
    """The conventions of every channel, written into each frame's header."""
    return {
        "stylecomp/demo:motion": "backward pixels, u right, v up",
        "stylecomp/demo:depth": f"camera-space distance along view axis; sky at {SKY_DEPTH:g}",
        "stylecomp/demo:normals": "camera space, +X right +Y up +Z toward camera",
        "stylecomp/demo:ids": ", ".join(f"{i}={name}" for i, name in OBJECT_NAMES.items()),
        "stylecomp/demo:fps": str(FRAMES_PER_SECOND),
    }


def write_demo(
    out_dir: str | os.PathLike[str],
    frames: int = 24,
    width: int = 960,
    height: int = 540,
    first_frame: int = 1001,
    progress: Callable[[int, int], None] | None = None,
    scene: Scene = DEMO_SCENE,
) -> FrameSequence:
    """Render the shot (or another ``scene``) into ``out_dir/demo.####.exr`` (one multi-layer part per frame)."""
    os.makedirs(out_dir, exist_ok=True)
    pattern = os.path.join(os.fspath(out_dir), DEMO_PATTERN)
    for done, frame in enumerate(range(first_frame, first_frame + frames), start=1):
        planes = render_frame(frame, width, height, first_frame, scene)
        pixels = np.stack([planes[name] for name in CHANNELS], axis=-1)  # (H, W, channels)
        part = ImagePart.create(
            pixels,
            CHANNELS,
            pixel_type="half",
            channel_types=CHANNEL_TYPES,
            compression="zip",
            attributes=header_attributes(),
        )
        write_plate(pattern % frame, [part])
        if progress is not None:
            progress(done, frames)
    return discover(pattern)
