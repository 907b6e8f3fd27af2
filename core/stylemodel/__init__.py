"""stylecomp's own style model: the scenes it learns from, its looks, its architecture and its training.

The shipped weights (``SHIPPED_MODEL``) are what ``stylecomp model train-demo`` writes; they are the
default model of ``make demo``, the quality tests and the benchmarks.
"""

from pathlib import Path

SHIPPED_MODEL = Path(__file__).parent / "stylecomp-toon"
"""The trained model folder: SD 1.5 layout at f=1, ControlNets in ``controlnet_tile/`` and ``controlnet/`` (lines)."""
