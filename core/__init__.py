"""stylecomp: diffusion stylization of scene-linear EXR render plates for compositing."""

__version__ = "0.2.0"
