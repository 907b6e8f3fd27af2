"""What is in a plate or frame sequence: frames, parts, layers, windows, NaN/Inf, AOVs.

``inspect_plates`` builds the report that ``stylecomp inspect`` prints as text or JSON.
Frames that cannot be read are listed under ``errors`` with the reason and under ``damaged``,
not under ``frames``: a damaged frame is not present. ``stylecomp inspect`` adds ``vectors`` (which
motion-vector convention reproduces the plate: ``temporal.flicker.vector_report``) and ``format_report`` prints it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import PlateError
from .aovs import detect_aovs
from .cryptomatte import describe, find_layers
from .normal_space import header_rotation, plate_normals
from .plates import Plate, nonfinite_counts, read_plate
from .sequence import discover


def _json_safe(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# Header attributes that describe how the file is split into parts, not the image: shown by "parts" and "views".
_LAYOUT_ATTRIBUTES = frozenset(
    {"name", "view", "multiView", "oiio:subimagename", "oiio:subimages", "openexr:chunkCount"}
)


def _part_report(plate: Plate) -> list[dict[str, Any]]:
    return [
        {
            "name": part.name,
            "view": part.view,
            "channels": part.channel_names,
            "channel_types": part.channel_types,
            "data_window": part.data_window.as_list(),
            "display_window": part.display_window.as_list(),
            "pixel_aspect": part.pixel_aspect,
            "compression": part.compression,
            "tiles": [part.spec.tile_width, part.spec.tile_height] if part.spec.tile_width else None,
        }
        for part in plate.parts
    ]


def _normals_report(plate: Plate, aovs: dict[str, Any]) -> dict[str, Any]:
    """The normals' space and where their world-to-camera rotation comes from (see ``normal_space``)."""
    if plate.parts[0].pixels is None:  # headers only: no depth fit
        attributes = {k: v for part in plate.parts for k, v in part.attributes.items()}
        header = header_rotation(attributes)
        return {"space": "not measured (headers only)", "header_matrix": header[1] if header else None}
    window = plate.locate(aovs["normals"].channels[0])[0].data_window
    try:
        return plate_normals(plate, aovs, window).as_dict()
    except PlateError as exc:
        return {"space": "world", "error": exc.reason}


def inspect_plates(path: str, count_nonfinite: bool = True) -> dict[str, Any]:
    """Report on one EXR or a frame pattern. Raises PlateError if no frame can be read."""
    sequence = discover(path)
    errors: list[dict[str, str]] = []
    first: Plate | None = None
    data_windows: dict[int, list[int]] = {}
    nan_total = inf_total = 0
    by_channel: dict[str, dict[str, int]] = {}
    by_frame: dict[str, dict[str, int]] = {}
    frames = sequence.frames or (None,)
    damaged: list[int] = []
    for frame in frames:
        file = sequence.path(frame) if frame is not None else sequence.pattern
        try:
            plate = read_plate(file, pixels=count_nonfinite)
        except PlateError as exc:
            errors.append({"file": file, "error": exc.reason})
            if frame is not None:
                damaged.append(frame)
            continue
        first = first or plate
        data_windows[frame if frame is not None else 0] = plate.data_window.as_list()
        if count_nonfinite:
            frame_nan = frame_inf = 0
            for channel in plate.channel_names:
                nan, inf = nonfinite_counts(plate.channel(channel))
                if nan or inf:
                    counts = by_channel.setdefault(channel, {"nan": 0, "inf": 0})
                    counts["nan"] += nan
                    counts["inf"] += inf
                    frame_nan += nan
                    frame_inf += inf
            if frame_nan or frame_inf:
                by_frame[str(frame)] = {"nan": frame_nan, "inf": frame_inf}
            nan_total += frame_nan
            inf_total += frame_inf

    if first is None:
        if len(errors) == 1:
            raise PlateError(errors[0]["error"], errors[0]["file"])
        raise PlateError(f"none of the {len(errors)} frames can be read; first: {errors[0]['error']}", path)

    aovs = detect_aovs(first.channel_names)
    present = [f for f in sequence.frames if f not in damaged]
    report: dict[str, Any] = {
        "path": sequence.pattern,
        "frames": present,
        "missing": list(sequence.missing),
        "damaged": damaged,
        "parts": _part_report(first),
        "views": first.views,
        "layers": [{"name": layer.name, "channels": list(layer.channels)} for layer in first.layers()],
        "data_window": first.data_window.as_list(),
        "display_window": first.display_window.as_list(),
        "pixel_aspect": first.parts[0].pixel_aspect,
        "compression": first.parts[0].compression,
        "aovs": {role: match.as_dict() for role, match in aovs.items()},
        "cryptomatte": describe(find_layers(first)),
        "normals": _normals_report(first, aovs) if "normals" in aovs else None,
        "attributes": {k: _json_safe(v) for k, v in first.parts[0].attributes.items() if k not in _LAYOUT_ATTRIBUTES},
        "errors": errors,
    }
    if len({tuple(w) for w in data_windows.values()}) > 1:
        report["data_window_by_frame"] = {str(f): w for f, w in data_windows.items()}
    if count_nonfinite:
        report["nonfinite"] = {"nan": nan_total, "inf": inf_total, "by_channel": by_channel, "by_frame": by_frame}
    return report


def _frames_label(frames: list[int]) -> str:
    """``1-4, 7 (5 frames)``: consecutive frames collapsed into runs."""
    if not frames:
        return "single file"
    runs = []
    start = prev = frames[0]
    for frame in frames[1:]:
        if frame != prev + 1:
            runs.append((start, prev))
            start = frame
        prev = frame
    runs.append((start, prev))
    text = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)
    return f"{text} ({len(frames)} frame{'s' if len(frames) > 1 else ''})"


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned text for a terminal."""

    def window(w: list[int]) -> str:
        return f"{w[2]}x{w[3]} at ({w[0]}, {w[1]})"

    lines = [os.path.basename(report["path"]) + f"   ({os.path.dirname(report['path']) or '.'})"]
    lines.append(f"  frames       {_frames_label(report['frames'])}")
    missing = report["missing"]
    lines.append(f"  missing      {_frames_label(missing) if missing else 'none'}")
    if report.get("damaged"):
        lines.append(f"  damaged      {_frames_label(report['damaged'])}")
    lines.append(f"  display      {window(report['display_window'])}   pixel aspect {report['pixel_aspect']:g}")
    lines.append(
        f"  data         {window(report['data_window'])}"
        + ("   (varies by frame)" if "data_window_by_frame" in report else "")
    )
    lines.append(f"  compression  {report['compression']}")
    if report["views"]:
        lines.append(f"  views        {', '.join(report['views'])}")
    for i, part in enumerate(report["parts"]):
        types = sorted(set(part["channel_types"]))
        tiled = f", tiled {part['tiles'][0]}x{part['tiles'][1]}" if part["tiles"] else ""
        lines.append(
            f"  part {i}       {part['name'] or '(unnamed)'}: {len(part['channels'])} channels, "
            f"{'/'.join(types)}{tiled}"
        )
    lines.append("  layers")
    width = max(len(layer["name"]) for layer in report["layers"])
    for layer in report["layers"]:
        lines.append(f"    {layer['name']:<{width}}  {' '.join(layer['channels'])}")
    if "nonfinite" in report:
        nf = report["nonfinite"]
        if nf["nan"] or nf["inf"]:
            worst = ", ".join(f"{c} ({v['nan']} NaN, {v['inf']} Inf)" for c, v in nf["by_channel"].items())
            lines.append(f"  NaN/Inf      {nf['nan']} NaN, {nf['inf']} Inf in {len(nf['by_frame'])} frame(s): {worst}")
        else:
            lines.append("  NaN/Inf      none")
    lines.append("  AOVs")
    if not report["aovs"]:
        lines.append("    none detected (map them in the job's shot 'aovs')")
    for role, match in report["aovs"].items():
        lines.append(f"    {role:<10}  {' '.join(match['channels'])}")
    for layer in report.get("cryptomatte", []):
        names = ", ".join(layer["names"]) if layer["names"] is not None else f"none: {layer['problem']}"
        lines.append(f"  Cryptomatte  {layer['name']} (key {layer['key']}, {layer['ranks']} ranks): {names}")
    if "vectors" in report:
        vectors = report["vectors"]
        if "error" in vectors:
            lines.append(f"  vectors      not checked: {vectors['error']}")
        else:
            best = f"{vectors['best']} (score {vectors['scores'][vectors['best']]:.3f})"
            lines.append(
                f"  vectors      {best}: reproduces the plate"
                if vectors["convention"]
                else f"  vectors      reproduce the plate under no convention; best {best}"
            )
    normals = report.get("normals")
    if normals:
        text = f"{normals['space']}" + (f" ({normals['decided_by']})" if "decided_by" in normals else "")
        if "rotation_source" in normals:
            text += f"; to camera by the rotation {normals['rotation_source']}"
        if "residual_degrees" in normals:
            text += (
                f" (residual {normals['residual_degrees']:g} deg over {normals['fit_pixels']} px, "
                f"focal {normals['focal_pixels']:g} px)"
            )
        if normals.get("header_matrix"):
            text += f"; header matrix {normals['header_matrix']}"
        if "error" in normals:
            text += f"; {normals['error']}"
        lines.append(f"  normals      {text}")
    return "\n".join(lines)
