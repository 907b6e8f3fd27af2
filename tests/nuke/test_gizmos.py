"""The .gizmo files parse, use only known node classes and knobs, are wired, and reference what exists.

Also checks the contract between StyleCompStylize.gizmo and the plugin (node names, file patterns,
knobs the plugin reads, buttons that call plugin functions).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from tests.nuke import nkscript
from tests.nuke.nkscript import nkexpr, node_classes
from tests.nuke.stylize_node import GIZMOS_FOLDER, PLUGIN_FOLDER

GIZMOS = sorted((GIZMOS_FOLDER).glob("*.gizmo"))
PLUGIN = PLUGIN_FOLDER / "stylecomp_nuke"
SHORT_CHANNELS = {"r", "g", "b", "a"}
TCL_PLACEHOLDER = "1"
RESERVED_NAMES = {"frame", "t", "x", "y", "r", "g", "b", "a", "pi"}
"""Names Nuke's expressions already give a meaning: 'frame', 't' and 'x' are the frame, 'y' the curve's value
(nuke.expr, https://learn.foundry.com/nuke/developers/150/pythondevguide/_autosummary/nuke.expr.html); in an
Expression node x, y are the pixel and r, g, b, a its channels. A temporary with one of these names is ambiguous."""


def _layers(gizmo: nkscript.Gizmo) -> dict[str, tuple[str, ...]]:
    return {**node_classes.BUILTIN_LAYERS, **{layer[0]: tuple(layer[1:]) for layer in gizmo.layers}}


def _channel_problems(gizmo: nkscript.Gizmo, where: str, knob: str, kind: str, text: str) -> list[str]:
    layers = _layers(gizmo)
    channels = {channel for members in layers.values() for channel in members}
    if kind == "channel":
        return [] if text in channels | {"none"} else [f"{where}: {knob} names unknown channel {text!r}"]
    tokens = [word.text.lstrip("-") for word in nkscript.words(text)] if " " in text else [text]
    return [
        f"{where}: {knob} names unknown channels {token!r}"
        for token in tokens
        if token not in layers and token not in channels and token not in ("none", "all")
    ]


def _name_problems(gizmo: nkscript.Gizmo, where: str, name: str, pixel: bool, temps: set[str]) -> list[str]:
    """Whether a name an expression reads exists: a parent knob, root knob, node knob, or (pixel) a channel."""
    head, _, rest = name.partition(".")
    knob, _, component = rest.partition(".")
    if name in temps or (pixel and name in SHORT_CHANNELS) or name in ("frame", "t", "pi"):
        return []
    if head == "parent" or (head == "this" and not pixel):  # this: the gizmo's own knob, in its knobs' expressions
        spec = gizmo.group.user_knob(knob)
        if spec is None:
            return [f"{where}: reads parent.{knob}, which the gizmo does not have"]
        if component and (spec.type != 18 or component not in "rgb"):
            return [f"{where}: reads {name}, but {knob} has no component {component!r}"]
        return []
    if head == "root":
        return [] if knob in node_classes.ROOT_KNOBS else [f"{where}: reads root.{knob}, which is not a root knob"]
    node = gizmo.node(head)
    if node is not None:
        return [] if node_classes.knob_exists(node.cls, knob) else [f"{where}: reads {name}, {node.cls} has no {knob}"]
    if pixel and name in {channel for members in _layers(gizmo).values() for channel in members}:
        return []
    return [f"{where}: reads {name!r}, which is neither a knob nor a channel"]


def _expression_problems(gizmo: nkscript.Gizmo, where: str, text: str, pixel: bool, temps: set[str]) -> list[str]:
    problems = [
        f"{where}: [value {path}] reads nothing that exists"
        for path in nkscript.tcl_references(text)
        if _name_problems(gizmo, where, path, False, set())
    ]
    try:
        tree = nkexpr.parse(nkscript.tcl_substitute(text, lambda path: TCL_PLACEHOLDER))
    except (nkexpr.ExpressionError, nkscript.ScriptError) as exc:
        return [*problems, f"{where}: expression {text!r} does not parse: {exc}"]
    for name in sorted(nkexpr.names(tree)):
        problems += _name_problems(gizmo, where, name, pixel, temps)
    return problems + [
        f"{where}: calls {name}(), which is not a Nuke expression function"
        for name in sorted(nkexpr.functions(tree) - set(nkexpr.FUNCTIONS))
    ]


def _user_knob_problems(gizmo: nkscript.Gizmo) -> list[str]:
    problems, names = [], set()
    for spec in gizmo.group.user_knobs:
        where = f"{gizmo.group.cls}.{spec.name}"
        if spec.type not in node_classes.USER_KNOB_TYPES:
            problems.append(f"{where}: unknown addUserKnob type {spec.type}")
        if spec.name in names:
            problems.append(f"{where}: defined twice")
        names.add(spec.name)
        if spec.type == 41:
            node_name, _, knob = (spec.target or "").rpartition(".")
            node = gizmo.node(node_name)
            if node is None or not node_classes.knob_exists(node.cls, knob):
                problems.append(f"{where}: links to missing {spec.target}")
        if spec.type == 22:
            try:
                compile(spec.target or "", where, "exec")
            except SyntaxError as exc:
                problems.append(f"{where}: PyScript does not compile: {exc}")
        if spec.type == 4 and spec.name in gizmo.group.knobs:
            value = gizmo.group.knobs[spec.name].text
            if value not in spec.items:
                problems.append(f"{where}: value {value!r} is not one of {spec.items}")
        if spec.type in (3, 7) and spec.name in gizmo.group.knobs:
            for text, is_expression in nkscript.value_items(gizmo.group.knobs[spec.name]):
                if is_expression:
                    problems += _expression_problems(gizmo, where, text, False, set())
    for knob in gizmo.group.knobs:
        if knob not in names and not node_classes.knob_exists("Gizmo", knob):
            problems.append(f"{gizmo.group.cls}: value for {knob!r}, which is no knob of the gizmo")
    return problems


def _node_problems(gizmo: nkscript.Gizmo, node: nkscript.Node) -> list[str]:
    where = f"{node.cls} {node.name}"
    if node.cls not in node_classes.KNOBS:
        return [f"{where}: node class is not in the known set"]
    problems = [f"{where}: has no knob {knob!r}" for knob in node.knobs if not node_classes.knob_exists(node.cls, knob)]
    temps = {node.knobs[f"temp_name{i}"].text for i in range(4) if f"temp_name{i}" in node.knobs}
    problems += [
        f"{where}: temporary {name!r} is one of Nuke's expression names" for name in sorted(temps & RESERVED_NAMES)
    ]
    for knob, word in node.knobs.items():
        allowed = node_classes.ENUMS.get((node.cls, knob))
        if node.cls == "Write" and "file_type" in node.knobs:
            allowed = allowed or node_classes.WRITE_TYPE_ENUMS.get((node.knobs["file_type"].text, knob))
        if allowed is not None and word.text not in allowed:
            problems.append(f"{where}: {knob} {word.text!r} is not one of Nuke's values")
        kind = node_classes.channel_kind(node.cls, knob)
        if kind is not None:
            problems += _channel_problems(gizmo, where, knob, kind, word.text)
        pixel = node.cls == "Expression" and knob.startswith(("expr", "temp_expr"))
        texts = [word.text] if pixel else nkscript.expressions(word)
        for text in texts:
            problems += _expression_problems(gizmo, f"{where}.{knob}", text, pixel, temps)
        if word.kind == "quoted" and not pixel:
            problems += [
                f"{where}.{knob}: [value {path}] reads nothing that exists"
                for path in nkscript.tcl_references(word.text)
                if _name_problems(gizmo, where, path, False, set())
            ]
    required, most = node_classes.INPUTS.get(node.cls, (node_classes.default_inputs(node.cls),) * 2)
    if node.cls == "Switch":
        required = most = len(node.inputs)
    if len(node.inputs) > most:
        problems.append(f"{where}: {len(node.inputs)} inputs, {node.cls} takes at most {most}")
    problems += [
        f"{where}: input {i} is not connected"
        for i in range(required)
        if i >= len(node.inputs) or node.inputs[i] is None
    ]
    return problems


def _graph_problems(gizmo: nkscript.Gizmo) -> list[str]:
    problems = []
    names = [node.name for node in gizmo.nodes]
    problems += [f"node name {name!r} is used twice" for name in set(names) if names.count(name) > 1]
    outputs = [node for node in gizmo.nodes if node.cls == "Output"]
    if len(outputs) != 1:
        return [*problems, f"{len(outputs)} Output nodes, want 1"]
    numbers = gizmo.input_nodes()
    declared = int(gizmo.group.knobs["inputs"].text) if "inputs" in gizmo.group.knobs else 0
    if sorted(numbers) != list(range(declared)) or len(numbers) != sum(n.cls == "Input" for n in gizmo.nodes):
        problems.append(f"Input numbers {sorted(numbers)} do not match 'inputs {declared}'")
    used, pending = set(), outputs + [node for node in gizmo.nodes if node.cls == "Write"]
    while pending:
        node = pending.pop()
        if id(node) not in used:
            used.add(id(node))
            pending += [source for source in node.inputs if source is not None]
    problems += [
        f"{node.cls} {node.name} feeds neither the Output nor a Write" for node in gizmo.nodes if id(node) not in used
    ]
    return problems


def problems(gizmo: nkscript.Gizmo) -> list[str]:
    """Everything wrong with a parsed gizmo, as sentences; empty when it is sound."""
    found = _user_knob_problems(gizmo) + _graph_problems(gizmo)
    for node in gizmo.nodes:
        found += _node_problems(gizmo, node)
    return found


def _parse(path: Path) -> nkscript.Gizmo:
    return nkscript.parse(path.read_text(encoding="utf-8"))


def test_both_gizmos_are_there() -> None:
    assert [path.name for path in GIZMOS] == ["StyleCompBlend.gizmo", "StyleCompStylize.gizmo"]


@pytest.mark.parametrize("path", GIZMOS, ids=lambda path: path.stem)
def test_gizmo_is_sound(path: Path) -> None:
    gizmo = _parse(path)
    assert gizmo.group.cls == "Gizmo" and gizmo.version
    assert problems(gizmo) == []


MUTATIONS = [
    ("maskChannel rgba.alpha", "maskChanel rgba.alpha", "has no knob 'maskChanel'"),
    ("operation from", "operation subtract", "operation 'subtract'"),
    ("which {{parent.mode}}", "which {{parent.modes}}", "reads parent.modes"),
    ("which {{parent.use_regions}}", "which {{RegionSwitchh.which}}", "neither a knob nor a channel"),
    ("T DepthToAlpha.from0", "T DepthToAlpha.from9", "links to missing"),
    ("from0 depth.Z", "from0 deep.Z", "unknown channel"),
    (" push $NregionWeight\n", " push 0\n", "input 2 is not connected"),
    ("T RegionWeights5to8.from3", "T RegionWeights5to8.from4", "links to missing"),
    (
        "Premult {\n  channels rgb\n  name DetailPremult",
        "Grade {\n  channels rgb\n  name DetailPremult",
        "not in the known",
    ),
    ("\\[value parent.object_ids]", "\\[value parent.object_id]", "[value parent.object_id]"),
    ("expr3 1\n", 'expr3 "1 +"\n', "does not parse"),
    ("clamp((a - parent.depth_near)", "clip((a - parent.depth_near)", "calls clip()"),
    ("temp_name0 ramp", "temp_name0 t", "temporary 't' is one of Nuke's expression names"),
    ("temp_name0 matte\n", "temp_name0 frame\n", "temporary 'frame'"),
]


@pytest.mark.parametrize(("old", "new", "complaint"), MUTATIONS, ids=[m[1][:24] for m in MUTATIONS])
def test_checker_catches_mistakes(old: str, new: str, complaint: str) -> None:
    text = (GIZMOS_FOLDER / "StyleCompBlend.gizmo").read_text(encoding="utf-8")
    assert old in text
    found = problems(nkscript.parse(text.replace(old, new, 1)))
    assert any(complaint in problem for problem in found), found


def test_stack_wiring_follows_nuke_input_order() -> None:
    gizmo = _parse(GIZMOS_FOLDER / "StyleCompBlend.gizmo")
    keymix = gizmo.node("BlendKeymix")
    assert [source.name for source in keymix.inputs] == ["Clean", "ModeSwitch", "RegionSwitch"]  # B, A, mask
    assert [source.name for source in gizmo.node("RegionSwitch").inputs] == ["WeightSwitch", "RegionWeighted"]
    for copy in ("RegionWeights1to4", "RegionWeights5to8"):  # B: black rgba, so an unused row weighs 0
        assert [source.name for source in gizmo.node(copy).inputs] == ["RegionBlack", "Stylized"]
    detail = gizmo.node("CleanDetail")
    assert [source.name for source in detail.inputs] == ["CleanUnpremult", "CleanLow"]  # from: B - A
    assert [source.name for source in gizmo.node("ModeSwitch").inputs] == [
        "Stylized",
        "LuminanceColourPremult",
        "DetailPremult",
    ]
    assert gizmo.group.user_knob("mode").items == ("mix", "luminance / colour", "detail transfer")


@pytest.mark.parametrize(("weights", "suffix"), [("ACEScg", ""), ("Rec.709", "709")])
def test_blend_colour_matrices_use_the_engine_luminance(weights: str, suffix: str) -> None:
    """Each pair of ColorMatrix nodes holds the engine's weights for its space, and the Switch after it picks it."""
    from stylecomp.comp.blend import LUMINANCE_WEIGHTS

    gizmo = _parse(GIZMOS_FOLDER / "StyleCompBlend.gizmo")

    def matrix(name: str) -> np.ndarray:
        rows = nkscript.words(gizmo.node(name).knobs["matrix"].text)
        return np.array([[float(w.text) for w in nkscript.words(row.text)] for row in rows])

    row = LUMINANCE_WEIGHTS[weights].astype(np.float64)
    np.testing.assert_allclose(matrix("LuminanceGrey" + suffix), np.tile(row, (3, 1)), atol=1e-9)
    np.testing.assert_allclose(matrix("ColourMinusLuminance" + suffix), np.eye(3) - np.tile(row, (3, 1)), atol=1e-9)
    index = ("ACEScg", "Rec.709").index(weights)  # Switch input 0 is the ACEScg matrix
    assert gizmo.node("GreyWeights").inputs[index].name == "LuminanceGrey" + suffix
    assert gizmo.node("ChromaWeights").inputs[index].name == "ColourMinusLuminance" + suffix


# ---------------------------------------------------------------------------------------------
# The contract between StyleCompStylize.gizmo and the plugin.


@pytest.fixture(scope="module")
def stylize() -> nkscript.Gizmo:
    return _parse(GIZMOS_FOLDER / "StyleCompStylize.gizmo")


def test_internal_nodes_the_plugin_uses(stylize: nkscript.Gizmo) -> None:
    from stylecomp_nuke import gizmo as names

    expected = {
        names.WRITE_PLATE: "Write",
        names.WRITE_STYLE_REFERENCE: "Write",
        names.READ_STYLIZED: "Read",
        **dict.fromkeys(names.LAYER_SHUFFLES.values(), "Shuffle"),
    }
    assert {name: stylize.node(name).cls for name in expected} == expected
    files = {
        name: stylize.node(name).knobs["file"].text
        for name in (names.WRITE_PLATE, names.WRITE_STYLE_REFERENCE, names.READ_STYLIZED)
    }
    assert files == {
        names.WRITE_PLATE: "[value parent.cache_dir]/" + names.PLATE_PATTERN,
        names.WRITE_STYLE_REFERENCE: "[value parent.cache_dir]/" + names.STYLE_REFERENCE_FILE,
        names.READ_STYLIZED: "[value parent.cache_dir]/" + names.OUTPUT_PATTERN,
    }
    assert int(stylize.group.knobs["tile_color"].text, 16) == names.TILE_COLOUR
    inputs = {number: node.name for number, node in stylize.input_nodes().items()}
    assert inputs == {names.PLATE_INPUT: "Plate", 1: "Mask", names.STYLE_REFERENCE_INPUT: "StyleReference"}
    for write in (names.WRITE_PLATE, names.WRITE_STYLE_REFERENCE):  # a farm render must never run them
        assert stylize.node(write).knobs["disable"].text == "true"
    plate_write = stylize.node(names.WRITE_PLATE).knobs
    assert (plate_write["channels"].text, plate_write["datatype"].text, plate_write["raw"].text) == (
        "all",
        "32 bit float",
        "true",
    )


def _knobs_read(source: str) -> set[str]:
    """String subscripts of ``node[...]`` in plugin source: the gizmo knobs it reads or sets."""
    return {
        sub.slice.value
        for sub in ast.walk(ast.parse(source))
        if isinstance(sub, ast.Subscript)
        and isinstance(sub.value, ast.Name)
        and sub.value.id == "node"
        and isinstance(sub.slice, ast.Constant)
    }


def test_knobs_the_plugin_reads_exist(stylize: nkscript.Gizmo) -> None:
    read = set().union(*(_knobs_read(path.read_text(encoding="utf-8")) for path in PLUGIN.glob("*.py")))
    assert {"prompt", "seed", "lock_seed", "cache_dir", "range_first", "tile_color", "label"} <= read
    user = {spec.name for spec in stylize.group.user_knobs}
    assert sorted(read - user - node_classes.COMMON_KNOBS) == []


def test_buttons_call_plugin_functions(stylize: nkscript.Gizmo) -> None:
    from stylecomp_nuke import (
        actions,  # imports the stand-in `nuke`
        regions,
    )

    buttons = {spec.name: spec.target for spec in stylize.group.user_knobs if spec.type == 22}
    picks = {regions.knob_name(row, "pick"): row for row in range(1, regions.ROWS + 1)}
    assert set(buttons) == {"choose_preset", "render_frame", "render_range", "candidates", *picks}
    for name, command in buttons.items():
        if name in picks:
            called = re.findall(r"stylecomp_nuke\.actions\.(\w+)\(nuke\.thisNode\(\), (\d+)\)", command)
            assert called == [("pick_region_name", str(picks[name]))], command
            continue
        called = re.findall(r"stylecomp_nuke\.actions\.(\w+)\(nuke\.thisNode\(\)\)", command)
        assert called == [name] and callable(getattr(actions, name)), command
    assert callable(actions.pick_region_name)


def test_regions_table_has_a_row_per_engine_region(stylize: nkscript.Gizmo) -> None:
    """One row of knobs per region the engine takes (its documented limit), each row's strength following the
    shot's strength until it is set."""
    from stylecomp.jobspec import MAX_REGIONS
    from stylecomp_nuke import regions

    assert regions.ROWS == MAX_REGIONS
    kinds = {"matte": 1, "pick": 22, "prompt": 1, "strength": 7, "lora": 2, "lora_weight": 7}
    for row in range(1, regions.ROWS + 1):
        for field, kind in kinds.items():
            spec = stylize.group.user_knob(regions.knob_name(row, field))
            assert spec is not None and spec.type == kind, (row, field)
        assert stylize.group.knobs[regions.knob_name(row, "strength")] == nkscript.Word("{this.strength}", "braced")
    assert stylize.group.user_knob(regions.knob_name(regions.ROWS + 1, "matte")) is None


def test_consistency_modes_match_the_plugin(stylize: nkscript.Gizmo) -> None:
    from stylecomp_nuke import jobs

    assert stylize.group.user_knob("consistency").items == jobs.CONSISTENCY_MODES
    assert stylize.group.user_knob("show").items == ("stylized", "plate", "depth", "normals", "motion")
    assert [source.name for source in stylize.node("ShowSwitch").inputs] == [
        "CopyRegions",
        "Plate",
        "DepthLayer",
        "NormalsLayer",
        "MotionLayer",
    ]


def test_plate_write_names_its_channels_explicitly(stylize: nkscript.Gizmo) -> None:
    """The engine finds AOVs by channel name, so WriteInputs fixes how Nuke names them rather than leaving it
    to knob defaults or a studio's knobDefault (exrWriter's knobs, NDK examples/exrWriter.cpp): one part
    (OpenEXR 1 layout), layer.view.channel order, the layer in every channel name, never cut at 31 characters."""
    from stylecomp_nuke import gizmo as names

    knobs = {name: word.text for name, word in stylize.node(names.WRITE_PLATE).knobs.items()}
    assert {
        name: knobs.get(name)
        for name in ("interleave", "standard_layer_name_format", "write_full_layer_names", "truncateChannelNames")
    } == {
        "interleave": "channels, layers and views",
        "standard_layer_name_format": "true",
        "write_full_layer_names": "true",
        "truncateChannelNames": "false",
    }


def test_shuffles_are_the_legacy_class_with_explicit_output(stylize: nkscript.Gizmo) -> None:
    """Legacy Shuffle on purpose (README, Nuke setup): the plugin and the layer pickers use its one-word ``in``
    knob. Each names its output too, so what lands in rgba never depends on a default."""
    shuffles = [node for node in stylize.nodes if node.cls.startswith("Shuffle")]
    assert shuffles and {node.cls for node in shuffles} == {"Shuffle"}
    assert {node.name: node.knobs["out"].text if "out" in node.knobs else None for node in shuffles} == {
        node.name: "rgba" for node in shuffles
    }
