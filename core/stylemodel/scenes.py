"""Randomised scenes for training and evaluating the built-in style model.

Each scene comes from one seed: a ground plane, 2-6 spheres and boxes with procedural textures,
0-2 HDR lamps, a sun and sky ambient, and a camera that dollies and trucks along a straight line.
They reuse the demo shot's renderer (exact AOVs, view-independent shading), so every frame comes
with the layers its ground-truth looks are computed from. Training seeds and held-out seeds come
from separate ranges, and neither contains the demo shot, so the model never sees what the demo
or the quality tests show it.
"""

from __future__ import annotations

import colorsys
from functools import partial

import numpy as np

from ..demo.scene import Box, Camera, GroundPlane, Lighting, Scene, SceneObject, Sphere, camera_at, mix, smoothstep

TRAINING_SEEDS = range(100_000)
HELD_OUT_SEEDS = range(1_000_000, 1_000_016)  # used only for evaluation: benchmarks and quality tests


def _colour(rng: np.random.Generator, light: tuple[float, float]) -> np.ndarray:
    """A random albedo (3,) with lightness in ``light``."""
    hue, saturation = rng.random(), rng.uniform(0.2, 0.95)
    return np.array(colorsys.hls_to_rgb(hue, rng.uniform(*light), saturation))


def _flat(colour: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.broadcast_to(colour, p.shape)


def _stripes(a: np.ndarray, b: np.ndarray, axis: int, frequency: float, p: np.ndarray) -> np.ndarray:
    return mix(a, b, smoothstep(-0.4, 0.4, np.sin(frequency * p[:, axis])))


def _checker(a: np.ndarray, b: np.ndarray, frequency: float, p: np.ndarray) -> np.ndarray:
    wave = np.sin(frequency * p[:, 0]) * np.sin(frequency * p[:, 1] + 0.3) * np.sin(frequency * p[:, 2] + 0.7)
    return mix(a, b, smoothstep(-0.3, 0.3, wave))


def _dots(a: np.ndarray, b: np.ndarray, frequency: float, p: np.ndarray) -> np.ndarray:
    wave = np.cos(frequency * p[:, 0]) * np.cos(frequency * p[:, 1]) * np.cos(frequency * p[:, 2])
    return mix(a, b, smoothstep(0.1, 0.7, wave))


def _texture(rng: np.random.Generator) -> partial:
    """One of four object-space patterns in two random colours."""
    a, b = _colour(rng, (0.15, 0.6)), _colour(rng, (0.3, 0.85))
    kind = rng.integers(4)
    if kind == 0:
        return partial(_flat, a)
    if kind == 1:
        return partial(_stripes, a, b, int(rng.integers(3)), rng.uniform(3.0, 10.0))
    if kind == 2:
        return partial(_checker, a, b, rng.uniform(3.0, 9.0))
    return partial(_dots, a, b, rng.uniform(5.0, 12.0))


def _ground_texture(a: np.ndarray, b: np.ndarray, size: float, p: np.ndarray) -> np.ndarray:
    checker = smoothstep(-0.5, 0.5, np.sin(np.pi * p[:, 0] / size) * np.sin(np.pi * p[:, 2] / size))
    fade = np.exp(-(p[:, 0] ** 2 + p[:, 2] ** 2) / 9.0**2)  # contrast fades with distance: no aliasing
    return mix(a, b, checker * fade)


def _linear_camera(
    start: np.ndarray,
    velocity: np.ndarray,
    target: np.ndarray,
    target_velocity: np.ndarray,
    fov_scale: float,
    time: float,
    width: int,
    height: int,
) -> Camera:
    """A camera moving along a line and looking at a moving point, like the demo's ``camera_at``."""
    position, aim = start + velocity * time, target + target_velocity * time
    forward = (aim - position) / np.linalg.norm(aim - position)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    rotation = np.stack([right, np.cross(right, forward), -forward])
    demo = camera_at(0.0, width, height)
    return Camera(position, rotation, demo.focal * fov_scale, demo.centre_x, demo.centre_y)


def random_scene(seed: int) -> Scene:
    """The scene of ``seed``: deterministic, and different for every seed."""
    rng = np.random.default_rng([seed, 20261207])
    objects: list[SceneObject] = [
        GroundPlane(
            1,
            partial(_ground_texture, _colour(rng, (0.2, 0.5)), _colour(rng, (0.1, 0.4)), rng.uniform(0.5, 2.0)),
            origin=(0.0, 0.0, 0.0),
        ),
    ]
    for _ in range(int(rng.integers(2, 7))):
        x, z = rng.uniform(-3.5, 3.5), rng.uniform(-4.0, 2.0)
        velocity = tuple(rng.uniform(-0.15, 0.15, 3) * [1.0, 0.0, 1.0]) if rng.random() < 0.4 else (0.0, 0.0, 0.0)
        if rng.random() < 0.5:
            radius = rng.uniform(0.3, 1.2)
            objects.append(
                Sphere(len(objects) + 1, _texture(rng), origin=(x, radius, z), velocity=velocity, radius=radius)
            )
        else:
            half = tuple(rng.uniform(0.25, 0.9, 3))
            objects.append(Box(len(objects) + 1, _texture(rng), origin=(x, half[1], z), velocity=velocity, half=half))
    for _ in range(int(rng.integers(0, 3))):
        emission = _colour(rng, (0.6, 0.8)) * rng.uniform(5.0, 20.0)
        objects.append(
            Sphere(
                len(objects) + 1,
                partial(_flat, np.full(3, 0.2)),
                origin=(rng.uniform(-3.0, 3.0), rng.uniform(1.5, 3.0), rng.uniform(-5.0, -1.0)),
                radius=rng.uniform(0.15, 0.4),
                emission=tuple(emission),
            )
        )

    elevation, azimuth = np.radians(rng.uniform(15.0, 75.0)), rng.uniform(0.0, 2.0 * np.pi)
    sun = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
    warmth = rng.uniform(0.0, 0.25)
    lighting = Lighting(
        sun_direction=sun,
        sun_colour=rng.uniform(2.0, 4.0) * np.array([1.0, 1.0 - 0.4 * warmth, 1.0 - warmth]),
        sky_ambient=rng.uniform(0.25, 0.6) * np.array([0.6, 0.75, 1.0]),
    )
    start = np.array([rng.uniform(-3.0, 3.0), rng.uniform(0.8, 3.0), rng.uniform(5.5, 9.0)])
    camera = partial(
        _linear_camera,
        start,
        rng.uniform(-0.08, 0.08, 3) * [1.0, 0.2, 1.0],
        np.array([rng.uniform(-1.0, 1.0), rng.uniform(0.3, 1.2), rng.uniform(-2.0, 0.0)]),
        rng.uniform(-0.05, 0.05, 3) * [1.0, 0.0, 0.0],
        rng.uniform(0.8, 1.3),
    )
    return Scene(tuple(objects), camera, lighting)
