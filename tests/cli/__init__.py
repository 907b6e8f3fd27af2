"""Tests of the stylecomp command line (stylecomp.cli)."""
