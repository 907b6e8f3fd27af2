"""Tests of the OpenTimelineIO adapter and timeline jobs (stylecomp_otio)."""
