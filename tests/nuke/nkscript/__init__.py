"""A small parser for Nuke's script format (.nk/.gizmo): TCL-style words, node blocks, the node stack.

Handles what the StyleComp gizmos use: ``version``, ``add_layer``, one ``Gizmo``/``Group`` block with
``addUserKnob`` lines and knob values, child nodes wired through the stack (``inputs N`` pops N nodes,
input 0 being the top; ``set N [stack 0]``, ``push $N``, ``push 0``), and ``end_group``. Knob values
stay as written (``Word``); helpers read expressions (``{{expr}}``) and TCL (``[value x]``) from them.
Beside it: ``nkexpr`` (Nuke's expression language) and ``node_classes`` (the node classes and their knobs).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from . import node_classes

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}
_BARE = re.compile(r"\S+")


class ScriptError(ValueError):
    """The script does not parse."""


@dataclass(frozen=True)
class Word:
    """One TCL word: its text (escapes resolved for quoted words, raw inside braces) and how it was written."""

    text: str
    kind: str  # "bare", "quoted", "braced" or "bracket"


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """A double-quoted word starting at ``pos`` (the quote), with backslash escapes resolved."""
    out, pos = [], pos + 1
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append(_ESCAPES.get(text[pos + 1], text[pos + 1]))
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise ScriptError("unterminated quoted string")


def _closing(text: str, pos: int, opening: str, closing: str) -> int:
    """Index just past the ``closing`` that matches the ``opening`` at ``pos`` (backslash escapes skipped)."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 2
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    raise ScriptError(f"unbalanced {opening}{closing}")


def commands(text: str) -> list[list[Word]]:
    """Split script text into commands (newline-separated outside braces and quotes) of words."""
    result: list[list[Word]] = []
    current: list[Word] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "\n":
            if current:
                result.append(current)
                current = []
            pos += 1
        elif char in " \t\r":
            pos += 1
        elif char == "#" and not current:
            pos = text.find("\n", pos) if "\n" in text[pos:] else len(text)
        elif char == "{":
            end = _closing(text, pos, "{", "}")
            current.append(Word(text[pos + 1 : end - 1], "braced"))
            pos = end
        elif char == '"':
            word, pos = _quoted(text, pos)
            current.append(Word(word, "quoted"))
        elif char == "[":
            end = _closing(text, pos, "[", "]")
            current.append(Word(text[pos + 1 : end - 1], "bracket"))
            pos = end
        else:
            match = _BARE.match(text, pos)
            current.append(Word(match.group(), "bare"))
            pos = match.end()
    if current:
        result.append(current)
    return result


def words(text: str) -> list[Word]:
    """A TCL list: the words of ``text`` with newlines as plain white space."""
    return [word for command in commands(text) for word in command]


@dataclass(frozen=True)
class UserKnob:
    """An ``addUserKnob {type name l label t tooltip flags M {items} R min max T target}`` line."""

    type: int
    name: str
    label: str | None = None
    tooltip: str | None = None
    flags: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    range: tuple[float, float] | None = None
    target: str | None = None  # T: Link target, PyScript command, Text knob text

    @property
    def class_name(self) -> str:
        return node_classes.USER_KNOB_TYPES[self.type]


def _user_knob(spec: str) -> UserKnob:
    parts = words(spec)
    fields: dict = {"type": int(parts[0].text), "name": parts[1].text}
    flags, pos = [], 2
    while pos < len(parts):
        option = parts[pos].text
        if option in ("l", "t", "T"):
            fields[{"l": "label", "t": "tooltip", "T": "target"}[option]] = parts[pos + 1].text
            pos += 2
        elif option == "M":
            fields["items"] = tuple(word.text for word in words(parts[pos + 1].text))
            pos += 2
        elif option == "R":
            fields["range"] = (float(parts[pos + 1].text), float(parts[pos + 2].text))
            pos += 3
        elif option == "n":
            pos += 2
        elif option[:1] in "+-":
            flags.append(option)
            pos += 1
        else:
            raise ScriptError(f"addUserKnob {fields['name']}: unknown option {option!r}")
    return UserKnob(flags=tuple(flags), **fields)


@dataclass(eq=False)
class Node:
    """One node block: its class, knob values as written, user knobs, and wired inputs."""

    cls: str
    knobs: dict[str, Word] = field(default_factory=dict)
    user_knobs: list[UserKnob] = field(default_factory=list)
    inputs: list[Node | None] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.knobs["name"].text if "name" in self.knobs else ""

    def user_knob(self, name: str) -> UserKnob | None:
        return next((knob for knob in self.user_knobs if knob.name == name), None)


def _node(cls: str, body: str) -> Node:
    node = Node(cls)
    for command in commands(body):
        if command[0].text == "addUserKnob":
            node.user_knobs.append(_user_knob(command[1].text))
        elif len(command) == 2:
            node.knobs[command[0].text] = command[1]
        else:
            raise ScriptError(f"{cls}: knob line {' '.join(w.text for w in command)!r} is not 'name value'")
    return node


@dataclass
class Gizmo:
    """A parsed .gizmo file: the group node (user knobs, its own knob values) and its children in order."""

    version: str
    layers: list[list[str]]
    group: Node
    nodes: list[Node]

    def node(self, name: str) -> Node | None:
        return next((node for node in self.nodes if node.name == name), None)

    def input_nodes(self) -> dict[int, Node]:
        """Input nodes by their ``number`` knob (0 when not written)."""
        return {
            int(node.knobs["number"].text) if "number" in node.knobs else 0: node
            for node in self.nodes
            if node.cls == "Input"
        }


def parse(text: str) -> Gizmo:
    """Parse a .gizmo (or a Group-holding .nk); ScriptError says what is wrong."""
    version, layers, group, nodes = "", [], None, []
    stack: list[Node | None] = []
    saved: dict[str, Node | None] = {}
    ended = False
    for command in commands(text):
        head = command[0].text
        if ended:
            raise ScriptError(f"{head!r} after end_group")
        if head == "version":
            version = " ".join(word.text for word in command[1:])
        elif head == "add_layer":
            layers.append([word.text for word in words(command[1].text)])
        elif head in ("Gizmo", "Group") and group is None:
            group = _node(head, command[1].text)
        elif head == "set":
            if len(command) != 3 or command[2] != Word("stack 0", "bracket"):
                raise ScriptError(f"set: only 'set NAME [stack 0]' is supported, got {command}")
            saved[command[1].text] = stack[-1]
        elif head == "push":
            target = command[1].text
            if target == "0":
                stack.append(None)
            elif target.startswith("$") and target[1:] in saved:
                stack.append(saved[target[1:]])
            else:
                raise ScriptError(f"push of unknown {target!r}")
        elif head == "end_group":
            ended = True
        elif len(command) == 2 and command[1].kind == "braced" and group is not None:
            node = _node(head, command[1].text)
            count = int(node.knobs["inputs"].text) if "inputs" in node.knobs else node_classes.default_inputs(head)
            if count > len(stack):
                raise ScriptError(f"{node.name}: needs {count} inputs, the stack holds {len(stack)}")
            node.inputs = [stack.pop() for _ in range(count)]  # input 0 is the top of the stack
            stack.append(node)
            nodes.append(node)
        else:
            raise ScriptError(f"unexpected command {head!r}")
    if group is None or not ended:
        raise ScriptError("no Gizmo/Group block closed by end_group")
    return Gizmo(version, layers, group, nodes)


def script_nodes(text: str) -> list[Node]:
    """The top-level node blocks of a saved script (``Root {...}``, ``StyleCompStylize {...}``), in order;
    ``version`` and comment lines are skipped. Wiring (the stack) is not read."""
    nodes = []
    for command in commands(text):
        if command[0].text == "version":
            continue
        if len(command) != 2 or command[1].kind != "braced":
            raise ScriptError(f"unexpected command {command[0].text!r}")
        nodes.append(_node(command[0].text, command[1].text))
    return nodes


def quote(text: str) -> str:
    """``text`` as a double-quoted TCL word, as Nuke writes string knobs (what ``_quoted`` reads back)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("[", "\\[").replace("$", "\\$")
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


# ---------------------------------------------------------------------------------------------
# Knob values: literals, expressions ({{expr}}), TCL substitutions ([value x]).


def value_items(word: Word) -> list[tuple[str, bool]]:
    """The elements of a knob value as (text, is_expression): ``{{a} 2}`` -> [("a", True), ("2", False)].

    A braced element holds an animation: its first word is the expression (``{"expr" x1 0}``).
    """
    if word.kind != "braced":
        return [(word.text, False)]
    items = []
    for element in words(word.text):
        if element.kind == "braced":
            inner = words(element.text)
            items.append((inner[0].text if inner else "", True))
        else:
            items.append((element.text, False))
    return items


def expressions(word: Word) -> list[str]:
    """The expressions in a knob value."""
    return [text for text, is_expression in value_items(word) if is_expression]


def tcl_substitute(text: str, value_of) -> str:
    """Run the TCL command substitutions in ``text``; braced parts are left alone.

    Supported: ``[value PATH]`` (``value_of(PATH)``), ``[regsub -all {RE} STRING {SUB}]`` and
    ``[string match -nocase PATTERN STRING]`` (1 or 0; TCL's glob patterns, as ``fnmatch``);
    a substituted command is one word, as in TCL.
    """
    out, pos = [], 0
    while pos < len(text):
        char = text[pos]
        if char in "{[":
            end = _closing(text, pos, char, "}" if char == "{" else "]")
            out.append(text[pos:end] if char == "{" else _run_tcl(text[pos + 1 : end - 1], value_of))
            pos = end
        else:
            out.append(char)
            pos += 1
    return "".join(out)


def _run_tcl(command: str, value_of) -> str:
    parts = [
        _run_tcl(word.text, value_of)
        if word.kind == "bracket"
        else word.text
        if word.kind == "braced"
        else tcl_substitute(word.text, value_of)
        for word in words(command)
    ]
    if parts[0] == "value" and len(parts) == 2:
        return str(value_of(parts[1]))
    if parts[0] == "regsub" and parts[1] == "-all" and len(parts) == 5:
        return re.sub(parts[2], parts[4].replace("&", r"\g<0>"), parts[3])
    if parts[:3] == ["string", "match", "-nocase"] and len(parts) == 5:
        return "1" if fnmatch.fnmatchcase(parts[4].lower(), parts[3].lower()) else "0"
    raise ScriptError(f"unsupported TCL command [{command}]")


def tcl_references(text: str) -> list[str]:
    """The knob paths that ``[value PATH]`` commands in ``text`` read."""
    return re.findall(r"\[value\s+([^\]\s]+)\]", text)
