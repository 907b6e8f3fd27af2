"""Plate I/O benchmark: stylecomp.io.plates against bare OpenImageIO on the same EXR.

Builds a 2K multi-layer EXR (2048x1556 display window, a data window inset by 16 px; R,G,B,A
half, Z float, N.X/N.Y/N.Z half, backward.u/v float, id uint; zip compression) with bare
OpenImageIO in a temp folder, then times, in one process:

* read:  ``ImageInput.open`` + ``read_image(..., "float")`` + ``close``
         against ``stylecomp.io.plates.read_plate``
* write: ``ImageOutput.create`` + ``open`` with the same spec + ``write_image`` + ``close``
         against ``stylecomp.io.plates.write_plate`` (which also renames a temp file atomically)

Runs are interleaved (bare, stylecomp, bare, ...) after one warm-up each; the median of the
repeats is reported. The goal is stylecomp / bare <= 1.3 for both; the exit status is 1 if a
ratio exceeds it.

Run it with ``make bench``, or directly::

    .venv/bin/python benchmarks/plate_io.py [--repeats 7] [--out benchmarks/results/plate_io.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import OpenImageIO as oiio

from stylecomp.io import plates

GOAL_RATIO = 1.3
DISPLAY = (2048, 1556)
INSET = 16
CHANNELS: list[tuple[str, str]] = [
    ("R", "half"),
    ("G", "half"),
    ("B", "half"),
    ("A", "half"),
    ("Z", "float"),
    ("N.X", "half"),
    ("N.Y", "half"),
    ("N.Z", "half"),
    ("backward.u", "float"),
    ("backward.v", "float"),
    ("id", "uint"),
]


def build_input(path: str) -> tuple[int, int]:
    """Write the benchmark EXR with bare OIIO; returns the data window's (width, height)."""
    width, height = DISPLAY[0] - 2 * INSET, DISPLAY[1] - 2 * INSET
    rng = np.random.default_rng(0)
    pixels = rng.random((height, width, len(CHANNELS)), dtype=np.float32)
    pixels[:, :, 4] *= 1000.0  # depth
    pixels[:, :, 5:8] = pixels[:, :, 5:8] * 2.0 - 1.0  # normals
    pixels[:, :, 8:10] = (pixels[:, :, 8:10] - 0.5) * 40.0  # motion vectors
    pixels[:, :, 10] = rng.integers(0, 5000, (height, width))  # object ids
    spec = oiio.ImageSpec(width, height, len(CHANNELS), "half")
    spec.x, spec.y = INSET, INSET
    spec.full_x, spec.full_y = 0, 0
    spec.full_width, spec.full_height = DISPLAY
    spec.channelnames = tuple(name for name, _ in CHANNELS)
    spec.channelformats = tuple(oiio.TypeDesc(t) for _, t in CHANNELS)
    spec.attribute("compression", "zip")
    out = oiio.ImageOutput.create(path)
    if out is None or not out.open(path, spec) or not out.write_image(pixels) or not out.close():
        raise RuntimeError(f"could not write {path}: {oiio.geterror()}")
    return width, height


def bare_read(path: str) -> tuple[oiio.ImageSpec, np.ndarray]:
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise RuntimeError(oiio.geterror())
    spec = oiio.ImageSpec(inp.spec())
    pixels = inp.read_image(0, 0, 0, spec.nchannels, "float")
    inp.close()
    return spec, pixels


def bare_write(path: str, spec: oiio.ImageSpec, pixels: np.ndarray) -> None:
    out = oiio.ImageOutput.create(path)
    if out is None or not out.open(path, spec) or not out.write_image(pixels) or not out.close():
        raise RuntimeError(oiio.geterror())


def compare(bare: Callable[[], object], ours: Callable[[], object], repeats: int) -> dict[str, float]:
    """Median milliseconds of each, interleaved after one warm-up each."""
    bare(), ours()
    times: dict[str, list[float]] = {"bare": [], "stylecomp": []}
    for _ in range(repeats):
        for key, fn in (("bare", bare), ("stylecomp", ours)):
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) * 1000.0)
    bare_ms, ours_ms = statistics.median(times["bare"]), statistics.median(times["stylecomp"])
    return {"bare_ms": round(bare_ms, 2), "stylecomp_ms": round(ours_ms, 2), "ratio": round(ours_ms / bare_ms, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per operation and library (default 7)")
    parser.add_argument(
        "--out",
        default=os.path.join("benchmarks", "results", "plate_io.json"),
        help="where to write the JSON results (default benchmarks/results/plate_io.json)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    with tempfile.TemporaryDirectory(prefix="stylecomp-bench-") as tmp:
        source = os.path.join(tmp, "plate.exr")
        size = build_input(source)
        spec, pixels = bare_read(source)
        plate = plates.read_plate(source)
        results = {
            "read": compare(lambda: bare_read(source), lambda: plates.read_plate(source), args.repeats),
            "write": compare(
                lambda: bare_write(os.path.join(tmp, "bare.exr"), spec, pixels),
                lambda: plates.write_plate(os.path.join(tmp, "stylecomp.exr"), plate.parts),
                args.repeats,
            ),
        }

    print(f"{size[0]}x{size[1]} data window, {len(CHANNELS)} channels, zip; median of {args.repeats}")
    print(f"{'operation':<10}{'bare ms':>10}{'stylecomp ms':>14}{'ratio':>8}")
    for op, r in results.items():
        print(f"{op:<10}{r['bare_ms']:>10.1f}{r['stylecomp_ms']:>14.1f}{r['ratio']:>8.2f}")
    print(f"goal: ratio <= {GOAL_RATIO}")

    report = {**results, "goal_ratio": GOAL_RATIO, "size": list(size), "channels": len(CHANNELS)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")

    over = [op for op, r in results.items() if r["ratio"] > GOAL_RATIO]
    if over:
        print(f"FAIL: {', '.join(over)} slower than {GOAL_RATIO}x bare OpenImageIO")
        return 1
    print(f"OK: stylecomp within {GOAL_RATIO}x bare OpenImageIO for read and write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
