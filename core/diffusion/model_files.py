"""A model's files checked before anything loads: paths, pickles refused, configs present, the family detected.

Everything ``check_model`` can refuse, read from configs and tensor names without torch or diffusers, so farm
planning checks a job's models on a machine (or in a process) that never loads one. ``loading`` runs the same
checks before every load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ..errors import ModelError
from ..families import Family, family_spec, family_titles
from ..jobspec import IPAdapter, ModelSettings
from .geometry import CONFIG_DIR

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
_PICKLE_REFUSAL = "can run arbitrary code when loaded; convert to .safetensors or set allow_pickle"
# Pipeline components stylecomp never loads, so their weights are not checked (nor hashed).
_UNUSED_COMPONENTS = ("safety_checker", "feature_extractor", "image_encoder")


def check_model(settings: ModelSettings) -> None:
    """Everything that can be refused (missing files, pickles, wrong family), checked without reading weights."""
    path = Path(settings.path).expanduser()
    check_files(path, settings.allow_pickle)
    _check_family(path, settings.family, settings.allow_pickle)
    if not path.is_dir():
        single_file_config(path, settings.family)
    for controlnet in settings.controlnets:
        _check_controlnet(Path(controlnet.path).expanduser(), settings)
    if settings.loras and importlib.util.find_spec("peft") is None:
        raise ModelError("LoRAs need the 'peft' package, which is not installed", settings.loras[0].path)
    for lora in settings.loras:
        _check_lora_file(Path(lora.path).expanduser(), settings.allow_pickle)
    if settings.ip_adapter is not None:
        _check_ip_adapter(settings.ip_adapter, settings)


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
    for folder in weight_folders(path):
        weights = [f for f in folder.iterdir() if f.suffix.lower() in (*PICKLE_SUFFIXES, ".safetensors")]
        pickles = sorted(f.relative_to(path).as_posix() for f in weights if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickles and len(pickles) == len(weights):
            raise ModelError(f"{', '.join(pickles)}: pickle weights {_PICKLE_REFUSAL}", path)


def weight_folders(folder: Path) -> list[Path]:
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
        raise ModelError(f"cannot read: {first_line(exc)}", path) from None
    if not isinstance(data, dict):
        raise ModelError("not a JSON object", path)
    return data


def _family_from_folder(folder: Path) -> Family:
    index_file, config_file = folder / "model_index.json", folder / "config.json"
    if index_file.is_file():
        index = _read_json(index_file)
        name, components = str(index.get("_class_name", "")), set(_components(index))
        if name.startswith("StableDiffusion3") or "text_encoder_3" in components:
            raise ModelError(f"{name} is not supported; stylecomp runs {family_titles()}", folder)
        if name.startswith("Flux") or {"transformer", "text_encoder_2"} <= components:
            return "flux"
        if name.startswith("StableDiffusionXL") or {"unet", "text_encoder_2"} <= components:
            return "sdxl"
        if name.startswith("StableDiffusion") or "unet" in components:
            return "sd15"
        raise ModelError(f"{name or 'this pipeline'} is not supported; stylecomp runs {family_titles()}", folder)
    if config_file.is_file():  # a single model: a ControlNet, or a UNet/transformer on its own
        config = _read_json(config_file)
        name = str(config.get("_class_name", ""))
        if name.startswith("Flux"):
            return "flux"
        if name in ("ControlNetModel", "UNet2DConditionModel"):
            return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"
        raise ModelError(f"{name or 'this model'} is not an {family_titles('or')} model", folder)
    raise ModelError("not a diffusers folder (no model_index.json or config.json)", folder)


def _checkpoint_keys(path: Path, allow_pickle: bool) -> list[str]:
    """Tensor names in a checkpoint, read without loading the tensors."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelError(f"this is a pickle checkpoint, which {_PICKLE_REFUSAL}", path)
        import torch  # only a pickle needs torch to read its names; planning never allows one to get here

        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            raise ModelError(f"cannot read the checkpoint: {first_line(exc)}", path) from None
        state = state.get("state_dict", state) if isinstance(state, dict) else {}
        return [str(key) for key in state]
    try:
        with safe_open(path, framework="numpy") as file:  # names only: no torch
            return list(file.keys())
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"not a readable .safetensors file: {first_line(exc)}", path) from None


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
    raise ModelError(f"no {family_titles('or')} weights found in the tensor names", path)


def single_file_config(path: Path, family: Family) -> Path:
    """The diffusers config folder that gives a single-file checkpoint its architecture and tokenizers."""
    spec = family_spec(family)
    if not spec.single_file:
        raise ModelError(
            f"{spec.title} single-file checkpoints are not supported (they usually hold only the {spec.denoiser}); "
            f"use a diffusers folder with all of {spec.title}'s components",
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


def _check_controlnet(path: Path, settings: ModelSettings) -> None:
    """A ControlNet is a diffusers folder for the base model's family, with no refused pickle weights."""
    check_files(path, settings.allow_pickle)
    if not path.is_dir():
        raise ModelError("ControlNets load from diffusers folders (config.json + weights) only", path)
    detected = _family_from_folder(path)
    if detected != settings.family:
        raise ModelError(f"this ControlNet is for {detected!r} models, but the model is {settings.family!r}", path)


def _check_lora_file(path: Path, allow_pickle: bool) -> None:
    """A LoRA exists, is no refused pickle, and (a single file) holds readable tensors."""
    check_files(path, allow_pickle)
    if path.is_file():
        _checkpoint_keys(path, allow_pickle)


def _check_ip_adapter(ip_adapter: IPAdapter, settings: ModelSettings) -> None:
    """The IP-Adapter's weights file and image encoder exist, are no refused pickles, and fit the pipeline."""
    weights, encoder = Path(ip_adapter.path).expanduser(), ip_adapter_image_encoder(ip_adapter)
    check_files(weights, settings.allow_pickle)
    if not weights.is_file():
        raise ModelError(
            "ip_adapter.path is the IP-Adapter's weights file (e.g. models/ip-adapter_sd15.safetensors), not a folder",
            weights,
        )
    spec = family_spec(settings.family)
    if settings.controlnets and not spec.ip_adapter_with_controlnets:
        raise ModelError(
            f"IP-Adapter with ControlNets is not supported for {spec.title} (diffusers' {spec.title} ControlNet "
            "img2img pipeline has no IP-Adapter support); use one or the other",
            weights,
        )
    if not encoder.is_dir():
        raise ModelError(
            f"no IP-Adapter image encoder folder for {weights.name}: put its image_encoder/ folder "
            "(a CLIPVisionModelWithProjection) beside it, or name it in ip_adapter.image_encoder",
            encoder,
        )
    check_files(encoder, settings.allow_pickle)


def first_line(exc: BaseException) -> str:
    """An exception's first line, for a one-line ModelError."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
