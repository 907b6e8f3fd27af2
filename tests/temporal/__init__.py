"""Tests of flicker metrics (stylecomp.temporal)."""
