"""Tests of the built-in demo shot (stylecomp.demo)."""
