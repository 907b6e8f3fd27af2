"""Tests of model loading, adapters, conditioning, consistency and resolution (stylecomp.diffusion)."""
