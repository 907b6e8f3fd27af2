"""Inputs are sacred: no output of a job lands on a file the job reads, or on a file stylecomp did not write.

Farm managers never touch a job's inputs, and neither does stylecomp. Every output path is
resolved (symlinks and ``..``) and compared with everything the job reads: every shot's plates,
the model (and per-shot model overrides), LoRAs, ControlNets, the IP-Adapter's weights, image
encoder and style image, and an OCIO config file. A pattern is compared as a pattern (so an
output equal to its plate is refused before any plate exists), and the frames about to be
written are compared file by file with the plates on disk. An existing output without
stylecomp provenance in its header is someone else's file: it is replaced only with
``overwrite``. Checked by ``job validate``, at render/batch/comp start, at server submit time
and in farm planning, before any frame renders; each problem names the job's field.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import JobError, StyleCompError
from ..io.plates import PROVENANCE_PREFIX, read_plate
from ..io.sequence import FrameSequence, discover
from ..jobspec import Job, Region, Shot
from .frames import shot_frames

_PRINTF = re.compile(r"%0?\d*d")
_LISTED = 100_000  # a frame range longer than this is checked against the plates on disk only (a typo such as
# last: 1000000000 must not take gigabytes to validate)


@dataclass
class _Inputs:
    """What a job reads, resolved: plate patterns, files and folders, each with the field that names it."""

    patterns: list[tuple[str, str, str]] = field(default_factory=list)  # field, real folder, file-name pattern
    files: dict[str, str] = field(default_factory=dict)  # real path -> field
    inodes: dict[tuple[int, int], str] = field(default_factory=dict)  # (device, inode) -> field
    folders: list[tuple[str, str]] = field(default_factory=list)  # field, real path of a folder read whole


def written_by_stylecomp(path: str | os.PathLike[str]) -> bool:
    """Whether an existing file is an EXR whose header carries stylecomp provenance (so stylecomp may replace it)."""
    try:
        plate = read_plate(path, pixels=False)
    except StyleCompError:
        return False
    return any(name.startswith(PROVENANCE_PREFIX) for part in plate.parts for name in part.attributes)


def check_outputs(
    job: Job,
    shots: Sequence[str] | None = None,
    frames: tuple[int, int] | None = None,
    *,
    overwrite: bool = False,
    comp: bool = False,
    disk: bool = True,
) -> list[str]:
    """Problems with the outputs of the shots named (all if none), one per line naming the field; [] when safe.

    ``comp`` also checks ``comp.output``; ``disk`` False compares patterns only (no file is looked at).
    """
    inputs = _job_inputs(job, disk)
    comp_inputs = _Inputs(
        inputs.patterns
        + [
            (f"shots[{i}].output", *os.path.split(os.path.realpath(job.resolve(shot.output))))
            for i, shot in enumerate(job.shots)
        ],
        inputs.files,
        inputs.inodes,
        inputs.folders,
    )
    problems = []
    for index, shot in enumerate(job.shots):
        if shots and shot.name not in shots:
            continue
        outputs = [(f"shots[{index}].output", shot.output, job.resolve(shot.output), inputs)]
        if comp:  # the comp reads the stylized outputs too
            outputs.append(("comp.output", job.comp.output, job.shot_path(job.comp.output, shot), comp_inputs))
        for name, written, pattern, reads in outputs:
            problem = _pattern_problem(name, written, pattern, reads)
            if problem is None and disk:
                problem = _frame_problem(name, pattern, _targets(job, shot, frames), reads, overwrite)
            if problem is not None:
                problems.append(problem)
    return problems


def guard_outputs(
    job: Job,
    shots: Sequence[str] | None = None,
    frames: tuple[int, int] | None = None,
    *,
    overwrite: bool = False,
    comp: bool = False,
    where: str | None = None,
) -> None:
    """Raise JobError naming each output field that would replace an input or a file stylecomp did not write."""
    problems = check_outputs(job, shots, frames, overwrite=overwrite, comp=comp)
    if problems:
        raise JobError("; ".join(problems), where, problems)


def check_writable(job: Job, shots: Sequence[str] | None = None, *, comp: bool = False) -> None:
    """Create each output folder and write a probe file in it, so a read-only folder stops the run before any frame
    renders rather than after each frame's work (JobError naming the field)."""
    problems = []
    for index, shot in enumerate(job.shots):
        if shots and shot.name not in shots:
            continue
        outputs = [(f"shots[{index}].output", job.resolve(shot.output))]
        if comp:
            outputs.append(("comp.output", job.shot_path(job.comp.output, shot)))
        for name, pattern in outputs:
            folder = os.path.dirname(pattern) or "."
            try:
                os.makedirs(folder, exist_ok=True)
                with tempfile.TemporaryFile(dir=folder, prefix=".stylecomp-probe-"):
                    pass
            except OSError as exc:
                problems.append(f"{name}: cannot write to the folder {folder}: {exc.strerror or exc}")
    if problems:
        raise JobError("; ".join(problems), None, problems)


def _job_inputs(job: Job, disk: bool) -> _Inputs:
    inputs = _Inputs()
    for index, shot in enumerate(job.shots):
        plate = job.resolve(shot.plate)
        inputs.patterns.append((f"shots[{index}].plate", *os.path.split(os.path.realpath(plate))))
        if disk:
            for path in _plate_files(plate):
                _add_file(inputs, f"shots[{index}].plate", path)
        if shot.overrides.model:
            _add_path(inputs, f"shots[{index}].overrides.model", job.resolve(shot.overrides.model))
        _add_regions(inputs, job, f"shots[{index}].regions", shot.regions, disk)
    _add_regions(inputs, job, "regions", job.regions, disk)
    model = job.model
    if model is not None:
        _add_path(inputs, "model.path", job.resolve(model.path))
        for i, lora in enumerate(model.loras):
            _add_path(inputs, f"model.loras[{i}].path", job.resolve(lora.path))
        for i, net in enumerate(model.controlnets):
            _add_path(inputs, f"model.controlnets[{i}].path", job.resolve(net.path))
        if model.ip_adapter is not None:
            adapter = job.resolve(model.ip_adapter.path)
            _add_path(inputs, "model.ip_adapter.path", adapter)
            _add_path(inputs, "model.ip_adapter.image", job.resolve(model.ip_adapter.image))
            encoder = model.ip_adapter.image_encoder
            _add_path(
                inputs,
                "model.ip_adapter.image_encoder",
                job.resolve(encoder) if encoder else os.path.join(os.path.dirname(adapter), "image_encoder"),
            )
    if not job.color.config.startswith("ocio://"):
        _add_path(inputs, "color.config", job.resolve(job.color.config))
    return inputs


def _add_regions(inputs: _Inputs, job: Job, where: str, regions: Sequence[Region], disk: bool) -> None:
    """The files regions read: matte sequences (as patterns, like plates), LoRAs and style images."""
    for i, region in enumerate(regions):
        if region.select.matte_sequence is not None:
            mattes = job.resolve(region.select.matte_sequence)
            inputs.patterns.append((f"{where}[{i}].select.matte_sequence", *os.path.split(os.path.realpath(mattes))))
            if disk:
                for path in _plate_files(mattes):
                    _add_file(inputs, f"{where}[{i}].select.matte_sequence", path)
        for j, lora in enumerate(region.loras or []):
            _add_path(inputs, f"{where}[{i}].loras[{j}].path", job.resolve(lora.path))
        if region.ip_adapter_image is not None:
            _add_path(inputs, f"{where}[{i}].ip_adapter_image", job.resolve(region.ip_adapter_image))


def _plate_files(pattern: str) -> Iterator[str]:
    """The plate files on disk for a pattern (none when there are none: the render reports that)."""
    try:
        sequence = discover(pattern)
    except StyleCompError:
        return
    if sequence.is_single_file:
        yield sequence.pattern
    else:
        yield from (sequence.path(frame) for frame in sequence.frames)


def _add_path(inputs: _Inputs, name: str, path: str) -> None:
    """An input that is a file or a folder (model folders are read whole)."""
    if os.path.isdir(path):
        inputs.folders.append((name, os.path.realpath(path)))
    else:
        _add_file(inputs, name, path)


def _add_file(inputs: _Inputs, name: str, path: str) -> None:
    inputs.files.setdefault(os.path.realpath(path), name)
    try:
        stat = os.stat(path)
    except OSError:
        return
    inputs.inodes.setdefault((stat.st_dev, stat.st_ino), name)


def _head_tail(name: str) -> tuple[str, str] | None:
    """A file-name pattern's text around its frame token (None for a single file), whatever the padding."""
    match = _PRINTF.search(name)
    return (name[: match.start()], name[match.end() :]) if match else None


def _pattern_problem(name: str, written: str, pattern: str, inputs: _Inputs) -> str | None:
    """An output pattern that names files the job reads, found without looking at the files."""
    folder, file_name = os.path.split(os.path.realpath(pattern))
    parts = _head_tail(file_name)
    for plate_field, plate_folder, plate_name in inputs.patterns:
        plate_parts = _head_tail(plate_name)
        if folder == plate_folder and (parts == plate_parts if parts or plate_parts else file_name == plate_name):
            return (
                f"{name} {written!r} is the same file(s) as {plate_field}: stylecomp never writes over the "
                "files a job reads; choose another output"
            )
    real = os.path.join(folder, file_name)
    for input_field, input_folder in inputs.folders:
        if real == input_folder or real.startswith(input_folder + os.sep):
            return f"{name} {written!r} is inside {input_field}, which the job reads; choose another output"
    if parts is None and real in inputs.files:
        return (
            f"{name} {written!r} is the same file as {inputs.files[real]}, which the job reads; choose another output"
        )
    return None


def _targets(job: Job, shot: Shot, frames: tuple[int, int] | None) -> list[int]:
    """The frames a render of the shot may write: its cut with handles within ``frames``, and the plates on disk."""
    wanted = shot.frame_range_with_handles()
    if wanted is not None and frames is not None:
        wanted = (max(wanted[0], frames[0]), min(wanted[1], frames[1]))
    wanted = wanted or frames
    if wanted is not None and wanted[1] - wanted[0] >= _LISTED:  # too many to list: the plates on disk within it
        try:
            sequence = discover(job.resolve(shot.plate))
        except StyleCompError:
            return []
        return [wanted[0]] if sequence.is_single_file else [f for f in sequence.frames if wanted[0] <= f <= wanted[1]]
    try:
        frame_list = shot_frames(job, shot, frames)[1]
    except StyleCompError:
        frame_list = []
    if wanted is not None:
        frame_list = sorted({*frame_list, *range(wanted[0], wanted[1] + 1)})
    return frame_list


def _frame_problem(name: str, pattern: str, frames: list[int], inputs: _Inputs, overwrite: bool) -> str | None:
    """The first frame whose output would replace a file the job reads, or (without ``overwrite``) a foreign file."""
    outputs = FrameSequence(pattern)
    for frame in frames:
        target = outputs.path(frame)
        real = os.path.realpath(target)
        read_by = inputs.files.get(real)
        try:
            stat = os.stat(target)
        except OSError:
            stat = None
        if read_by is None and stat is not None:
            read_by = inputs.inodes.get((stat.st_dev, stat.st_ino))
        if read_by is None:
            read_by = next((f for f, folder in inputs.folders if real.startswith(folder + os.sep)), None)
        if read_by is not None:
            return (
                f"{name}: frame {frame} would be written to {target}, a file {read_by} reads: stylecomp "
                "never writes over the files a job reads; choose another output"
            )
        if stat is not None and not overwrite and not written_by_stylecomp(target):
            return (
                f"{name}: {target} exists and was not written by stylecomp (no stylecomp provenance in its "
                "header); pass --overwrite to replace it"
            )
    return None
