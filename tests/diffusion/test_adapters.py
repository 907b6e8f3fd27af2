"""LoRAs and IP-Adapters (stylecomp.diffusion.loading) on tiny random-weight models and adapters
(stylecomp.diffusion.testing).

The adapters are written in the layouts people download (kohya LoRAs, h94/XLabs IP-Adapters
beside their image_encoder/ folder) and loaded through ``load_pipeline``; then the real img2img
pipeline runs on a 64x64 image for 2 denoising steps. No test may touch the network.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from stylecomp.diffusion.loading import load_pipeline, style_reference_embeds
from stylecomp.diffusion.model_files import ip_adapter_image_encoder
from stylecomp.diffusion.testing import make_test_ip_adapter, make_test_lora
from stylecomp.errors import ModelError
from stylecomp.jobspec import ControlNet, IPAdapter, Lora, ModelSettings

FAMILIES = ("sd15", "sdxl", "flux")
PLATE = Image.fromarray((np.random.default_rng(7).random((64, 64, 3)) * 255).astype(np.uint8))
CONTROL = Image.fromarray((np.random.default_rng(8).random((64, 64, 3)) * 255).astype(np.uint8))
# Style references as the stylize stage passes them: (H, W, 3) float32 in [0, 1], any size.
STYLE_A = np.random.default_rng(1).random((48, 40, 3), dtype=np.float32)
STYLE_B = np.random.default_rng(2).random((48, 40, 3), dtype=np.float32)


pytestmark = pytest.mark.usefixtures("no_network", "private_cache")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads; on a busy machine OpenMP's spin-waiting makes two up to 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory, tiny: dict[str, Path]) -> dict[str, Path]:
    """Two LoRAs per family: "<family>" and "<family>-2" (another seed)."""
    root = tmp_path_factory.mktemp("loras")
    made = {family: make_test_lora(root / f"{family}.safetensors", tiny[family], seed=1) for family in FAMILIES}
    made["sd15-2"] = make_test_lora(root / "sd15-2.safetensors", tiny["sd15"], seed=2)
    return made


@pytest.fixture(scope="module")
def ip_adapters(tmp_path_factory: pytest.TempPathFactory, tiny: dict[str, Path]) -> dict[str, Path]:
    """One IP-Adapter per family: <family>/ip-adapter.safetensors beside <family>/image_encoder/."""
    root = tmp_path_factory.mktemp("ip_adapters")
    return {family: make_test_ip_adapter(root / family, tiny[family], seed=3) for family in FAMILIES}


def stylize(pipe: DiffusionPipeline, **extra: object) -> np.ndarray:
    """One 64x64 img2img frame: 4 scheduler steps at strength 0.5, i.e. 2 denoising steps, seed 1."""
    pipe.set_progress_bar_config(disable=True)
    result = pipe(
        prompt="ink and watercolour",
        image=PLATE,
        height=64,
        width=64,
        num_inference_steps=4,
        strength=0.5,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(1),
        **extra,
    )
    return result.images


def with_ip_adapter(
    tiny: dict[str, Path], ip_adapters: dict[str, Path], family: str, **settings: object
) -> DiffusionPipeline:
    ip_adapter = IPAdapter(path=str(ip_adapters[family]), image="style.png", scale=settings.pop("scale", 1.0))
    return load_pipeline(ModelSettings(family=family, path=str(tiny[family]), ip_adapter=ip_adapter, **settings))


def reference_image(style: np.ndarray) -> Image.Image:
    """The 8-bit image style_reference_embeds encodes, for passing to the pipeline as ``ip_adapter_image``."""
    return Image.fromarray(np.round(style * 255).astype(np.uint8))


# --- LoRA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_weight_scales_its_effect(tiny: dict[str, Path], loras: dict[str, Path], family: str) -> None:
    base = stylize(load_pipeline(ModelSettings(family=family, path=str(tiny[family]))))
    frames = {}
    for weight in (0.0, 1.0):
        lora = Lora(path=str(loras[family]), weight=weight)
        pipe = load_pipeline(ModelSettings(family=family, path=str(tiny[family]), loras=[lora]))
        frames[weight] = stylize(pipe)
    adapted = pipe.get_list_adapters()
    expected = {"flux": {"transformer"}, "sd15": {"unet", "text_encoder"}}
    assert set(adapted) == expected.get(family, {"unet", "text_encoder", "text_encoder_2"})
    np.testing.assert_array_equal(frames[0.0], base)
    assert np.abs(frames[1.0] - base).max() > 0.01, "the LoRA must change the frame"


def test_two_loras_with_their_own_weights(tiny: dict[str, Path], loras: dict[str, Path]) -> None:
    def frame(*weights: tuple[str, float]) -> np.ndarray:
        chosen = [Lora(path=str(loras[name]), weight=weight) for name, weight in weights]
        return stylize(load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), loras=chosen)))

    first_alone = frame(("sd15", 1.0))
    np.testing.assert_array_equal(frame(("sd15", 1.0), ("sd15-2", 0.0)), first_alone)
    both = frame(("sd15", 1.0), ("sd15-2", 1.0))
    assert np.abs(both - first_alone).max() > 0.01
    assert np.abs(both - frame(("sd15-2", 1.0))).max() > 0.01


def test_lora_files_that_cannot_be_used(tmp_path: Path, tiny: dict[str, Path], loras: dict[str, Path]) -> None:
    def load(path: Path, **settings: object) -> DiffusionPipeline:
        lora = Lora(path=str(path))
        return load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), loras=[lora], **settings))

    missing = tmp_path / "missing.safetensors"
    with pytest.raises(ModelError, match="no such file or folder") as error:
        load(missing)
    assert str(missing) in str(error.value)

    pickled = tmp_path / "ink.ckpt"
    torch.save(load_file(loras["sd15"]), pickled)
    with pytest.raises(ModelError, match=r"pickle checkpoint.*arbitrary code.*allow_pickle") as error:
        load(pickled)
    assert str(pickled) in str(error.value)
    np.testing.assert_array_equal(stylize(load(pickled, allow_pickle=True)), stylize(load(loras["sd15"])))

    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(loras["sd15"].read_bytes()[:200])
    with pytest.raises(ModelError, match=re.escape("not a readable .safetensors")) as error:
        load(damaged)
    assert str(damaged) in str(error.value)

    with pytest.raises(ModelError, match="another model family") as error:
        load(loras["sdxl"])  # same layer names partly, other widths
    assert str(loras["sdxl"]) in str(error.value)
    with pytest.raises(ModelError, match="none of this LoRA's layers are in the sd15 model") as error:
        load(loras["flux"])
    assert str(loras["flux"]) in str(error.value)


def test_kohya_flux_loras(tmp_path: Path, tiny: dict[str, Path]) -> None:
    """kohya's Flux keys (BFL names, fused qkv) convert; diffusers' converter assumes FLUX.1's single-block widths."""

    def pair(name: str, inputs: int, outputs: int) -> dict[str, torch.Tensor]:
        return {
            f"{name}.lora_down.weight": torch.randn(4, inputs),
            f"{name}.lora_up.weight": torch.randn(outputs, 4),
            f"{name}.alpha": torch.tensor(4.0),
        }

    width = 32  # the tiny transformer's
    double = pair("lora_unet_double_blocks_0_img_attn_qkv", width, 3 * width)
    double |= pair("lora_unet_double_blocks_0_img_attn_proj", width, width)
    save_file(double, tmp_path / "double.safetensors")
    single = double | pair("lora_unet_single_blocks_0_linear1", width, 3 * width + 4 * width)
    save_file(single, tmp_path / "single.safetensors")

    def load(name: str) -> DiffusionPipeline:
        lora = Lora(path=str(tmp_path / name))
        return load_pipeline(ModelSettings(family="flux", path=str(tiny["flux"]), loras=[lora]))

    assert load("double.safetensors").get_list_adapters() == {"transformer": ["lora0"]}
    with pytest.raises(ModelError, match="layer widths do not match") as error:
        load("single.safetensors")
    assert str(tmp_path / "single.safetensors") in str(error.value)


def test_adapters_in_bfloat16(tiny: dict[str, Path], loras: dict[str, Path], ip_adapters: dict[str, Path]) -> None:
    for family in FAMILIES:
        lora = Lora(path=str(loras[family]), weight=0.7)
        ip_adapter = IPAdapter(path=str(ip_adapters[family]), image="s")
        settings = ModelSettings(family=family, path=str(tiny[family]), loras=[lora], ip_adapter=ip_adapter)
        pipe = load_pipeline(settings, device="cpu", dtype=torch.bfloat16)
        assert pipe.image_encoder.dtype == torch.bfloat16
        embeds = style_reference_embeds(pipe, STYLE_A, guidance=True)
        assert all(tensor.dtype == torch.bfloat16 for value in embeds.values() for tensor in value)
        assert np.isfinite(stylize(pipe, **embeds)).all()


def test_test_loras_use_the_trainers_formats(tmp_path: Path, tiny: dict[str, Path], loras: dict[str, Path]) -> None:
    def keys(path: Path) -> list[str]:
        with safe_open(path, framework="pt") as file:
            return list(file.keys())

    sd15, sdxl, flux = keys(loras["sd15"]), keys(loras["sdxl"]), keys(loras["flux"])
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in sd15
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha" in sd15
    assert "lora_unet_input_blocks_3_1_transformer_blocks_0_attn2_to_k.lora_up.weight" in sdxl  # LDM names
    assert {k.split("_text_model")[0] for k in sdxl if "_text_model" in k} == {"lora_te1", "lora_te2"}
    assert "transformer.transformer_blocks.0.attn.to_q.lora_A.weight" in flux

    again = make_test_lora(tmp_path / "again.safetensors", tiny["sd15"], seed=1)
    other = make_test_lora(tmp_path / "other.safetensors", tiny["sd15"], seed=5)
    assert again.read_bytes() == loras["sd15"].read_bytes() != other.read_bytes()


# --- IP-Adapter ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_style_reference_steers_the_frame(tiny: dict[str, Path], ip_adapters: dict[str, Path], family: str) -> None:
    pipe = with_ip_adapter(tiny, ip_adapters, family)
    style_a = style_reference_embeds(pipe, STYLE_A, guidance=True)
    frame_a = stylize(pipe, **style_a)
    frame_b = stylize(pipe, **style_reference_embeds(pipe, STYLE_B, guidance=True))
    assert np.abs(frame_a - frame_b).max() > 0.01, "another style image must give another frame"
    # Encoded once and reused, the embeddings give exactly what the pipeline computes from the image itself.
    np.testing.assert_array_equal(stylize(pipe, **style_a), frame_a)
    np.testing.assert_array_equal(stylize(pipe, ip_adapter_image=reference_image(STYLE_A)), frame_a)

    # At scale 0 diffusers skips the image attention: the frame is the plain model's, bit for bit.
    plain = stylize(load_pipeline(ModelSettings(family=family, path=str(tiny[family]))))
    assert np.abs(frame_a - plain).max() > 0.01
    pipe.set_ip_adapter_scale(0.0)
    np.testing.assert_array_equal(stylize(pipe, **style_a), plain)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_cross_frame_attention_leaves_the_style_reference_in_place(
    tiny: dict[str, Path], ip_adapters: dict[str, Path], family: str
) -> None:
    # cross_frame takes the self-attention layers only; the IP-Adapter's processors on the cross-attention
    # layers stay, so the style image steers the frame as before, and every processor is back afterwards.
    from stylecomp.diffusion.consistency import CrossFrameAttention, FrameFeatures, install_cross_frame

    pipe = with_ip_adapter(tiny, ip_adapters, family)
    before = dict(pipe.unet.attn_processors)
    frames = {}
    for name, style in (("a", STYLE_A), ("b", STYLE_B)):
        original = install_cross_frame(pipe.unet, FrameFeatures())
        installed = pipe.unet.attn_processors
        assert all(isinstance(installed[k], CrossFrameAttention) for k in installed if k.endswith("attn1.processor"))
        assert all(
            installed[k] is before[k] and "IPAdapter" in type(before[k]).__name__
            for k in installed
            if k.endswith("attn2.processor")
        )
        frames[name] = stylize(pipe, **style_reference_embeds(pipe, style, guidance=True))
        pipe.unet.set_attn_processor(original)
    assert pipe.unet.attn_processors == before
    assert np.abs(frames["a"] - frames["b"]).max() > 0.01, "another style image must give another frame"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_style_reference_without_guidance(tiny: dict[str, Path], ip_adapters: dict[str, Path], family: str) -> None:
    pipe = with_ip_adapter(tiny, ip_adapters, family)
    embeds = style_reference_embeds(pipe, STYLE_A, guidance=False)
    assert embeds["ip_adapter_image_embeds"][0].shape[0] == 1, "no unconditional half without guidance"
    direct = stylize(pipe, guidance_scale=1.0, ip_adapter_image=reference_image(STYLE_A))
    np.testing.assert_array_equal(stylize(pipe, guidance_scale=1.0, **embeds), direct)


def test_flux_style_reference_with_true_cfg(tiny: dict[str, Path], ip_adapters: dict[str, Path]) -> None:
    pipe = with_ip_adapter(tiny, ip_adapters, "flux")
    true_cfg = {"negative_prompt": "blurry", "true_cfg_scale": 2.0}
    direct = stylize(pipe, ip_adapter_image=reference_image(STYLE_A), **true_cfg)
    embeds = style_reference_embeds(pipe, STYLE_A, guidance=True)
    np.testing.assert_array_equal(stylize(pipe, **embeds, **true_cfg), direct)


def test_style_reference_for_a_batch_of_frames(tiny: dict[str, Path], ip_adapters: dict[str, Path]) -> None:
    pipe = with_ip_adapter(tiny, ip_adapters, "sd15")
    embeds = style_reference_embeds(pipe, STYLE_A, guidance=True)
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(
        prompt=["ink"] * 2,
        image=[PLATE, CONTROL],
        num_inference_steps=4,
        strength=0.5,
        output_type="np",
        generator=[torch.Generator("cpu").manual_seed(s) for s in (1, 2)],
        **embeds,
    ).images
    assert frames.shape == (2, 64, 64, 3) and np.isfinite(frames).all()


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_ip_adapter_with_controlnet(tiny: dict[str, Path], ip_adapters: dict[str, Path], family: str) -> None:
    net = ControlNet(path=str(tiny[family] / "controlnet"), source="depth")
    pipe = with_ip_adapter(tiny, ip_adapters, family, controlnets=[net])
    frame_a = stylize(pipe, control_image=CONTROL, **style_reference_embeds(pipe, STYLE_A, guidance=True))
    frame_b = stylize(pipe, control_image=CONTROL, **style_reference_embeds(pipe, STYLE_B, guidance=True))
    assert np.abs(frame_a - frame_b).max() > 0.01


def test_flux_ip_adapter_with_controlnet_is_refused(tiny: dict[str, Path], ip_adapters: dict[str, Path]) -> None:
    net = ControlNet(path=str(tiny["flux"] / "controlnet"), source="depth")
    with pytest.raises(ModelError, match="not supported for Flux") as error:
        with_ip_adapter(tiny, ip_adapters, "flux", controlnets=[net])
    assert str(ip_adapters["flux"]) in str(error.value)


def test_ip_adapter_with_a_lora(tiny: dict[str, Path], ip_adapters: dict[str, Path], loras: dict[str, Path]) -> None:
    pipe = with_ip_adapter(tiny, ip_adapters, "sd15", loras=[Lora(path=str(loras["sd15"]), weight=0.0)])
    alone = with_ip_adapter(tiny, ip_adapters, "sd15")
    embeds = style_reference_embeds(pipe, STYLE_A, guidance=True)
    np.testing.assert_array_equal(stylize(pipe, **embeds), stylize(alone, **embeds))
    pipe.set_adapters(["lora0"], adapter_weights=[1.0])
    assert np.abs(stylize(pipe, **embeds) - stylize(alone, **embeds)).max() > 0.01


def test_ip_adapter_layout(tmp_path: Path, tiny: dict[str, Path], ip_adapters: dict[str, Path]) -> None:
    weights = ip_adapters["sd15"]
    assert ip_adapter_image_encoder(IPAdapter(path=str(weights), image="s.png")) == weights.parent / "image_encoder"
    assert sorted(p.name for p in (weights.parent / "image_encoder").iterdir()) == ["config.json", "model.safetensors"]

    # Elsewhere, without its image_encoder/ beside it: named explicitly, it loads the same.
    moved = tmp_path / "adapters" / "ip-adapter_sd15.safetensors"
    moved.parent.mkdir()
    shutil.copy(weights, moved)
    alone = IPAdapter(path=str(moved), image="s")
    with pytest.raises(
        ModelError, match=re.escape("no IP-Adapter image encoder folder for ip-adapter_sd15.safetensors")
    ) as error:
        load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), ip_adapter=alone))
    assert str(moved.parent / "image_encoder") in str(error.value)
    explicit = IPAdapter(path=str(moved), image="s", scale=1.0, image_encoder=str(weights.parent / "image_encoder"))
    pipe = load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), ip_adapter=explicit))
    reference = with_ip_adapter(tiny, ip_adapters, "sd15")
    embeds = style_reference_embeds(reference, STYLE_A, guidance=True)
    np.testing.assert_array_equal(stylize(pipe, **embeds), stylize(reference, **embeds))

    folder = IPAdapter(path=str(weights.parent), image="s")
    with pytest.raises(ModelError, match=r"weights file .* not a folder"):
        load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), ip_adapter=folder))
    nowhere = IPAdapter(path=str(tmp_path / "nowhere.safetensors"), image="s")
    with pytest.raises(ModelError, match="no such file or folder") as error:
        load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), ip_adapter=nowhere))
    assert str(tmp_path / "nowhere.safetensors") in str(error.value)


def test_ip_adapter_for_another_family(tiny: dict[str, Path], ip_adapters: dict[str, Path]) -> None:
    wrong = IPAdapter(path=str(ip_adapters["sdxl"]), image="s")
    with pytest.raises(ModelError, match="cannot load the IP-Adapter into this sd15 model") as error:
        load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), ip_adapter=wrong))
    assert str(ip_adapters["sdxl"]) in str(error.value)


def test_pickle_ip_adapters_are_refused(tmp_path: Path, tiny: dict[str, Path], ip_adapters: dict[str, Path]) -> None:
    # The original .bin layout: torch.save of {"image_proj": {...}, "ip_adapter": {...}}.
    folder = tmp_path / "models"
    shutil.copytree(ip_adapters["sd15"].parent, folder)
    state = load_file(ip_adapters["sd15"])
    nested = {
        part: {k.removeprefix(f"{part}."): v for k, v in state.items() if k.startswith(f"{part}.")}
        for part in ("image_proj", "ip_adapter")
    }
    torch.save(nested, folder / "ip-adapter_sd15.bin")
    pickled = IPAdapter(path=str(folder / "ip-adapter_sd15.bin"), image="s", scale=1.0)
    settings = ModelSettings(family="sd15", path=str(tiny["sd15"]), ip_adapter=pickled)
    with pytest.raises(ModelError, match=r"pickle checkpoint.*arbitrary code") as error:
        load_pipeline(settings)
    assert str(folder / "ip-adapter_sd15.bin") in str(error.value)
    allowed = load_pipeline(settings.model_copy(update={"allow_pickle": True}))
    reference = with_ip_adapter(tiny, ip_adapters, "sd15")
    embeds = style_reference_embeds(reference, STYLE_A, guidance=True)
    np.testing.assert_array_equal(stylize(allowed, **embeds), stylize(reference, **embeds))

    # An image encoder with only pickle weights is refused the same way.
    encoder = folder / "image_encoder"
    torch.save(load_file(encoder / "model.safetensors"), encoder / "pytorch_model.bin")
    (encoder / "model.safetensors").unlink()
    safe = IPAdapter(path=str(folder / "ip-adapter.safetensors"), image="s")
    with pytest.raises(ModelError, match=r"pytorch_model\.bin.*arbitrary code") as error:
        load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]), ip_adapter=safe))
    assert str(encoder) in str(error.value)


def test_style_reference_needs_an_ip_adapter(tiny: dict[str, Path], ip_adapters: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="no IP-Adapter"):
        style_reference_embeds(load_pipeline(ModelSettings(family="sd15", path=str(tiny["sd15"]))), STYLE_A, True)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        style_reference_embeds(with_ip_adapter(tiny, ip_adapters, "sd15"), STYLE_A[..., :1], True)


def test_make_test_ip_adapter_is_deterministic(
    tmp_path: Path, tiny: dict[str, Path], ip_adapters: dict[str, Path]
) -> None:
    again = make_test_ip_adapter(tmp_path / "again", tiny["sdxl"], seed=3)
    other = make_test_ip_adapter(tmp_path / "other", tiny["sdxl"], seed=4)
    for name in ("ip-adapter.safetensors", "image_encoder/model.safetensors"):
        original = (ip_adapters["sdxl"].parent / name).read_bytes()
        assert (again.parent / name).read_bytes() == original != (other.parent / name).read_bytes()
    with safe_open(ip_adapters["sd15"], framework="pt") as file:
        keys = set(file.keys())
    # The original ModuleList numbering: self- and cross-attention alternate, only cross-attentions have weights.
    assert {"image_proj.proj.weight", "image_proj.norm.weight", "ip_adapter.1.to_k_ip.weight"} <= keys
    assert not any(k.startswith("ip_adapter.0.") for k in keys)
    with safe_open(ip_adapters["flux"], framework="pt") as file:
        assert "double_blocks.0.processor.ip_adapter_double_stream_k_proj.bias" in set(file.keys())
