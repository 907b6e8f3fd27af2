"""A numpy interpreter for the node graph of a parsed gizmo, for the node classes the StyleComp gizmos use.

Gizmos are parsed with tests.nuke.nkscript (the script parser, expression language and class table).
"""

from .interpreter import evaluate

__all__ = ["evaluate"]
