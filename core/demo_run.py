"""``make demo``: render the demo shot, write its job, run the pipeline, make a contact sheet.

Until the stylization engine lands, the pipeline is the colour round trip every frame will
take: plate -> model space -> (identity model) -> scene-linear with HDR restored -> EXR
with provenance. Its output must equal the plate, and the summary says how close it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import __version__
from .aovs import beauty
from .color import EncodedPlate, quantize, roundtrip_error
from .contactsheet import depth_preview, id_preview, motion_preview, normals_preview, write_contact_sheet
from .demo import write_demo
from .jobspec import FrameRange, Job, Shot, load_job, save_job
from .plates import ImagePart, Plate, read_plate, write_plate
from .sequence import discover

Progress = Callable[[str, int, int], None]


def run_demo(out_dir: Path, frames: int, width: int, height: int, progress: Progress) -> dict[str, str]:
    """Run the demo end to end into ``out_dir``; returns what was written, for the summary."""
    plates = write_demo(out_dir / "plates", frames, width, height,
                        progress=lambda done, total: progress("rendering demo plates", done, total))
    job_path = out_dir / "demo_job.json"
    save_job(Job(shots=[Shot(
        name="demo",
        plate="plates/demo.####.exr",
        frames=FrameRange(first=plates.frames[0], last=plates.frames[-1]),
        output="roundtrip/demo.####.exr",
    )]), job_path)
    job = load_job(job_path)  # what a user's run would read back
    shot = job.shots[0]
    encoding = job.color.model_encoding()

    output = job.resolve(shot.output)
    sequence = discover(job.resolve(shot.plate), (shot.frames.first, shot.frames.last))
    shown = (sequence.frames[0], sequence.frames[len(sequence.frames) // 2], sequence.frames[-1])
    kept: dict[int, tuple[Plate, EncodedPlate]] = {}  # the contact sheet's frames, read once
    worst = 0.0
    for done, frame in enumerate(sequence.frames, 1):
        plate = read_plate(sequence.path(frame))
        rgb, alpha = beauty(plate, shot.aovs)
        encoded = encoding.encode(rgb, alpha)
        if frame in shown:
            kept[frame] = (plate, encoded)
        restored = encoding.decode(encoded, encoded.image)  # the identity "model"
        worst = max(worst, float(np.max(np.abs(restored - rgb))))
        part = plate.parts[0]
        pixels = part.pixels.copy()
        for c, name in enumerate(("R", "G", "B")):
            pixels[:, :, part.channel_index(name)] = restored[:, :, c]
        write_plate(output % frame, [ImagePart(part.spec, pixels)], provenance={
            "version": __version__, "job": job_path.name, "shot": shot.name, "frame": frame,
            "stage": "colour round trip (identity model)", "color": encoding.description,
            "ocio_config": encoding.config_uri,
        })
        progress("colour round trip", done, len(sequence.frames))

    sheet = out_dir / "contact_sheet.png"
    tiles = [(f"beauty {Path(kept[f][0].path).name}", kept[f][1].image) for f in shown]
    written = read_plate(output % shown[-1])  # as a compositor would read it back
    tiles.append((f"round trip {Path(written.path).name}", encoding.encode(*beauty(written, shot.aovs)).image))
    first = kept[shown[0]][0]
    tiles += [
        ("depth Z", depth_preview(first.channel("Z"))),
        ("normals N (camera)", normals_preview(first.channels(["N.X", "N.Y", "N.Z"]))),
        ("motion backward.u/v", motion_preview(first.channels(["backward.u", "backward.v"]))),
        ("object id", id_preview(first.channel("id"))),
    ]
    write_contact_sheet(sheet, tiles)
    error8 = roundtrip_error(encoding, *beauty(first, shot.aovs), model=quantize(8))
    return {
        "plates": sequence.pattern,
        "job": str(job_path),
        "outputs": output,
        "contact sheet": str(sheet),
        "round trip": f"largest difference from the plate: {worst:g} (identity model)",
        "8-bit model": str(error8),
    }
