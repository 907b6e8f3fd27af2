"""Plate I/O through OpenImageIO: windows, channels by name, headers and atomic writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from stylecomp.errors import PlateError
from stylecomp.io.plates import ImagePart, Window, read_plate, write_plate
from tests.shared_data import TESTDATA


def test_beachball_channels_by_name_and_views(testdata: Path) -> None:
    plate = read_plate(testdata / "plates/beachball/singlepart.0001.exr")
    assert plate.display_window == Window(0, 0, 2048, 1556)
    assert plate.data_window == Window(654, 245, 911, 876)
    assert plate.views == ["right", "left"]
    names = plate.channel_names
    assert {"R", "Z", "forward.left.u", "left.R", "whitebarmask.right.mask"} <= set(names)
    # The default (first) view is unprefixed; the left view is left.*.
    np.testing.assert_array_equal(plate.channel("R", view="left"), plate.channel("left.R"))
    np.testing.assert_array_equal(plate.channel("R", view="right"), plate.channel("R"))
    with pytest.raises(PlateError, match=r"no channel 'P'.*channels are: R, G, B"):
        plate.channel("P")
    # Found by name whatever the position in the file.
    rgb = plate.channels(["B", "G", "R"])
    np.testing.assert_array_equal(rgb[..., 0], plate.parts[0].pixels[..., plate.parts[0].channel_index("B")])


def test_rewrite_keeps_header_windows_and_pixels(testdata: Path, tmp_path: Path) -> None:
    source = read_plate(testdata / "plates/beachball/singlepart.0001.exr")
    out = tmp_path / "copy.exr"
    write_plate(out, source.parts, provenance={"job": "j.json", "seed": 42})
    copy = read_plate(out)
    part, original = copy.parts[0], source.parts[0]
    assert part.data_window == original.data_window and part.display_window == original.display_window
    assert part.channel_names == original.channel_names
    assert part.channel_types == original.channel_types
    assert part.compression == "zips"
    assert part.attributes["multiView"] == ("right", "left")
    assert part.attributes["stylecomp/job"] == "j.json" and part.attributes["stylecomp/seed"] == 42
    np.testing.assert_array_equal(part.pixels, original.pixels)


def test_provenance_keeps_seeds_beyond_32_bits(tmp_path: Path) -> None:
    out = tmp_path / "seed.exr"
    seed = 2**63 - 1  # the largest seed a job allows
    write_plate(
        out,
        [ImagePart.create(np.zeros((2, 2, 3), np.float32), ["R", "G", "B"])],
        provenance={"seed": seed, "frame": 1001, "negative": -(2**31) - 1, "scale": 0.5},
    )
    header = read_plate(out, pixels=False).parts[0].attributes
    assert int(header["stylecomp/seed"]) == seed and int(header["stylecomp/negative"]) == -(2**31) - 1
    assert header["stylecomp/frame"] == 1001 and header["stylecomp/scale"] == 0.5


@pytest.mark.parametrize("name", ["DisplayWindow_t16.exr", "DisplayWindow_t08.exr", "Tiles_GoldenGate.exr"])
def test_negative_origins_and_tiles_survive_a_rewrite(testdata: Path, tmp_path: Path, name: str) -> None:
    source = read_plate(testdata / "exr" / name)
    write_plate(tmp_path / name, source.parts)
    copy = read_plate(tmp_path / name)
    assert copy.display_window == source.display_window
    assert copy.data_window == source.data_window
    assert (copy.parts[0].spec.tile_width, copy.parts[0].spec.tile_height) == (
        source.parts[0].spec.tile_width,
        source.parts[0].spec.tile_height,
    )
    np.testing.assert_array_equal(copy.parts[0].pixels, source.parts[0].pixels)


def test_display_window_negative_origin_is_read(testdata: Path) -> None:
    assert read_plate(testdata / "exr/DisplayWindow_t16.exr").display_window == Window(-40, -40, 481, 371)


def _part(name: str, channels: list[str], value: float, window: Window, **kw: object) -> ImagePart:
    pixels = np.full((window.height, window.width, len(channels)), value, np.float32)
    pixels[..., 0] += np.arange(window.width, dtype=np.float32)[None, :]
    return ImagePart.create(pixels, channels, window, Window(0, 0, 64, 32), name=name, **kw)


def test_multipart_names_and_lookup(tmp_path: Path) -> None:
    window = Window(-4, 2, 40, 20)
    parts = [
        _part("rgba", ["R", "G", "B", "A"], 0.5, window),
        _part("depth", ["Z"], 7.0, window, pixel_type="float"),
        _part("diffuse", ["diffuse.R", "diffuse.G", "diffuse.B"], 2.0, window),
    ]
    write_plate(tmp_path / "multi.exr", parts, compression="piz")
    plate = read_plate(tmp_path / "multi.exr")
    assert [p.name for p in plate.parts] == ["rgba", "depth", "diffuse"]
    assert plate.channel_names == ["R", "G", "B", "A", "depth.Z", "diffuse.R", "diffuse.G", "diffuse.B"]
    assert plate.channel("depth.Z")[0, 0] == 7.0
    assert plate.parts[1].channel_types == ["float"]
    assert all(p.compression == "piz" for p in plate.parts)
    assert plate.data_window == window and plate.display_window == Window(0, 0, 64, 32)
    assert [layer.name for layer in plate.layers()] == ["rgba", "depth", "diffuse"]


def test_unnamed_parts_are_refused_and_nothing_is_left_behind(tmp_path: Path) -> None:
    window = Window(0, 0, 8, 4)
    parts = [_part("", ["R"], 0.0, window), _part("", ["G"], 0.0, window)]
    with pytest.raises(PlateError, match="needs a name"):
        write_plate(tmp_path / "x.exr", parts)
    assert os.listdir(tmp_path) == []


def test_pixel_type_override_keeps_uint_ids(tmp_path: Path) -> None:
    window = Window(0, 0, 16, 8)
    ids = (np.arange(16 * 8).reshape(8, 16, 1) + 2**24 - 127).astype(np.float32)  # up to 2**24
    part = ImagePart.create(
        np.concatenate([ids * 0 + 1.1, ids], axis=2),
        ["R", "id"],
        window,
        pixel_type="float",
        channel_types={"id": "uint"},
    )
    write_plate(tmp_path / "h.exr", [part], pixel_type="half")
    plate = read_plate(tmp_path / "h.exr")
    assert plate.parts[0].channel_types == ["half", "uint"]
    np.testing.assert_array_equal(plate.channel("id"), ids[..., 0])  # exact up to 2**24
    assert plate.channel("R")[0, 0] == np.float16(1.1)


def test_failed_write_keeps_the_previous_frame(tmp_path: Path) -> None:
    window = Window(0, 0, 8, 4)
    target = tmp_path / "frame.0001.exr"
    write_plate(target, [_part("rgba", ["R"], 1.0, window)])
    before = target.read_bytes()
    broken = ImagePart(oiio.ImageSpec(_part("rgba", ["R"], 1.0, window).spec), None)
    with pytest.raises(PlateError, match="no pixels"):
        write_plate(target, [broken])
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["frame.0001.exr"]


def test_write_refuses_unknown_compression_and_pixel_type(tmp_path: Path) -> None:
    part = _part("rgba", ["R"], 1.0, Window(0, 0, 8, 4))
    with pytest.raises(PlateError, match="unknown EXR compression 'lzma'"):
        write_plate(tmp_path / "a.exr", [part], compression="lzma")
    with pytest.raises(PlateError, match="pixel type must be"):
        write_plate(tmp_path / "a.exr", [part], pixel_type="uint8")


def test_luminance_chroma_file_reads_as_rgb(testdata: Path) -> None:
    plate = read_plate(testdata / "exr/Chromaticities_Rec709_YC.exr")
    assert plate.channel_names == ["R", "G", "B"]
    rgb = plate.channels(["R", "G", "B"])
    assert rgb.shape == (406, 610, 3) and np.isfinite(rgb).all()
    # Luminance is what the file stores in Y: Rec.709 weights of the decoded RGB give it back.
    import OpenEXR

    with OpenEXR.File(str(testdata / "exr/Chromaticities_Rec709_YC.exr")) as exr:
        stored_y = exr.channels()["Y"].pixels.astype(np.float32)
    y = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    np.testing.assert_allclose(y, stored_y, rtol=1e-4, atol=1e-4)


def test_headers_only_read(testdata: Path) -> None:
    plate = read_plate(testdata / "plates/beachball/singlepart.0002.exr", pixels=False)
    assert plate.parts[0].pixels is None and "forward.left.u" in plate.channel_names
    with pytest.raises(PlateError, match="without pixels"):
        plate.channel("R")


def test_not_an_exr(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(PlateError, match="not an EXR file"):
        read_plate(tmp_path / "a.png")


def test_multipart_stereo_views(tmp_path: Path) -> None:
    window = Window(0, 0, 16, 8)
    parts = [
        _part(eye, ["R", "G", "B"], value, window, attributes={"view": eye})
        for eye, value in (("left", 1.0), ("right", 2.0))
    ]
    write_plate(tmp_path / "stereo.exr", parts)
    plate = read_plate(tmp_path / "stereo.exr")
    assert plate.views == ["left", "right"]
    assert plate.channel("G", view="right")[0, 0] == 2.0
    assert plate.channel("G", view="left")[0, 0] == 1.0
    assert plate.channel("right.G")[0, 0] == 2.0  # the second part's channels carry its name


def split_into_parts(source: Path, target: Path) -> None:
    """Write a single-part multi-view EXR as OpenEXR's multi-part layout, with OpenImageIO: one part per layer and
    view (``rgba_right``, ``depth_left``, ``forward_left``, ``disparityL``), each part's channels without their
    view (``left.R`` becomes ``R`` of ``rgba_left``, ``forward.left.u`` becomes ``forward.u`` of
    ``forward_left``) and its view in the part's ``view`` attribute. Parts follow the channels' order."""
    image = oiio.ImageBuf(str(source))
    views = list(image.spec().getattribute("multiView"))
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for index, name in enumerate(image.spec().channelnames):
        components = name.split(".")
        if len(components) > 1 and components[-2] in views:
            view, plain = components[-2], ".".join(components[:-2] + components[-1:])
        else:
            view, plain = (views[0] if len(components) == 1 else ""), name
        layer = {"R": "rgba", "G": "rgba", "B": "rgba", "A": "rgba", "Z": "depth"}.get(plain, plain.split(".")[0])
        groups.setdefault((layer, view), []).append((index, plain))
    buffers, specs = [], []
    for (layer, view), channels in groups.items():
        buffer = oiio.ImageBufAlgo.channels(image, tuple(i for i, _ in channels), tuple(n for _, n in channels))
        spec = buffer.spec()
        spec.erase_attribute("multiView")
        spec.attribute("oiio:subimagename", f"{layer}_{view}" if view else layer)
        if view:
            spec.attribute("view", view)
        buffers.append(buffer)
        specs.append(spec)
    out = oiio.ImageOutput.create(str(target))
    assert out.open(str(target), specs), out.geterror()
    for index, (buffer, spec) in enumerate(zip(buffers, specs, strict=True)):
        assert index == 0 or out.open(str(target), spec, "AppendSubimage"), out.geterror()
        assert out.write_image(buffer.get_pixels(oiio.FLOAT)), out.geterror()
    assert out.close()


@pytest.fixture(scope="module")
def multipart_beachball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("multipart")
    for source in sorted((TESTDATA / "plates" / "beachball").glob("*.exr")):
        split_into_parts(source, folder / source.name.replace("singlepart", "multipart"))
    return folder


def test_multipart_beachball_reads_like_the_single_part_one(testdata: Path, multipart_beachball: Path) -> None:
    single = read_plate(testdata / "plates/beachball/singlepart.0001.exr")
    multi = read_plate(multipart_beachball / "multipart.0001.exr")
    assert len(multi.parts) == 10 and {"rgba_left", "depth_right", "forward_left"} <= {p.name for p in multi.parts}
    assert multi.channel_names == single.channel_names and multi.views == single.views == ["right", "left"]
    assert multi.data_window == single.data_window and multi.display_window == single.display_window
    for name, view in [
        ("R", "left"),
        ("Z", "right"),
        ("Z", "left"),
        ("A", ""),
        ("forward.u", "left"),
        ("forward.v", "right"),
        ("whitebarmask.mask", "left"),
        ("disparityL.x", "left"),
        ("left.G", ""),
        ("forward.right.u", ""),
    ]:
        np.testing.assert_array_equal(multi.channel(name, view), single.channel(name, view), err_msg=f"{name} {view}")
    np.testing.assert_array_equal(multi.channel("R", "left"), single.channel("left.R"))
    np.testing.assert_array_equal(multi.channel("forward.u", "left"), single.channel("forward.left.u"))
    assert not np.array_equal(multi.channel("Z", "left"), multi.channel("Z", "right"))


def _inspect(pattern: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "stylecomp.cli", "inspect", "--json", str(pattern)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_multipart_beachball_inspects_like_the_single_part_one(testdata: Path, multipart_beachball: Path) -> None:
    single = _inspect(testdata / "plates/beachball/singlepart.####.exr")
    multi = _inspect(multipart_beachball / "multipart.####.exr")
    assert [p["name"] for p in multi["parts"]][:2] == ["rgba_right", "depth_right"]
    assert multi["aovs"]["depth"]["channels"] == ["Z"] and multi["views"] == ["right", "left"]
    multi["attributes"].pop("DateTime")  # OpenImageIO stamps the files it writes
    for report in (single, multi):
        del report["parts"], report["path"]
    assert multi == single


def test_data_window_is_the_union_of_the_parts(tmp_path: Path) -> None:
    parts = [
        _part("rgba", ["R", "G", "B"], 0.5, Window(4, 2, 20, 10)),
        _part("depth", ["Z"], 7.0, Window(-3, 6, 10, 20)),
    ]
    write_plate(tmp_path / "two.exr", parts)
    plate = read_plate(tmp_path / "two.exr")
    assert plate.data_window == Window(-3, 2, 27, 24)
    assert plate.locate("depth.Z")[0].data_window == Window(-3, 6, 10, 20)


def test_single_part_views_follow_openexr_naming(testdata: Path) -> None:
    """The view is the penultimate component: forward.left.u is in view left, disparityL.x in none (every view)."""
    plate = read_plate(testdata / "plates/beachball/singlepart.0001.exr")
    np.testing.assert_array_equal(plate.channel("forward.u", view="left"), plate.channel("forward.left.u"))
    np.testing.assert_array_equal(
        plate.channel("whitebarmask.mask", view="right"), plate.channel("whitebarmask.right.mask")
    )
    np.testing.assert_array_equal(plate.channel("disparityR.y", view="left"), plate.channel("disparityR.y"))
    with pytest.raises(PlateError, match=re.escape("no channel 'forward.u' in view 'middle'")):
        plate.channel("forward.u", view="middle")
