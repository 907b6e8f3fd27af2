"""Diffusion models: loading, the pipeline pool, stylizing frames, conditioning and the test models."""
