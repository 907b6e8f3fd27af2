"""`stylecomp animate`: animatic clips from a stylized keyframe, an image or a picked still, with
tiny random-weight Wan and LTX-Video models, written as scene-linear EXRs with provenance."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from PIL import Image

from stylecomp.color import ModelEncoding
from stylecomp.diffusion.testing import make_test_video_model
from stylecomp.io.plates import ImagePart, read_plate, write_plate
from tests.tiny_jobs import FIRST, invoke, job_document, stylized, write_job

FRAMES = 5
pytestmark = pytest.mark.plates(FRAMES)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video")
    return {family: make_test_video_model(root / family, family) for family in ("wan", "ltx", "cogvideox")}


def animate_job(folder: Path, plates: Path, image_model: Path, video_model: Path, **animation: object) -> Path:
    document = job_document(
        plates,
        image_model,
        str(folder / "out/demo.####.exr"),
        FRAMES,
        animation={"model": {"path": str(video_model)}, "long_side": 64, "steps": 2} | animation,
    )
    return write_job(folder / "job.json", document)


def clip(folder: Path) -> list[np.ndarray]:
    files = sorted((folder / "animatic/demo").glob("demo.*.exr"))
    return [read_plate(f).channels(["R", "G", "B", "A"]) for f in files]


def test_a_stylized_keyframe_becomes_a_clip_in_one_command(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path], private_cache: Path, no_network: None
) -> None:
    job = animate_job(tmp_path, plates, tiny["sd15"], video["wan"])
    assert not (tmp_path / "out/demo.1001.exr").exists()
    status, out, err = invoke("animate", str(job))
    assert status == 0, err

    keyframe = tmp_path / f"out/demo.{FIRST}.exr"
    assert keyframe.is_file(), "the keyframe is stylized first"
    assert not (tmp_path / f"out/demo.{FIRST + 1}.exr").exists(), "only the keyframe is stylized"
    assert stylized(keyframe).shape == (64, 64, 4)
    frames = sorted((tmp_path / "animatic/demo").glob("demo.*.exr"))
    assert [f.name for f in frames] == [f"demo.{FIRST + i}.exr" for i in range(FRAMES)]  # Wan makes 4k+1 frames
    assert f"5 frames {FIRST}-{FIRST + FRAMES - 1}" in out

    header = read_plate(frames[0], pixels=False).parts[0].attributes
    assert header["stylecomp/start_kind"] == "stylized" and header["stylecomp/start_path"] == str(keyframe)
    assert header["stylecomp/start_keyframe"] == FIRST and header["stylecomp/frame"] == FIRST
    assert header["stylecomp/seed"] == 0 and header["stylecomp/family"] == "wan"
    # The keyframe file may be re-rendered later; the hash says which pixels this clip started from.
    assert len(header["stylecomp/start_image_hash"]) == 64

    encoding = ModelEncoding()
    for exr, png in zip(frames, sorted((tmp_path / "animatic/demo/preview").glob("demo.*.png")), strict=True):
        rgba = read_plate(exr).channels(["R", "G", "B", "A"])
        assert rgba.shape[2] == 4 and np.all(rgba[..., 3] == 1.0)
        preview = np.asarray(Image.open(png), np.float32) / 255
        # The EXR is the scene-linear decode of what the preview shows (half floats, 8-bit PNG).
        assert np.abs(encoding.encode(rgba[..., :3]).image - preview).max() < 3 / 255


def test_same_seed_same_clip_and_another_seed_another(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path], private_cache: Path
) -> None:
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        job = animate_job(tmp_path / name, plates, tiny["sd15"], video["ltx"])
        assert invoke("animate", str(job), "--seed", seed)[0] == 0
        runs[name] = clip(tmp_path / name)
    assert len(runs["a"]) == 9  # LTX-Video makes 8k+1 frames: 5 rounds up to 9
    assert all(np.array_equal(x, y) for x, y in zip(runs["a"], runs["b"], strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(runs["a"], runs["c"], strict=True))


def test_the_start_image_shapes_the_clip(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path]
) -> None:
    clips = []
    for name, value in (("dark", 0.05), ("bright", 2.0)):
        image = tmp_path / f"{name}.exr"
        write_plate(image, [ImagePart.create(np.full((48, 64, 3), value, np.float32), ["R", "G", "B"])])
        job = animate_job(tmp_path / name, plates, tiny["sd15"], video["wan"])
        status, _, err = invoke("animate", str(job), "--image", str(image))
        assert status == 0, err
        assert not (tmp_path / name / "out").exists(), "an image source stylizes nothing"
        clips.append(clip(tmp_path / name))
    assert clips[0][0].shape[:2] == (48, 64), "the clip keeps the start image's aspect at long_side"
    assert not np.array_equal(clips[0][0], clips[1][0])


@pytest.mark.parametrize("family", ["wan", "ltx"])
def test_last_frame_conditioning_where_the_model_has_it(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path], family: str
) -> None:
    start, end = tmp_path / "start.png", tmp_path / "end.png"
    Image.fromarray(np.full((64, 64, 3), 40, np.uint8)).save(start)
    Image.fromarray(np.full((64, 64, 3), 220, np.uint8)).save(end)
    with_end = animate_job(
        tmp_path / "end", plates, tiny["sd15"], video[family], source="image", image=str(start), last_image=str(end)
    )
    without = animate_job(tmp_path / "plain", plates, tiny["sd15"], video[family], source="image", image=str(start))
    assert invoke("animate", str(with_end))[0] == 0 and invoke("animate", str(without))[0] == 0
    assert not np.array_equal(clip(tmp_path / "end")[-1], clip(tmp_path / "plain")[-1])
    header = read_plate(tmp_path / f"end/animatic/demo/demo.{FIRST}.exr", pixels=False).parts[0].attributes
    assert header["stylecomp/family"] == family


def test_a_model_without_last_frame_conditioning_refuses_an_end_image(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path]
) -> None:
    start = tmp_path / "start.png"
    Image.fromarray(np.full((64, 64, 3), 40, np.uint8)).save(start)
    refused = animate_job(
        tmp_path, plates, tiny["sd15"], video["cogvideox"], source="image", image=str(start), last_image=str(start)
    )
    status, _, err = invoke("animate", str(refused))
    # The job asks every shot to end on an image: no shot can be made, so the job is unusable (exit 2).
    assert status == 2 and "cannot end on a given frame" in err
    assert not (tmp_path / "animatic").exists()


def test_missing_model_and_missing_still_are_clear_errors(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path]
) -> None:
    no_model = write_job(
        tmp_path / "a/job.json", job_document(plates, tiny["sd15"], str(tmp_path / "a/out/demo.####.exr"), FRAMES)
    )
    status, _, err = invoke("animate", str(no_model))
    assert status == 2 and "animation.model is needed" in err

    no_still = animate_job(tmp_path / "b", plates, tiny["sd15"], video["wan"], source="ideation")
    status, _, err = invoke("animate", str(no_still))
    assert status == 1 and "no picked ideation still" in err and "stylecomp ideate" in err


def test_an_animatic_clip_conforms_into_the_edit(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path]
) -> None:
    clip_item = otio.schema.Clip(
        name="demo",
        media_reference=otio.schema.ImageSequenceReference(
            target_url_base=plates.as_uri() + "/",
            name_prefix="demo.",
            name_suffix=".exr",
            start_frame=FIRST,
            frame_zero_padding=4,
            rate=24,
            available_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(FIRST, 24), otio.opentime.RationalTime(FRAMES, 24)
            ),
        ),
    )
    timeline = otio.schema.Timeline(name="cut")
    timeline.tracks.append(otio.schema.Track(name="V1", children=[clip_item]))
    otio.adapters.write_to_file(timeline, str(tmp_path / "cut.otio"))
    assert (
        invoke(
            "timeline",
            "jobs",
            str(tmp_path / "cut.otio"),
            "-o",
            str(tmp_path / "job.json"),
            "--plates",
            str(plates / "demo.####.exr"),
        )[0]
        == 0
    )
    job = json.loads((tmp_path / "job.json").read_text())
    job["animation"] = {
        "model": {"path": str(video["wan"])},
        "long_side": 64,
        "steps": 2,
        "source": "image",
        "image": str(plates / f"demo.{FIRST}.exr"),
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert invoke("animate", str(tmp_path / "job.json"))[0] == 0

    status, _, err = invoke(
        "timeline",
        "conform",
        str(tmp_path / "cut.otio"),
        str(tmp_path / "job.json"),
        "-o",
        str(tmp_path / "animatic.otio"),
        "--media",
        "animatic",
    )
    assert status == 0, err
    conformed = otio.adapters.read_from_file(str(tmp_path / "animatic.otio"))
    item = conformed.tracks[0][0]
    assert item.active_media_reference_key == "animatic"
    ref = item.media_reference
    assert (ref.start_frame, ref.end_frame()) == (FIRST, FIRST + FRAMES - 1)
    assert Path(otio.url_utils.filepath_from_url(ref.target_url_for_image_number(0))).is_file()


def test_a_shorter_clip_replaces_the_longer_one_whole_and_the_model_path_is_the_jobs(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path]
) -> None:
    # The model path is relative to the job's folder, not to where the command runs.
    job = animate_job(
        tmp_path,
        plates,
        tiny["sd15"],
        Path(os.path.relpath(video["wan"], tmp_path)),
        source="image",
        image=str(plates / f"demo.{FIRST}.exr"),
    )
    assert invoke("animate", str(job), "--frames", "9")[0] == 0
    assert len(clip(tmp_path)) == 9
    status, _, err = invoke("animate", str(job), "--frames", "5")
    assert status == 0, err
    # Frames 6-9 of the first clip would play on after the new one in a conformed edit.
    assert [f.name for f in sorted((tmp_path / "animatic/demo").glob("demo.*.exr"))] == [
        f"demo.{FIRST + i}.exr" for i in range(5)
    ]
    assert len(list((tmp_path / "animatic/demo/preview").glob("demo.*.png"))) == 5


def test_stopping_while_the_keyframe_renders_stops_the_clip(
    tmp_path: Path, plates: Path, tiny: dict[str, Path], video: dict[str, Path]
) -> None:
    from stylecomp.errors import Cancelled
    from stylecomp.generators.animatic import animate, video_generator
    from stylecomp.jobspec import load_job

    path = animate_job(tmp_path, plates, tiny["sd15"], video["wan"])
    job = load_job(path)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        animate(job, str(path), job.shots[0], video_generator(job), cancel=stop)
    assert not (tmp_path / "animatic").exists()
