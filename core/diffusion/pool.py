"""Loaded diffusion pipelines, kept so that shots and jobs sharing a model load it once.

Loading takes longer than stylizing a frame; the render loop, candidates and the engine
server all take their pipelines from a pool keyed by the model settings, device and dtype.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline

from ..jobspec import ModelSettings, Performance
from .loading import load_pipeline, pick_device, pick_dtype

_AT_LOAD = {"compile", "channels_last", "vae_bfloat16"}  # the Performance settings a pipeline is loaded with


class PipelinePool:
    """Pipelines by (model settings, how they run, device, dtype); ``loads`` counts how many were really loaded."""

    def __init__(self, device: str | None = None, dtype: torch.dtype | None = None) -> None:
        self.device = device or pick_device()
        self.dtype = dtype or pick_dtype(self.device)
        self.loads = 0
        self._pipelines: dict[str, DiffusionPipeline] = {}

    def get(self, settings: ModelSettings, performance: Performance | None = None) -> DiffusionPipeline:
        """The pipeline for ``settings`` (absolute paths), loading it on first use, set up as ``performance`` says
        (compiled, memory layout; see ``loading.load_pipeline``)."""
        key = settings.model_dump_json()
        if performance is not None:
            key += performance.model_dump_json(include=_AT_LOAD)
        if key not in self._pipelines:
            self._pipelines[key] = load_pipeline(settings, self.device, self.dtype, performance)
            self.loads += 1
        return self._pipelines[key]

    def clear(self) -> None:
        """Drop every pipeline (and its GPU memory)."""
        self._pipelines.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
