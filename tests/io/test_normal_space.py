"""World-space normals into camera space: header matrices, the depth fit, the job's field, inspect.

On the Blender 3.4 Cycles street shot (world-space Normal pass, no camera in the header), checked
against its sidecar camera, which no product code reads. Header matrices are written into real
EXRs through OpenImageIO in each renderer's convention.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch

from stylecomp.diffusion.pool import PipelinePool
from stylecomp.diffusion.stylize import StylizeParameters, control_clips, control_condition
from stylecomp.errors import PlateError
from stylecomp.io.aovs import detect_aovs
from stylecomp.io.conditioning import normal_condition
from stylecomp.io.normal_space import angle_between, camera_normals, estimate_rotation, plate_normals, sampled_fit
from stylecomp.io.plates import read_plate, write_plate
from stylecomp.jobspec import load_job
from stylecomp.render.loop import frame_inputs, render_job
from tests.shared_data import TESTDATA
from tests.tiny_jobs import invoke

STREET = TESTDATA / "plates" / "blender_street"
pytestmark = pytest.mark.skipif(not STREET.is_dir(), reason=f"shared test data not found at {TESTDATA}")
FRAMES = range(1001, 1017)
NORMAL = ("ViewLayer.Normal.X", "ViewLayer.Normal.Y", "ViewLayer.Normal.Z")
DEPTH = "ViewLayer.Depth.Z"
FOCAL = 35.0 / 36.0 * 480  # the shot's 35 mm lens on a 36 mm sensor, in pixels: for checking the fit only


def true_rotation(frame: int) -> np.ndarray:
    """The sidecar's world-to-camera rotation (column vectors, Blender camera: +Z toward the camera)."""
    matrix = np.array(json.loads((STREET / "street_camera.json").read_text())["frames"][str(frame)]["world_to_camera"])
    u, _, vt = np.linalg.svd(matrix[:3, :3])  # stored as float32: the nearest exact rotation
    return u @ vt


def true_world_to_camera(frame: int) -> np.ndarray:
    """The sidecar's whole 4x4 world-to-camera (column vectors)."""
    return np.array(json.loads((STREET / "street_camera.json").read_text())["frames"][str(frame)]["world_to_camera"])


def mean_angle(a: np.ndarray, b: np.ndarray, usable: np.ndarray) -> float:
    """Mean angle in degrees between two normal images (H, W, 3) over ``usable`` pixels."""
    cosine = np.sum(a * b, axis=2) / (np.linalg.norm(a, axis=2) * np.linalg.norm(b, axis=2) + 1e-12)
    return float(np.degrees(np.arccos(np.clip(cosine[usable], -1.0, 1.0))).mean())


def variant(
    source: Path,
    target: Path,
    attributes: Mapping[str, tuple[str, object]] = {},
    erase: tuple[str, ...] = (),
    normals: np.ndarray | None = None,
) -> Path:
    """A copy of a street frame with header attributes added (name: (OIIO type, value)) or erased,
    or its normals replaced; written through OpenImageIO."""
    plate = read_plate(source)
    part = plate.parts[0]
    for name in erase:
        part.spec.erase_attribute(name)
    for name, (kind, value) in attributes.items():
        part.spec.attribute(name, oiio.TypeDesc(kind), value)
    if normals is not None:
        for axis, channel in enumerate(NORMAL):
            part.pixels[..., part.channel_index(channel)] = normals[..., axis]
    write_plate(target, [part])
    return target


def street_normals(frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World normals (H, W, 3), depth (H, W) and where normals exist, of one street frame."""
    plate = read_plate(STREET / f"street.{frame}.exr")
    normals = plate.channels(list(NORMAL)).astype(np.float64)
    return normals, plate.channel(DEPTH), np.linalg.norm(normals, axis=2) > 0.5


@pytest.mark.parametrize("frame", FRAMES)
def test_depth_fit_finds_the_camera_within_two_degrees(frame: int) -> None:
    normals, depth, _ = street_normals(frame)
    fit = estimate_rotation(normals, depth)
    error = angle_between(fit.rotation, true_rotation(frame))
    assert error < 2.0, f"frame {frame}: {error:.3f} deg from the sidecar's camera"
    assert error < 0.01  # measured: 3e-5 to 5e-5 deg on every frame
    assert abs(fit.focal_pixels - FOCAL) / FOCAL < 0.01, "the focal length is found from the data"
    assert fit.residual_degrees < 0.5 and fit.pixels > 50_000
    # What the product runs: every second pixel of this 480 px frame, sampled at the right pixel centres
    # (without the centres' shift: 0.03 to 0.06 deg).
    sampled = sampled_fit(normals, depth)
    assert angle_between(sampled.rotation, true_rotation(frame)) < 0.01
    assert abs(sampled.focal_pixels - FOCAL) / FOCAL < 0.01


def test_depth_fit_refuses_a_frame_with_one_orientation() -> None:
    normals = np.zeros((64, 64, 3))
    normals[..., 2] = 1.0
    with pytest.raises(PlateError, match="one surface orientation"):
        estimate_rotation(normals, np.full((64, 64), 5.0))


def opengl_projection(focal: float, width: int, height: int) -> np.ndarray:
    """Camera to NDC (column vectors), OpenGL: x right, y up, w = -z."""
    near, far = 0.1, 1000.0
    return np.array(
        [
            [2 * focal / width, 0, 0, 0],
            [0, 2 * focal / height, 0, 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ]
    )


FLIP_Z = np.diag([1.0, 1.0, -1.0, 1.0])  # Blender/Arnold camera to RenderMan's (left-handed, looking down +Z)


def header_matrices(frame: int) -> dict[str, tuple[str, str, object]]:
    """Each renderer's header attribute for the frame's camera: (attribute, OIIO type, value)."""
    w2c = true_world_to_camera(frame)

    def row(m: np.ndarray) -> tuple[float, ...]:  # Imath: row vectors, translation in the last row
        return tuple(float(v) for v in m.T.reshape(-1))

    def column(m: np.ndarray) -> tuple[float, ...]:
        return tuple(float(v) for v in m.reshape(-1))

    return {
        "arnold": ("worldToCamera", "matrix", row(w2c)),
        "renderman": ("worldToCamera", "matrix", row(FLIP_Z @ w2c)),
        "nuke": ("exr/worldToCamera", "float[16]", row(w2c)),
        "column": ("worldToCamera", "matrix", column(w2c)),
        "ndc": ("worldToNDC", "matrix", row(opengl_projection(FOCAL, 480, 270) @ w2c)),
        "screen": ("worldToScreen", "matrix", row(opengl_projection(FOCAL, 480, 270) @ w2c)),
    }


@pytest.mark.parametrize("renderer", ["arnold", "renderman", "nuke", "column", "ndc", "screen"])
def test_header_matrices_give_camera_normals(tmp_path: Path, renderer: str) -> None:
    frame = 1009
    name, kind, value = header_matrices(frame)[renderer]
    path = variant(STREET / f"street.{frame}.exr", tmp_path / "plate.exr", {name: (kind, value)})
    plate = read_plate(path)
    found = detect_aovs(plate.channel_names)
    del found["depth"]  # no depth fit to fall back on: the header alone must do it
    result = plate_normals(plate, found, plate.data_window)
    assert result.space == "world" and result.rotation_source == f"header {name}" and result.fit is None
    normals, _, usable = street_normals(frame)
    truth = normals @ true_rotation(frame).T
    error = mean_angle(result.normals, truth, usable)
    assert error < 0.05, f"{renderer}: camera normals {error:.3f} deg off"
    assert angle_between(result.rotation, true_rotation(frame)) < 0.05


def test_vray_camera_transform_is_not_taken_for_world_to_camera(tmp_path: Path) -> None:
    """OpenImageIO reads V-Ray's cameraTransform back as "worldtocamera"; its convention is not the standard's."""
    frame = 1009
    camera_to_world = tuple(float(v) for v in np.linalg.inv(true_world_to_camera(frame)).reshape(-1))
    plate = read_plate(
        variant(STREET / f"street.{frame}.exr", tmp_path / "vray.exr", {"cameraTransform": ("matrix", camera_to_world)})
    )
    assert "worldtocamera" in plate.parts[0].attributes
    result = plate_normals(plate, detect_aovs(plate.channel_names), plate.data_window)
    assert result.rotation_source == "estimated from depth"
    assert angle_between(result.rotation, true_rotation(frame)) < 0.1


def test_world_normals_with_neither_matrix_nor_depth_is_a_one_line_error() -> None:
    normals, _, _ = street_normals(1001)
    with pytest.raises(PlateError) as caught:
        camera_normals(normals, "world", {}, "N", None, shot="sh010")
    message = str(caught.value)
    assert "\n" not in message and "'sh010'" in message and "worldToCamera" in message and "depth" in message


def test_auto_tells_camera_from_world_normals_by_the_depth_fit(tmp_path: Path) -> None:
    frame = 1004
    normals, _, usable = street_normals(frame)
    camera = (normals @ true_rotation(frame).T).astype(np.float32)
    source = STREET / f"street.{frame}.exr"
    # Without Blender's header attribute nothing but the pixels says which space the normals are in.
    world_plate = read_plate(variant(source, tmp_path / "world.exr", erase=("BlenderMultiChannel",)))
    camera_plate = read_plate(variant(source, tmp_path / "camera.exr", erase=("BlenderMultiChannel",), normals=camera))
    for plate, space in ((world_plate, "world"), (camera_plate, "camera")):
        result = plate_normals(plate, detect_aovs(plate.channel_names), plate.data_window)
        assert (result.space, result.decided_by) == (space, "depth fit")
        assert mean_angle(result.normals, camera, usable) < 0.05
    # The deciding fit samples every second pixel of this 480 px frame; its focal length is in the frame's pixels.
    decided = plate_normals(camera_plate, detect_aovs(camera_plate.channel_names), camera_plate.data_window).fit
    assert decided is not None and abs(decided.focal_pixels - 466.7) < 5.0, decided


def street_job(tmp_path: Path, model: Path, plate: Path, normals_space: str = "auto") -> Path:
    """One frame of the street shot with a normal ControlNet only."""
    job = {
        "shots": [
            {
                "name": "street",
                "plate": str(plate),
                "frames": {"first": 1001, "last": 1001},
                "output": str(tmp_path / "out" / f"{normals_space}.####.exr"),
                "normals_space": normals_space,
            }
        ],
        "model": {
            "family": "sd15",
            "path": str(model),
            "controlnets": [{"path": str(model / "controlnet"), "source": "normals", "weight": 1.0}],
        },
        "prompt": "ink",
        "steps": 2,
        "strength": 1.0,
        "guidance": 1.0,
        "seed": {"policy": "fixed", "value": 3},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def test_normal_controlnet_on_the_street_shot_gets_the_true_camera_colours(
    tmp_path: Path, tiny: dict[str, Path], private_cache: Path
) -> None:
    frame = 1001
    normals, _, usable = street_normals(frame)
    expected = normal_condition(normals @ true_rotation(frame).T)
    job = load_job(street_job(tmp_path, tiny["sd15"], STREET / "street.####.exr"))
    shot, net = job.shots[0], job.model.controlnets[0]
    inputs, _ = frame_inputs(read_plate(STREET / f"street.{frame}.exr"), frame, shot, control_clips([net]))
    image = control_condition(net, inputs, np.zeros((270, 480, 3), np.float32))
    difference = np.abs(image - expected)[usable]
    assert difference.max() < 2e-3, f"ControlNet image off by up to {difference.max():.4f}"
    untreated = np.abs(normal_condition(normals) - expected)[usable].mean()
    assert untreated > 0.1, "the world normals read as camera space would give other colours"

    # The whole render: what the normal ControlNet receives (caught as it enters the diffusers
    # ControlNetModel) from the world-space plate is what the true camera-space plate gives it.
    camera_plate = tmp_path / "cam" / f"street.{frame}.exr"
    variant(
        STREET / f"street.{frame}.exr",
        camera_plate,
        erase=("BlenderMultiChannel",),
        normals=(normals @ true_rotation(frame).T).astype(np.float32),
    )
    received = {}
    for name, plate, space in (
        ("world", STREET / "street.####.exr", "auto"),
        ("camera", camera_plate.parent / "street.####.exr", "camera"),
        ("misread", STREET / "street.####.exr", "camera"),
    ):
        job = load_job(street_job(tmp_path / name, tiny["sd15"], plate, space))
        pool = PipelinePool()
        controlnet = pool.get(StylizeParameters.for_shot(job, job.shots[0]).model, job.performance).controlnet
        caught: list[torch.Tensor] = []
        hook = controlnet.register_forward_pre_hook(
            lambda module, args, kwargs, caught=caught: caught.append(kwargs["controlnet_cond"].detach().clone()),
            with_kwargs=True,
        )
        try:
            summary = render_job(job, pool=pool, cache=None)
        finally:
            hook.remove()
        assert summary.rendered == 1 and not summary.failed, summary.failed
        received[name] = caught[0].float().numpy()
    same = np.abs(received["world"] - received["camera"]).max()
    apart = np.abs(received["misread"] - received["camera"]).mean()
    assert same < 2e-3, f"the world plate's ControlNet image is up to {same:.4f} from the true one"
    assert apart > 0.05, "read as camera space, the same plate gives the ControlNet other colours"


def test_inspect_reports_the_normal_space(tmp_path: Path) -> None:
    status, out, err = invoke("inspect", str(STREET / "street.1001.exr"), "--json")
    assert status == 0, err
    normals = json.loads(out)["normals"]
    assert normals["space"] == "world" and normals["decided_by"] == "Blender header"
    assert normals["rotation_source"] == "estimated from depth" and normals["residual_degrees"] < 0.5
    assert math.isclose(normals["focal_pixels"], FOCAL, rel_tol=0.01)

    name, kind, value = header_matrices(1001)["arnold"]
    path = variant(STREET / "street.1001.exr", tmp_path / "arnold.exr", {name: (kind, value)})
    status, out, err = invoke("inspect", str(path))
    assert status == 0, err
    assert "normals      world (Blender header); to camera by the rotation header worldToCamera" in out
