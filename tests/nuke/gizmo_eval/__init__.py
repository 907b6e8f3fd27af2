"""A numpy interpreter for the node graph of a parsed gizmo, for the node classes the StyleComp gizmos use.

Needs tests/nuke_standin on sys.path (the script parser, expression language and class table).
"""

from .interpreter import evaluate

__all__ = ["evaluate"]
