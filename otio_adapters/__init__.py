"""stylecomp_otio: the OpenTimelineIO side of stylecomp (timeline -> jobs, conform back).

The adapter plugin itself arrives with the editorial work; this package reserves the import
name ``stylecomp_otio`` that pyproject.toml maps to this folder.
"""
