"""stylecomp's own generators, registered as the ``diffusers`` generator plugin (see ``interface``).

They live apart from ``interface`` so that the interface imports no generator: ``image`` and
``video`` import the interface, and only this module imports them.
"""

from __future__ import annotations

from .interface import Generator, Setup


def diffusers(setup: Setup) -> Generator:
    """stylecomp's own generators (registered as ``diffusers``): SD 1.5/SDXL/Flux stills, Wan/LTX/CogVideoX clips."""
    # Each imported when asked for: a still job need not import the video pipelines, nor a clip job the image ones.
    if setup.kind == "image_to_video":
        from .video import VideoGenerator

        return VideoGenerator(setup)
    from .image import ImageGenerator

    return ImageGenerator(setup)
