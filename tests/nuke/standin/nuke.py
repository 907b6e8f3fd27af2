"""A stand-in for Nuke's ``nuke`` module: exactly the API subset stylecomp_nuke calls, for tests.

Gizmos are built from the real .gizmo files (user knobs with their defaults, internal nodes with
their knobs), so a knob the plugin reads that the gizmo lacks fails here as it would in Nuke.
Like Nuke, knob changes, messages, node creation and nuke.execute must happen on the main
thread; nuke.executeInMainThread queues calls that the test runs with ``standin.pump``.
It also models what Nuke does that the plugin must not trip over: a new script's 1-100 range, a
Read's first/last with before/after and on_error (``standin.shown``), Writes rendering at proxy
scale when root.proxy is on, and copy/paste copying knob values (``standin.paste_copy``).
Test controls live on ``standin`` (messages, progress tasks, executed Writes, scripted answers).
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time

from tests.nuke import nkscript
from tests.nuke.nkscript import nkexpr, node_classes

GUI = True


def _main_thread(what: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(f"nuke.{what} called off the main thread")


def _ui(what: str) -> None:
    _main_thread(what)
    if not GUI:
        raise RuntimeError(f"nuke.{what} is a UI call, but this is a terminal session (nuke -t)")


# ---------------------------------------------------------------------------------------------
# Knobs


class Knob:
    """A knob holding a literal value or an expression (``{{...}}`` in a script)."""

    def __init__(self, name: str, value=None) -> None:
        self._name, self._value = name, value
        self._node = None  # set when the knob is added to a node
        self._expression: str | None = None

    def name(self) -> str:
        return self._name

    def value(self):
        if self._expression is not None:
            return self._convert(nkexpr.evaluate(nkexpr.parse(self._expression), self._node.resolve))
        return self._value

    def setValue(self, value) -> bool:
        _main_thread(f"{self._name}.setValue")
        self._value, self._expression = self._convert(value), None
        return True

    def _convert(self, value):
        return value


class Int_Knob(Knob):
    def _convert(self, value):
        if isinstance(value, str) and value.lower().startswith("0x"):
            return int(value, 16)
        return round(float(value))


class Double_Knob(Knob):
    def _convert(self, value):
        return float(value)


class Boolean_Knob(Knob):
    def _convert(self, value):
        return bool(value) if not isinstance(value, str) else value.strip().lower() in ("true", "1")


class String_Knob(Knob):
    def _convert(self, value):
        return "" if value is None else str(value)


class File_Knob(String_Knob):
    def evaluate(self, frame: int | None = None) -> str:
        """The path with TCL run and the frame number in place of ####."""
        text = nkscript.tcl_substitute(self.value(), self._node.tcl_value)
        frame = standin.frame if frame is None else frame
        return re.sub(r"#+", lambda m: f"{frame:0{len(m.group())}d}", text)


class Multiline_Eval_String_Knob(String_Knob):
    pass


class Text_Knob(String_Knob):
    pass


class Tab_Knob(Knob):
    pass


class Enumeration_Knob(String_Knob):
    def __init__(self, name: str, items=(), value: str = "") -> None:
        self._items = list(items)
        super().__init__(name, value)

    def values(self) -> list:
        return list(self._items)

    def setValue(self, value) -> bool:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = self._items[int(value)]
        if value not in self._items:
            raise ValueError(f"{value!r} is not one of {self._items}")
        return super().setValue(value)


class Color_Knob(Knob):
    pass


class Channel_Knob(String_Knob):
    pass


class PyScript_Knob(Knob):
    """A button running Python with nuke.thisNode() set to its node."""

    def execute(self) -> None:
        _main_thread(f"{self._name}.execute")
        _this.append(self._node)
        try:
            code = compile(self._value, f"<{self._node.name()}.{self._name}>", "exec")
            exec(code, {"nuke": sys.modules[__name__]})  # noqa: S102 - Nuke runs a PyScript_Knob's script as it stands
        finally:
            _this.pop()


class Script_Knob(Knob):
    """A button such as a Read's reload: counts presses."""

    def execute(self) -> None:
        _main_thread(f"{self._name}.execute")
        self._value = (self._value or 0) + 1


class Link_Knob(Knob):
    """A knob showing another node's knob (``T Node.knob``)."""

    def _target(self):
        node, knob = self._value.rsplit(".", 1)
        return self._node.node(node)[knob]

    def value(self):
        return self._target().value()

    def setValue(self, value) -> bool:
        return self._target().setValue(value)


# ---------------------------------------------------------------------------------------------
# Nodes


class Node:
    """A node: class, name, knobs, inputs, channels; a gizmo or group also holds children."""

    def __init__(self, cls: str, name: str, parent=None, channels=(), metadata=None) -> None:
        self._class, self._parent, self._inputs, self._children = cls, parent, {}, {}
        self._channels = list(channels)
        self._metadata = dict(metadata or {})
        self._knobs: dict[str, Knob] = {}
        for knob in ("name", "label", "help"):
            self.add_knob(String_Knob(knob, ""))
        self.add_knob(Int_Knob("tile_color", 0))
        self.add_knob(Boolean_Knob("disable", False))
        self._knobs["name"]._value = name

    def add_knob(self, knob: Knob) -> Knob:
        knob._node = self
        self._knobs[knob.name()] = knob
        return knob

    def Class(self) -> str:
        return self._class

    def name(self) -> str:
        return self._knobs["name"].value()

    def fullName(self) -> str:
        if self._parent is None or self._parent is _root:
            return self.name()
        return f"{self._parent.fullName()}.{self.name()}"

    def knob(self, name: str):
        return self._knobs.get(name)

    def knobs(self) -> dict:
        return dict(self._knobs)

    def __getitem__(self, name: str) -> Knob:
        if name not in self._knobs:
            raise NameError(f"knob {name} does not exist")
        return self._knobs[name]

    def input(self, index: int):
        return self._inputs.get(index)

    def setInput(self, index: int, node) -> bool:
        _main_thread("setInput")
        self._inputs[index] = node
        return True

    def channels(self) -> list:
        return list(self._channels)

    def metadata(self, key: str | None = None, time: float | None = None, view: str | None = None):
        """As Nuke's Node.metadata: the whole dict (``exr/...``, ``input/...`` keys), or one key's value (None
        when absent)."""
        return dict(self._metadata) if key is None else self._metadata.get(key)

    def node(self, name: str):
        first, _, rest = name.partition(".")
        child = self._children.get(first)
        return child.node(rest) if child is not None and rest else child

    def nodes(self) -> list:
        return list(self._children.values())

    # Expression and TCL context.
    def _owner(self, head: str):
        owner = {"parent": self._parent, "root": _root, "this": self}.get(head)
        if owner is None and self._parent is not None:
            owner = self._parent.node(head)
        if owner is None:
            raise nkexpr.ExpressionError(f"{self.name()}: no node {head!r}")
        return owner

    def resolve(self, name: str) -> float:
        """The value of a dotted name in an expression on this node (enumerations give their index)."""
        if name == "frame":
            return float(standin.frame)
        head, _, rest = name.partition(".")
        knob_name, _, component = rest.partition(".")
        knob = self._owner(head)[knob_name]
        value = knob.value()
        if isinstance(knob, Enumeration_Knob):
            return float(knob.values().index(value))
        return float(value["rgba".index(component)] if component else value)

    def tcl_value(self, path: str) -> str:
        """What ``[value path]`` gives in TCL on this node."""
        head, _, rest = path.partition(".")
        return str(self._owner(head)[rest].value())


_KNOB_CLASSES = {
    cls.__name__: cls
    for cls in (
        String_Knob,
        File_Knob,
        Int_Knob,
        Enumeration_Knob,
        Boolean_Knob,
        Double_Knob,
        Color_Knob,
        Tab_Knob,
        PyScript_Knob,
        Text_Knob,
        Link_Knob,
        Multiline_Eval_String_Knob,
    )
}
_TYPED_KNOBS = {  # knobs of internal nodes that the plugin reads or presses, by class
    ("Write", "file"): File_Knob,
    ("Read", "file"): File_Knob,
    ("Read", "reload"): Script_Knob,
    ("Shuffle", "in"): Channel_Knob,
    ("Copy", "from0"): Channel_Knob,
    ("Read", "first"): Int_Knob,
    ("Read", "last"): Int_Knob,
    ("Write", "proxy"): File_Knob,
}


def _knob_from_word(knob: Knob, word: nkscript.Word) -> Knob:
    """Give a knob the value or expression a script wrote for it."""
    items = nkscript.value_items(word)
    if len(items) == 1 and items[0][1]:
        knob._expression = items[0][0]
    elif len(items) == 1:
        knob._value = knob._convert(items[0][0])
    else:
        try:
            knob._value = tuple(float(text) for text, _ in items)
        except ValueError:
            knob._value = word.text  # a channel list, a matrix: kept as written
    return knob


def _user_knob(spec: nkscript.UserKnob) -> Knob:
    cls = _KNOB_CLASSES[spec.class_name]
    if cls is Enumeration_Knob:
        return Enumeration_Knob(spec.name, spec.items, value=spec.items[0] if spec.items else "")
    defaults = {Int_Knob: 0, Double_Knob: 0.0, Boolean_Knob: False, Color_Knob: (0.0, 0.0, 0.0)}
    value = spec.target if cls in (PyScript_Knob, Link_Knob, Text_Knob) else defaults.get(cls, "")
    return cls(spec.name, value)


def _build_gizmo(cls: str, path: str, name: str, parent) -> Node:
    """A gizmo node from its .gizmo file: user knobs and children as the file defines them."""
    with open(path, encoding="utf-8") as handle:
        parsed = nkscript.parse(handle.read())
    group = Node(cls, name, parent)
    for spec in parsed.group.user_knobs:
        group.add_knob(_user_knob(spec))
    for knob_name, word in parsed.group.knobs.items():
        if knob_name in group.knobs():
            _knob_from_word(group[knob_name], word)
    built = {}
    for child in parsed.nodes:
        node = Node(child.cls, child.name, group)
        for knob_name in node_classes.KNOBS.get(child.cls, ()):
            node.add_knob(_TYPED_KNOBS.get((child.cls, knob_name), String_Knob)(knob_name, None))
        for knob_name, word in child.knobs.items():
            if knob_name != "name":
                _knob_from_word(node.knob(knob_name) or node.add_knob(String_Knob(knob_name)), word)
        group._children[child.name] = node
        built[id(child)] = node
    for child in parsed.nodes:
        for index, source in enumerate(child.inputs):
            built[id(child)]._inputs[index] = built[id(source)] if source is not None else None
    return group


# ---------------------------------------------------------------------------------------------
# Module functions (the subset the plugin calls)


_root = Node("Root", "root")
for _knob in (
    File_Knob("name", ""),
    Int_Knob("first_frame", 1),
    Int_Knob("last_frame", 100),  # a new script's
    Boolean_Knob("proxy", False),
    # Project Settings > Color, as a new script under nuke-default colour management has them.
    Enumeration_Knob("colorManagement", ("Nuke", "OCIO"), "Nuke"),
    Enumeration_Knob("OCIO_config", ("nuke-default", "aces_1.2", "custom"), "nuke-default"),
    Enumeration_Knob("workingSpaceLUT", ("linear", "ACES - ACEScg", "ACEScg", "scene_linear"), "linear"),
):
    _root.add_knob(_knob)
_this: list = []


def root() -> Node:
    return _root


def thisNode() -> Node:
    return _this[-1]


def toNode(name: str):
    return _root.node(name)


def frame() -> int:
    return standin.frame


def createNode(cls: str, knobs: str = "", inpanel: bool = True) -> Node:
    _main_thread("createNode")
    for folder in standin.plugin_paths:
        path = os.path.join(folder, cls + ".gizmo")
        if os.path.isfile(path):
            count = 1 + sum(1 for node in _root.nodes() if node.Class() == cls)
            node = _build_gizmo(cls, path, f"{cls}{count}", _root)
            _root._children[node.name()] = node
            return node
    raise RuntimeError(f"{cls}: unknown command")


def pluginAddPath(path: str, addToSysPath: bool = True) -> None:
    standin.plugin_paths.insert(0, path)
    if addToSysPath:
        sys.path.insert(0, path)


def pluginPath() -> list:
    return list(standin.plugin_paths)


def execute(node, start: int, end: int, incr: int = 1, views=None, continueOnError: bool = False) -> None:
    """Render a Write: writes a small file per frame (or what ``standin.rendered`` gives) where its file knob points.

    Like Nuke, a Write renders at the active scale: with root.proxy on it writes proxy-scale
    images, to its proxy file when it has one, else (the quiet failure) where ``file`` points.
    """
    _main_thread("execute")
    node = toNode(node) if isinstance(node, str) else node
    if node.Class() != "Write":
        raise ValueError(f"{node.name()} cannot be executed")
    if node["disable"].value():
        raise RuntimeError(f"{node.fullName()}: node is disabled")
    standin.executed.append((node.fullName(), start, end, incr))
    if standin.execute_error:
        raise RuntimeError(standin.execute_error)
    proxy = _root["proxy"].value()
    knob = node["proxy"] if proxy and node["proxy"].value() else node["file"]
    for number in range(start, end + 1, incr):
        path = knob.evaluate(number)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(PROXY_FRAME if proxy else standin.rendered(node, number) if standin.rendered else FULL_FRAME)


FULL_FRAME, PROXY_FRAME = b"stand-in frame", b"stand-in frame at proxy scale"


_SAVED_ROOT_KNOBS = ("first_frame", "last_frame", "proxy", "colorManagement", "OCIO_config", "workingSpaceLUT")
_LAYOUT_KNOBS = ("inputs", "xpos", "ypos", "selected")


def _saved_word(knob: Knob) -> str:
    """A knob's value as a saved script holds it: an expression as ``{{...}}``, strings quoted."""
    if knob._expression is not None:
        text = knob._expression
        return "{{" + (nkscript.quote(text) if re.search(r'[\s"]', text) else text) + "}}"
    value = knob.value() if isinstance(knob, Link_Knob) else knob._value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "{" + " ".join(repr(float(item)) for item in value) + "}"
    return nkscript.quote("" if value is None else str(value))


def _gizmo_file(cls: str) -> str | None:
    return next(
        (
            os.path.join(folder, cls + ".gizmo")
            for folder in standin.plugin_paths
            if os.path.isfile(os.path.join(folder, cls + ".gizmo"))
        ),
        None,
    )


def scriptSave(filename: str | None = None) -> bool:
    """Save the script as Nuke does: the root's knobs, then each gizmo node with the knobs whose value or
    expression differs from a new node's (a gizmo's insides come from its .gizmo file again on load).
    Not modelled: the stand-in's sources (``standin.add_source``) and the wiring, which tests set up again."""
    _main_thread("scriptSave")
    path = filename or _root["name"].value()
    lines = ["#! nuke -nx", "version 13.0 v1", "Root {", " inputs 0", f" name {nkscript.quote(path)}"]
    lines += [f" {name} {_saved_word(_root[name])}" for name in _SAVED_ROOT_KNOBS]
    lines.append("}")
    for node in _root.nodes():
        gizmo = _gizmo_file(node.Class())
        if gizmo is None:
            continue
        fresh = _build_gizmo(node.Class(), gizmo, node.name(), None)
        lines.append(node.Class() + " {")
        for name, knob in node.knobs().items():
            default = fresh.knob(name)
            if name != "name" and default is not None and _saved_word(default) == _saved_word(knob):
                continue
            lines.append(f" {name} {_saved_word(knob)}")
        lines.append("}")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    _root["name"]._value = path
    return True


def scriptClear() -> None:
    """Close the script: no nodes, and the root of a new script."""
    _main_thread("scriptClear")
    standin.clear_script()


def scriptOpen(filename: str) -> None:
    """Read a saved script into the (cleared) session: gizmos are built from their .gizmo files, then given the
    saved knob values; a knob the node does not have is an error, as Nuke reports it."""
    _main_thread("scriptOpen")
    with open(filename, encoding="utf-8") as handle:
        saved = nkscript.script_nodes(handle.read())
    for block in saved:
        if block.cls == "Root":
            for name, word in block.knobs.items():
                if name not in _LAYOUT_KNOBS:
                    _knob_from_word(_root[name], word)
            continue
        gizmo = _gizmo_file(block.cls)
        if gizmo is None:
            raise RuntimeError(f"{filename}: {block.cls}: unknown command")
        node = _build_gizmo(block.cls, gizmo, block.name, _root)
        for name, word in block.knobs.items():
            if name in _LAYOUT_KNOBS or name == "name":
                continue
            knob = node.knob(name)
            if knob is None:
                raise RuntimeError(f"{filename}: {block.name}: no knob named {name!r}")
            if isinstance(knob, Link_Knob):
                knob.setValue(nkscript.value_items(word)[0][0])
            else:
                knob._expression = None
                _knob_from_word(knob, word)
        _root._children[node.name()] = node


def message(text: str) -> None:
    _main_thread("message")
    standin.messages.append(text)
    if not GUI:
        print(text)


def executeInMainThread(call, args=(), kwargs=None) -> None:
    standin.main_queue.put((call, tuple(args), dict(kwargs or {})))


def choice(title: str, prompt: str, options, default: int = 0):
    """nuke.choice: a combo box of ``options``; answers with an index, or None when cancelled."""
    _ui("choice")
    standin.choices.append((title, prompt, list(options), default))
    return standin.answers.pop(0)


def getFilename(message: str, pattern: str | None = None, default: str | None = None):
    _ui("getFilename")
    return standin.answers.pop(0)


class ProgressTask:
    """Progress bar with a Cancel button; the test presses Cancel with ``cancel()``."""

    def __init__(self, title: str) -> None:
        if not GUI:
            raise RuntimeError("nuke.ProgressTask is a UI call, but this is a terminal session (nuke -t)")
        self.title, self.progress, self.messages = title, [], []
        self._cancelled = threading.Event()
        standin.tasks.append(self)

    def setProgress(self, value: int) -> None:
        self.progress.append(int(value))

    def setMessage(self, text: str) -> None:
        self.messages.append(text)

    def isCancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()


class Panel:
    """nuke.Panel with enumeration pulldowns; ``show`` answers from ``standin.answers``."""

    def __init__(self, title: str) -> None:
        _ui("Panel")
        self.title, self.pulldowns, self._values = title, {}, {}

    def addEnumerationPulldown(self, name: str, items: str) -> None:
        self.pulldowns[name] = items.split()

    def show(self) -> int:
        answer = standin.answers.pop(0)
        if answer is None:
            return 0
        self._values.update(answer)
        return 1

    def value(self, name: str):
        return self._values[name]


class Menu:
    """A menu or toolbar; records what is added."""

    def __init__(self, name: str) -> None:
        self._name, self.items = name, {}

    def name(self) -> str:
        return self._name

    def addMenu(self, name: str, icon: str | None = None) -> Menu:
        return self.items.setdefault(name, Menu(name))

    def addCommand(self, name: str, command=None, shortcut: str = "", icon: str = "") -> None:
        self.items[name] = command


def menu(name: str) -> Menu:
    _ui("menu")
    return standin.menus.setdefault(name, Menu(name))


# ---------------------------------------------------------------------------------------------
# Test controls


class _Standin:
    """State a test sets up and inspects."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        global GUI
        GUI = True
        self.frame = 1001
        self.messages: list = []
        self.tasks: list = []
        self.executed: list = []
        self.execute_error: str | None = None
        self.rendered = None  # (write, frame) -> the bytes a full-scale frame holds; None: FULL_FRAME
        self.answers: list = []
        self.choices: list = []  # (title, prompt, options, default) of each nuke.choice
        self.menus: dict = {}
        self.plugin_paths: list = []
        self.main_queue: queue.Queue = queue.Queue()
        self.clear_script()

    def clear_script(self) -> None:
        """No nodes, and the root knobs of a new script."""
        _root._children.clear()
        _root["name"]._value = ""
        _root["first_frame"]._value, _root["last_frame"]._value, _root["proxy"]._value = 1, 100, False
        for knob, value in (
            ("colorManagement", "Nuke"),
            ("OCIO_config", "nuke-default"),
            ("workingSpaceLUT", "linear"),
        ):
            _root[knob]._value = value

    def set_gui(self, gui: bool) -> None:
        global GUI
        GUI = gui

    def add_source(self, name: str, channels, metadata: dict | None = None) -> Node:
        """A node outside the gizmo (e.g. a Read of the plate) offering ``channels`` and ``metadata``."""
        node = Node("Read", name, _root, channels, metadata)
        _root._children[name] = node
        return node

    @staticmethod
    def exr_metadata(path: str) -> dict:
        """The metadata Nuke's Read shows for an EXR: each header attribute that is not part of the image's
        structure as ``exr/<name>`` (so ``exr/cryptomatte/<key>/manifest``, as the Cryptomatte gizmo reads it),
        and ``input/filename``. Only the custom attributes are modelled (not Nuke's renaming of standard ones)."""
        import OpenImageIO as oiio

        image = oiio.ImageInput.open(path)
        if image is None:
            raise RuntimeError(f"{path}: {oiio.geterror()}")
        try:
            attributes = {a.name: a.value for a in image.spec().extra_attribs if not a.name.startswith("oiio:")}
        finally:
            image.close()
        return {"input/filename": path, **{f"exr/{name}": value for name, value in attributes.items()}}

    def shown(self, read: Node, frame: int):
        """The file a Read shows at ``frame``, or None where it shows black.

        As Nuke's Read: frames before ``first`` / after ``last`` follow ``before`` / ``after`` (hold: the
        end frame; loop: wrap around; bounce: go back and forth; black: nothing); a missing file inside
        the range follows ``on_error`` (black, or error).
        """
        first, last = read["first"].value(), read["last"].value()
        length = last - first + 1
        mode = read["before"].value() if frame < first else read["after"].value() if frame > last else None
        if mode == "black":
            return None
        if mode == "hold":
            frame = first if frame < first else last
        elif mode == "loop":
            frame = first + (frame - first) % length
        elif mode == "bounce":
            offset = (frame - first) % (2 * length - 2) if length > 1 else 0
            frame = first + (offset if offset < length else 2 * length - 2 - offset)
        path = read["file"].evaluate(frame)
        if os.path.isfile(path):
            return path
        if read["on_error"].value() == "black":
            return None
        raise RuntimeError(f"{read.fullName()}: {path}: no such file")

    def paste_copy(self, node: Node) -> Node:
        """What copy and paste (or a template) makes of a gizmo node: a new node named as Nuke names a
        paste (the class's next free number), whose knobs and internal nodes' knobs hold the copied
        values and expressions."""
        _main_thread("nodePaste")
        path = next(
            os.path.join(folder, node.Class() + ".gizmo")
            for folder in self.plugin_paths
            if os.path.isfile(os.path.join(folder, node.Class() + ".gizmo"))
        )
        number = 1 + sum(1 for other in _root.nodes() if other.Class() == node.Class())
        while _root.node(f"{node.Class()}{number}") is not None:
            number += 1
        copy = _build_gizmo(node.Class(), path, f"{node.Class()}{number}", _root)
        for source, target in [(node, copy)] + [(child, copy.node(child.name())) for child in node.nodes()]:
            for name, knob in source.knobs().items():
                if name != "name" and target.knob(name) is not None and not isinstance(knob, Link_Knob):
                    target[name]._value, target[name]._expression = knob._value, knob._expression
        copy._inputs = dict(node._inputs)
        _root._children[copy.name()] = copy
        return copy

    def pump(self, until, timeout: float = 20.0) -> None:
        """Run queued main-thread calls until ``until()`` is true."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError("stand-in: condition not met in time")
            try:
                call, args, kwargs = self.main_queue.get(timeout=0.05)
            except queue.Empty:
                continue
            call(*args, **kwargs)


standin = _Standin()
