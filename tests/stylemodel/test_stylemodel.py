"""stylecomp's own trained model, measured as users run it: ``render_job`` on held-out scenes.

Every quality test runs twice: with the shipped weights, where it must pass, and with random
weights of the same architecture, where the same check must fail, so no test here can pass on
a model that learned nothing. Thresholds come from measurements noted beside them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from stylecomp.cli import cli
from stylecomp.color import ModelEncoding
from stylecomp.demo.scene import render_layers
from stylecomp.diffusion.pool import PipelinePool
from stylecomp.io.plates import read_plate
from stylecomp.jobspec import FrameRange, Ideation, Job, Shot, save_job
from stylecomp.stylemodel import SHIPPED_MODEL
from stylecomp.stylemodel.architecture import save_random_model
from stylecomp.stylemodel.evaluation import (
    EVALUATION_PROMPTS as PROMPTS,
)
from stylecomp.stylemodel.evaluation import (
    RECOMMENDED,
    HeldOutShot,
    display_output,
    fidelity,
    held_out_shot,
    model_settings,
    stylize,
)
from stylecomp.stylemodel.looks import INK, LOOKS, lines
from stylecomp.stylemodel.scenes import HELD_OUT_SEEDS, TRAINING_SEEDS, random_scene
from stylecomp.temporal.flicker import measure_flicker

# Measured with the shipped weights on held-out scenes 0-1 at the recommended settings (the model card):
# watercolor's L1 ratio 0.28-0.30, within the goal of 0.5 (cel's 0.71-0.94 misses it, so no test claims it).
MAX_L1_RATIO = 0.5
MIN_PROMPT_GAIN = 0.15  # each look's error, own prompt against the other prompt: measured 46-70% lower
MIN_CONTRAST_GAIN = 0.05  # outline contrast, line-art ControlNet on minus off: measured 0.214-0.229
MAX_IDEATE_L1_RATIO = 0.5  # ideate's watercolor stills from noise, same scenes: measured 0.288 and 0.326
SEQUENCE_FRAMES = 4
# Of locked_seed's R, which is already 1.086 (within 9% of the plate's own warp error): latent_fusion at the
# recommended settings (every step fused) measured 0.700 (64%).
MAX_R_SHARE = 0.8


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {"shipped": SHIPPED_MODEL, "random": save_random_model(tmp_path_factory.mktemp("random-model"))}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[HeldOutShot]:
    root = tmp_path_factory.mktemp("held-out")
    return [held_out_shot(i, root / f"scene{i}") for i in range(2)]


@pytest.fixture(scope="module")
def pool() -> PipelinePool:
    return PipelinePool("cpu")


def run(
    shot: HeldOutShot, look: str, model: Path, out: Path, pool: PipelinePool, **changes: object
) -> dict[str, float]:
    """Stylize the shot's first frame with ``look``'s prompt and measure it against that look."""
    sequence = stylize(shot, PROMPTS[look], out, replace(RECOMMENDED, **changes), model=model, pool=pool)
    frame = sequence.frames[0]
    return fidelity(
        display_output(sequence, frame), shot.plate_images[frame], shot.looks[look][frame], shot.lines[frame]
    )


# --- the shipped model as a user loads it -----------------------------------------------------------


def test_shipped_model_is_a_diffusers_folder_of_safetensors_within_30_mb() -> None:
    files = [f for f in SHIPPED_MODEL.rglob("*") if f.is_file() and ".training" not in f.parts]
    weights = [f for f in files if f.suffix in (".safetensors", ".bin", ".ckpt", ".pt", ".pth")]
    assert {f.parent.name for f in weights} == {"unet", "vae", "text_encoder", "controlnet", "controlnet_tile"}
    assert all(f.suffix == ".safetensors" for f in weights)
    assert sum(f.stat().st_size for f in files) < 30 * 2**20
    index = json.loads((SHIPPED_MODEL / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionImg2ImgPipeline"
    assert (SHIPPED_MODEL / "README.md").is_file() and (SHIPPED_MODEL / "loss_curve.png").is_file()


def test_shipped_model_renders_deterministically_through_the_user_path(
    scenes: list[HeldOutShot], tmp_path: Path, pool: PipelinePool
) -> None:
    first = stylize(scenes[0], "cel shaded", tmp_path / "a", pool=pool)
    second = stylize(scenes[0], "cel shaded", tmp_path / "b", pool=PipelinePool("cpu"))  # loaded afresh
    frame = first.frames[0]
    a, b = read_plate(first.path(frame)), read_plate(second.path(frame))
    assert np.array_equal(
        a.channels(["stylized.R", "stylized.G", "stylized.B"]), b.channels(["stylized.R", "stylized.G", "stylized.B"])
    )
    assert a.parts[0].attributes["stylecomp/model"] == str(SHIPPED_MODEL)  # provenance names the model


# --- quality: each check passes with the trained weights and fails with random ones ------------------


@pytest.mark.parametrize("weights", ["shipped", "random"])
def test_watercolor_output_is_much_closer_to_its_look_than_the_plate(
    weights: str, models: dict[str, Path], scenes: list[HeldOutShot], tmp_path: Path, pool: PipelinePool
) -> None:
    ratios = [
        run(shot, "watercolor", models[weights], tmp_path / str(i), pool)["l1_ratio"] for i, shot in enumerate(scenes)
    ]
    assert (max(ratios) <= MAX_L1_RATIO) == (weights == "shipped"), ratios


@pytest.mark.parametrize("weights", ["shipped", "random"])
def test_each_prompt_moves_the_output_towards_its_own_look(
    weights: str, models: dict[str, Path], scenes: list[HeldOutShot], tmp_path: Path, pool: PipelinePool
) -> None:
    """Each look's error is lower with its own prompt than with the other one, by a margin, on both scenes."""
    gains = []
    for i, shot in enumerate(scenes):
        frame = shot.plates.frames[0]
        outputs = {
            look: display_output(
                stylize(shot, prompt, tmp_path / f"{look}{i}", model=models[weights], pool=pool), frame
            )
            for look, prompt in PROMPTS.items()
        }
        for look, other in (("cel", "watercolor"), ("watercolor", "cel")):
            truth = shot.looks[look][frame]
            own, other_error = (float(np.abs(outputs[name] - truth).mean()) for name in (look, other))
            gains.append(1.0 - own / other_error)
    assert (min(gains) >= MIN_PROMPT_GAIN) == (weights == "shipped"), gains


@pytest.mark.parametrize("weights", ["shipped", "random"])
def test_the_line_art_controlnet_darkens_the_outlines(
    weights: str, models: dict[str, Path], scenes: list[HeldOutShot], tmp_path: Path, pool: PipelinePool
) -> None:
    gains = [
        run(shot, "cel", models[weights], tmp_path / f"on{i}", pool)["outline_contrast"]
        - run(shot, "cel", models[weights], tmp_path / f"off{i}", pool, line_art=False)["outline_contrast"]
        for i, shot in enumerate(scenes)
    ]
    assert (min(gains) >= MIN_CONTRAST_GAIN) == (weights == "shipped"), gains


@pytest.mark.parametrize("weights", ["shipped", "random"])
def test_ideate_generates_the_look_from_noise_guided_by_the_plate(
    weights: str, models: dict[str, Path], scenes: list[HeldOutShot], tmp_path: Path
) -> None:
    """``stylecomp ideate`` (text to image from noise, the ControlNets fed by the guide frame) lands on the look."""
    ratios = []
    for i, shot in enumerate(scenes):
        frame = shot.plates.frames[0]
        job = Job(
            shots=[
                Shot(
                    name="held_out",
                    plate=shot.plates.pattern,
                    output=str(tmp_path / "unused.####.exr"),
                    frames=FrameRange(first=frame, last=frame),
                )
            ],
            model=model_settings(models[weights]),
            prompt=PROMPTS["watercolor"],
            guidance=RECOMMENDED.guidance,
            steps=RECOMMENDED.steps,
            ideation=Ideation(seeds=[1], guide_frame=frame, output=str(tmp_path / f"ideation{i}")),
        )
        save_job(job, tmp_path / f"job{i}.json")
        result = CliRunner().invoke(cli, ["ideate", str(tmp_path / f"job{i}.json"), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        rgba = read_plate(tmp_path / f"ideation{i}" / "candidate_00.exr").channels(["R", "G", "B", "A"])
        still = ModelEncoding().encode(rgba[..., :3], rgba[..., 3]).image
        ratios.append(
            fidelity(still, shot.plate_images[frame], shot.looks["watercolor"][frame], shot.lines[frame])["l1_ratio"]
        )
    assert (max(ratios) <= MAX_IDEATE_L1_RATIO) == (weights == "shipped"), ratios


# --- consistency along the render's own vectors, on-style ------------------------------------------


@pytest.fixture(scope="module")
def sequence_shot(tmp_path_factory: pytest.TempPathFactory) -> HeldOutShot:
    return held_out_shot(2, tmp_path_factory.mktemp("sequence"), frames=SEQUENCE_FRAMES)


@pytest.mark.parametrize("weights", ["shipped", "random"])
# warped_noise, cross_frame and flow_attention are left out: on this shot they lower R by 1.3%, 0 and 0 (on the
# demo shot too: benchmarks/results/consistency.json). The model's last step returns its clean prediction, so
# little of the noise warped_noise moves is left, and its tile ControlNet, not its self-attention, carries the plate.
def test_latent_fusion_lowers_flicker_and_keeps_the_look(
    weights: str,
    models: dict[str, Path],
    sequence_shot: HeldOutShot,
    tmp_path: Path,
    pool: PipelinePool,
) -> None:
    """R against locked_seed (the common baseline) on a 4-frame held-out shot, every frame still on-look."""
    results = {}
    for mechanisms in (("locked_seed",), ("latent_fusion",)):
        out = stylize(
            sequence_shot,
            PROMPTS["watercolor"],
            tmp_path / mechanisms[0],
            replace(RECOMMENDED, mechanisms=mechanisms),
            model=models[weights],
            pool=pool,
        )
        report = measure_flicker(out.pattern, sequence_shot.plates.pattern)
        ratios = [
            fidelity(
                display_output(out, f),
                sequence_shot.plate_images[f],
                sequence_shot.looks["watercolor"][f],
                sequence_shot.lines[f],
            )["l1_ratio"]
            for f in out.frames
        ]
        results[mechanisms[0]] = (report.R, max(ratios))
    (base_r, _), (r, worst) = results["locked_seed"], results["latent_fusion"]
    assert (r <= MAX_R_SHARE * base_r and worst <= MAX_L1_RATIO) == (weights == "shipped"), results


# --- scenes, looks and training ---------------------------------------------------------------------


def test_scenes_are_deterministic_and_held_out_seeds_are_never_trained_on() -> None:
    assert not set(HELD_OUT_SEEDS) & set(TRAINING_SEEDS)
    a, b = render_layers(3, 64, 36, 0, random_scene(5))[0], render_layers(3, 64, 36, 0, random_scene(5))[0]
    assert all(np.array_equal(a[name], b[name]) for name in a)
    other = render_layers(3, 64, 36, 0, random_scene(6))[0]
    assert not np.array_equal(a["R"], other["R"])


def test_cel_look_draws_ink_exactly_on_the_line_art_and_flattens_the_light() -> None:
    scene = random_scene(HELD_OUT_SEEDS[0])
    planes, layers = render_layers(0, 128, 72, 0, scene)
    image = LOOKS["cel"](planes, layers, scene.lighting, ModelEncoding())
    on_line = lines(planes) > 0.5
    assert on_line.any() and np.allclose(image[on_line], INK, atol=1e-6)
    assert not np.any(np.all(np.isclose(image[~on_line], INK, atol=1e-6), axis=-1))
    # Two sun bands and a shadow: on the surface of one colour with the most shading (most distinct plate values),
    # the cel look has at most 3 colours, where the plate and the watercolor have hundreds.
    encoding = ModelEncoding()
    plate = encoding.encode(np.stack([planes[c] for c in "RGB"], axis=-1)).image
    surface = ~layers.sky & ~on_line & (layers.emission.max(axis=-1) == 0)
    key = np.concatenate([planes["id"][..., None], np.round(layers.albedo, 4)], axis=-1)
    groups = [surface & np.all(key == group, axis=-1) for group in np.unique(key[surface], axis=0)]

    def colours(picture: np.ndarray, where: np.ndarray) -> int:
        return len(np.unique(np.round(picture[where], 3), axis=0))

    shaded = max(groups, key=lambda where: colours(plate, where))
    watercolor = LOOKS["watercolor"](planes, layers, scene.lighting, encoding)
    assert colours(image, shaded) <= 3 and colours(plate, shaded) > 100 and colours(watercolor, shaded) > 100


def test_training_is_deterministic_and_a_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """Killed in either trained stage, then resumed through the CLI: every checkpointed tensor (weights, EMA, Adam
    state, in float32) and the saved model are identical to an uninterrupted run's."""
    args = ["model", "train-demo", "--steps", "4", "--controlnet-steps", "2", "--scenes", "2", "--eval-scenes", "1"]
    straight = CliRunner().invoke(cli, [*args, str(tmp_path / "straight")])
    assert straight.exit_code == 0, straight.output

    class Killed(Exception):
        pass

    from stylecomp.stylemodel import training

    original = training.Trainer._save
    for stage, step in (("unet", 2), ("controlnet", 1)):

        def save_then_die(
            self: training.Trainer, saved: str, *rest: object, stage: str = stage, step: int = step
        ) -> None:
            original(self, saved, *rest)
            if (saved, rest[-1].step) == (stage, step):  # type: ignore[attr-defined]  # the state saved
                raise Killed()

        settings = training.TrainingSettings(scenes=2, unet_steps=4, controlnet_steps=2, checkpoint_every=1)
        killed = tmp_path / f"killed-{stage}"
        training.Trainer._save = save_then_die  # type: ignore[method-assign]  # a run killed mid-save
        try:
            with pytest.raises(Killed):
                training.Trainer(killed, settings).run()
        finally:
            training.Trainer._save = original  # type: ignore[method-assign]  # a run killed mid-save
        refused = CliRunner().invoke(cli, [*args, str(killed)])
        assert refused.exit_code == 2 and "--resume" in refused.output
        resumed = CliRunner().invoke(cli, [*args, "--resume", str(killed)])
        assert resumed.exit_code == 0, resumed.output
        for part in (
            ".training/unet.safetensors",
            ".training/controlnet.safetensors",
            "unet/diffusion_pytorch_model.safetensors",
            "controlnet_tile/diffusion_pytorch_model.safetensors",
            "controlnet/diffusion_pytorch_model.safetensors",
        ):
            a, b = load_file(str(tmp_path / "straight" / part)), load_file(str(killed / part))
            assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a), (stage, part)

    card = (killed / "README.md").read_text()
    assert "unet: 4 steps" in card and "VAE: built, not trained" in card
    metrics = json.loads((killed / "training.json").read_text())["metrics"]
    assert set(metrics) == {"cel", "watercolor"} and all(0 < m["l1_ratio"] < 10 for m in metrics.values())
    assert "| watercolor | " in card
    other = CliRunner().invoke(cli, [*args, "--seed", "3", "--resume", str(killed)])
    assert other.exit_code == 2 and "seed 0 (now 3)" in other.output, other.output
