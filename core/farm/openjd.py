"""Open Job Description (2023-09) job templates for a job: one step per shot, one task per frame chunk.

Made from the same plan as the Ray executor (``chunks.plan_shots``). Each step's tasks are its
chunks, given as two associated INT task parameters, ``ChunkStart`` and ``ChunkEnd`` (core
specification, no extension needed); each task runs ``stylecomp render JOB --shot S --frames
A-B --progress json``. A sequential shot is one chunk, so one task renders it in order; its
retry walks the frames already written as cached. Host requirements ask for a GPU with the
model family's memory (or none, for CPU farms) and system memory. A template is validated with
openjd-model (decoded and instantiated) before it is written; ``openjd run`` runs it locally.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from openjd.model import (
    DecodeValidationError,
    create_job,
    decode_job_template,
    preprocess_job_parameters,
)
from openjd.model import (
    Job as OpenJDJob,
)

from ..errors import JobError, StyleCompError
from ..families import FAMILIES, Family
from ..io.atomic import atomic_target
from ..jobspec import Job
from ..render.output_guard import guard_outputs
from .chunks import DEFAULT_CHUNK_SIZE, ShotPlan, plan_shots

SPECIFICATION = "jobtemplate-2023-09"
MAX_TASKS = 1024  # the longest list a 2023-09 task parameter range may be
LOAD_SECONDS, FRAME_SECONDS = 600, 300  # a task's time limit: model loading plus this much a frame


def job_template(
    job: Job,
    job_path: str | os.PathLike[str],
    template_path: str | os.PathLike[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    gpu: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The template for ``job`` (read from ``job_path``), to be written at ``template_path``; refused (JobError)
    when an output would replace a file the job reads or, without ``overwrite``, one stylecomp did not write."""
    guard_outputs(job, overwrite=overwrite, where=os.fspath(job_path))
    plans = plan_shots(job, chunk_size=chunk_size)  # a job without a model stops here
    family = job.model.family  # type: ignore[union-attr]  # plan_shots refused a job without one
    return {
        "specificationVersion": SPECIFICATION,
        "name": f"stylecomp {_literal(Path(job_path).name)}"[:128],
        "parameterDefinitions": _parameters(Path(job_path), Path(template_path), gpu),
        "steps": [_step(plan, family, gpu, overwrite) for plan in plans],
    }


def write_job_template(
    template: dict[str, Any], job_path: str | os.PathLike[str], template_path: str | os.PathLike[str]
) -> None:
    """Validate ``job_template``'s template with openjd-model (StyleCompError) and write it as YAML, atomically."""
    instantiate(template, Path(template_path).resolve().parent, {"JobFile": os.path.abspath(job_path)})
    text = yaml.safe_dump(template, sort_keys=False, width=120)
    with atomic_target(template_path) as temp:
        Path(temp).write_text(text, encoding="utf-8")


def instantiate(template: dict[str, Any], template_dir: Path, values: dict[str, str]) -> OpenJDJob:
    """The OpenJD job ``template`` makes with parameter ``values``: openjd-model's validation, or StyleCompError."""
    try:
        decoded = decode_job_template(template=template, supported_extensions=[])
        parameters = preprocess_job_parameters(
            job_template=decoded,
            job_parameter_values=values,
            job_template_dir=template_dir,
            current_working_dir=Path.cwd(),
        )
        return create_job(job_template=decoded, job_parameter_values=parameters)
    except (DecodeValidationError, ValueError) as exc:
        raise StyleCompError(f"the OpenJD template is not valid: {exc}") from None


def _literal(text: str) -> str:
    """Text for a field OpenJD reads as a format string: ``{{`` would start an expression, so braces become ()."""
    return text.replace("{", "(").replace("}", ")")


def _parameters(job_path: Path, template_path: Path, gpu: bool) -> list[dict[str, Any]]:
    """JobFile (PATH, defaulting to the job when it sits under the template's folder), Stylecomp and Device."""
    job_file: dict[str, Any] = {
        "name": "JobFile",
        "type": "PATH",
        "objectType": "FILE",
        "dataFlow": "IN",
        "description": "The stylecomp job file (its relative paths resolve against its folder)",
    }
    relative = os.path.relpath(job_path.resolve(), template_path.resolve().parent)
    if not relative.startswith(os.pardir):  # OpenJD defaults may not leave the template's folder
        job_file["default"] = Path(relative).as_posix()
    return [
        job_file,
        {
            "name": "Stylecomp",
            "type": "STRING",
            "default": "stylecomp",
            "minLength": 1,
            "description": "The stylecomp executable on the worker (a name on its PATH, or a full path)",
        },
        {
            "name": "Device",
            "type": "STRING",
            "default": "cuda" if gpu else "cpu",
            "allowedValues": ["auto", "cuda", "mps", "cpu"],
            "description": "Where the model runs",
        },
    ]


def _step(plan: ShotPlan, family: Family, gpu: bool, overwrite: bool) -> dict[str, Any]:
    """One shot: its chunks as tasks, what a worker needs, and the render command."""
    name, chunks = plan.shot.name, plan.chunks
    if len(chunks) > MAX_TASKS:
        raise JobError(
            f"{len(chunks)} chunks: more than the {MAX_TASKS} tasks an OpenJD step may have; use a larger --chunk-size",
            name,
        )
    gpu_mib, memory_mib = FAMILIES[family].memory_mib
    amounts = [{"name": "amount.worker.memory", "min": memory_mib}]
    if gpu:
        amounts[:0] = [{"name": "amount.worker.gpu", "min": 1}, {"name": "amount.worker.gpu.memory", "min": gpu_mib}]
    order = "in order, as one task (sequential)" if plan.sequential else f"in chunks of up to {chunks[0].count}"
    return {
        "name": name,
        "description": f"{len(plan.frames)} frames {plan.frames[0]}-{plan.frames[-1]}, {order}",
        "parameterSpace": {
            "taskParameterDefinitions": [
                {"name": "ChunkStart", "type": "INT", "range": [chunk.first for chunk in chunks]},
                {"name": "ChunkEnd", "type": "INT", "range": [chunk.last for chunk in chunks]},
            ],
            "combination": "(ChunkStart, ChunkEnd)",
        },
        "hostRequirements": {"amounts": amounts},
        "script": {
            "actions": {
                "onRun": {
                    "command": "{{Param.Stylecomp}}",
                    "args": [
                        "render",
                        "{{Param.JobFile}}",
                        "--shot",
                        name,
                        "--frames",
                        "{{Task.Param.ChunkStart}}-{{Task.Param.ChunkEnd}}",
                        "--progress",
                        "json",
                        "--device",
                        "{{Param.Device}}",
                    ]
                    + (["--overwrite"] if overwrite else []),
                    "timeout": LOAD_SECONDS + FRAME_SECONDS * max(chunk.count for chunk in chunks),
                    # SIGTERM first: the render stops between denoising steps and keeps its finished frames.
                    "cancelation": {"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 30},
                }
            }
        },
    }
