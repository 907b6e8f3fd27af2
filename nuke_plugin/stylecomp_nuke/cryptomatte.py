"""The Plate's Cryptomatte names, from the header metadata Nuke's Read shows, for the regions table's list.

Renderers write, per Cryptomatte layer, ``cryptomatte/<key>/name`` (the layer, e.g. ``CryptoObject``)
and either ``cryptomatte/<key>/manifest`` (JSON: object name -> ID as 8 hex digits) or
``cryptomatte/<key>/manif_file`` (a JSON sidecar, relative to the EXR's folder). Nuke's Read shows
them with an ``exr/`` prefix; both spellings are read, as Psyop's Cryptomatte gizmo reads them.
The engine reads the plate the gizmo writes into its cache folder, so ``copy_sidecars`` puts each
sidecar beside that copy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from . import atomic
from .errors import StyleCompNukeError

PREFIXES = ("exr/cryptomatte/", "cryptomatte/")


@dataclass(frozen=True)
class CryptomatteLayer:
    """One Cryptomatte layer of the plate: its name and the object names its manifest lists."""

    key: str
    name: str
    names: tuple[str, ...]


def layers(metadata: dict[str, object]) -> list[CryptomatteLayer]:
    """The Cryptomatte layers the metadata describes, sorted by layer name; a layer without a manifest
    lists no names."""
    fields = _fields(metadata)
    found = [
        CryptomatteLayer(key, str(entry.get("name", key)), _names(entry, key, metadata))
        for key, entry in fields.items()
    ]
    return sorted(found, key=lambda layer: layer.name)


def names(metadata: dict[str, object]) -> list[str]:
    """Every object name in the plate's Cryptomatte manifests (all layers), sorted, each once."""
    return sorted({name for layer in layers(metadata) for name in layer.names})


def copy_sidecars(metadata: dict[str, object], folder: str) -> list[str]:
    """Copy each sidecar manifest (``manif_file``, relative to the Read's EXR) into ``folder``, where the plate the
    gizmo writes lies and the engine looks for it; the paths written. An absolute ``manif_file`` needs no copy."""
    written = []
    for key, entry in _fields(metadata).items():
        if "manifest" in entry or "manif_file" not in entry or os.path.isabs(str(entry["manif_file"])):
            continue
        relative = os.path.normpath(str(entry["manif_file"]))
        if relative.startswith(os.pardir):
            raise StyleCompNukeError(
                f"The Cryptomatte manifest {entry['manif_file']} (layer "
                f"{entry.get('name', key)}) lies outside the render's folder; the engine "
                f"cannot follow it from the cache folder: keep it beside the EXRs"
            )
        target = os.path.join(folder, relative)
        atomic.write_text(target, _sidecar_text(entry, key, metadata)[0])
        written.append(target)
    return written


def _fields(metadata: dict[str, object]) -> dict[str, dict[str, object]]:
    """The Cryptomatte header fields per layer key (``name``, ``manifest``, ``manif_file``, ...)."""
    fields: dict[str, dict[str, object]] = {}
    for key, value in metadata.items():
        prefix = next((prefix for prefix in PREFIXES if key.startswith(prefix)), None)
        if prefix is None:
            continue
        layer_key, _, field = key[len(prefix) :].partition("/")
        fields.setdefault(layer_key, {})[field] = value
    return fields


def _sidecar_text(entry: dict[str, object], key: str, metadata: dict[str, object]) -> tuple[str, str]:
    """A layer's sidecar manifest, read beside the Read's EXR: its text and its path."""
    folder = os.path.dirname(str(metadata.get("input/filename", "")))
    where = os.path.join(folder, str(entry["manif_file"]))
    try:
        with open(where, encoding="utf-8") as handle:
            return handle.read(), where
    except OSError as exc:
        raise StyleCompNukeError(
            f"Cannot read the Cryptomatte manifest {where} (layer {entry.get('name', key)}): {exc.strerror}"
        ) from None


def _names(entry: dict[str, object], key: str, metadata: dict[str, object]) -> tuple[str, ...]:
    """The names of one layer's manifest, read from the header or from its sidecar file."""
    layer = entry.get("name", key)
    if "manifest" in entry:
        text, where = str(entry["manifest"]), f"the Cryptomatte manifest of layer {layer}"
    elif "manif_file" in entry:
        text, where = _sidecar_text(entry, key, metadata)
    else:
        return ()
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise StyleCompNukeError(f"{where} is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise StyleCompNukeError(f"{where} is not a JSON object of names")
    return tuple(sorted(str(name) for name in manifest))
