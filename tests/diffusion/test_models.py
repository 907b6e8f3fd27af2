"""Model loading (stylecomp.diffusion.loading) on tiny random-weight models (stylecomp.diffusion.testing).

The tiny models are built from the real diffusers/transformers classes, saved, and loaded back
through ``load_pipeline``, the path users' models take; then a real img2img call runs on them.
No test may touch the network: every socket connection attempt fails the test.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    FluxControlNetImg2ImgPipeline,
    FluxImg2ImgPipeline,
    MultiControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from stylecomp.diffusion import loading as models
from stylecomp.diffusion.geometry import CONFIG_DIR
from stylecomp.diffusion.loading import load_pipeline, model_hash, pick_device, pick_dtype
from stylecomp.diffusion.model_files import detect_family
from stylecomp.diffusion.testing import make_test_checkpoint, make_test_model
from stylecomp.errors import ModelError
from stylecomp.families import family_spec
from stylecomp.jobspec import ControlNet, ModelSettings

FAMILIES = ("sd15", "sdxl", "flux")
PIPELINES = {
    "sd15": (StableDiffusionImg2ImgPipeline, StableDiffusionControlNetImg2ImgPipeline),
    "sdxl": (StableDiffusionXLImg2ImgPipeline, StableDiffusionXLControlNetImg2ImgPipeline),
    "flux": (FluxImg2ImgPipeline, FluxControlNetImg2ImgPipeline),
}
PLATE = Image.fromarray((np.random.default_rng(7).random((64, 64, 3)) * 255).astype(np.uint8))
CONTROL = Image.fromarray((np.random.default_rng(8).random((64, 64, 3)) * 255).astype(np.uint8))


pytestmark = pytest.mark.usefixtures("no_network", "private_cache")


@pytest.fixture(scope="session")
def single_files(tmp_path_factory: pytest.TempPathFactory, tiny: dict[str, Path]) -> dict[str, Path]:
    """The tiny SD1.5/SDXL models as original-layout single files."""
    root = tmp_path_factory.mktemp("single")
    return {family: make_test_checkpoint(root / f"{family}.safetensors", family) for family in ("sd15", "sdxl")}


@pytest.fixture
def tiny_configs(tmp_path: Path, tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Config folders for the tiny architectures (configs and tokenizers, no weights) as $STYLECOMP_MODEL_CONFIGS."""
    root = tmp_path / "configs"
    for family in ("sd15", "sdxl"):
        shutil.copytree(tiny[family], root / family, ignore=shutil.ignore_patterns("*.safetensors", "controlnet"))
    monkeypatch.setenv("STYLECOMP_MODEL_CONFIGS", str(root))
    return root


def stylize(pipe: DiffusionPipeline, seed: int, **extra: object) -> np.ndarray:
    """One 64x64 img2img frame: 4 scheduler steps at strength 0.5, i.e. 2 denoising steps."""
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    result = pipe(
        prompt="ink and watercolour",
        image=PLATE,
        height=64,
        width=64,
        num_inference_steps=4,
        strength=0.5,
        output_type="np",
        generator=generator,
        **extra,
    )
    return result.images


def assert_deterministic_frames(pipe: DiffusionPipeline, **extra: object) -> np.ndarray:
    first, again, other = stylize(pipe, 1, **extra), stylize(pipe, 1, **extra), stylize(pipe, 2, **extra)
    assert first.shape == (1, 64, 64, 3)
    assert np.isfinite(first).all() and first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.01, "a different seed must give a different frame"
    return first


def weight_digests(folder: Path) -> dict[str, str]:
    return {
        f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*.safetensors"))
    }


# --- tiny models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_img2img_frames_are_deterministic(tiny: dict[str, Path], family: str) -> None:
    pipe = load_pipeline(ModelSettings(family=family, path=str(tiny[family])))
    assert type(pipe) is family_spec(family).pipeline_class(False) and isinstance(pipe, PIPELINES[family][0])
    assert pipe.device.type == "cpu" and pipe.dtype == torch.float32
    assert_deterministic_frames(pipe)


@pytest.mark.parametrize("family", FAMILIES)
def test_controlnet_conditions_the_frame(tiny: dict[str, Path], family: str) -> None:
    net = ControlNet(path=str(tiny[family] / "controlnet"), source="depth")
    settings = ModelSettings(family=family, path=str(tiny[family]), controlnets=[net])
    pipe = load_pipeline(settings)
    assert type(pipe) is family_spec(family).pipeline_class(True) and isinstance(pipe, PIPELINES[family][1])
    controlled = assert_deterministic_frames(pipe, control_image=CONTROL)
    ignored = stylize(pipe, 1, control_image=CONTROL, controlnet_conditioning_scale=0.0)
    assert np.abs(controlled - ignored).max() > 0.01, "the ControlNet must change the frame"


def test_several_controlnets_become_a_multicontrolnet(tiny: dict[str, Path]) -> None:
    net = ControlNet(path=str(tiny["sd15"] / "controlnet"), source="depth")
    pipe = load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), controlnets=[net, net]))
    assert isinstance(pipe.controlnet, MultiControlNetModel)
    assert_deterministic_frames(pipe, control_image=[CONTROL, PLATE], controlnet_conditioning_scale=[1.0, 0.5])


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_models_are_plain_diffusers_folders(tiny: dict[str, Path], family: str) -> None:
    pipe = DiffusionPipeline.from_pretrained(tiny[family], local_files_only=True)
    assert type(pipe).__name__ == json.loads((tiny[family] / "model_index.json").read_text())["_class_name"]
    total = sum(f.stat().st_size for f in tiny[family].rglob("*") if f.is_file())
    assert total < 8_000_000, f"{family} tiny model with its ControlNet is {total} bytes"
    assert not list(tiny[family].rglob("*.bin")), "weights are .safetensors only"


@pytest.mark.parametrize("family", FAMILIES)
def test_make_test_model_is_deterministic(tmp_path: Path, tiny: dict[str, Path], family: str) -> None:
    same = make_test_model(tmp_path / "same", family, controlnet=True, seed=0)
    other = make_test_model(tmp_path / "other", family, controlnet=True, seed=1)
    assert weight_digests(same) == weight_digests(tiny[family])
    assert len(weight_digests(same)) >= 4
    changed = {name for name, digest in weight_digests(other).items() if weight_digests(same)[name] != digest}
    assert changed == set(weight_digests(same)), "every weight file depends on the seed"


def test_make_test_checkpoint_is_deterministic(tmp_path: Path, single_files: dict[str, Path]) -> None:
    again = make_test_checkpoint(tmp_path / "again.safetensors", "sdxl", seed=0)
    other = make_test_checkpoint(tmp_path / "other.safetensors", "sdxl", seed=1)
    assert again.read_bytes() == single_files["sdxl"].read_bytes() != other.read_bytes()


def test_clip_tokenizer_covers_any_prompt(tiny: dict[str, Path]) -> None:
    pipe = load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"])))
    tokenizer = pipe.tokenizer
    ids = tokenizer("The thing, with ünïcode ✓ 日本 and 42!").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in ids[1:-1], "every byte has a token, so nothing falls back to unknown"
    assert tokenizer.convert_tokens_to_ids("the</w>") in ids, "merges apply"


# --- single-file checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_single_file_matches_the_folder(
    tiny: dict[str, Path], single_files: dict[str, Path], tiny_configs: Path, family: str
) -> None:
    from_folder = load_pipeline(ModelSettings(family=family, path=str(tiny[family])))
    from_file = load_pipeline(ModelSettings(family=family, path=str(single_files[family])))
    assert type(from_file) is family_spec(family).pipeline_class(False) and isinstance(from_file, PIPELINES[family][0])
    for name in ("unet", "vae", "text_encoder", "text_encoder_2")[: 4 if family == "sdxl" else 3]:
        expected, loaded = getattr(from_folder, name).state_dict(), getattr(from_file, name).state_dict()
        assert expected.keys() <= loaded.keys()
        assert all(torch.equal(expected[k], loaded[k]) for k in expected), f"{name} weights differ"
    np.testing.assert_array_equal(stylize(from_folder, 3), stylize(from_file, 3))


def test_single_file_with_controlnet(tiny: dict[str, Path], single_files: dict[str, Path], tiny_configs: Path) -> None:
    net = ControlNet(path=str(tiny["sd15"] / "controlnet"), source="depth")
    pipe = load_pipeline(ModelSettings(family="sd15", path=str(single_files["sd15"]), controlnets=[net]))
    assert type(pipe) is family_spec("sd15").pipeline_class(True)
    assert isinstance(pipe, StableDiffusionControlNetImg2ImgPipeline)
    assert_deterministic_frames(pipe, control_image=CONTROL)


def test_shipped_configs_need_tokenizer_vocabularies(single_files: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="tokenizer vocabularies") as error:
        load_pipeline(ModelSettings(family="sd15", path=str(single_files["sd15"])))
    assert str(single_files["sd15"]) in str(error.value)


def test_flux_single_files_are_refused(tiny: dict[str, Path]) -> None:
    transformer = tiny["flux"] / "transformer" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(ModelError, match="Flux single-file"):
        load_pipeline(ModelSettings(family="flux", path=str(transformer)))


@pytest.mark.parametrize(
    "family, component, published",
    [
        ("sd15", "unet", 859_520_964),
        ("sd15", "vae", 83_653_863),
        ("sd15", "text_encoder", 123_060_480),
        ("sdxl", "unet", 2_567_463_684),
        ("sdxl", "vae", 83_653_863),
        ("sdxl", "text_encoder", 123_060_480),
        ("sdxl", "text_encoder_2", 694_659_840),
    ],
)
def test_shipped_configs_build_the_published_architectures(family: str, component: str, published: int) -> None:
    folder = CONFIG_DIR / family / component
    with torch.device("meta"):  # shapes only, no memory
        if component in ("unet", "vae"):
            model_class = UNet2DConditionModel if component == "unet" else AutoencoderKL
            model = model_class.from_config(model_class.load_config(folder))
        else:
            text_class = CLIPTextModelWithProjection if component == "text_encoder_2" else CLIPTextModel
            model = text_class(CLIPTextConfig.from_pretrained(folder, local_files_only=True))
    assert sum(p.numel() for p in model.parameters()) == published


# --- pickle refusal ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickle_checkpoints_are_refused(tmp_path: Path, suffix: str) -> None:
    checkpoint = tmp_path / f"model{suffix}"
    torch.save({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, checkpoint)
    refusal = "can run arbitrary code when loaded; convert to .safetensors or set allow_pickle"
    with pytest.raises(ModelError, match=refusal):
        load_pipeline(ModelSettings(family="sd15", path=str(checkpoint)))
    with pytest.raises(ModelError, match="arbitrary code"):
        detect_family(checkpoint)

    # Allowed, the refusal is lifted: the family is read, and loading goes on (and fails: it is no real model).
    assert detect_family(checkpoint, allow_pickle=True) == "sd15"
    with pytest.raises(ModelError) as error:
        load_pipeline(ModelSettings(family="sd15", path=str(checkpoint), allow_pickle=True))
    assert "arbitrary code" not in str(error.value)


def test_allowed_pickle_checkpoints_load(
    tmp_path: Path, tiny: dict[str, Path], single_files: dict[str, Path], tiny_configs: Path
) -> None:
    checkpoint = tmp_path / "sd15.ckpt"
    torch.save({"state_dict": load_file(single_files["sd15"])}, checkpoint)  # the usual .ckpt nesting
    pipe = load_pipeline(ModelSettings(family="sd15", path=str(checkpoint), allow_pickle=True))
    reference = load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"])))
    np.testing.assert_array_equal(stylize(pipe, 5), stylize(reference, 5))


def test_folders_with_only_pickle_weights_are_refused(tmp_path: Path, tiny: dict[str, Path]) -> None:
    folder = tmp_path / "sd15"
    shutil.copytree(tiny["sd15"], folder, ignore=shutil.ignore_patterns("controlnet"))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True).state_dict()
    torch.save(state, weights.with_suffix(".bin"))
    weights.unlink()

    with pytest.raises(ModelError, match=r"unet/diffusion_pytorch_model\.bin.*arbitrary code.*allow_pickle"):
        load_pipeline(ModelSettings(family="sd15", path=str(folder)))

    pipe = load_pipeline(ModelSettings(family="sd15", path=str(folder), allow_pickle=True))
    assert all(torch.equal(state[k], v) for k, v in pipe.unet.state_dict().items())
    assert_deterministic_frames(pipe)


def test_pickle_controlnets_are_refused(tmp_path: Path, tiny: dict[str, Path]) -> None:
    net = tmp_path / "controlnet"
    shutil.copytree(tiny["sd15"] / "controlnet", net)
    (net / "diffusion_pytorch_model.safetensors").rename(net / "diffusion_pytorch_model.bin")
    controlnets = [ControlNet(path=str(net), source="depth")]
    settings = ModelSettings(family="sd15", path=str(tiny["sd15"]), controlnets=controlnets)
    with pytest.raises(ModelError, match="arbitrary code"):
        load_pipeline(settings)


# --- family detection ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_detect_family_of_folders(tiny: dict[str, Path], family: str) -> None:
    assert detect_family(tiny[family]) == family
    assert detect_family(tiny[family] / "controlnet") == family
    denoiser = "transformer" if family == "flux" else "unet"
    assert detect_family(tiny[family] / denoiser) == family
    assert detect_family(tiny[family] / denoiser / "diffusion_pytorch_model.safetensors") == family


def test_detect_family_of_single_files(tmp_path: Path, single_files: dict[str, Path]) -> None:
    assert detect_family(single_files["sd15"]) == "sd15"
    assert detect_family(single_files["sdxl"]) == "sdxl"
    bfl_flux = tmp_path / "flux1.safetensors"  # the tensor names of Black Forest Labs' own layout
    save_file({"double_blocks.0.img_attn.norm.key_norm.scale": torch.ones(4), "img_in.bias": torch.ones(2)}, bfl_flux)
    assert detect_family(bfl_flux) == "flux"

    unrelated = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.ones(2)}, unrelated)
    with pytest.raises(ModelError, match=re.escape("no SD 1.5, SDXL or Flux weights")):
        detect_family(unrelated)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelError, match=re.escape("not a readable .safetensors")):
        detect_family(damaged)
    with pytest.raises(ModelError, match="not a diffusers folder"):
        detect_family(tmp_path)


def test_family_mismatch_is_an_error(tiny: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="the job says model family 'sdxl', but this is a 'sd15' model") as error:
        load_pipeline(ModelSettings(family="sdxl", path=str(tiny["sd15"])))
    assert str(tiny["sd15"]) in str(error.value)

    wrong_net = ControlNet(path=str(tiny["sdxl"] / "controlnet"), source="depth")
    with pytest.raises(ModelError, match="ControlNet is for 'sdxl' models, but the model is 'sd15'"):
        load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), controlnets=[wrong_net]))


# --- errors that name the path -------------------------------------------------------------------


def test_missing_and_unknown_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file or folder") as error:
        load_pipeline(ModelSettings(family="sd15", path=str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in str(error.value)
    text = tmp_path / "model.txt"
    text.write_text("hello")
    with pytest.raises(ModelError, match=re.escape("not a .safetensors checkpoint")):
        load_pipeline(ModelSettings(family="sd15", path=str(text)))


def test_broken_folders_fail_without_trying_the_hub(tmp_path: Path, tiny: dict[str, Path]) -> None:
    folder = tmp_path / "sd15"
    shutil.copytree(tiny["sd15"], folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="cannot load the model") as error:
        load_pipeline(ModelSettings(family="sd15", path=str(folder)))
    assert str(folder) in str(error.value)

    shutil.rmtree(folder / "vae")
    with pytest.raises(ModelError, match=re.escape("model_index.json names vae, but there is no such subfolder")):
        load_pipeline(ModelSettings(family="sd15", path=str(folder)))
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert models.os.environ["HF_HUB_OFFLINE"] == "1"


# --- device and dtype ----------------------------------------------------------------------------


def test_device_and_dtype_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == "cpu" and pick_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == "mps" and pick_dtype("mps") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert pick_device() == "cuda" and pick_dtype("cuda") == torch.bfloat16 and pick_dtype("cuda:1") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert pick_dtype("cuda") == torch.float16


def test_explicit_dtype_overrides(tiny: dict[str, Path]) -> None:
    pipe = load_pipeline(ModelSettings(family="sdxl", path=str(tiny["sdxl"])), device="cpu", dtype=torch.bfloat16)
    assert pipe.unet.dtype == pipe.text_encoder_2.dtype == pipe.vae.dtype == torch.bfloat16


# --- content hash --------------------------------------------------------------------------------


def test_model_hash_follows_content(tmp_path: Path, tiny: dict[str, Path]) -> None:
    copy = tmp_path / "sd15"
    shutil.copytree(tiny["sd15"], copy)
    digest = model_hash(tiny["sd15"])
    assert len(digest) == 64 and model_hash(tiny["sd15"]) == digest
    assert model_hash(copy) == digest, "same content elsewhere, same hash"

    (copy / "controlnet" / "config.json").write_text("{}")  # not part of the pipeline's components
    assert model_hash(copy) == digest

    weights = copy / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_hash(copy) != digest

    single = tmp_path / "model.safetensors"
    shutil.copy(weights, single)
    assert model_hash(single) == hashlib.sha256(bytes(data)).hexdigest()


def test_model_hash_is_cached_by_path_size_and_mtime(
    tmp_path: Path, tiny: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sd15"
    shutil.copytree(tiny["sd15"], folder)
    reads: list[Path] = []

    def counting_open(file: Path, *args: object, **kwargs: object):
        reads.append(Path(file))
        return open(file, *args, **kwargs)

    monkeypatch.setattr(models, "open", counting_open, raising=False)
    digest = model_hash(folder)
    assert len(reads) == len(models._model_files(folder)) > 5
    assert list((tmp_path / "cache" / "file-hashes").glob("*.sha256"))

    reads.clear()
    assert model_hash(folder) == digest
    assert reads == [], "a second call reads nothing"

    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    stat = weights.stat()
    shutil.os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert model_hash(folder) == digest
    assert reads == [weights], "only the touched file is read again"
