"""Tests of the render loop, its output guard, cancel and performance settings (stylecomp.render)."""
