"""The Nuke node classes the StyleComp gizmos use: their knobs, enumeration values, inputs and layers.

Knob names are Nuke's scripting names (as in saved scripts and the Reference Guide's "Knob
(Scripting)" column). Only the knobs these gizmos may set are listed, plus those every node has.
"""

from __future__ import annotations

COMMON_KNOBS = frozenset(
    {
        "name",
        "inputs",
        "xpos",
        "ypos",
        "label",
        "help",
        "tile_color",
        "gl_color",
        "note_font",
        "note_font_size",
        "note_font_color",
        "disable",
        "selected",
        "hide_input",
        "cached",
        "postage_stamp",
        "onCreate",
        "knobChanged",
        "icon",
        "indicators",
        "dope_sheet",
    }
)
_MASKED = frozenset({"maskChannelMask", "maskChannelInput", "inject", "invert_mask", "fringe", "mix"})

KNOBS: dict[str, frozenset] = {
    "Gizmo": frozenset(),
    "Group": frozenset(),
    "Input": frozenset({"number"}),
    "Output": frozenset(),
    "Dot": frozenset(),
    "NoOp": frozenset(),
    "Switch": frozenset({"which"}),
    "Keymix": frozenset({"channels", "maskChannel", "invertMask", "mix", "bbox"}),
    "Merge2": _MASKED
    | {
        "operation",
        "bbox",
        "Achannels",
        "Bchannels",
        "output",
        "also_merge",
        "sRGB",
        "screen_alpha",
        "metainput",
        "rangeinput",
    },
    "Copy": _MASKED | {"from0", "to0", "from1", "to1", "from2", "to2", "from3", "to3", "channels", "bbox", "metainput"},
    "Dissolve": _MASKED | {"which", "channels"},
    "Expression": _MASKED | {f"{kind}{i}" for kind in ("temp_name", "temp_expr", "channel", "expr") for i in range(4)},
    "Remove": frozenset({"operation", "channels", "channels2", "channels3", "channels4"}),
    "Unpremult": frozenset({"channels", "alpha", "invert"}),
    "Premult": frozenset({"channels", "alpha", "invert"}),
    "Blur": _MASKED | {"channels", "size", "filter", "quality", "crop"},
    "ColorMatrix": _MASKED | {"channels", "matrix", "invert", "unpremult"},
    "Transform": frozenset(
        {
            "translate",
            "rotate",
            "scale",
            "skewX",
            "skewY",
            "skew_order",
            "center",
            "invert_matrix",
            "filter",
            "clamp",
            "black_outside",
            "motionblur",
            "shutter",
            "shutteroffset",
            "shuttercustomoffset",
        }
    ),
    "Shuffle": frozenset(
        {
            "in",
            "in2",
            "red",
            "green",
            "blue",
            "alpha",
            "black",
            "white",
            "red2",
            "green2",
            "blue2",
            "alpha2",
            "out",
            "out2",
        }
    ),
    "Write": frozenset(
        {
            "file",
            "proxy",
            "file_type",
            "channels",
            "colorspace",
            "raw",
            "premultiplied",
            "views",
            "use_limit",
            "first",
            "last",
            "reading",
            "checkHashOnRead",
            "on_error",
            "create_directories",
            "render_order",
            "beforeRender",
            "beforeFrameRender",
            "afterFrameRender",
            "afterRender",
            "version",
            "datatype",
            "compression",
            "heroview",
            "metadata",
            "interleave",
            "noprefix",
            "standard_layer_name_format",
            "write_full_layer_names",
            "truncateChannelNames",
            "autocrop",
        }
    ),
    "Read": frozenset(
        {
            "file",
            "proxy",
            "format",
            "proxy_format",
            "first",
            "before",
            "last",
            "after",
            "frame_mode",
            "frame",
            "origfirst",
            "origlast",
            "origset",
            "on_error",
            "reload",
            "colorspace",
            "raw",
            "premultiplied",
            "auto_alpha",
            "version",
        }
    ),
}

# Enumeration knobs whose values the gizmos set: the values Nuke accepts.
_BBOX3 = frozenset({"union", "B", "A"})
ENUMS: dict[tuple[str, str], frozenset] = {
    ("Merge2", "operation"): frozenset(
        {
            "atop",
            "average",
            "color-burn",
            "color-dodge",
            "conjoint-over",
            "copy",
            "difference",
            "disjoint-over",
            "divide",
            "exclusion",
            "from",
            "geometric",
            "hard-light",
            "hypot",
            "in",
            "mask",
            "matte",
            "max",
            "min",
            "minus",
            "multiply",
            "out",
            "over",
            "overlay",
            "plus",
            "screen",
            "soft-light",
            "stencil",
            "under",
            "xor",
        }
    ),
    ("Merge2", "bbox"): _BBOX3 | {"intersection"},
    ("Copy", "bbox"): _BBOX3 | {"intersection"},
    ("Keymix", "bbox"): _BBOX3,
    ("Remove", "operation"): frozenset({"remove", "keep"}),
    ("Blur", "filter"): frozenset({"box", "triangle", "quadratic", "gaussian"}),
    ("Transform", "filter"): frozenset(
        {"impulse", "cubic", "keys", "simon", "rifman", "mitchell", "parzen", "notch", "lanczos4", "lanczos6", "sinc4"}
    ),
    ("Read", "on_error"): frozenset({"error", "black", "checkerboard", "nearest frame"}),
    ("Read", "before"): frozenset({"hold", "loop", "bounce", "black"}),
    ("Read", "after"): frozenset({"hold", "loop", "bounce", "black"}),
    ("Write", "file_type"): frozenset({"exr", "png", "tiff", "jpeg", "dpx", "cin", "targa", "sgi", "mov"}),
    ("Write", "metadata"): frozenset(
        {"no metadata", "default metadata", "default metadata and exr/*", "all metadata except input/*", "all metadata"}
    ),
}
# Enumerations that depend on the Write's file_type.
WRITE_TYPE_ENUMS: dict[tuple[str, str], frozenset] = {
    ("exr", "datatype"): frozenset({"16 bit half", "32 bit float"}),
    ("exr", "compression"): frozenset(
        {
            "none",
            "Zip (1 scanline)",
            "Zip (16 scanlines)",
            "PIZ Wavelet (32 scanlines)",
            "RLE",
            "B44",
            "B44A",
            "DWAA",
            "DWAB",
        }
    ),
    ("png", "datatype"): frozenset({"8 bit", "16 bit"}),
    ("exr", "interleave"): frozenset({"channels, layers and views", "channels and layers", "channels"}),
}

# Knobs holding a channel set (a layer, none/all, or {chan -chan ...}) or one channel.
CHANNEL_SET_KNOBS = frozenset(
    {"channels", "Achannels", "Bchannels", "output", "in", "out", "channel0", "channel1", "channel2", "channel3"}
)
CHANNEL_KNOBS = frozenset({"maskChannel", "from0", "to0", "from1", "to1", "from2", "to2", "from3", "to3"})

# Nuke's own layers and their channels.
BUILTIN_LAYERS: dict[str, tuple[str, ...]] = {
    "rgba": ("rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"),
    "rgb": ("rgba.red", "rgba.green", "rgba.blue"),
    "alpha": ("rgba.alpha",),
    "depth": ("depth.Z",),
    "forward": ("forward.u", "forward.v"),
    "backward": ("backward.u", "backward.v"),
    "motion": ("forward.u", "forward.v", "backward.u", "backward.v"),
    "mask": ("mask.a",),
}

# Inputs a node needs connected: (required, most). Keymix: B, A, mask; Merge2/Copy: B, A (+ optional mask).
INPUTS: dict[str, tuple[int, int]] = {
    "Input": (0, 0),
    "Read": (0, 0),
    "Keymix": (3, 3),
    "Merge2": (2, 3),
    "Copy": (2, 3),
    "Dissolve": (2, 3),
}

# addUserKnob type codes (as Nuke writes them) and the knob classes they make.
USER_KNOB_TYPES = {
    1: "String_Knob",
    2: "File_Knob",
    3: "Int_Knob",
    4: "Enumeration_Knob",
    6: "Boolean_Knob",
    7: "Double_Knob",
    18: "Color_Knob",
    20: "Tab_Knob",
    22: "PyScript_Knob",
    26: "Text_Knob",
    41: "Link_Knob",
    43: "Multiline_Eval_String_Knob",
}

# Knobs of the root node that expressions may read.
ROOT_KNOBS = frozenset(
    {"name", "first_frame", "last_frame", "fps", "format", "colorManagement", "OCIO_config", "workingSpaceLUT"}
)


def default_inputs(cls: str) -> int:
    """How many inputs a node of ``cls`` takes from the stack when its script gives no ``inputs``."""
    return 0 if cls in ("Input", "Read", "Constant") else 1


def channel_kind(cls: str, knob: str) -> str | None:
    """ "set" for a channel-set knob, "channel" for a one-channel knob, None for any other knob."""
    if knob in CHANNEL_KNOBS or (knob == "alpha" and cls in ("Premult", "Unpremult")):
        return "channel"
    return "set" if knob in CHANNEL_SET_KNOBS else None


def knob_exists(cls: str, knob: str) -> bool:
    """Whether nodes of class ``cls`` have a knob called ``knob``."""
    return knob in COMMON_KNOBS or knob in KNOBS.get(cls, frozenset())
