"""Per-object regions: each frame's mattes from the render's own passes, and the overlap rule that weights them.

A region (``jobspec.Region``) selects pixels by Cryptomatte names (wildcards, any layer), IDs of
the integer object-ID AOV, a matte channel of the plate, or a separate matte sequence; coverage
gives soft edges. Regions apply in list order, later ones winning, coverage-weighted and subtractive:
from the last region to the first, ``weight_i = min(c_i, 1 - sum_{j>i} weight_j)``, and the shot's own
settings get ``1 - sum(weight_i)``. A full overlap goes to the later region; two Cryptomatte objects
that split a pixel (car 0.4, building 0.6) keep their own shares, leaving the shot nothing there.

``check_regions`` reads the shot's headers (and, for ID and matte selectors, pixels until a frame
covers something) before anything renders, so a bad selector is one clear line and no file is
written; a Cryptomatte name that only some frames have is a warning with those frames.
``parse_region`` reads the CLI's ``--region 'car: prompt=cel shading; strength=0.6'``.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..comp.blend import id_mask, matte_mask
from ..errors import JobError, PlateError
from ..io.aovs import detect_aovs
from ..io.cryptomatte import CryptomatteLayer, find_layers, read_ranks
from ..io.plates import Plate, Window, read_plate
from ..io.sequence import FrameSequence
from ..io.windows import reframe
from ..jobspec import Job, Region, Shot

REGION_LAYER = "regions"  # the output's layer of per-region weights: regions.<name>
DEFAULT_MATTE_CHANNEL = "A"


@dataclass(frozen=True)
class FrameRegions:
    """One frame's regions over the beauty's data window: weights under the overlap rule, and what each resolved to."""

    names: tuple[str, ...]
    weights: np.ndarray  # (H, W, N) float32: weight_i per pixel; the shot's own settings get 1 - their sum
    resolved: tuple[dict[str, list[str]] | None, ...]  # Cryptomatte selectors: layer -> the names it selected

    def channels(self) -> list[str]:
        """The output channel of each region's weight: ``regions.<name>``."""
        return [f"{REGION_LAYER}.{name}" for name in self.names]

    def describe(self) -> str:
        """The frame's regions as the output header records them (JSON): names, resolved names, mean weight."""
        return json.dumps(
            [
                {"name": name, "resolved": resolved, "mean_weight": round(float(self.weights[..., i].mean()), 6)}
                for i, (name, resolved) in enumerate(zip(self.names, self.resolved, strict=True))
            ]
        )


def overlap_weights(coverage: np.ndarray) -> np.ndarray:
    """Coverage (H, W, N) in list order -> weights (H, W, N): from last to first, ``min(c_i, 1 - sum_{j>i} w_j)``.

    Later regions win what they cover; an earlier one keeps what is left, so split pixels stay exact.
    """
    weights = np.empty_like(coverage, dtype=np.float32)
    rest = np.ones(coverage.shape[:2], np.float32)
    for i in reversed(range(coverage.shape[2])):
        weights[..., i] = np.minimum(coverage[..., i], rest)
        rest = np.maximum(rest - weights[..., i], 0.0)
    return weights


def frame_regions(
    job: Job, shot: Shot, regions: Sequence[Region], plate: Plate, frame: int, window: Window
) -> FrameRegions:
    """The frame's region weights over ``window`` (the beauty's data window of ``plate``, frame ``frame``)."""
    coverage, resolved = [], []
    for region in regions:
        matte, names = region_coverage(job, shot, region, plate, frame, window)
        coverage.append(matte)
        resolved.append(names)
    stacked = np.stack(coverage, axis=2) if coverage else np.zeros((window.height, window.width, 0), np.float32)
    return FrameRegions(tuple(region.name for region in regions), overlap_weights(stacked), tuple(resolved))


def region_coverage(
    job: Job, shot: Shot, region: Region, plate: Plate, frame: int, window: Window
) -> tuple[np.ndarray, dict[str, list[str]] | None]:
    """A region's coverage (H, W) in [0, 1] over ``window`` (``invert`` applied), and its resolved Cryptomatte names.

    A Cryptomatte pattern that selects nothing in this frame covers nothing here (``check_regions`` has
    already refused patterns that select nothing on every frame).
    """
    select, resolved = region.select, None
    if select.cryptomatte is not None:
        total = np.zeros((window.height, window.width), np.float32)
        resolved = {}
        for layer in _layers(plate, select.layer):
            names = _matching(layer, select.cryptomatte)
            if not names:
                continue
            resolved[layer.name] = names
            bits, cover, layer_window = read_ranks(plate, layer)
            manifest = layer.manifest or {}  # _layers keeps only layers with a manifest
            wanted = np.array([manifest[name] for name in names], dtype=np.uint32)
            total += reframe((cover * np.isin(bits, wanted)).sum(axis=2, dtype=np.float32), layer_window, window)
        matte = np.clip(total, 0.0, 1.0)
    elif select.ids is not None:
        channel = _id_channel(plate, shot)
        matte = id_mask(_plane(plate, channel, window), select.ids)
    elif select.matte is not None:
        _require_channel(plate, select.matte, region)
        matte = matte_mask(_plane(plate, select.matte, window))
    else:
        source = read_plate(FrameSequence(job.resolve(select.matte_sequence)).path(frame))  # type: ignore[arg-type]  # the select has exactly one source
        channel = select.channel or DEFAULT_MATTE_CHANNEL
        _require_channel(source, channel, region)
        matte = matte_mask(_plane(source, channel, window))
    matte = matte.astype(np.float32)
    return (1.0 - matte if region.invert else matte), resolved


def check_regions(job: Job, shot: Shot, frames: Sequence[int], plates: FrameSequence) -> list[str]:
    """Check the shot's regions against its frames before anything renders; the warnings to show.

    Raises JobError (one line, naming the shot, region and what is wrong) for a Cryptomatte
    pattern no frame's manifest has (with the nearest names there), a matte channel or ID AOV the
    plate lacks, or a selector that covers no pixel on any frame.
    """
    regions = job.shot_regions(shot)
    present = [frame for frame in frames if frame not in plates.missing]
    if not regions or not present:
        return []
    warnings: list[str] = []
    headers = {frame: read_plate(plates.path(frame), pixels=False) for frame in present}
    for region in regions:
        where = f"{shot.name}: region {region.name!r}"
        select = region.select
        if select.cryptomatte is not None:
            warnings += _check_cryptomatte(region, headers, where)  # then the same coverage check as the others
        if select.matte_sequence is not None:
            mattes = FrameSequence(job.resolve(select.matte_sequence))
            missing = [frame for frame in present if not os.path.isfile(mattes.path(frame))]
            if missing:
                raise JobError(f"{where}: no matte for frame(s) {_frame_list(missing)}: {mattes.path(missing[0])}")
        for frame in present:
            try:
                plate = read_plate(plates.path(frame))
                window = _beauty_window(plate, shot)
                matte, _ = region_coverage(job, shot, region, plate, frame, window)
            except PlateError as exc:
                raise JobError(f"{where}: {exc}") from None
            if matte.max() > 0.0:
                break
        else:
            raise JobError(
                f"{where}: {_selector_text(region)} covers no pixel on any frame ({present[0]}-{present[-1]})"
            )
    return warnings


def _check_cryptomatte(region: Region, headers: dict[int, Plate], where: str) -> list[str]:
    """Each pattern must select a name on some frame; the frames where it selects none are a warning."""
    select = region.select
    missing: dict[str, list[int]] = {pattern: [] for pattern in select.cryptomatte}  # type: ignore[union-attr]  # a Cryptomatte select
    known: set[str] = set()
    layer_seen = False
    for frame, plate in headers.items():
        layers = _layers(plate, select.layer)
        layer_seen = layer_seen or bool(layers)
        names = [name for layer in layers for name in (layer.manifest or {})]
        known.update(names)
        for pattern in missing:
            if not any(name == pattern or fnmatch.fnmatchcase(name, pattern) for name in names):
                missing[pattern].append(frame)
    if not layer_seen:
        wanted = f"Cryptomatte layer {select.layer!r}" if select.layer else "Cryptomatte layer with a manifest"
        raise JobError(f"{where}: the plate has no {wanted}")
    warnings = []
    for pattern, frames in missing.items():
        if len(frames) == len(headers):
            near = difflib.get_close_matches(pattern, sorted(known), n=5, cutoff=0.4)
            hint = f"nearest names: {', '.join(near)}" if near else f"names: {', '.join(sorted(known)[:20])}"
            raise JobError(f"{where}: no Cryptomatte name matches {pattern!r} on any frame; {hint}")
        if frames:
            warnings.append(f"region {region.name!r}: {pattern!r} matches nothing on frame(s) {_frame_list(frames)}")
    return warnings


def _frame_list(frames: list[int]) -> str:
    """Frames as runs: 3-5, 9."""
    runs: list[list[int]] = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def _selector_text(region: Region) -> str:
    select = region.select.model_dump(exclude_none=True)
    return "select " + json.dumps(select) + (" (inverted)" if region.invert else "")


def _layers(plate: Plate, name: str | None) -> list[CryptomatteLayer]:
    """The plate's Cryptomatte layers with a manifest: all, or the one called ``name`` (full or last dotted name)."""
    layers = [layer for layer in find_layers(plate) if layer.manifest is not None and layer.channels]
    if name is None:
        return layers
    return [layer for layer in layers if name in (layer.name, layer.name.rpartition(".")[2])]


def _matching(layer: CryptomatteLayer, patterns: Sequence[str]) -> list[str]:
    """The layer's names the patterns select (exact names, or fnmatch wildcards), in pattern order."""
    names = sorted(layer.manifest or {})
    found: list[str] = []
    for pattern in patterns:
        for name in [pattern] if pattern in names else [n for n in names if fnmatch.fnmatchcase(n, pattern)]:
            if name not in found:
                found.append(name)
    return found


def _id_channel(plate: Plate, shot: Shot) -> str:
    match = detect_aovs(plate.channel_names, shot.aovs).get("object_id")
    if match is None:
        raise PlateError(
            "an ids selector needs an integer object-ID AOV; none found (map it in the shot's aovs.object_id)",
            plate.path,
        )
    return match.channels[0]


def _require_channel(plate: Plate, channel: str, region: Region) -> None:
    if channel not in plate.channel_names:
        near = difflib.get_close_matches(channel, plate.channel_names, n=3, cutoff=0.5)
        raise PlateError(
            f"region {region.name!r}: no channel {channel!r}" + (f" (nearest: {', '.join(near)})" if near else ""),
            plate.path,
        )


def _plane(plate: Plate, channel: str, window: Window) -> np.ndarray:
    """One channel of the plate over ``window`` (0 outside its own data window)."""
    values = plate.channel(channel).astype(np.float32)
    source = plate.locate(channel)[0].data_window
    return reframe(values, source, window) if source != window else values


def _beauty_window(plate: Plate, shot: Shot) -> Window:
    match = detect_aovs(plate.channel_names, shot.aovs).get("beauty")
    if match is None:
        raise PlateError("no beauty channels (R, G, B or Y) found; map them in the shot's 'aovs'", plate.path)
    return plate.locate(match.channels[0])[0].data_window


# --- the CLI's --region -----------------------------------------------------------------------

REGION_KEYS = {
    "prompt": "the region's prompt",
    "negative_prompt": "its negative prompt",
    "strength": "0..1 (0 = untouched)",
    "seed": "its noise seed",
    "invert": "true/false",
    "match": "Cryptomatte names, comma-separated (bld*)",
    "layer": "the Cryptomatte layer",
    "ids": "object IDs, comma-separated",
    "matte": "a plate channel (mask.A)",
    "matte_sequence": "a matte sequence (mattes/car.####.exr)",
    "channel": "its channel (default A)",
    "loras": "path[:weight], comma-separated",
    "ip_adapter_image": "a style image",
    "controlnet_weights": "source:weight, comma-separated (lineart:0.5)",
}
_SELECTORS = ("match", "ids", "matte", "matte_sequence")
# NAME ends at the first colon followed by the end or by key=, so names may hold colons (ns:car).
_REGION_HEAD = re.compile(r"^(?P<name>[^=]+?):\s*(?=$|[A-Za-z_]+\s*=)")
_FIRST_COLON = re.compile(r"^(?P<name>[^:=]+):")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WILDCARDS = re.compile(r"[*?\[\]]")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]+")


def region_name(pattern: str) -> str:
    """A region name (an identifier) made from a Cryptomatte name or pattern: ``Car.001`` -> ``Car_001``,
    ``bld*`` -> ``bld``, ``ns:car`` -> ``ns_car``; the Nuke regions table makes its names the same way."""
    base = _NOT_IN_NAME.sub("_", _WILDCARDS.sub("", pattern)).strip("_") or "region"
    return "_" + base if base[0].isdigit() else base


def parse_region(text: str) -> Region:
    """A region from the CLI form ``NAME: key=value; key=value`` (see ``REGION_KEYS``).

    Without a selector key the region selects the Cryptomatte name NAME. A NAME that is not an
    identifier (``Car.001``, ``ns:car``, ``bld*``) is the Cryptomatte pattern and the region's name
    is made from it (``Car_001``), as the Nuke table does. ``\\;`` is a literal ``;`` in a value.
    Raises ValueError with one line saying what is wrong.
    """
    head = _REGION_HEAD.match(text) or _FIRST_COLON.match(text)
    if head is None or not head.group("name").strip():
        raise ValueError("expected NAME: key=value; key=value (e.g. 'car: prompt=cel shading; strength=0.6')")
    given, rest = head.group("name").strip(), text[head.end() :]
    values: dict[str, str] = {}
    for item in re.split(r"(?<!\\);", rest):
        if not item.strip():
            continue
        key, equals, value = item.replace("\\;", ";").partition("=")
        key = key.strip()
        if not equals:
            raise ValueError(f"{item.strip()!r} is not key=value")
        if key not in REGION_KEYS:
            near = difflib.get_close_matches(key, list(REGION_KEYS), n=1)
            raise ValueError(
                f"unknown key {key!r}"
                + (f" (did you mean {near[0]!r}?)" if near else "")
                + f"; keys: {', '.join(REGION_KEYS)}"
            )
        if key in values:
            raise ValueError(f"{key!r} is given twice")
        values[key] = value.strip()
    name = given if _IDENTIFIER.fullmatch(given) else region_name(given)
    selectors = [key for key in _SELECTORS if key in values]
    if len(selectors) > 1:
        raise ValueError(f"give one selector, not {' and '.join(selectors)}")
    select: dict[str, Any] = {"cryptomatte": [given]}
    if "match" in values:
        select = {"cryptomatte": _items(values.pop("match"))}
    elif "ids" in values:
        select = {"ids": _items(values.pop("ids"))}
    elif "matte" in values:
        select = {"matte": values.pop("matte")}
    elif "matte_sequence" in values:
        select = {"matte_sequence": values.pop("matte_sequence")}
    for key in ("layer", "channel"):
        if key in values:
            select[key] = values.pop(key)
    document: dict[str, Any] = {"name": name, "select": select}
    for key, value in values.items():
        if key == "loras":
            document[key] = [_lora(item) for item in _items(value)]
        elif key == "controlnet_weights":
            document[key] = dict(_pair(item) for item in _items(value))
        elif key == "invert":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"invert={value!r}: use true or false")
            document[key] = value.lower() in ("true", "1", "yes")
        else:
            document[key] = value
    try:
        return Region.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise ValueError(f"{field}: {error['msg'].removeprefix('Value error, ')}") from None


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _lora(item: str) -> dict[str, Any]:
    path, colon, weight = item.rpartition(":")
    if not colon or not _is_number(weight):
        return {"path": item}
    return {"path": path, "weight": weight}


def _pair(item: str) -> tuple[str, str]:
    source, colon, weight = item.partition(":")
    if not colon:
        raise ValueError(f"controlnet_weights {item!r}: expected source:weight (lineart:0.5)")
    return source.strip(), weight.strip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
