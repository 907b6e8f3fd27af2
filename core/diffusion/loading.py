"""Diffusion models from local paths only: diffusers folders and single-file checkpoints.

Nothing is ever downloaded: the Hugging Face libraries run with ``HF_HUB_OFFLINE=1`` and every
load passes ``local_files_only=True``. Pickle checkpoints (``.ckpt``, ``.bin``, ``.pt``, ...)
are refused unless the job sets ``allow_pickle``, because unpickling can run arbitrary code.
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
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch


class _NoTorchvisionNotice(logging.Filter):
    """transformers says on every import that it falls back to PIL image processors; stylecomp never needs torchvision."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


# The one thing done at import, before diffusers: transformers logs the notice while diffusers' pipeline
# modules import (here and at the top of generators.video), before any load could install the filter.
logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionNotice())

from diffusers import DiffusionPipeline, FluxImg2ImgPipeline  # noqa: E402  (after the notice filter)
from diffusers.loaders.single_file_utils import SingleFileComponentError  # noqa: E402
from diffusers.utils import is_peft_available  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors import SafetensorError, safe_open  # noqa: E402
from transformers import CLIPVisionModelWithProjection  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from ..cache_folder import cache_dir  # noqa: E402
from ..errors import ModelError  # noqa: E402
from ..families import Family, family_spec  # noqa: E402
from ..io.atomic import atomic_target  # noqa: E402
from ..jobspec import IPAdapter, ModelSettings, Performance  # noqa: E402
from .geometry import CONFIG_DIR  # noqa: E402


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


PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
_PICKLE_REFUSAL = "can run arbitrary code when loaded; convert to .safetensors or set allow_pickle"
# Pipeline components stylecomp never loads, so their weights are not checked (nor hashed).
_UNUSED_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")
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
    single_file_config = None if path.is_dir() else _single_file_config(path, settings.family)
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
        if single_file_config is None:
            pipe = pipeline_class.from_pretrained(path, use_safetensors=_use_safetensors(settings), **kwargs)
        else:
            pipe = pipeline_class.from_single_file(str(path), config=str(single_file_config), **kwargs)
    except _LOAD_ERRORS as exc:
        raise ModelError(f"cannot load the model: {_first_line(exc)}", path) from exc

    _load_loras(pipe, settings)
    if settings.ip_adapter is not None:
        _load_ip_adapter(pipe, settings.ip_adapter, settings, dtype)
    pipe = pipe.to(device)
    if performance is not None:
        _set_up_to_run(pipe, performance, dtype)
    return pipe


def check_model(settings: ModelSettings) -> None:
    """Everything that can be refused (missing files, pickles, wrong family), checked without reading weights."""
    path = Path(settings.path).expanduser()
    check_files(path, settings.allow_pickle)
    _check_family(path, settings.family, settings.allow_pickle)
    if not path.is_dir():
        _single_file_config(path, settings.family)
    for controlnet in settings.controlnets:
        _check_controlnet(Path(controlnet.path).expanduser(), settings)
    if settings.loras and not is_peft_available():
        raise ModelError("LoRAs need the 'peft' package, which is not installed", settings.loras[0].path)
    for lora in settings.loras:
        _check_lora_file(Path(lora.path).expanduser(), settings.allow_pickle)
    if settings.ip_adapter is not None:
        _check_ip_adapter(settings.ip_adapter, settings)


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
    device = pipe.device
    with torch.no_grad():
        if isinstance(pipe, FluxImg2ImgPipeline):
            black = np.zeros_like(np.asarray(reference))
            return {
                "ip_adapter_image_embeds": pipe.prepare_ip_adapter_image_embeds(reference, None, device, 1),
                "negative_ip_adapter_image_embeds": pipe.prepare_ip_adapter_image_embeds(black, None, device, 1),
            }
        # One image per prompt: the pipeline repeats these for the frames (and images per prompt) of each call.
        return {"ip_adapter_image_embeds": pipe.prepare_ip_adapter_image_embeds(reference, None, device, 1, guidance)}


def ip_adapter_image_encoder(ip_adapter: IPAdapter) -> Path:
    """The CLIP image encoder folder an IP-Adapter uses: its ``image_encoder``, else ``image_encoder/`` beside it."""
    if ip_adapter.image_encoder:
        return Path(ip_adapter.image_encoder).expanduser()
    return Path(ip_adapter.path).expanduser().parent / "image_encoder"


def detect_family(path: str | os.PathLike[str], allow_pickle: bool = False) -> Family:
    """Which model family a diffusers folder or checkpoint file holds, from its configs or tensor names."""
    path = Path(path)
    if path.is_dir():
        return _family_from_folder(path)
    return _family_from_keys(_checkpoint_keys(path, allow_pickle), path)


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


# --- checks before anything is loaded -----------------------------------------------------------


def _check_family(path: Path, family: Family, allow_pickle: bool) -> None:
    detected = detect_family(path, allow_pickle)
    if detected != family:
        raise ModelError(f"the job says model family {family!r}, but this is a {detected!r} model", path)


def check_files(path: Path, allow_pickle: bool) -> None:
    """The path exists, a pipeline folder has its components and, unless allowed, no pickle weights load from it.

    Public for every loader of local models (image-to-video pipelines too); a pipeline's ``image_encoder/`` is
    not looked at here, so a loader that uses one checks that folder on its own.
    """
    if not path.exists():
        raise ModelError("no such file or folder", path)
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
            raise ModelError(f"this is a pickle checkpoint, which {_PICKLE_REFUSAL}", path)
        if path.suffix.lower() not in (*PICKLE_SUFFIXES, ".safetensors"):
            raise ModelError("not a .safetensors checkpoint or a diffusers folder", path)
        return
    index = path / "model_index.json"
    if index.is_file():
        components = _components(_read_json(index))
        missing = [name for name in components if name not in _UNUSED_COMPONENTS and not (path / name).is_dir()]
        if missing:
            raise ModelError(f"model_index.json names {', '.join(missing)}, but there is no such subfolder", path)
    if allow_pickle:
        return
    for folder in _weight_folders(path):
        weights = [f for f in folder.iterdir() if f.suffix.lower() in (*PICKLE_SUFFIXES, ".safetensors")]
        pickles = sorted(f.relative_to(path).as_posix() for f in weights if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickles and len(pickles) == len(weights):
            raise ModelError(f"{', '.join(pickles)}: pickle weights {_PICKLE_REFUSAL}", path)


def _use_safetensors(settings: ModelSettings) -> bool | None:
    """True makes diffusers refuse pickle weights; None lets it prefer .safetensors and fall back to pickle."""
    return None if settings.allow_pickle else True


def _weight_folders(folder: Path) -> list[Path]:
    """The folders weights load from: a pipeline's component subfolders, else the folder itself."""
    index = folder / "model_index.json"
    if not index.is_file():
        return [folder]
    components = _components(_read_json(index))
    root = folder.resolve()
    for name in components:  # a component is a folder inside the model: "../x" would hash (and load) anything
        if not (folder / name).resolve().is_relative_to(root) or (folder / name).resolve() == root:
            raise ModelError(f"component {name!r} in model_index.json is not a folder inside the model", folder)
    return [folder / name for name in components if (folder / name).is_dir() and name not in _UNUSED_COMPONENTS]


def _components(index: dict[str, Any]) -> list[str]:
    """Component names in a model_index.json: the entries that are [library, class] pairs."""
    return sorted(k for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[0] is not None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read: {_first_line(exc)}", path) from None
    if not isinstance(data, dict):
        raise ModelError("not a JSON object", path)
    return data


def _family_from_folder(folder: Path) -> Family:
    index_file, config_file = folder / "model_index.json", folder / "config.json"
    if index_file.is_file():
        index = _read_json(index_file)
        name, components = str(index.get("_class_name", "")), set(_components(index))
        if name.startswith("StableDiffusion3") or "text_encoder_3" in components:
            raise ModelError(f"{name} is not supported; stylecomp runs SD 1.5, SDXL and Flux", folder)
        if name.startswith("Flux") or {"transformer", "text_encoder_2"} <= components:
            return "flux"
        if name.startswith("StableDiffusionXL") or {"unet", "text_encoder_2"} <= components:
            return "sdxl"
        if name.startswith("StableDiffusion") or "unet" in components:
            return "sd15"
        raise ModelError(f"{name or 'this pipeline'} is not supported; stylecomp runs SD 1.5, SDXL and Flux", folder)
    if config_file.is_file():  # a single model: a ControlNet, or a UNet/transformer on its own
        config = _read_json(config_file)
        name = str(config.get("_class_name", ""))
        if name.startswith("Flux"):
            return "flux"
        if name in ("ControlNetModel", "UNet2DConditionModel"):
            return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"
        raise ModelError(f"{name or 'this model'} is not an SD 1.5, SDXL or Flux model", folder)
    raise ModelError("not a diffusers folder (no model_index.json or config.json)", folder)


def _checkpoint_keys(path: Path, allow_pickle: bool) -> list[str]:
    """Tensor names in a checkpoint, read without loading the tensors."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelError(f"this is a pickle checkpoint, which {_PICKLE_REFUSAL}", path)
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise ModelError(f"cannot read the checkpoint: {_first_line(exc)}", path) from None
        state = state.get("state_dict", state) if isinstance(state, dict) else {}
        return [str(key) for key in state]
    try:
        with safe_open(path, framework="pt") as file:
            return list(file.keys())
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"not a readable .safetensors file: {_first_line(exc)}", path) from None


def _family_from_keys(keys: list[str], path: Path) -> Family:
    """SDXL has a second text encoder and the UNet's added embedding; Flux has double/single-stream blocks."""
    if any("double_blocks." in k for k in keys) or (
        any("x_embedder." in k for k in keys) and any("transformer_blocks." in k for k in keys)
    ):
        return "flux"
    if any(k.startswith("conditioner.embedders.1.") or "add_embedding." in k or ".label_emb." in k for k in keys):
        return "sdxl"
    if any(k.startswith(("model.diffusion_model.", "cond_stage_model.", "down_blocks.")) for k in keys):
        return "sd15"
    raise ModelError("no SD 1.5, SDXL or Flux weights found in the tensor names", path)


def _single_file_config(path: Path, family: Family) -> Path:
    """The diffusers config folder that gives a single-file checkpoint its architecture and tokenizers."""
    if not family_spec(family).single_file:
        raise ModelError(
            "Flux single-file checkpoints are not supported (they usually hold only the transformer); "
            "use a diffusers folder with all of Flux's components",
            path,
        )
    folder = Path(os.environ.get("STYLECOMP_MODEL_CONFIGS") or CONFIG_DIR) / family
    index = _read_json(folder / "model_index.json")
    tokenizers = [name for name in _components(index) if "Tokenizer" in index[name][1]]
    missing = [name for name in tokenizers if not _has_vocabulary(folder / name)]
    if missing:
        raise ModelError(
            f"single-file checkpoints need tokenizer vocabularies, and {folder} has none for {', '.join(missing)} "
            "(tokenizer.json, or vocab.json + merges.txt); add them, point $STYLECOMP_MODEL_CONFIGS at a folder "
            "that has them, or load a diffusers folder",
            path,
        )
    return folder


def _has_vocabulary(folder: Path) -> bool:
    if (folder / "tokenizer.json").is_file():
        return True
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


# --- adapters -----------------------------------------------------------------------------------


def _check_controlnet(path: Path, settings: ModelSettings) -> None:
    """A ControlNet is a diffusers folder for the base model's family, with no refused pickle weights."""
    check_files(path, settings.allow_pickle)
    if not path.is_dir():
        raise ModelError("ControlNets load from diffusers folders (config.json + weights) only", path)
    detected = _family_from_folder(path)
    if detected != settings.family:
        raise ModelError(f"this ControlNet is for {detected!r} models, but the model is {settings.family!r}", path)


def _load_controlnet(path: Path, settings: ModelSettings, dtype: torch.dtype) -> torch.nn.Module:
    """One ControlNet from a diffusers folder (checked by check_model)."""
    controlnet_class = family_spec(settings.family).controlnet_class()
    try:
        return controlnet_class.from_pretrained(
            path, dtype=dtype, local_files_only=True, use_safetensors=_use_safetensors(settings)
        )
    except _LOAD_ERRORS as exc:
        raise ModelError(f"cannot load the ControlNet: {_first_line(exc)}", path) from exc


def _check_lora_file(path: Path, allow_pickle: bool) -> None:
    """A LoRA exists, is no refused pickle, and (a single file) holds readable tensors."""
    check_files(path, allow_pickle)
    if path.is_file():
        _checkpoint_keys(path, allow_pickle)


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


def _check_ip_adapter(ip_adapter: IPAdapter, settings: ModelSettings) -> None:
    """The IP-Adapter's weights file and image encoder exist, are no refused pickles, and fit the pipeline."""
    weights, encoder = Path(ip_adapter.path).expanduser(), ip_adapter_image_encoder(ip_adapter)
    check_files(weights, settings.allow_pickle)
    if not weights.is_file():
        raise ModelError(
            "ip_adapter.path is the IP-Adapter's weights file (e.g. models/ip-adapter_sd15.safetensors), not a folder",
            weights,
        )
    if settings.family == "flux" and settings.controlnets:
        raise ModelError(
            "IP-Adapter with ControlNets is not supported for Flux (diffusers' Flux ControlNet img2img pipeline "
            "has no IP-Adapter support); use one or the other",
            weights,
        )
    if not encoder.is_dir():
        raise ModelError(
            f"no IP-Adapter image encoder folder for {weights.name}: put its image_encoder/ folder "
            "(a CLIPVisionModelWithProjection) beside it, or name it in ip_adapter.image_encoder",
            encoder,
        )
    check_files(encoder, settings.allow_pickle)


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
    for sub in _weight_folders(folder):
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _brief(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut short: PEFT's and torch's can list hundreds of layers."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
