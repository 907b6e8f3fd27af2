"""Tests of plates, AOVs, sequences, Cryptomatte and normal spaces (stylecomp.io)."""
