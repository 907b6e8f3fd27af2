"""Evaluate a gizmo's node graph on numpy images, node by node, with Nuke's semantics as modelled here.

Images are dicts of channel name (``rgba.red``, ``depth.Z``, ``other.id``) -> float32 (H, W) planes,
rows running down as EXR stores them. A missing channel reads as black, as in Nuke. All inputs are
placed on the union of their data windows first, black outside each one: the model of Nuke's
``bbox union`` on every merge and of the black border Nuke's Read gives a data window. Filters repeat
the edge pixels of that union window, as Nuke repeats the edges of a bounding box.
"""

from __future__ import annotations

import numpy as np

from tests.nuke import nkscript
from tests.nuke.nkscript import nkexpr, node_classes

from . import nodes
from .windows import place, union


class Evaluation:
    """One evaluation of a gizmo: its knob values, its inputs on one window, results per node."""

    def __init__(
        self, gizmo: nkscript.Gizmo, inputs: dict, knobs: dict, shape: tuple, root: dict, frame: float
    ) -> None:
        self.gizmo, self.inputs, self.shape, self.root, self.frame = gizmo, inputs, shape, root, frame
        self.layers = {layer[0]: tuple(layer[1:]) for layer in gizmo.layers}
        self.user = {knob.name: knob for knob in gizmo.group.user_knobs}
        self.values: dict = {}
        self.overrides: dict = {}  # (node name, knob) -> Word, from knobs that link into the graph
        for name, word in gizmo.group.knobs.items():
            if name in self.user:
                self.values[name] = _literal(word)
        for name, value in knobs.items():
            spec = self.user.get(name)
            if spec is None:
                raise KeyError(f"the gizmo has no knob {name!r}")
            if spec.type == 41:
                node, knob = spec.target.rsplit(".", 1)
                self.overrides[(node, knob)] = nkscript.Word(str(value), "bare")
            else:
                self.values[name] = value
        self._results: dict = {}

    # Knob values ---------------------------------------------------------------------------

    def user_value(self, name: str):
        """A user knob's value as an expression sees it: enumerations as their index, booleans as 0/1."""
        spec = self.user[name]
        value = self.values.get(name)
        if spec.type == 4:
            return float(spec.items.index(value) if value is not None else 0)
        if spec.type == 6:
            return float(value in (True, "true", "1", 1))
        if spec.type == 18:
            return tuple(float(v) for v in value) if value is not None else (0.0, 0.0, 0.0)
        if spec.type in (1, 2, 43):
            return "" if value is None else str(value)
        return float(value if value is not None else 0.0)

    def word(self, node: nkscript.Node, knob: str) -> nkscript.Word | None:
        """The knob as written in the gizmo, or as overridden through a link knob."""
        return self.overrides.get((node.name, knob), node.knobs.get(knob))

    def scalar(self, node: nkscript.Node, knob: str, default: float) -> float:
        """A numeric knob's value, its expression evaluated."""
        values = self.scalars(node, knob)
        return values[0] if values else default

    def scalars(self, node: nkscript.Node, knob: str) -> list:
        word = self.word(node, knob)
        if word is None:
            return []
        return [
            float(nkexpr.evaluate(nkexpr.parse(nkscript.tcl_substitute(text, self.tcl_value)), self.resolve))
            if is_expression
            else _number(text)
            for text, is_expression in nkscript.value_items(word)
        ]

    def text(self, node: nkscript.Node, knob: str, default: str) -> str:
        word = self.word(node, knob)
        return default if word is None else word.text

    def resolve(self, name: str):
        """A name in a knob expression: ``frame``/``t``/``x`` (the frame), ``parent.knob[.c]`` or ``Node.knob``."""
        if name in ("frame", "t", "x"):
            return self.frame
        head, _, rest = name.partition(".")
        knob, _, component = rest.partition(".")
        if head == "parent":
            value = self.user_value(knob)
            return value["rgba".index(component)] if component else value
        node = self.gizmo.node(head)
        if node is None:
            raise nkexpr.ExpressionError(f"unknown name {name!r}")
        return self.scalar(node, knob, 0.0)

    def tcl_value(self, path: str) -> str:
        """What ``[value path]`` gives: user knobs of the gizmo (``parent.x``) as written, root knobs as given."""
        head, _, knob = path.partition(".")
        if head == "root":
            return str(self.root[knob])
        if head != "parent":
            raise KeyError(f"[value {path}]: only parent and root knobs are modelled")
        value = self.values.get(knob)
        return "" if value is None else str(value)

    # Channels --------------------------------------------------------------------------------

    def channel_set(self, text: str, image: dict) -> list:
        """The channels a channel-set knob names: a layer, all, none, or ``{chan -chan ...}``."""
        if text == "all":
            return sorted(image)
        if text == "none":
            return []
        if " " in text.strip():
            return [word.text for word in nkscript.words(text) if word.text != "none" and not word.text.startswith("-")]
        if text in node_classes.BUILTIN_LAYERS:
            return list(node_classes.BUILTIN_LAYERS[text])
        if text in self.layers:
            return list(self.layers[text])
        if "." in text:
            return [text]
        raise KeyError(f"unknown channel set {text!r}")

    def plane(self, image: dict, channel: str) -> np.ndarray:
        return image.get(channel, np.zeros(self.shape, np.float32))

    # Graph -------------------------------------------------------------------------------------

    def image(self, node: nkscript.Node) -> dict:
        """The output of ``node`` (computed once)."""
        if id(node) not in self._results:
            if self.word(node, "disable") is not None and self.scalar(node, "disable", 0.0):
                result = self.input(node, 0)
            else:
                operation = nodes.OPERATIONS.get(node.cls)
                if operation is None:
                    raise NotImplementedError(f"no model of Nuke's {node.cls} node")
                result = operation(self, node)
            self._results[id(node)] = result
        return self._results[id(node)]

    def input(self, node: nkscript.Node, index: int) -> dict:
        """Input ``index`` of a node; an unconnected input is black."""
        source = node.inputs[index] if index < len(node.inputs) else None
        return dict(self.image(source)) if source is not None else {}


def _number(text: str) -> float:
    """A literal knob value as a number (booleans are written true/false)."""
    return {"true": 1.0, "false": 0.0}[text] if text in ("true", "false") else float(text)


def _literal(word: nkscript.Word):
    items = nkscript.value_items(word)
    return items[0][0] if len(items) == 1 else tuple(text for text, _ in items)


ACES_ROOT = {"colorManagement": "OCIO", "OCIO_config": "aces_1.2", "workingSpaceLUT": "ACES - ACEScg"}
"""The root knobs of a script colour-managed with an ACES config (Nuke's Project Settings > Color)."""


def evaluate(
    gizmo: nkscript.Gizmo, inputs: dict, knobs: dict | None = None, root: dict | None = None, frame: float = 1001.0
) -> tuple:
    """The gizmo's output over the union window of its inputs: (channels dict, Window).

    ``inputs`` maps an Input (or Read) node's name to (channels dict, Window); ``knobs`` sets user knobs
    (enumerations by item name; link knobs set the knob they link to); ``root`` gives the root
    knobs ``[value root.x]`` reads (ACES_ROOT by default); ``frame`` is what ``frame`` and ``t`` give.
    """
    window = union([box for _, box in inputs.values()])
    placed = {
        name: {channel: place(plane, box, window) for channel, plane in channels.items()}
        for name, (channels, box) in inputs.items()
    }
    evaluation = Evaluation(gizmo, placed, knobs or {}, (window.height, window.width), root or ACES_ROOT, frame)
    output = next(node for node in gizmo.nodes if node.cls == "Output")
    return evaluation.image(output), window
