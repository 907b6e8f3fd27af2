"""Diffusion models: loading (model files checked first), the pipeline pool, stylizing frames and the test models."""
