"""Tests of per-object regions (stylecomp.regions)."""
