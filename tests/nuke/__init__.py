"""Tests of the Nuke plugin and gizmos, against the stand-in nuke module (nuke_plugin/, gizmos/)."""
