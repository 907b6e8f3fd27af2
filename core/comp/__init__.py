"""Compositing: blending the stylized result over the plate, and the headless comp."""
