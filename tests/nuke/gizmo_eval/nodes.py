"""Numpy models of the Nuke nodes the StyleComp gizmos are built from, one function per class.

Each takes the Evaluation and the parsed node and returns the node's output image. Input
numbering follows Nuke: Merge2/Copy/Keymix input 0 is B, input 1 is A, Keymix input 2 the mask.
"""

from __future__ import annotations

import math

import numpy as np

from tests.nuke import nkscript
from tests.nuke.nkscript import nkexpr

BLUR_SIZE_PER_SIGMA = 2.4  # size is the diameter, sigma = size / 2.4: openfx-misc CImg/Blur/CImgBlur.cpp (Natron)
BLUR_EXTENT = 1.5  # taps reach 1.5 * size (3.6 sigma) each side
RGB = ("rgba.red", "rgba.green", "rgba.blue")
FRAME_NAMES = ("frame", "t")  # the frame in any Nuke expression (nuke.expr's documentation; 'x' too outside pixels)
PIXEL_NAMES = ("x", "y")  # the pixel's position in an Expression node: not modelled here
_SHORT = {"r": "rgba.red", "g": "rgba.green", "b": "rgba.blue", "a": "rgba.alpha"}


def passthrough(ev, node) -> dict:
    """Output, Dot, NoOp: input 0 unchanged."""
    return ev.input(node, 0)


def input_node(ev, node) -> dict:
    """An Input (or a Read): the image given for it by name, black when unconnected (or not given)."""
    return dict(ev.inputs.get(node.name, {}))


def switch(ev, node) -> dict:
    """Switch: input ``which``, clamped to the inputs there are."""
    which = int(ev.scalar(node, "which", 0.0))
    return ev.input(node, min(max(which, 0), len(node.inputs) - 1))


def copy(ev, node) -> dict:
    """Copy: B with channel to0..to3 replaced by A's from0..from3, and A's ``channels`` (a channel set: all, a
    layer) copied as they are."""
    b, a = ev.input(node, 0), ev.input(node, 1)
    for i in range(4):
        source = ev.text(node, f"from{i}", "rgba.alpha" if i == 0 else "none")
        target = ev.text(node, f"to{i}", "rgba.alpha" if i == 0 else "none")
        if source != "none" and target != "none":
            b[target] = ev.plane(a, source)
    for channel in ev.channel_set(ev.text(node, "channels", "none").strip("{}"), a):
        b[channel] = ev.plane(a, channel)
    return b


def remove(ev, node) -> dict:
    """Remove: drop ``channels`` (operation remove, the default) or keep only them (keep)."""
    image = ev.input(node, 0)
    listed = set(ev.channel_set(ev.text(node, "channels", "all").strip("{}"), image))
    keep = ev.text(node, "operation", "remove") == "keep"
    return {channel: plane for channel, plane in image.items() if (channel in listed) == keep}


def shuffle(ev, node) -> dict:
    """Shuffle (the legacy class): the ``in`` layer's channels into the ``out`` layer's, in order; ``in none``
    gives black. Per-channel routing (the red/green/blue/alpha knobs) is not modelled."""
    if any(ev.word(node, knob) is not None for knob in ("red", "green", "blue", "alpha", "in2", "out2")):
        raise NotImplementedError(f"{node.name}: only Shuffle's in/out are modelled")
    image = ev.input(node, 0)
    sources = ev.channel_set(ev.text(node, "in", "rgba"), image)
    for i, target in enumerate(ev.channel_set(ev.text(node, "out", "rgba"), image)):
        image[target] = ev.plane(image, sources[i]) if i < len(sources) else np.zeros(ev.shape, np.float32)
    return image


def dissolve(ev, node) -> dict:
    """Dissolve: input 0 * (1 - which) + input 1 * which on ``channels`` (which clamped to 0..1); every other
    channel is input 0's, as a Merge keeps B's."""
    first, second = ev.input(node, 0), ev.input(node, 1)
    which = np.float32(min(max(ev.scalar(node, "which", 0.0), 0.0), 1.0))
    out = dict(first)
    for channel in ev.channel_set(ev.text(node, "channels", "all"), {**first, **second}):
        out[channel] = (ev.plane(first, channel) * (1 - which) + ev.plane(second, channel) * which).astype(np.float32)
    return out


def expression(ev, node) -> dict:
    """Expression: temps, then expr0..3 into channel0..3, every expression reading the input pixel."""
    image = ev.input(node, 0)
    variables: dict = {}

    def resolve(name: str):
        if name in variables:
            return variables[name]
        if name in FRAME_NAMES:
            return ev.frame
        if name in PIXEL_NAMES:
            raise NotImplementedError(f"{node.name}: the pixel position {name!r} is not modelled")
        if name in _SHORT:
            return ev.plane(image, _SHORT[name])
        head = name.partition(".")[0]
        if head == "parent" or ev.gizmo.node(head) is not None:
            return ev.resolve(name)
        return ev.plane(image, name)  # a layer.channel of the input

    def run(text: str):
        value = nkexpr.evaluate(nkexpr.parse(nkscript.tcl_substitute(text, ev.tcl_value)), resolve)
        return value if isinstance(value, np.ndarray) else np.full(ev.shape, value, np.float32)

    for i in range(4):
        name, text = ev.text(node, f"temp_name{i}", ""), ev.text(node, f"temp_expr{i}", "")
        if name in FRAME_NAMES + PIXEL_NAMES + tuple(_SHORT):
            raise ValueError(f"{node.name}: temporary {name!r} has a meaning in Nuke's expressions already")
        if name:
            variables[name] = run(text)
    out = dict(image)
    defaults = (
        "{rgba.red -rgba.green -rgba.blue none}",
        "{-rgba.red rgba.green -rgba.blue none}",
        "{-rgba.red -rgba.green rgba.blue none}",
        "alpha",
    )
    for i in range(4):
        channels = ev.channel_set(ev.text(node, f"channel{i}", defaults[i]).strip("{}"), image)
        if channels:
            value = run(ev.text(node, f"expr{i}", "0") or "0")
            for channel in channels:
                out[channel] = value
    return out


def premult(ev, node) -> dict:
    """Premult: channels times alpha."""
    image = ev.input(node, 0)
    alpha = ev.plane(image, ev.text(node, "alpha", "rgba.alpha"))
    for channel in ev.channel_set(ev.text(node, "channels", "rgb"), image):
        image[channel] = ev.plane(image, channel) * alpha
    return image


def unpremult(ev, node) -> dict:
    """Unpremult: channels divided by alpha where alpha is not 0, untouched where it is."""
    image = ev.input(node, 0)
    alpha = ev.plane(image, ev.text(node, "alpha", "rgba.alpha"))
    covered = alpha != 0
    safe = np.where(covered, alpha, np.float32(1))
    with np.errstate(over="ignore"):
        for channel in ev.channel_set(ev.text(node, "channels", "rgb"), image):
            value = ev.plane(image, channel)
            image[channel] = np.where(covered, value / safe, value)
    return image


def color_matrix(ev, node) -> dict:
    """ColorMatrix: rgb' = M rgb (float32 coefficients)."""
    image = ev.input(node, 0)
    rows = [
        [np.float32(float(word.text)) for word in nkscript.words(row.text)]
        for row in nkscript.words(ev.word(node, "matrix").text)
    ]
    rgb = [ev.plane(image, channel) for channel in RGB]
    for channel, row in zip(RGB, rows, strict=True):
        image[channel] = row[0] * rgb[0] + row[1] * rgb[1] + row[2] * rgb[2]
    return image


_MERGE = {
    "plus": lambda a, b, aa: a + b,
    "from": lambda a, b, aa: b - a,
    "minus": lambda a, b, aa: a - b,
    "multiply": lambda a, b, aa: a * b,
    "over": lambda a, b, aa: a + b * (1 - aa),
}


def merge2(ev, node) -> dict:
    """Merge2: ``operation`` of A's Achannels and B's Bchannels into ``output`` (other channels from B)."""
    b, a = ev.input(node, 0), ev.input(node, 1)
    operation = _MERGE[ev.text(node, "operation", "over")]
    a_channels = ev.channel_set(ev.text(node, "Achannels", "rgba"), a)
    b_channels = ev.channel_set(ev.text(node, "Bchannels", "rgba"), b)
    a_alpha = ev.plane(a, "rgba.alpha")
    out = dict(b)
    outputs = ev.channel_set(ev.text(node, "output", "rgba"), b)
    # The sets may differ in length (an rgba A into an rgb output): pairs stop at the shortest set.
    for a_channel, b_channel, target in zip(a_channels, b_channels, outputs, strict=False):
        out[target] = operation(ev.plane(a, a_channel), ev.plane(b, b_channel), a_alpha).astype(np.float32)
    return out


def keymix(ev, node) -> dict:
    """Keymix as Foundry's NDK example Keymix.cpp has it: A where m >= 1, B where m <= 0, B + (A - B) * m between.

    ``m`` is the mask channel (``1 - mask`` when ``invertMask``) times ``mix``: the product is
    what is clamped, and a NaN ``m`` fails both tests, so it selects A. Only ``channels`` that A
    has are changed (``_validate``: ``outchans &= input1().channels()``); every other channel,
    alpha included when A has none, is B's. Source: the NDK reference's examples/Keymix.cpp
    (https://learn.foundry.com/nuke/developers/16.0/ndkreference/examples/Keymix.cpp).
    """
    b, a, mask = ev.input(node, 0), ev.input(node, 1), ev.input(node, 2)
    m = ev.plane(mask, ev.text(node, "maskChannel", "rgba.alpha"))
    if ev.scalar(node, "invertMask", 0.0):
        m = 1 - m
    m = (m * np.float32(ev.scalar(node, "mix", 1.0))).astype(np.float32)
    out = dict(b)
    for channel in ev.channel_set(ev.text(node, "channels", "all"), {**a, **b}):
        if channel not in a:
            continue
        a_value, b_value = ev.plane(a, channel), ev.plane(b, channel)
        with np.errstate(invalid="ignore"):
            between = np.where(m < 1, b_value * (1 - m) + a_value * m, a_value)
            out[channel] = np.where(m <= 0, b_value, between).astype(np.float32)
    return out


def blur(ev, node) -> dict:
    """Blur (gaussian): separable, sigma = size / 2.4, taps to 1.5 * size, edges repeated."""
    image = ev.input(node, 0)
    size = ev.scalar(node, "size", 0.0)
    if ev.text(node, "filter", "gaussian") != "gaussian":
        raise NotImplementedError("only the gaussian Blur filter is modelled")
    if ev.scalar(node, "quality", 15.0) < size:
        raise NotImplementedError("a Blur with quality below its size blurs a downscaled copy; not modelled")
    if size == 0:
        return image
    radius = max(1, math.ceil(BLUR_EXTENT * size))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / (size / BLUR_SIZE_PER_SIGMA)) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    for channel in ev.channel_set(ev.text(node, "channels", "rgba"), image):
        value = ev.plane(image, channel)
        for axis in (0, 1):
            padded = np.pad(value, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
            result = np.zeros_like(value)
            for offset, weight in enumerate(kernel):
                window = [slice(None), slice(None)]
                window[axis] = slice(offset, offset + value.shape[axis])
                result += weight * padded[tuple(window)]
            value = result
        image[channel] = value
    return image


def transform(ev, node) -> dict:
    """Transform by whole pixels with the impulse filter; outside the image repeats its edge unless black_outside."""
    image = ev.input(node, 0)
    tx, ty = ev.scalars(node, "translate") or [0.0, 0.0]
    if ev.text(node, "filter", "cubic") != "impulse" or tx != int(tx) or ty != int(ty):
        raise NotImplementedError("only whole-pixel translations with the impulse filter are modelled")
    if any(ev.word(node, knob) is not None for knob in ("rotate", "scale", "skewX", "skewY")):
        raise NotImplementedError("only translations are modelled")
    edge = ev.scalar(node, "black_outside", 1.0) == 0
    height, width = ev.shape
    rows = np.arange(height) + int(ty)  # Nuke's y runs up: moving up by ty reads the row ty below
    cols = np.arange(width) - int(tx)
    inside = ((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :]
    rows, cols = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
    for channel in list(image):
        moved = image[channel][rows][:, cols]
        image[channel] = moved if edge else np.where(inside, moved, np.float32(0))
    return image


OPERATIONS = {
    "Input": input_node,
    "Read": input_node,
    "Output": passthrough,
    "Dot": passthrough,
    "NoOp": passthrough,
    "Switch": switch,
    "Remove": remove,
    "Shuffle": shuffle,
    "Dissolve": dissolve,
    "Copy": copy,
    "Expression": expression,
    "Premult": premult,
    "Unpremult": unpremult,
    "ColorMatrix": color_matrix,
    "Merge2": merge2,
    "Keymix": keymix,
    "Blur": blur,
    "Transform": transform,
}
