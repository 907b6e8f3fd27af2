"""AOV detection across renderers' naming, and explicit mappings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stylecomp.errors import PlateError
from stylecomp.io.aovs import beauty, detect_aovs
from stylecomp.io.plates import read_plate

RENDERERS = {
    "nuke/arnold-style": (
        ["R", "G", "B", "A", "Z", "N.x", "N.y", "N.z", "motionvector.r", "motionvector.g", "motionvector.b", "id"],
        {
            "beauty": ("R", "G", "B", "A"),
            "depth": ("Z",),
            "normals": ("N.x", "N.y", "N.z"),
            "motion": ("motionvector.r", "motionvector.g"),
            "object_id": ("id",),
        },
    ),
    "blender cycles": (
        [
            "ViewLayer.Combined.R",
            "ViewLayer.Combined.G",
            "ViewLayer.Combined.B",
            "ViewLayer.Combined.A",
            "ViewLayer.Depth.Z",
            "ViewLayer.Normal.X",
            "ViewLayer.Normal.Y",
            "ViewLayer.Normal.Z",
            "ViewLayer.Vector.X",
            "ViewLayer.Vector.Y",
            "ViewLayer.Vector.Z",
            "ViewLayer.Vector.W",
            "ViewLayer.IndexOB.X",
        ],
        {
            "beauty": ("ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B", "ViewLayer.Combined.A"),
            "depth": ("ViewLayer.Depth.Z",),
            "normals": ("ViewLayer.Normal.X", "ViewLayer.Normal.Y", "ViewLayer.Normal.Z"),
            "motion": ("ViewLayer.Vector.X", "ViewLayer.Vector.Y", "ViewLayer.Vector.Z", "ViewLayer.Vector.W"),
            "object_id": ("ViewLayer.IndexOB.X",),
        },
    ),
    "layered depth/normal/velocity": (
        [
            "rgba.red",
            "beauty.R",
            "beauty.G",
            "beauty.B",
            "depth.V",
            "normal.R",
            "normal.G",
            "normal.B",
            "velocity.x",
            "velocity.y",
            "objectid.id",
        ],
        {
            "beauty": ("beauty.R", "beauty.G", "beauty.B"),
            "depth": ("depth.V",),
            "normals": ("normal.R", "normal.G", "normal.B"),
            "motion": ("velocity.x", "velocity.y"),
            "object_id": ("objectid.id",),
        },
    ),
    "stylecomp demo": (
        ["R", "G", "B", "A", "Z", "id", "N.X", "N.Y", "N.Z", "backward.u", "backward.v", "forward.u", "forward.v"],
        {
            "beauty": ("R", "G", "B", "A"),
            "depth": ("Z",),
            "normals": ("N.X", "N.Y", "N.Z"),
            "motion": ("backward.u", "backward.v"),
            "object_id": ("id",),
        },
    ),
}


@pytest.mark.parametrize("renderer", RENDERERS)
def test_detects_common_renderer_names(renderer: str) -> None:
    channels, expected = RENDERERS[renderer]
    found = detect_aovs(channels)
    assert {role: match.channels for role, match in found.items()} == expected
    assert all(match.source == "detected" for match in found.values())


def test_beachball_stereo_vectors_and_no_false_normals(testdata: Path) -> None:
    plate = read_plate(testdata / "plates/beachball/singlepart.0001.exr", pixels=False)
    found = detect_aovs(plate.channel_names)
    assert set(found) == {"beauty", "depth", "motion"}  # disparity is not motion, left.* not normals
    assert found["motion"].layer == "forward.left"


def test_mapping_overrides_detection_and_is_checked() -> None:
    channels = ["R", "G", "B", "Z", "P.x", "P.y", "P.z", "custom.depth"]
    found = detect_aovs(channels, {"depth": ["custom.depth"]})
    assert found["depth"].channels == ("custom.depth",) and found["depth"].source == "mapping"
    with pytest.raises(PlateError, match=r"names missing channels \['zdepth'\]"):
        detect_aovs(channels, {"depth": ["zdepth"]})
    with pytest.raises(PlateError, match="'normals' needs 3-3 channels, got 2"):
        detect_aovs(channels, {"normals": ["P.x", "P.y"]})
    with pytest.raises(PlateError, match="unknown AOV role 'albedo'"):
        detect_aovs(channels, {"albedo": ["R"]})


def test_beauty_pixels_and_luminance_only(testdata: Path) -> None:
    plate = read_plate(testdata / "plates/beachball/singlepart.0001.exr")
    rgb, alpha = beauty(plate)
    np.testing.assert_array_equal(rgb[..., 2], plate.channel("B"))
    np.testing.assert_array_equal(alpha, plate.channel("A"))
    grey = read_plate(testdata / "exr/TestImages_GrayRampsHorizontal.exr")
    rgb, alpha = beauty(grey)
    assert alpha is None and rgb.shape[2] == 3
    np.testing.assert_array_equal(rgb[..., 1], grey.channel("Y"))
    with pytest.raises(PlateError, match="no beauty channels"):
        beauty(read_plate(testdata / "exr/TestImages_WideFloatRange.exr"))


def test_nuke_layer_spellings_for_every_role(tmp_path: Path) -> None:
    """Nuke writes custom layers' channels as layer.red/.green/.blue/.alpha: read back from a real EXR."""
    from stylecomp.io.plates import ImagePart, write_plate

    expected = {
        "beauty": ("beauty.red", "beauty.green", "beauty.blue", "beauty.alpha"),
        "depth": ("depth.red",),
        "normals": ("N.red", "N.green", "N.blue"),
        "motion": ("motion.red", "motion.green"),
        "object_id": ("id.red",),
    }
    names = [channel for channels in expected.values() for channel in channels] + ["depth.green"]
    pixels = np.arange(4 * 4 * len(names), dtype=np.float32).reshape(4, 4, len(names))
    write_plate(tmp_path / "nuke.exr", [ImagePart.create(pixels, names, pixel_type="float")])
    plate = read_plate(tmp_path / "nuke.exr")
    found = detect_aovs(plate.channel_names)
    assert {role: match.channels for role, match in found.items()} == expected
    np.testing.assert_array_equal(plate.channels(found["normals"].channels), pixels[..., 5:8])
