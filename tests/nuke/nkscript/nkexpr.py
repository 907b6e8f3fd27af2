"""Nuke's expression language (knob expressions and the Expression node): parse and evaluate.

C-like: numbers, dotted names (``parent.amount``, ``depth.Z``, ``line_colour.r``), calls
(``clamp(x)``, ``max(a, b)``, ...), unary ``- + !``, ``* / %``, ``+ -``, comparisons, ``&& ||``
and ``?:``. Comparisons and logic give 1 or 0. Values are Python floats or float32 numpy arrays
(one value per pixel), so the same tree evaluates a knob or an image; all image math stays in
float32, as Nuke's does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

_TOKEN = re.compile(
    r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z_][\w]*(?:\.\w+)*)"
    r"|(&&|\|\||==|!=|<=|>=|[-+*/%<>!?:(),]))"
)


class ExpressionError(ValueError):
    """An expression that does not parse or names something unknown."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple


@dataclass(frozen=True)
class Unary:
    op: str
    operand: object


@dataclass(frozen=True)
class Binary:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Ternary:
    condition: object
    then: object
    otherwise: object


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r} in {text!r}")
        tokens.append(match.group().strip())
        pos = match.end()
    return tokens


class _Parser:
    _LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="), ("+", "-"), ("*", "/", "%"))

    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.pos = text, _tokens(text), 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise ExpressionError(f"expected {expected or 'more'} in {self.text!r}")
        self.pos += 1
        return token

    def parse(self):
        tree = self.ternary()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()!r} in {self.text!r}")
        return tree

    def ternary(self):
        condition = self.binary(0)
        if self.peek() != "?":
            return condition
        self.take("?")
        then = self.ternary()
        self.take(":")
        return Ternary(condition, then, self.ternary())

    def binary(self, level: int):
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self._LEVELS[level]:
            op = self.take()
            left = Binary(op, left, self.binary(level + 1))
        return left

    def unary(self):
        if self.peek() in ("-", "+", "!"):
            return Unary(self.take(), self.unary())
        return self.primary()

    def primary(self):
        token = self.take()
        if token == "(":
            tree = self.ternary()
            self.take(")")
            return tree
        if token[0].isdigit() or token[0] == ".":
            return Num(float(token))
        if token[0].isalpha() or token[0] == "_":
            if self.peek() != "(":
                return Name(token)
            self.take("(")
            args = []
            while self.peek() != ")":
                args.append(self.ternary())
                if self.peek() == ",":
                    self.take(",")
            self.take(")")
            return Call(token, tuple(args))
        raise ExpressionError(f"unexpected {token!r} in {self.text!r}")


def parse(text: str):
    """The expression tree of ``text``."""
    return _Parser(text).parse()


def _nodes(tree):
    """Every node of an expression tree."""
    yield tree
    children = {
        Call: lambda t: t.args,
        Unary: lambda t: (t.operand,),
        Binary: lambda t: (t.left, t.right),
        Ternary: lambda t: (t.condition, t.then, t.otherwise),
    }.get(type(tree), lambda t: ())(tree)
    for child in children:
        yield from _nodes(child)


def names(tree) -> set[str]:
    """Every dotted name an expression reads."""
    return {node.name for node in _nodes(tree) if isinstance(node, Name)}


def functions(tree) -> set[str]:
    """Every function an expression calls."""
    return {node.name for node in _nodes(tree) if isinstance(node, Call)}


def _f32(value):
    """Arrays as float32; plain numbers as Python floats (weak, so they never widen float32 arrays)."""
    return value.astype(np.float32, copy=False) if isinstance(value, np.ndarray) else float(value)


def _truth(value):
    return value != 0


def _clamp(x, low=0.0, high=1.0):
    return np.minimum(np.maximum(x, low), high) if isinstance(x, np.ndarray) else min(max(x, low), high)


FUNCTIONS = {
    "clamp": _clamp,
    "min": np.minimum,
    "max": np.maximum,
    "abs": np.abs,
    "floor": np.floor,
    "ceil": np.ceil,
    "sqrt": np.sqrt,
    "pow": np.power,
    "pow2": lambda x: x * x,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "lerp": lambda a, b, t: a + (b - a) * t,
}
CONSTANTS = {"pi": math.pi}


def evaluate(tree, resolve):
    """The value of an expression tree; ``resolve(name)`` gives each dotted name's value."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _f32(_evaluate(tree, resolve))


def _evaluate(tree, resolve):
    if isinstance(tree, Num):
        return tree.value
    if isinstance(tree, Name):
        return CONSTANTS[tree.name] if tree.name in CONSTANTS else _f32(resolve(tree.name))
    if isinstance(tree, Call):
        if tree.name not in FUNCTIONS:
            raise ExpressionError(f"unknown function {tree.name}()")
        return _f32(FUNCTIONS[tree.name](*(_evaluate(arg, resolve) for arg in tree.args)))
    if isinstance(tree, Unary):
        value = _evaluate(tree.operand, resolve)
        if tree.op == "!":
            return _bool(np.logical_not(_truth(value)) if isinstance(value, np.ndarray) else not _truth(value))
        return -value if tree.op == "-" else value
    if isinstance(tree, Binary):
        left, right = _evaluate(tree.left, resolve), _evaluate(tree.right, resolve)
        return _binary(tree.op, left, right)
    if isinstance(tree, Ternary):
        condition = _evaluate(tree.condition, resolve)
        then, otherwise = _evaluate(tree.then, resolve), _evaluate(tree.otherwise, resolve)
        if isinstance(condition, np.ndarray):
            return _f32(np.where(_truth(condition), then, otherwise))
        return then if _truth(condition) else otherwise
    raise ExpressionError(f"cannot evaluate {tree!r}")


def _bool(value):
    return value.astype(np.float32) if isinstance(value, np.ndarray) else float(bool(value))


def _binary(op: str, left, right):
    if op == "+":
        return _f32(left + right)
    if op == "-":
        return _f32(left - right)
    if op == "*":
        return _f32(left * right)
    if op == "/":
        if not isinstance(left, np.ndarray) and not isinstance(right, np.ndarray):
            return left / right if right != 0 else math.copysign(math.inf, left) if left else math.nan
        return _f32(np.divide(left, right))
    if op == "%":
        return _f32(np.fmod(left, right))
    if op in ("&&", "||"):
        both = (np.logical_and if op == "&&" else np.logical_or)(_truth(left), _truth(right))
        return _bool(both)
    comparisons = {
        "<": np.less,
        "<=": np.less_equal,
        ">": np.greater,
        ">=": np.greater_equal,
        "==": np.equal,
        "!=": np.not_equal,
    }
    return _bool(comparisons[op](left, right))
