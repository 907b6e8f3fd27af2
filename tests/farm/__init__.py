"""Tests of batches, OpenJD and Ray (stylecomp.farm)."""
