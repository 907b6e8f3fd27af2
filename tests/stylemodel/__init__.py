"""Tests of the built-in style model (stylecomp.stylemodel)."""
