"""Diffusion models from local paths only: diffusers folders and single-file checkpoints.

Nothing is ever downloaded: the Hugging Face libraries run with ``HF_HUB_OFFLINE=1`` and every
load passes ``local_files_only=True``. Pickle checkpoints (``.ckpt``, ``.bin``, ``.pt``, ...)
are refused unless the job sets ``allow_pickle``, because unpickling can run arbitrary code (the checks
before a load are ``model_files``', which farm planning runs without torch).
Single-file checkpoints take their architecture from the configs shipped in
``stylecomp/diffusion/model_configs/<family>/`` (or ``$STYLECOMP_MODEL_CONFIGS/<family>/``). A model's
content hash identifies it in provenance and cache keys; each file's hash is cached on disk by
(path, size, mtime), so a multi-GB checkpoint is read once.

Adapters load from local files too. LoRAs: a .safetensors file in any format diffusers'
``load_lora_weights`` reads (kohya-ss ``lora_unet_*``/``lora_te*_*``, diffusers/PEFT, ...), one named
adapter each, mixed with the job's weights. IP-Adapter: ``ip_adapter.path`` is the weights file as
published (h94/IP-Adapter's ``models/ip-adapter_sd15.safetensors`` or
``sdxl_models/ip-adapter_sdxl.safetensors``, XLabs' Flux ``ip_adapter.safetensors``), and its CLIP
image encoder (a CLIPVisionModelWithProjection folder) is the ``image_encoder/`` folder beside that
file unless ``ip_adapter.image_encoder`` names another. The IP-Adapter replaces the attention
processors of the UNet's cross-attentions (the Flux transformer's double blocks), so anything else
that installs processors (cross-frame attention) must do so after ``load_pipeline``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


class _NoTorchvisionNotice(logging.Filter):
    """transformers says on every import that it falls back to PIL image processors; stylecomp never needs
    torchvision."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


# The one thing done at import, before diffusers: transformers logs the notice while diffusers' pipeline
# modules import (here and at the top of generators.video), before any load could install the filter.
logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionNotice())

from diffusers import DiffusionPipeline, FluxImg2ImgPipeline  # noqa: E402 - after the notice filter
from diffusers.loaders.single_file_utils import SingleFileComponentError  # noqa: E402 - as above
from diffusers.utils import logging as diffusers_logging  # noqa: E402 - as above
from PIL import Image  # noqa: E402 - as above
from transformers import CLIPVisionModelWithProjection  # noqa: E402 - as above
from transformers.utils import logging as transformers_logging  # noqa: E402 - as above

from ..cache_folder import cache_dir  # noqa: E402 - as above
from ..errors import ModelError  # noqa: E402 - as above
from ..families import family_spec  # noqa: E402 - as above
from ..io.atomic import atomic_target  # noqa: E402 - as above
from ..jobspec import IPAdapter, ModelSettings, Performance  # noqa: E402 - as above
from .model_files import check_model, first_line, ip_adapter_image_encoder, single_file_config, weight_folders  # noqa: E402 - as above


def offline() -> None:
    """Set the Hugging Face libraries up for loading: offline (stylecomp never reaches the hub) and without
    progress bars. Runs before every load rather than at import, so importing stylecomp leaves them as they are."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True  # the libraries were imported before the variable was set
    # Loading bars from both libraries would interleave with stylecomp's own per-frame progress.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


_LOAD_ERRORS = (OSError, ValueError, RuntimeError, KeyError, SingleFileComponentError)


def load_pipeline(
    settings: ModelSettings,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    performance: Performance | None = None,
) -> DiffusionPipeline:
    """The job's img2img pipeline with its ControlNets, LoRAs and IP-Adapter, from local files, on ``device``;
    set up to run as ``performance`` says (memory layout, VAE dtype, compiled), or as diffusers loads it if None."""
    offline()
    check_model(settings)
    path = Path(settings.path).expanduser()
    config_folder = None if path.is_dir() else single_file_config(path, settings.family)
    device = device or pick_device()
    dtype = dtype or pick_dtype(device)

    # ControlNets load first: one is passed as-is, several become a MultiControlNet inside the pipeline.
    controlnets = [_load_controlnet(Path(c.path).expanduser(), settings, dtype) for c in settings.controlnets]
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if controlnets:
        kwargs["controlnet"] = controlnets[0] if len(controlnets) == 1 else controlnets
    spec = family_spec(settings.family)
    if spec.safety_checker:
        kwargs |= {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    pipeline_class = spec.pipeline_class(controlnet=bool(controlnets))
    try:
        if config_folder is None:
            pipe = pipeline_class.from_pretrained(path, use_safetensors=_use_safetensors(settings), **kwargs)
        else:
            pipe = pipeline_class.from_single_file(str(path), config=str(config_folder), **kwargs)
    except _LOAD_ERRORS as exc:
        raise ModelError(f"cannot load the model: {first_line(exc)}", path) from exc

    _load_loras(pipe, settings)
    if settings.ip_adapter is not None:
        _load_ip_adapter(pipe, settings.ip_adapter, settings, dtype)
    pipe = pipe.to(device)
    if performance is not None:
        _set_up_to_run(pipe, performance, dtype)
    return pipe


def style_reference_embeds(pipe: DiffusionPipeline, image: np.ndarray, guidance: bool) -> dict[str, Any]:
    """Pipeline-call kwargs that apply the IP-Adapter's style reference, encoded once for every frame of a shot.

    ``image`` is (H, W, 3) display-referred [0, 1]; it is quantised to 8 bits, as CLIP's PIL-based
    preprocessing does itself before resizing. ``guidance`` must say whether the calls use classifier-free guidance
    (SD1.5/SDXL: the unconditional half gets zero image embeddings). Flux takes the reference's
    embeddings and, for true CFG, a black image's, as diffusers' Flux pipeline would encode per call.
    """
    if getattr(pipe, "image_encoder", None) is None:
        raise ValueError("the pipeline has no IP-Adapter: load it with an ip_adapter in the model settings")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a style reference is an (H, W, 3) image, not {image.shape}")
    reference = Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))
    device = pipe.device  # where the image encoder is (stylecomp never turns on CPU offload)
    with torch.no_grad():
        if isinstance(pipe, FluxImg2ImgPipeline):
            black = np.zeros_like(np.asarray(reference))
            return {
                "ip_adapter_image_embeds": pipe.prepare_ip_adapter_image_embeds(reference, None, device, 1),
                "negative_ip_adapter_image_embeds": pipe.prepare_ip_adapter_image_embeds(black, None, device, 1),
            }
        # One image per prompt: the pipeline repeats these for the frames (and images per prompt) of each call.
        return {"ip_adapter_image_embeds": pipe.prepare_ip_adapter_image_embeds(reference, None, device, 1, guidance)}


def model_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 over a model's weight and config files: its identity in provenance and cache keys."""
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)  # a checkpoint's name does not change what it computes
    digest = hashlib.sha256()
    for file in _model_files(path):
        digest.update(f"{file.relative_to(path).as_posix()}\0{_file_sha256(file)}\n".encode())
    return digest.hexdigest()


def pick_device() -> str:
    """The best available device: CUDA, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str) -> torch.dtype:
    """Weights' dtype for ``device``: bf16 on CUDA where supported (else fp16), fp16 on MPS, fp32 on the CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "mps":
        return torch.float16
    return torch.float32


def compile_cache_dir() -> Path:
    """Where torch.compile keeps compiled code between runs: $TORCHINDUCTOR_CACHE_DIR if set to a folder of one's
    own, else ``torch-compile/`` in the stylecomp cache (torch's default is a temp folder, emptied by reboots;
    importing diffusers already sets the variable to it)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    configured = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if configured and os.path.abspath(configured) != os.path.abspath(default_cache_dir()):
        return Path(configured)
    return cache_dir() / "torch-compile"


def _set_up_to_run(pipe: DiffusionPipeline, performance: Performance, dtype: torch.dtype) -> None:
    """Apply the load-time ``performance`` settings (see ``jobspec.Performance``) to a loaded pipeline."""
    denoiser = pipe.unet if hasattr(pipe, "unet") else pipe.transformer
    controlnet = getattr(pipe, "controlnet", None)
    controlnets = [] if controlnet is None else list(getattr(controlnet, "nets", [controlnet]))  # Multi*: .nets
    if performance.channels_last:
        for module in (denoiser, *controlnets, pipe.vae):
            module.to(memory_format=torch.channels_last)
    if performance.vae_bfloat16 and dtype == torch.bfloat16 and pipe.vae.config.get("force_upcast"):
        # diffusers' SDXL img2img converts the VAE to float32 and back around every encode when this is set.
        pipe.vae.register_to_config(force_upcast=False)
    if performance.compile:
        # Inductor's compiled-graph caches (on by default) live here, so a second start skips the compile.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
        for module in (denoiser, *controlnets):
            module.compile()


def _use_safetensors(settings: ModelSettings) -> bool | None:
    """True makes diffusers refuse pickle weights; None lets it prefer .safetensors and fall back to pickle."""
    return None if settings.allow_pickle else True


# --- adapters -----------------------------------------------------------------------------------


def _load_controlnet(path: Path, settings: ModelSettings, dtype: torch.dtype) -> torch.nn.Module:
    """One ControlNet from a diffusers folder (checked by check_model)."""
    controlnet_class = family_spec(settings.family).controlnet_class()
    try:
        return controlnet_class.from_pretrained(
            path, dtype=dtype, local_files_only=True, use_safetensors=_use_safetensors(settings)
        )
    except _LOAD_ERRORS as exc:
        raise ModelError(f"cannot load the ControlNet: {first_line(exc)}", path) from exc


def _load_loras(pipe: DiffusionPipeline, settings: ModelSettings) -> None:
    """Load each LoRA as a named adapter and activate them all with the job's weights."""
    if not settings.loras:
        return
    names = []
    for number, lora in enumerate(settings.loras):
        path = Path(lora.path).expanduser()
        name = f"lora{number}"
        try:
            pipe.load_lora_weights(
                str(path), adapter_name=name, local_files_only=True, use_safetensors=_use_safetensors(settings)
            )
        # diffusers' format converters assert on layer widths (kohya Flux LoRAs: FLUX.1's own), hence AssertionError.
        except (*_LOAD_ERRORS, AssertionError) as exc:
            raise ModelError(
                f"cannot load the LoRA into this {settings.family} model (is it for another model family?): "
                f"{_brief(exc) if str(exc) else 'its layer widths do not match'}",
                path,
            ) from exc
        # diffusers only warns when none of a LoRA's layers exist in the model, and loads nothing.
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            raise ModelError(
                f"none of this LoRA's layers are in the {settings.family} model; is it for another model family?",
                path,
            )
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[lora.weight for lora in settings.loras])


def _load_ip_adapter(
    pipe: DiffusionPipeline, ip_adapter: IPAdapter, settings: ModelSettings, dtype: torch.dtype
) -> None:
    """Load the image encoder, then the IP-Adapter into the UNet/transformer, at the job's scale."""
    weights, encoder_dir = Path(ip_adapter.path).expanduser(), ip_adapter_image_encoder(ip_adapter)
    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(
            encoder_dir, dtype=dtype, local_files_only=True, use_safetensors=_use_safetensors(settings)
        )
    except _LOAD_ERRORS as exc:
        raise ModelError(f"cannot load the IP-Adapter's image encoder: {_brief(exc)}", encoder_dir) from exc
    # Registered first, diffusers' loader keeps it instead of looking up an encoder on its own.
    pipe.register_modules(image_encoder=encoder.eval())
    try:
        if isinstance(pipe, FluxImg2ImgPipeline):
            pipe.load_ip_adapter(
                str(weights.parent),
                weight_name=weights.name,
                image_encoder_pretrained_model_name_or_path=None,
                local_files_only=True,
            )
        else:
            pipe.load_ip_adapter(
                str(weights.parent),
                subfolder="",
                weight_name=weights.name,
                image_encoder_folder=None,
                local_files_only=True,
            )
    except _LOAD_ERRORS as exc:
        raise ModelError(
            f"cannot load the IP-Adapter into this {settings.family} model (is it for another model family, "
            f"or not an IP-Adapter?): {_brief(exc)}",
            weights,
        ) from exc
    pipe.set_ip_adapter_scale(ip_adapter.scale)


# --- hashing ------------------------------------------------------------------------------------


def _model_files(folder: Path) -> list[Path]:
    """A folder's files that define the model, in a stable order: configs, tokenizers and weights."""
    files = [folder / "model_index.json"] if (folder / "model_index.json").is_file() else []
    for sub in weight_folders(folder):
        files += [f for f in sub.rglob("*") if f.is_file() and not _is_hidden(f.relative_to(folder))]
    return sorted(set(files))


def _is_hidden(relative: Path) -> bool:
    """Dot-files and dot-folders (e.g. a hub download's .cache/) are not part of the model."""
    return any(part.startswith(".") for part in relative.parts)


def _file_sha256(file: Path) -> str:
    """A file's SHA-256, cached on disk under a key made of its path, size and modification time."""
    stat = file.stat()
    key = hashlib.sha256(f"{file.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()
    entry = cache_dir() / "file-hashes" / f"{key}.sha256"
    if entry.is_file():
        return entry.read_text(encoding="ascii").strip()
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    try:
        with atomic_target(entry) as temp:
            Path(temp).write_text(digest.hexdigest() + "\n", encoding="ascii")
    except OSError:
        pass  # an unwritable cache only costs time
    return digest.hexdigest()


def _brief(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut short: PEFT's and torch's can list hundreds of layers."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
