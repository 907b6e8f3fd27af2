"""The job document (stylecomp.jobspec, version 1) built from a StyleCompStylize node's knobs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import nuke

CONSISTENCY_MODES = (
    "none",
    "locked_seed",
    "warped_noise",
    "cross_frame",
    "latent_fusion",
    "pixel_fusion",
    "keyframes",
    "warped_noise+latent_fusion+pixel_fusion",
)  # a mode is one mechanism, or several joined by "+"
JOB_VERSION = 1
NUKE_DEFAULT_LINEAR = "Linear Rec.709 (sRGB)"  # nuke-default's "linear", named as the engine's OCIO config names it


@dataclass(frozen=True)
class Look:
    """The knobs that decide how a shot is stylized."""

    prompt: str
    negative_prompt: str
    strength: float
    steps: int
    guidance: float
    seed: int
    consistency: str
    keyframe_interval: int
    fusion_strength: float
    latent_fusion_steps: float
    plate_change_tolerance: float
    candidate_count: int
    plate_space: str


def read_look(node) -> Look:
    """The look knobs of a StyleCompStylize node."""
    return Look(
        prompt=node["prompt"].value(),
        negative_prompt=node["negative_prompt"].value(),
        strength=float(node["strength"].value()),
        steps=int(node["steps"].value()),
        guidance=float(node["guidance"].value()),
        seed=int(node["seed"].value()),
        consistency=node["consistency"].value(),
        keyframe_interval=int(node["keyframe_interval"].value()),
        fusion_strength=float(node["fusion_strength"].value()),
        latent_fusion_steps=float(node["latent_fusion_steps"].value()),
        plate_change_tolerance=float(node["plate_change_tolerance"].value()),
        candidate_count=max(1, int(node["candidate_count"].value())),
        plate_space=node["plate_space"].value().strip() or working_space(),
    )


def working_space() -> str:
    """The script's working space (Project Settings > Color), which the internal Write writes untouched (raw),
    named as the engine's config knows it: nuke-default's ``linear`` is linear Rec.709; an OCIO working space
    (``ACEScg``, ``ACES - ACEScg``, the ``scene_linear`` role) goes by its own name."""
    root = nuke.root()
    space = root["workingSpaceLUT"].value().strip()
    if root["colorManagement"].value() == "Nuke" or space.lower() in ("", "linear"):
        return NUKE_DEFAULT_LINEAR
    return space


def build_job(
    *,
    shot: str,
    plate: str,
    output: str,
    frames: tuple,
    handles: int,
    aovs: dict,
    model: dict,
    look: Look,
    notes: list,
    regions: list,
) -> dict:
    """One-shot job: consistency ``none`` gives every frame its own seed, any other mode one fixed seed;
    ``regions`` (the regions table, stylecomp.jobspec.Region as dicts) become the shot's."""
    mechanisms = [] if look.consistency == "none" else look.consistency.split("+")
    job = {
        "version": JOB_VERSION,
        "shots": [
            {
                "name": shot,
                "plate": plate,
                "frames": {"first": int(frames[0]), "last": int(frames[1])},
                "handles": int(handles),
                "aovs": aovs,
                "output": output,
                "notes": list(notes),
                **({"regions": list(regions)} if regions else {}),
            }
        ],
        "model": model,
        "prompt": look.prompt,
        "negative_prompt": look.negative_prompt,
        "seed": {"policy": "per_frame" if look.consistency == "none" else "fixed", "value": look.seed},
        "strength": look.strength,
        "steps": look.steps,
        "guidance": look.guidance,
        "consistency": {
            "mechanisms": mechanisms,
            "keyframe_interval": look.keyframe_interval,
            "fusion_strength": look.fusion_strength,
            "latent_fusion_steps": look.latent_fusion_steps,
            "plate_change_tolerance": look.plate_change_tolerance,
        },
        "candidates": {"count": look.candidate_count, "seed_stride": 1},
    }
    if look.plate_space:
        job["color"] = {"plate_space": look.plate_space}
    return job


def dumps(job: dict) -> str:
    """The job as the JSON text written to the cache folder."""
    return json.dumps(job, indent=2) + "\n"
