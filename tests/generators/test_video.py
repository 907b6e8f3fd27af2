"""The built-in image-to-video generator on tiny random-weight Wan, LTX-Video and CogVideoX folders.

Each tiny model is built once from the real diffusers classes, saved as .safetensors, and loaded back
through ``load_generator("diffusers", ...)`` exactly as a user's model folder would be.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from stylecomp.cli import cli
from stylecomp.diffusion.testing import make_test_video_model
from stylecomp.errors import Cancelled, ModelError
from stylecomp.generators.interface import Generator, Request, Setup, load_generator
from stylecomp.generators.video import detect_video_family
from stylecomp.jobspec import VideoModelSettings

pytestmark = pytest.mark.usefixtures("no_network", "private_cache")

FAMILIES = ("wan", "ltx", "cogvideox")
# Frames asked -> frames made: Wan 4k+1, LTX-Video and CogVideoX 8k+1, rounded up, at least two latent frames.
FRAME_COUNTS = {
    "wan": {1: 5, 5: 5, 6: 9, 9: 9, 10: 13},
    "ltx": {1: 9, 9: 9, 10: 17, 17: 17},
    "cogvideox": {1: 9, 9: 9, 10: 17, 17: 17},
}
# A 60x40 request is rounded up to each family's pixel multiple (16, 32, 16).
SIZES = {"wan": (64, 48), "ltx": (64, 64), "cogvideox": (64, 48)}


@pytest.fixture(scope="module")
def video_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video-models")
    return {family: make_test_video_model(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="module")
def generators(video_models: dict[str, Path]) -> dict[str, Generator]:
    return {family: _load(path) for family, path in video_models.items()}


def _load(path: Path, allow_pickle: bool = False) -> Generator:
    model = VideoModelSettings(path=str(path), allow_pickle=allow_pickle)
    return load_generator("diffusers", Setup(kind="image_to_video", model=model))


def _image(seed: int, width: int = 60, height: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def _request(**changes: object) -> Request:
    fields: dict[str, object] = {
        "prompt": "a red ball bounces",
        "seed": 7,
        "width": 60,
        "height": 40,
        "steps": 2,
        "guidance": 4.0,
        "image": _image(1),
        "frames": 6,
        "fps": 24.0,
    }
    return Request(**(fields | changes))  # type: ignore[arg-type]  # the changes are Request fields


def _clip(generator: Generator, **changes: object) -> np.ndarray:
    return np.stack(generator.generate(_request(**changes), threading.Event()).frames)


def test_detects_each_family(video_models: dict[str, Path]) -> None:
    assert {family: detect_video_family(path) for family, path in video_models.items()} == dict(
        zip(FAMILIES, FAMILIES, strict=True)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_frame_count_rounds_up_to_what_the_model_makes(generators: dict[str, Generator], family: str) -> None:
    counts = FRAME_COUNTS[family]
    assert {asked: generators[family].frame_count(asked) for asked in counts} == counts


@pytest.mark.parametrize("family", FAMILIES)
def test_clip_has_the_promised_length_size_and_range(generators: dict[str, Generator], family: str) -> None:
    generator = generators[family]
    result = generator.generate(_request(frames=10), threading.Event())

    width, height = SIZES[family]
    assert len(result.frames) == generator.frame_count(10) == FRAME_COUNTS[family][10]
    for frame in result.frames:
        assert frame.shape == (height, width, 3) and frame.dtype == np.float32
        assert 0.0 <= frame.min() and frame.max() <= 1.0
    provenance = result.provenance
    assert provenance["family"] == family
    assert (provenance["width"], provenance["height"], provenance["frames"]) == (width, height, len(result.frames))
    assert provenance["frames_requested"] == 10
    assert f"60x40 rounded up to {width}x{height}" in provenance["size_note"]
    assert provenance["model"] == str(generators[family].path)
    assert len(provenance["model_hash"]) == 64
    assert provenance["last_frame"] is False
    assert provenance["generator_device"] == "cpu"


@pytest.mark.parametrize("family", FAMILIES)
def test_same_request_same_frames_and_seed_and_first_frame_matter(
    generators: dict[str, Generator], family: str
) -> None:
    generator = generators[family]
    clip = _clip(generator)

    assert np.array_equal(clip, _clip(generator))
    assert not np.allclose(clip, _clip(generator, seed=8), atol=1e-3)
    assert not np.allclose(clip, _clip(generator, image=_image(2)), atol=1e-3)


@pytest.mark.parametrize("family", ["wan", "ltx"])
def test_last_frame_conditions_the_clip(generators: dict[str, Generator], family: str) -> None:
    generator = generators[family]
    result = generator.generate(_request(last_image=_image(3)), threading.Event())
    ending_elsewhere = _clip(generator, last_image=_image(4))

    assert result.provenance["last_frame"] is True
    assert np.array_equal(np.stack(result.frames), _clip(generator, last_image=_image(3)))
    assert not np.allclose(np.stack(result.frames), ending_elsewhere, atol=1e-3)
    assert not np.allclose(np.stack(result.frames), _clip(generator), atol=1e-3)


def test_cogvideox_refuses_a_last_frame(generators: dict[str, Generator]) -> None:
    with pytest.raises(ModelError, match="cogvideox model cannot end on a given frame: CogVideoX image-to-video"):
        generators["cogvideox"].generate(_request(last_image=_image(3)), threading.Event())


def test_ltx_0_9_0_folders_run_first_frame_clips_only(video_models: dict[str, Path], tmp_path: Path) -> None:
    # LTX-Video 0.9.0/0.9.1 folders ship a dynamically shifted schedule, which LTXConditionPipeline cannot run.
    folder = shutil.copytree(video_models["ltx"], tmp_path / "ltx-0.9.1")
    config_file = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config |= {
        "use_dynamic_shifting": True,
        "base_shift": 0.95,
        "max_shift": 2.05,
        "base_image_seq_len": 1024,
        "max_image_seq_len": 4096,
        "shift_terminal": 0.1,
    }
    config_file.write_text(json.dumps(config))
    generator = _load(folder)

    result = generator.generate(_request(frames=10), threading.Event())
    assert result.provenance["pipeline"] == "LTXImageToVideoPipeline"
    assert len(result.frames) == 17
    with pytest.raises(ModelError, match=re.escape("LTX-Video 0.9.0/0.9.1 folders condition on the first frame only")):
        generator.generate(_request(last_image=_image(3)), threading.Event())


def test_pickle_weights_are_refused_unless_allowed(video_models: dict[str, Path], tmp_path: Path) -> None:
    folder = shutil.copytree(video_models["wan"], tmp_path / "wan-pickle")
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), weights.with_suffix(".bin"))
    weights.unlink()

    with pytest.raises(ModelError, match=r"transformer/diffusion_pytorch_model\.bin: pickle weights can run arbitrary"):
        _load(folder)
    allowed = _load(folder, allow_pickle=True)  # the same weights, so the same clip (to float rounding)
    np.testing.assert_allclose(_clip(allowed), _clip(_load(video_models["wan"])), atol=1e-5)


def test_unknown_folders_are_refused_with_the_supported_families(tmp_path: Path) -> None:
    image_model = tmp_path / "sd15"
    image_model.mkdir()
    (image_model / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelError, match="StableDiffusionPipeline is not an image-to-video model") as error:
        _load(image_model)
    assert error.value.where == str(image_model)
    assert "Wan image-to-video" in error.value.reason and "LTX-Video" in error.value.reason
    assert "CogVideoX" in error.value.reason

    with pytest.raises(ModelError, match=r"not an image-to-video diffusers folder \(no model_index.json\)"):
        _load(tmp_path)
    with pytest.raises(ModelError, match="no such file or folder"):
        _load(tmp_path / "missing")


class _CancelAtCheck(threading.Event):
    """A host's cancel flag that it sets just before the ``at``-th time the generator looks at it."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.checks = at, 0

    def is_set(self) -> bool:
        self.checks += 1
        if self.checks == self.at:
            self.set()
        return super().is_set()


def test_cancel_stops_between_denoising_steps(generators: dict[str, Generator]) -> None:
    cancel = _CancelAtCheck(at=3)  # the first check is before any work, then one after each step
    with pytest.raises(Cancelled):
        generators["ltx"].generate(_request(steps=20), cancel)
    assert cancel.checks == 3
    assert len(generators["ltx"].generate(_request(), threading.Event()).frames) == 9  # still usable

    with pytest.raises(Cancelled):
        generators["wan"].generate(_request(), _CancelAtCheck(at=1))


def test_progress_is_told_after_each_step(generators: dict[str, Generator]) -> None:
    told: list[tuple[int, int]] = []
    generators["cogvideox"].generate(_request(steps=3, on_step=lambda *step: told.append(step)), threading.Event())
    assert told == [(1, 3), (2, 3), (3, 3)]


def test_cli_builds_a_tiny_video_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["model", "make-test", str(tmp_path / "wan"), "--video", "wan"])
    assert result.exit_code == 0, result.output
    assert detect_video_family(tmp_path / "wan") == "wan"

    refused = CliRunner().invoke(cli, ["model", "make-test", str(tmp_path / "x"), "--video", "ltx", "--lora"])
    assert refused.exit_code == 2 and "--video builds an image-to-video model alone" in refused.output


def test_the_ltx_sigmas_notice_is_hidden_only_while_a_clip_renders(
    generators: dict[str, Generator], caplog: pytest.LogCaptureFixture
) -> None:
    scheduler_log = logging.getLogger("diffusers.schedulers.scheduling_flow_match_euler_discrete")
    filters = list(scheduler_log.filters)
    with caplog.at_level(logging.WARNING):
        _clip(generators["ltx"])
    assert not [r for r in caplog.records if "sigmas" in r.getMessage()]
    assert scheduler_log.filters == filters


def test_no_leak_report_when_the_process_exits(testdata: Path) -> None:
    # Logging filters of the generator modules reach stylecomp.io.plates, which held OpenImageIO TypeDescs: they
    # outlived OIIO at shutdown, and every command that had loaded a generator ended with nanobind's report.
    plate = testdata / "plates" / "beachball" / "singlepart.0001.exr"
    script = (
        "import stylecomp.generators.image, stylecomp.generators.video, stylecomp.io.plates as plates; "
        f"plates.read_plate({str(plate)!r})"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr
