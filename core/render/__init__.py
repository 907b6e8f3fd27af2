"""Rendering a job: the frame loop, its cache, resume, candidates, the output guard and the headless comp."""
