"""Cryptomatte: object and material IDs as the renderers write them, decoded into mattes and an ID map.

Cryptomatte (Psyop, specification 1.2) stores, for each layer ``<name>``, channels
``<name>00``, ``<name>01``, ... whose RGBA hold two ranks each: ``(id, coverage, id, coverage)``,
ranks sorted by coverage. An ID is the 32 bits of ``MurmurHash3_x86_32`` (seed 0) of the
object's UTF-8 name, read as a float32 (exponent 0 or 255 has bit 23 flipped, so no ID is a
denormal, NaN or Inf). The header holds, under ``cryptomatte/<key>/`` with ``<key>`` the first
7 hex digits of the hash of the layer name: ``name``, ``hash`` (``MurmurHash3_32``),
``conversion`` (``uint32_to_float32``) and ``manifest`` (JSON, name -> 8 hex digits) or
``manif_file`` (a JSON sidecar beside the EXR).

Two products: coverage mattes by name (wildcards as ``fnmatch``: ``bld*``), soft at
anti-aliased and motion-blurred edges; and ``dominant_ids``, the ID with the most coverage
per pixel, which the consumers of an integer ID pass (line art, comp lines, disocclusion
tests) use as they would use that pass: they only compare IDs for equality.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PlateError
from .plates import Plate, Window

_COMPONENTS = {"r": 0, "red": 0, "g": 1, "green": 1, "b": 2, "blue": 2, "a": 3, "alpha": 3}
_HEX_ID = re.compile(r"[0-9a-fA-F]{8}")
_MASK32 = 0xFFFFFFFF


def murmurhash3_32(data: bytes | str, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``data`` (str as UTF-8), the hash Cryptomatte names and keys use."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _MASK32

    def scramble(k: int) -> int:
        k = (k * c1) & _MASK32
        k = ((k << 15) | (k >> 17)) & _MASK32
        return (k * c2) & _MASK32

    blocks = len(raw) // 4
    for i in range(blocks):
        h ^= scramble(int.from_bytes(raw[4 * i : 4 * i + 4], "little"))
        h = ((h << 13) | (h >> 19)) & _MASK32
        h = (h * 5 + 0xE6546B64) & _MASK32
    tail = raw[4 * blocks :]
    if tail:
        h ^= scramble(int.from_bytes(tail, "little"))
    h ^= len(raw)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def name_id(name: str) -> int:
    """The 32 bits of ``name``'s Cryptomatte ID: its hash, with bit 23 flipped where the float exponent is 0 or 255."""
    bits = murmurhash3_32(name)
    if (bits >> 23) & 0xFF in (0, 255):
        bits ^= 1 << 23
    return bits


def id_float(bits: int) -> float:
    """The float32 value that holds ID ``bits`` in the rank channels."""
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def layer_key(layer_name: str) -> str:
    """The 7-hex-digit header key of a layer: ``cryptomatte/<key>/...``."""
    return f"{murmurhash3_32(layer_name):08x}"[:7]


@dataclass(frozen=True)
class CryptomatteLayer:
    """One Cryptomatte layer of a plate: its header key and name, rank channels and manifest.

    ``manifest`` maps names to ID bits; it is None when the header has no usable one, and
    ``problem`` says why (decoding IDs still works; mattes by name need it).
    """

    path: str
    key: str
    name: str
    channels: tuple[str, ...]  # id, coverage, id, coverage, ... in rank order
    manifest: dict[str, int] | None
    problem: str | None = None

    @property
    def ranks(self) -> int:
        return len(self.channels) // 2

    def names(self) -> list[str]:
        """The manifest's names, sorted; PlateError when the layer has no usable manifest."""
        if self.manifest is None:
            raise PlateError(f"Cryptomatte layer {self.name!r}: {self.problem}", self.path)
        return sorted(self.manifest)

    def resolve(self, patterns: Sequence[str]) -> list[str]:
        """The manifest names ``patterns`` select (exact names, or ``fnmatch`` wildcards such as ``bld*``).

        A pattern that selects nothing is a PlateError listing the names there are.
        """
        names = self.names()
        selected: list[str] = []
        for pattern in patterns:
            found = [pattern] if pattern in self.manifest else fnmatch.filter(names, pattern)  # type: ignore[operator]  # only called with a manifest
            if not found:
                raise PlateError(
                    f"Cryptomatte layer {self.name!r} has no object matching {pattern!r}; names: {', '.join(names)}",
                    self.path,
                )
            selected += [name for name in found if name not in selected]
        return selected


def _manifest(
    plate: Plate, key: str, name: str, attributes: dict[str, object]
) -> tuple[dict[str, int] | None, str | None]:
    """The layer's manifest (name -> ID bits) from the header or its sidecar, or (None, why not)."""
    text = attributes.get(f"cryptomatte/{key}/manifest")
    source = "manifest"
    if text is None and (sidecar := attributes.get(f"cryptomatte/{key}/manif_file")) is not None:
        source = os.path.join(os.path.dirname(plate.path), str(sidecar))
        try:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            return None, f"cannot read its manifest file {source}: {reason}"
    if text is None:
        return None, "no manifest in the header (cryptomatte/<key>/manifest or manif_file)"
    try:
        entries = json.loads(str(text))
    except json.JSONDecodeError as exc:
        return None, f"its {source} is not JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(entries, dict):
        return None, f"its {source} is not a JSON object of name -> 8-hex-digit ID"
    bad = [str(k) for k, v in entries.items() if not (isinstance(v, str) and _HEX_ID.fullmatch(v))]
    if bad:
        return None, f"its {source} holds IDs that are not 8 hex digits, for {', '.join(bad[:5])}"
    return {str(k): int(v, 16) for k, v in entries.items()}, None


def nuke_layer_name(name: str) -> str:
    """The layer name Nuke gives a Cryptomatte layer: characters other than letters, digits, ``_`` and ``-``
    become ``_`` (Blender's ``ViewLayer.CryptoObject`` -> ``ViewLayer_CryptoObject``), a leading digit gets a
    ``_``. A plate written by Nuke's Write has its rank channels under this name while its header keeps the
    renderer's (Psyop's Cryptomatte gizmo reads such files the same way)."""
    legal = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return "_" + legal if legal[:1].isdigit() else legal


def _rank_channels(plate: Plate, name: str) -> tuple[str, ...]:
    """``<name>00.r``, ``.g``, ... in rank order: (id, coverage) pairs over consecutive levels; under the Nuke
    layer name when the renderer's is not in the file."""
    return _rank_channels_named(plate, name) or _rank_channels_named(plate, nuke_layer_name(name))


def _rank_channels_named(plate: Plate, name: str) -> tuple[str, ...]:
    by_level: dict[int, dict[int, str]] = {}
    pattern = re.compile(re.escape(name) + r"(\d{2})\.([A-Za-z]+)")
    for channel in plate.channel_names:
        match = pattern.fullmatch(channel)
        if match and match.group(2).lower() in _COMPONENTS:
            by_level.setdefault(int(match.group(1)), {})[_COMPONENTS[match.group(2).lower()]] = channel
    channels: list[str] = []
    level = 0
    while len(by_level.get(level, {})) == 4:
        channels += [by_level[level][i] for i in range(4)]
        level += 1
    return tuple(channels)


def find_layers(plate: Plate) -> list[CryptomatteLayer]:
    """Every Cryptomatte layer the plate's headers declare, in key order."""
    attributes: dict[str, object] = {}
    for part in plate.parts:
        attributes.update({k: v for k, v in part.attributes.items() if k.startswith("cryptomatte/")})
    keys = sorted({k.split("/")[1] for k in attributes if k.count("/") == 2})
    layers = []
    for key in keys:
        name = attributes.get(f"cryptomatte/{key}/name")
        if not isinstance(name, str) or not name:
            continue
        channels = _rank_channels(plate, name)
        manifest, problem = _manifest(plate, key, name, attributes)
        if not channels:
            problem = f"no channels {name}00.r/g/b/a in the file"
        else:
            problem = problem or _check_header(attributes, key)
            if problem and manifest is not None:
                manifest = None
        layers.append(CryptomatteLayer(plate.path, key, name, channels, manifest, problem))
    return layers


def _check_header(attributes: dict[str, object], key: str) -> str | None:
    """Why the layer's hash or conversion is not the one this decoder reads, or None."""
    hashing = attributes.get(f"cryptomatte/{key}/hash", "MurmurHash3_32")
    conversion = attributes.get(f"cryptomatte/{key}/conversion", "uint32_to_float32")
    if hashing != "MurmurHash3_32" or conversion != "uint32_to_float32":
        return f"unsupported hash {hashing!r} / conversion {conversion!r} (MurmurHash3_32, uint32_to_float32 only)"
    return None


def object_layer(layers: Sequence[CryptomatteLayer]) -> CryptomatteLayer | None:
    """The layer that names objects (``CryptoObject``, ``crypto_object``), else assets, else the first; None if none."""
    usable = [layer for layer in layers if layer.channels]
    for word in ("object", "asset"):
        for layer in usable:
            if word in layer.name.lower():
                return layer
    return usable[0] if usable else None


def select_layer(plate: Plate, name: str | None = None) -> CryptomatteLayer:
    """The layer called ``name`` (its full or last dotted name), else the object layer; PlateError if none."""
    layers = find_layers(plate)
    if name is None:
        layer = object_layer(layers)
    else:
        layer = next((item for item in layers if name in (item.name, item.name.rpartition(".")[2])), None)
    if layer is None:
        have = ", ".join(item.name for item in layers) or "none"
        wanted = f" {name!r}" if name else ""
        raise PlateError(f"no Cryptomatte layer{wanted} in the file (layers: {have})", plate.path)
    if not layer.channels:
        raise PlateError(f"Cryptomatte layer {layer.name!r}: {layer.problem}", plate.path)
    return layer


def read_ranks(plate: Plate, layer: CryptomatteLayer) -> tuple[np.ndarray, np.ndarray, Window]:
    """The layer's ranks over its data window: ID bits (H, W, N) uint32, coverage (H, W, N) float32, the window."""
    part = plate.locate(layer.channels[0])[0]
    halves = [c for c in layer.channels[0::2] if part.channel_types[part.channel_index(c)] != "float"]
    if halves:
        raise PlateError(
            f"Cryptomatte IDs need 32-bit float channels; {halves[0]} is not (its hashes are lost)", plate.path
        )
    values = np.ascontiguousarray(plate.channels(layer.channels), dtype=np.float32)  # (H, W, 2N)
    coverage = np.nan_to_num(values[..., 1::2], nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(values[..., 0::2]).view(np.uint32), coverage, part.data_window


def matte(plate: Plate, layer: CryptomatteLayer, patterns: Sequence[str]) -> tuple[np.ndarray, Window]:
    """Coverage (H, W) in [0, 1] of the objects ``patterns`` select, summed over ranks, and its data window."""
    wanted = np.array(
        [layer.manifest[name] for name in layer.resolve(patterns)],  # type: ignore[index]  # resolve refuses a layer without one
        dtype=np.uint32,
    )
    bits, coverage, window = read_ranks(plate, layer)
    return np.clip(np.sum(coverage * np.isin(bits, wanted), axis=2), 0.0, 1.0).astype(np.float32), window


def dominant_ids(plate: Plate, layer: CryptomatteLayer) -> tuple[np.ndarray, Window]:
    """Per pixel the float32 ID of the object with the most coverage (0 where none), and its data window.

    Equal IDs mean the same name in every frame (the ID is the name's hash), so frames can be
    compared with each other even when their manifests differ.
    """
    bits, coverage, window = read_ranks(plate, layer)
    best = np.argmax(coverage, axis=2)[..., None]  # (H, W, 1)
    chosen = np.take_along_axis(bits, best, axis=2)[..., 0]
    covered = np.take_along_axis(coverage, best, axis=2)[..., 0] > 0.0
    return np.where(covered, chosen, np.uint32(0)).view(np.float32), window


def describe(layers: Sequence[CryptomatteLayer]) -> list[dict[str, object]]:
    """What ``inspect`` reports of each layer: name, key, ranks, channels, object names (or the problem)."""
    return [
        {
            "name": layer.name,
            "key": layer.key,
            "ranks": layer.ranks,
            "channels": list(layer.channels),
            "names": sorted(layer.manifest) if layer.manifest is not None else None,
            "problem": layer.problem,
        }
        for layer in layers
    ]
