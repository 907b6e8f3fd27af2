"""Rendering a job: the frame loop, its cache, resume, candidates and the output guard."""
