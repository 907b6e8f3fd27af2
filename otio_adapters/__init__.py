"""stylecomp_otio: stylecomp's OpenTimelineIO plugin package (editorial timelines to jobs and back).

Registered through the ``opentimelineio.plugins`` entry point with ``plugin_manifest.json``:
the adapter ``stylecomp_jobs`` (job documents as timelines, timelines as jobs) and the media
linker ``stylecomp_plates`` (clip names to plate paths through a template). The CLI's
``stylecomp timeline jobs`` and ``stylecomp timeline conform`` use `timeline_to_job` and
`conform` directly.
"""
