"""Model presets: a JSON file mapping a preset name to the job's ``model`` block.

The file is $STYLECOMP_PRESETS, else model_presets.json beside the plugin. A preset's
``ip_adapter`` names the IP-Adapter used when the StyleReference input is connected; the
plugin adds the reference image and scale, and drops the block when nothing is connected.
Paths may use ``~`` and ``$VARIABLES``, expanded when a job is written.
"""

from __future__ import annotations

import copy
import json
import os
import re

from .errors import StyleCompNukeError

DEFAULT_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model_presets.json")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class PresetError(StyleCompNukeError):
    """The presets file or the chosen preset cannot be used."""


def presets_file() -> str:
    """Where the presets come from."""
    return os.environ.get("STYLECOMP_PRESETS") or DEFAULT_FILE


def load() -> dict:
    """Preset name -> model block, checked for the fields every model block needs."""
    path = presets_file()
    try:
        with open(path, encoding="utf-8") as handle:
            presets = json.load(handle)
    except (OSError, ValueError) as exc:
        raise PresetError(f"Cannot read the model presets {path}: {exc}") from None
    if not isinstance(presets, dict) or not presets:
        raise PresetError(f"The model presets {path} must be a JSON object mapping names to model blocks.")
    for name, block in presets.items():
        if not _NAME.match(name):
            raise PresetError(f"Model preset name {name!r} in {path} may only use letters, digits, '_', '.' and '-'.")
        if (
            not isinstance(block, dict)
            or not isinstance(block.get("family"), str)
            or not isinstance(block.get("path"), str)
        ):
            raise PresetError(f'Model preset {name!r} in {path} needs at least "family" and "path".')
    return presets


def model_block(name: str, style_reference: str | None = None, style_scale: float = 0.6) -> dict:
    """The job's ``model`` block for preset ``name``, with the style reference wired to its IP-Adapter."""
    presets = load()
    if name not in presets:
        raise PresetError(
            f"There is no model preset {name!r}; presets in {presets_file()}: {', '.join(sorted(presets))}."
        )
    block = copy.deepcopy(presets[name])
    adapter = block.pop("ip_adapter", None)
    if style_reference is not None:
        if not isinstance(adapter, dict) or not isinstance(adapter.get("path"), str):
            raise PresetError(
                f'Model preset {name!r} has no IP-Adapter ("ip_adapter": {{"path": ...}}) for '
                f"the StyleReference input; disconnect it or choose a preset with one."
            )
        block["ip_adapter"] = dict(adapter, image=style_reference, scale=style_scale)
    return _expand_paths(block)


def _expand_paths(block: dict) -> dict:
    """The block with ``~`` and $VARIABLES expanded in its model, LoRA, ControlNet and IP-Adapter paths."""

    def expand(path: str) -> str:
        return os.path.expandvars(os.path.expanduser(path))

    entries = [block, block.get("ip_adapter"), *(block.get("loras") or []), *(block.get("controlnets") or [])]
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            entry["path"] = expand(entry["path"])
    return block
