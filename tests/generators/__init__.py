"""Tests of ideation, animatic and hosted video generators (stylecomp.generators)."""
