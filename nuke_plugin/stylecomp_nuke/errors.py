"""The plugin's one error type: a problem the artist can fix, shown on the node and in a message."""


class StyleCompNukeError(Exception):
    """A user-facing problem (missing engine, bad preset, unconnected input, ...), one sentence or two."""
