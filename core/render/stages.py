"""The one place a host builds a shot's stylize stage, so every host renders a shot with the same settings."""

from __future__ import annotations

from ..diffusion.pool import PipelinePool
from ..diffusion.stylize import StylizeParameters, StylizeStage
from ..jobspec import Job, Shot


def stylize_stage(job: Job, shot: Shot, pool: PipelinePool) -> StylizeStage:
    """The stylize stage for ``shot``: its parameters, the job's model encoding and performance settings."""
    return StylizeStage(StylizeParameters.for_shot(job, shot), job.color.model_encoding(), pool, job.performance)
