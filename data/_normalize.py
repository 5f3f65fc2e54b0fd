"""Parsing of canonical final answers into small comparable trees (pure Python, no sympy).

``data._canonical.canonicalize`` first rewrites a final-answer string into a canonical LaTeX-ish form;
``parse_tree`` turns a canonical string into a small tree (numbers, tuples, sets, intervals, unions,
matrices, equations, relations, multiple answers) that ``data._compare.trees_equal`` compares; numeric
leaves are read exactly with ``data._numbers.parse_number``.
The conventions are listed in the docstring of ``data.answers``.

Nothing here evaluates its input: numbers are read with regular expressions and ``fractions.Fraction``.
Every regular expression is linear-time, and callers cap the input length (``MAX_ANSWER_CHARS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Union

from data._canonical import (
    _COMMAND_RE,
    _MATH_WORDS,
    _MIXED_SPACE_RE,
    MAX_NESTING,
    compact,
)
from data._numbers import parse_number

MAX_ITEMS = 64  # longer lists / sets / tuples are treated as hostile


class NeedsSympy(Exception):
    """Raised by ``FastOracle`` when a comparison needs symbolic algebra (the sympy worker)."""


# --------------------------------------------------------------------------- tree nodes
@dataclass(frozen=True)
class Leaf:
    """One mathematical expression. ``number`` is set when the expression is a plain rational."""

    latex: str  # canonical LaTeX handed to latex2sympy
    key: str  # whitespace-free form used for string equality
    number: Fraction | None = None
    decimal: bool = False  # written with a decimal point / exponent (an approximation may be meant)
    pct: bool = False  # followed by a percent sign


@dataclass(frozen=True)
class Text:
    """A non-mathematical answer (``Evelyn``, ``east``, a multiple-choice letter, ``204_5``)."""

    value: str


@dataclass(frozen=True)
class Seq:
    """A bracketed sequence: ordered tuple, vector or interval, e.g. ``(1,2)``, ``[0,1)``."""

    open: str
    close: str
    items: tuple["Node", ...]


@dataclass(frozen=True)
class SetOf:
    """An explicit set ``\\{a, b\\}``: order and repetition do not matter."""

    items: tuple["Node", ...]


@dataclass(frozen=True)
class Many:
    """Several answers separated by commas / 'or' / 'and' (or a ``\\pm`` expansion): order does not matter."""

    items: tuple["Node", ...]


@dataclass(frozen=True)
class UnionOf:
    """Sets joined with ``\\cup``."""

    parts: tuple["Node", ...]


@dataclass(frozen=True)
class Matrix:
    rows: tuple[tuple["Node", ...], ...]


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs`` where the left side is not a lone variable, e.g. ``2x + 4y = 3``."""

    lhs: "Node"
    rhs: "Node"


@dataclass(frozen=True)
class Assign:
    """``x = value`` / ``f(x) = value``: compared through its value (the name is ignored)."""

    name: str
    value: "Node"


@dataclass(frozen=True)
class Relation:
    """``lhs op rhs`` with op one of ``<``, ``\\le`` (``>``/``\\ge`` are flipped) or ``\\ne``."""

    op: str
    lhs: "Node"
    rhs: "Node"


Node = Union[Leaf, Text, Seq, SetOf, Many, UnionOf, Matrix, Equation, Assign, Relation]


# --------------------------------------------------------------------------- parsing
_OPENERS = {"(": ")", "[": "]", "{": "}"}


def _scan(text: str):
    """Yield ``(index, token, depth)`` over ``text``; depth counts ``()[]{}``, ``\\{\\}``, ``\\langle\\rangle``
    and ``\\begin``/``\\end`` environments."""
    depth = 0
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            match = _COMMAND_RE.match(text, i)
            token = match.group(0) if match else "\\"
            if token in ("\\{", "\\langle", "\\begin"):
                yield i, token, depth
                depth += 1
            elif token in ("\\}", "\\rangle", "\\end"):
                depth -= 1
                yield i, token, depth
            else:
                yield i, token, depth
            i += len(token)
            continue
        if char in "([{":
            yield i, char, depth
            depth += 1
        elif char in ")]}":
            depth -= 1
            yield i, char, depth
        else:
            yield i, char, depth
        i += 1


def split_top(text: str, separators: frozenset[str]) -> list[str]:
    """Split ``text`` at the given separator tokens occurring at bracket depth 0."""
    parts: list[str] = []
    start = 0
    for index, token, depth in _scan(text):
        if depth == 0 and token in separators:
            parts.append(text[start:index])
            start = index + len(token)
    parts.append(text[start:])
    return parts


def _split_relations(text: str) -> tuple[list[str], list[str]]:
    """Parts and relation operators (``=``, ``<``, ``>``, ``\\le``, ``\\ge``, ``\\ne``, ``\\approx``) at depth 0."""
    parts, ops = [], []
    start = 0
    for index, token, depth in _scan(text):
        if depth == 0 and token in ("=", "<", ">", "\\le", "\\ge", "\\ne", "\\approx"):
            parts.append(text[start:index])
            ops.append(token)
            start = index + len(token)
    parts.append(text[start:])
    return parts, ops


def _closing_index(text: str) -> int:
    """Index where the group opened at ``text[0]`` (``(``, ``[``, ``{``, ``\\{``, ``\\langle``) closes, or -1."""
    for index, token, depth in _scan(text):
        if depth == 0 and token in (")", "]", "}", "\\}", "\\rangle"):
            return index
    return -1


_SHORT_NAME = r"(?:[A-Za-z]|\\(?:alpha|beta|gamma|delta|theta|lambda|mu|phi|varphi|psi|omega|rho|sigma|tau))"
_SHORT_LHS_RE = re.compile(_SHORT_NAME + r"(?:_\{?[A-Za-z0-9]+\}?)?'?(?:\([A-Za-z0-9, ]*\))?")
_LABEL_LHS_RE = re.compile(r"\|?[A-Z]{2,4}\|?|(?:m ?)?\\angle ?[A-Z]{1,3}|[A-Z] ?: ?[A-Z]")  # AB, |AB|, \angle ABC
_VARIABLE_TUPLE_RE = re.compile(r"\(\s*" + _SHORT_NAME + r"(?:\s*,\s*" + _SHORT_NAME + r")+\s*\)")
_IN_PREFIX_RE = re.compile(_SHORT_NAME + r"(?:_\{?[A-Za-z0-9]+\}?)?\s*\\in(?![A-Za-z])\s*")
_MATRIX_RE = re.compile(r"\\begin\{([pbBvV]?matrix|array)\}(.*)\\end\{\1\}", re.S)
_WORDS_RE = re.compile(r"[A-Za-z][A-Za-z' ]*")
_BASE_NUMERAL_RE = re.compile(r"\d[0-9A-Fa-f]*_\{?\d+\}?")
_CLOCK_TIME_RE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?")
_SPACED_NUMBERS_RE = re.compile(r"[+-]?\d+(?:\.\d+)?(?: [+-]?\d+(?:\.\d+)?)+")  # "1 2": not 12, not 1+2
_REALS_RE = re.compile(r"\\mathbb\s*\{?R\}?|\\R(?![A-Za-z])")
_EMPTY_SET = frozenset({"\\emptyset", "\\varnothing", "\\{\\}", "{}"})


def _flip(op: str) -> str:
    return {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le"}.get(op, op)


def _items(text: str, depth: int) -> tuple[Node, ...]:
    parts = [part for part in split_top(text, frozenset({",", ";"})) if part.strip()]
    if len(parts) > MAX_ITEMS:
        raise ValueError("too many items")
    items: list[Node] = []
    for part in parts:
        node = parse_tree(part, depth + 1)
        if isinstance(node, Many):  # a \pm expansion
            items.extend(node.items)
        else:
            items.append(node)
    return tuple(items)


def make_leaf(text: str) -> Node:
    """A leaf (or ``Text``) for one expression string."""
    text = text.strip()
    pct = text.endswith("%")
    if pct:
        text = text.rstrip("%").strip()
    mixed = _MIXED_SPACE_RE.fullmatch(text)
    if mixed:
        text = f"{mixed.group(1)}\\frac{{{mixed.group(2)}}}{{{mixed.group(3)}}}"
    key = compact(text)
    if key.startswith("+") and len(key) > 1:
        key, text = key[1:], text.lstrip("+ ")
    if not pct and _BASE_NUMERAL_RE.fullmatch(key) and "_" in key:
        return Text(key.replace("{", "").replace("}", ""))
    if _SPACED_NUMBERS_RE.fullmatch(key):  # only the same writing matches (latex2sympy would read 1+2)
        return Text(key + ("%" if pct else ""))
    if not pct and _CLOCK_TIME_RE.fullmatch(key):  # 12:00 is a time, not a ratio
        return Text(key.lstrip("0") or "0")
    if not pct and re.fullmatch(r"[A-Z]", key):  # multiple-choice letter
        return Text(key.lower())
    if not pct and _WORDS_RE.fullmatch(text) and len(key) >= 3 and key.lower() not in _MATH_WORDS:
        return Text(" ".join(text.lower().split()))
    number, decimal = parse_number(key)
    return Leaf(latex=text, key=key, number=number, decimal=decimal, pct=pct)


def parse_tree(text: str, depth: int = 0) -> Node:
    """Structure of a canonical answer string (see the node classes); raises ValueError when too deep or wide."""
    if depth > MAX_NESTING:
        raise ValueError("answer nested too deeply")
    text = text.strip().strip(",;").strip()
    if text.endswith(".") and not re.search(r"\d\.$", text):
        text = text[:-1].rstrip()
    if not text:
        return Text("")
    prefix = _IN_PREFIX_RE.match(text)
    if prefix and prefix.end() < len(text):
        return parse_tree(text[prefix.end() :], depth + 1)
    parts = split_top(text, frozenset({",", ";"}))
    if len(parts) > 1:
        return Many(_items(text, depth))
    parts = split_top(text, frozenset({"\\cup"}))
    if len(parts) > 1:
        return UnionOf(tuple(parse_tree(part, depth + 1) for part in parts))
    parts, ops = _split_relations(text)
    if ops:
        return _parse_relation(parts, ops, depth)
    if text in _EMPTY_SET:
        return SetOf(())
    if _REALS_RE.fullmatch(text):
        return Seq("(", ")", (make_leaf("-\\infty"), make_leaf("\\infty")))
    matrix = _MATRIX_RE.fullmatch(text)
    if matrix and "\\begin" not in matrix.group(2) and "\\end" not in matrix.group(2):
        return _parse_matrix(matrix.group(1), matrix.group(2), depth)
    group = _parse_group(text, depth)
    if group is not None:
        return group
    if "\\pm" in text or "\\mp" in text:
        first = text.replace("\\mp", "\\MINUS").replace("\\pm", "+").replace("\\MINUS", "-")
        second = text.replace("\\mp", "\\PLUS").replace("\\pm", "-").replace("\\PLUS", "+")
        return Many((make_leaf(first), make_leaf(second)))
    return make_leaf(text)


def _parse_group(text: str, depth: int) -> Node | None:
    """A whole-string bracket group: set, tuple / interval, vector, or redundant parentheses."""
    if text.startswith("\\{"):
        if text.endswith("\\}") and _closing_index(text) == len(text) - 2:
            inner = text[2:-2]
            return SetOf(_items(inner, depth) if inner.strip() else ())
        return None
    if text.startswith("\\langle"):
        if text.endswith("\\rangle") and _closing_index(text) == len(text) - len("\\rangle"):
            return Seq("(", ")", _items(text[len("\\langle") : -len("\\rangle")], depth))
        return None
    if not text or text[0] not in _OPENERS or _closing_index(text) != len(text) - 1:
        return None
    inner = text[1:-1]
    items = _items(inner, depth) if inner.strip() else ()
    if text[0] == "{":
        return SetOf(items) if len(items) > 1 else parse_tree(inner, depth + 1)
    if len(items) > 1:
        return Seq(text[0], text[-1], items)
    if text[0] == "(" and text[-1] == ")":
        return parse_tree(inner, depth + 1)
    if text[0] == "[" and text[-1] == "]" and _MATRIX_RE.fullmatch(inner.strip()):
        return parse_tree(inner, depth + 1)
    return None


def _parse_matrix(kind: str, body: str, depth: int) -> Node:
    if kind == "array":
        body = re.sub(r"^\s*\{[^{}]*\}", "", body)
    rows = [row for row in split_top(body, frozenset({"\\\\"})) if row.strip()]
    if len(rows) > MAX_ITEMS:
        raise ValueError("matrix too large")
    cells = tuple(
        tuple(parse_tree(cell, depth + 1) for cell in split_top(row, frozenset({"&"}))) for row in rows
    )
    return Matrix(cells)


def _parse_relation(parts: list[str], ops: list[str], depth: int) -> Node:
    if "\\approx" in ops:  # ``x = 1/3 \approx 0.33`` -> 1/3;  ``x \approx 11`` -> 11
        cut = ops.index("\\approx")
        exact_parts, exact_ops = parts[: cut + 1], ops[:cut]
        if exact_ops:
            return _parse_relation(exact_parts, exact_ops, depth)
        return parse_tree(parts[-1], depth + 1)
    if all(op == "=" for op in ops):
        first, last = parts[0].strip(), parts[-1].strip()
        if not last:
            return make_leaf("=".join(parts))
        if not first:  # "= 5"
            return parse_tree(last, depth + 1)
        if _SHORT_LHS_RE.fullmatch(first) or _VARIABLE_TUPLE_RE.fullmatch(first) or _LABEL_LHS_RE.fullmatch(first):
            return Assign(compact(first), parse_tree(last, depth + 1))
        if len(parts) > 2:  # a chain of equalities: the last member is the answer
            return parse_tree(last, depth + 1)
        if _SHORT_LHS_RE.fullmatch(last):
            return Assign(compact(last), parse_tree(first, depth + 1))
        return Equation(parse_tree(first, depth + 1), parse_tree(last, depth + 1))
    if "=" in ops:
        return make_leaf(" ".join(parts))
    if len(ops) == 2 and _SHORT_LHS_RE.fullmatch(parts[1].strip()) and "\\ne" not in ops:
        low, high = parts[0], parts[2]
        first, second = ops
        if first in (">", "\\ge") and second in (">", "\\ge"):
            low, high, first, second = high, low, _flip(second), _flip(first)
        if first in ("<", "\\le") and second in ("<", "\\le"):
            return Seq("(" if first == "<" else "[", ")" if second == "<" else "]",
                       (parse_tree(low, depth + 1), parse_tree(high, depth + 1)))
    if len(ops) == 1:
        lhs, rhs, op = parts[0], parts[1], ops[0]
        if op in (">", "\\ge"):
            lhs, rhs, op = rhs, lhs, _flip(op)
        return Relation(op, parse_tree(lhs, depth + 1), parse_tree(rhs, depth + 1))
    return make_leaf(" ".join(parts))
