"""The Plate's Cryptomatte names, from the header metadata Nuke's Read shows, for the regions table's list.

Renderers write, per Cryptomatte layer, ``cryptomatte/<key>/name`` (the layer, e.g. ``CryptoObject``)
and either ``cryptomatte/<key>/manifest`` (JSON: object name -> ID as 8 hex digits) or
``cryptomatte/<key>/manif_file`` (a JSON sidecar, relative to the EXR's folder). Nuke's Read shows
them with an ``exr/`` prefix; both spellings are read, as Psyop's Cryptomatte gizmo reads them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import StyleCompNukeError

PREFIXES = ("exr/cryptomatte/", "cryptomatte/")


@dataclass(frozen=True)
class CryptomatteLayer:
    """One Cryptomatte layer of the plate: its name and the object names its manifest lists."""

    key: str
    name: str
    names: tuple


def layers(metadata: dict) -> list:
    """The Cryptomatte layers the metadata describes, sorted by layer name; a layer without a manifest
    lists no names."""
    fields: dict = {}
    for key, value in metadata.items():
        prefix = next((prefix for prefix in PREFIXES if key.startswith(prefix)), None)
        if prefix is None:
            continue
        layer_key, _, field = key[len(prefix):].partition("/")
        fields.setdefault(layer_key, {})[field] = value
    found = [CryptomatteLayer(key, str(entry.get("name", key)), _names(entry, key, metadata))
             for key, entry in fields.items()]
    return sorted(found, key=lambda layer: layer.name)


def names(metadata: dict) -> list:
    """Every object name in the plate's Cryptomatte manifests (all layers), sorted, each once."""
    return sorted({name for layer in layers(metadata) for name in layer.names})


def _names(entry: dict, key: str, metadata: dict) -> tuple:
    """The names of one layer's manifest, read from the header or from its sidecar file."""
    layer = entry.get("name", key)
    if "manifest" in entry:
        text, where = entry["manifest"], f"the Cryptomatte manifest of layer {layer}"
    elif "manif_file" in entry:
        folder = os.path.dirname(str(metadata.get("input/filename", "")))
        where = os.path.join(folder, str(entry["manif_file"]))
        try:
            with open(where, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise StyleCompNukeError(f"Cannot read the Cryptomatte manifest {where} (layer {layer}): "
                                     f"{exc.strerror}") from None
    else:
        return ()
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise StyleCompNukeError(f"{where} is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise StyleCompNukeError(f"{where} is not a JSON object of names")
    return tuple(sorted(str(name) for name in manifest))
