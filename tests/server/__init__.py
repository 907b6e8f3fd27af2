"""Tests of the engine server (stylecomp.server)."""
