"""Tests of blending the stylized plate back (stylecomp.comp)."""
