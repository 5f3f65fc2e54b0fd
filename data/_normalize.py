"""String-level normalisation and structural comparison of final answers (pure Python, no sympy).

``data._canonical.canonicalize`` first rewrites a final-answer string into a canonical LaTeX-ish form;
``parse_tree`` turns a canonical string into a small tree (numbers, tuples, sets, intervals, unions,
matrices, equations, relations, multiple answers), and ``trees_equal`` compares two trees, asking an
``Oracle`` about the leaves. The in-process ``FastOracle`` decides numeric leaves exactly (``Fraction``)
and raises ``NeedsSympy`` for everything else; the sympy worker (``data._sympy_worker``) runs the very
same comparison with an oracle that parses leaves with latex2sympy. The conventions are listed in the
docstring of ``data.answers``.

Nothing here evaluates its input: numbers are read with regular expressions and ``fractions.Fraction``.
Every regular expression is linear-time, and callers cap the input length (``MAX_ANSWER_CHARS``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, Union

from data._canonical import (
    _COMMAND_RE,
    _MATH_WORDS,
    _MIXED_SPACE_RE,
    MAX_ANSWER_CHARS,
    MAX_NESTING,
    compact,
    match_brace,
)

MAX_ITEMS = 64  # longer lists / sets / tuples are treated as hostile
MAX_RESULT_DIGITS = 10_000  # an integer power with more digits than this is hostile
MAX_EXPONENT_LOG10 = 6.0  # an exponent above 10**6 is hostile whatever the base
MAX_FACTORIAL = 2_000
APPROX_REL_TOL = Fraction(1, 10_000)  # decimal written by hand vs a non-terminating rational


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


# --------------------------------------------------------------------------- numbers
_DEC = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SCI = _DEC + r"(?:[eE][+-]?\d{1,3})?"
_PLAIN_RE = re.compile(r"([+-]?)(" + _SCI + r")")
_TIMES_TEN_RE = re.compile(r"([+-]?)(" + _DEC + r")(?:\\times|\\cdot|\*)10\^(?:\{([+-]?\d{1,3})\}|(\d))")
_POWER_RE = re.compile(r"([+-]?)(\d+)\^(?:\{([+-]?\d{1,3})\}|(\d))")
_FRAC_RE = re.compile(r"([+-]?)\\frac\{([+-]?" + _SCI + r")\}\{([+-]?" + _SCI + r")\}")
_SLASH_RE = re.compile(r"([+-]?)(" + _SCI + r")/(" + _SCI + r")")
_MIXED_RE = re.compile(r"([+-]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}")
_REPEATING_RE = re.compile(r"([+-]?)(\d*)\.(\d*)\\overline\{(\d{1,20})\}")


def parse_number(key: str) -> tuple[Fraction | None, bool]:
    """Exact value of a plain number written in ``key`` (no spaces) and whether it used a decimal point.

    Accepts integers, decimals (``.5``, ``3.``), scientific notation (``1.5e3``, ``1.5\\times10^{3}``),
    small integer powers (``2^{10}``), ``a/b``, ``\\frac{a}{b}`` and mixed numbers (``1\\frac{1}{2}``).
    Returns ``(None, False)`` for anything else.
    """
    if not key or len(key) > 60:
        return None, False
    try:
        match = _PLAIN_RE.fullmatch(key)
        if match:
            literal = match.group(2)
            value = Fraction(literal)
            return (-value if match.group(1) == "-" else value), ("." in literal or "e" in literal.lower())
        match = _TIMES_TEN_RE.fullmatch(key)
        if match:
            exponent = int(match.group(3) or match.group(4))
            value = Fraction(match.group(2)) * Fraction(10) ** exponent
            return (-value if match.group(1) == "-" else value), True
        match = _FRAC_RE.fullmatch(key) or _SLASH_RE.fullmatch(key)
        if match:
            numerator, denominator = Fraction(match.group(2)), Fraction(match.group(3))
            if denominator == 0:
                return None, False
            value = numerator / denominator
            decimal = "." in match.group(2) + match.group(3) or "e" in (match.group(2) + match.group(3)).lower()
            return (-value if match.group(1) == "-" else value), decimal
        match = _MIXED_RE.fullmatch(key)
        if match and int(match.group(4)) != 0:
            value = int(match.group(2)) + Fraction(int(match.group(3)), int(match.group(4)))
            return (-value if match.group(1) == "-" else value), False
        match = _REPEATING_RE.fullmatch(key)  # 0.1\overline{6} = 1/6
        if match and len(match.group(2) + match.group(3)) <= 40:
            fixed, repeating = match.group(3), match.group(4)
            value = int(match.group(2) or "0") + (
                Fraction(int(fixed or "0")) + Fraction(int(repeating), 10 ** len(repeating) - 1)
            ) / 10 ** len(fixed)
            return (-value if match.group(1) == "-" else value), False
        match = _POWER_RE.fullmatch(key)
        if match:
            base, exponent = int(match.group(2)), int(match.group(3) or match.group(4))
            if base == 0 and exponent < 0 or abs(exponent) * math.log10(max(base, 2)) > 400:
                return None, False
            value = Fraction(base) ** exponent
            return (-value if match.group(1) == "-" else value), False
    except (ValueError, ZeroDivisionError, OverflowError):
        return None, False
    return None, False


def _terminates(value: Fraction) -> bool:
    """Whether ``value`` has a finite decimal expansion (denominator of the form 2^a 5^b)."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def numbers_equal(a: Fraction, a_decimal: bool, b: Fraction, b_decimal: bool) -> bool:
    """Exact equality; but a hand-written decimal matches a non-terminating rational within 1e-4 relative."""
    if a == b:
        return True
    if a_decimal == b_decimal:
        return False
    exact = b if a_decimal else a
    if _terminates(exact):
        return False
    return abs(a - b) <= APPROX_REL_TOL * max(abs(a), abs(b))


def leaf_numbers_equal(a: Leaf, b: Leaf) -> bool:
    """Compare two numeric leaves; ``x%`` matches ``x`` and ``x/100`` when only one side has a percent sign."""
    assert a.number is not None and b.number is not None
    if a.pct == b.pct:
        return numbers_equal(a.number, a.decimal, b.number, b.decimal)
    percent, other = (a, b) if a.pct else (b, a)
    return numbers_equal(percent.number, percent.decimal, other.number, other.decimal) or numbers_equal(
        percent.number / 100, percent.decimal, other.number, other.decimal
    )


# --------------------------------------------------------------------------- hostile input
_CARET_RE = re.compile(r"\^")
_EXPONENT_TOKEN_RE = re.compile(r"[+-]?\d+(?:\.\d+)?|\\?[A-Za-z]+|.")
_FACTORIAL_RE = re.compile(r"(?<!\d)(\d+) ?!")


def _exponent_text(text: str, caret: int) -> str:
    i = caret + 1
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] == "{":
        end = match_brace(text, i)
        return text[i + 1 : end] if end > 0 else text[i + 1 :]
    match = _EXPONENT_TOKEN_RE.match(text, i)
    return match.group(0) if match else ""


def _log10_upper(text: str, depth: int = 0) -> float | None:
    """Rough log10 of the value of an exponent: exact for literals and literal power towers, else None."""
    text = text.strip().lstrip("+-").strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        value = float(text) if len(text) < 300 else float("inf")
        return math.log10(value) if value > 0 else 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*\^\s*(.+)", text)
    if match and depth < 10:
        exponent = _exponent_text(text, text.index("^"))
        inner = _log10_upper(exponent, depth + 1)
        base = float(match.group(1)) if len(match.group(1)) < 300 else float("inf")
        if inner is None or base <= 1:
            return None if inner is None else 0.0
        if inner > 300:
            return float("inf")
        return (10.0**inner) * math.log10(base)
    return None


def nesting_depth(text: str) -> int:
    """Deepest nesting of ``([{`` brackets in ``text``."""
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in ")]}":
            depth -= 1
    return deepest


def looks_hostile(canonical: str) -> bool:
    """Cheap lexical guard: huge integer powers / towers / factorials, deep nesting, very long input."""
    if len(canonical) > MAX_ANSWER_CHARS or nesting_depth(canonical) > MAX_NESTING:
        return True
    for match in _CARET_RE.finditer(canonical):
        exponent = _log10_upper(_exponent_text(canonical, match.start()))
        if exponent is None:
            continue
        if exponent > MAX_EXPONENT_LOG10:
            return True
        start = match.start()
        while start > 0 and canonical[start - 1] == " ":
            start -= 1
        end = start
        while start > 0 and (canonical[start - 1].isdigit() or canonical[start - 1] == "."):
            start -= 1
        digits = len(canonical[start:end].replace(".", "").lstrip("0"))
        if digits and (10.0**exponent) * digits > MAX_RESULT_DIGITS:
            return True
    for match in _FACTORIAL_RE.finditer(canonical):
        if len(match.group(1)) > 6 or int(match.group(1)) > MAX_FACTORIAL:
            return True
    return False


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


# --------------------------------------------------------------------------- comparison
class Oracle(Protocol):
    """Decides what the structural comparison cannot: leaves, equations, relations, set algebra."""

    def leaves(self, a: Leaf, b: Leaf) -> bool: ...

    def equations(self, a: Equation, b: Equation) -> bool: ...

    def relations(self, a: Relation, b: Relation) -> bool: ...

    def sets(self, a: Node, b: Node) -> bool: ...

    def matrix_leaf(self, matrix: Matrix, leaf: Leaf) -> bool: ...


class FastOracle:
    """In-process oracle: exact numbers and identical strings; anything symbolic raises ``NeedsSympy``."""

    def leaves(self, a: Leaf, b: Leaf) -> bool:
        if a.number is not None and b.number is not None:
            return leaf_numbers_equal(a, b)
        if a.key == b.key and a.pct == b.pct:
            return True
        raise NeedsSympy

    def equations(self, a: Equation, b: Equation) -> bool:
        raise NeedsSympy

    def relations(self, a: Relation, b: Relation) -> bool:
        raise NeedsSympy

    def sets(self, a: Node, b: Node) -> bool:
        raise NeedsSympy

    def matrix_leaf(self, matrix: Matrix, leaf: Leaf) -> bool:
        if leaf.number is not None:
            return False
        raise NeedsSympy


def _set_like(node: Node) -> bool:
    if isinstance(node, Seq):
        return len(node.items) == 2 and node.open in "([" and node.close in ")]"
    return isinstance(node, (SetOf, UnionOf))


def _as_interval(relation: Relation) -> Seq | None:
    """``x < 3`` -> ``(-\\infty, 3)``; ``2 \\le x`` -> ``[2, \\infty)``; None for other relations."""
    if relation.op == "\\ne":
        return None
    closed = relation.op == "\\le"
    if isinstance(relation.lhs, Leaf) and _SHORT_LHS_RE.fullmatch(relation.lhs.key):
        return Seq("(", "]" if closed else ")", (make_leaf("-\\infty"), relation.rhs))
    if isinstance(relation.rhs, Leaf) and _SHORT_LHS_RE.fullmatch(relation.rhs.key):
        return Seq("[" if closed else "(", ")", (relation.lhs, make_leaf("\\infty")))
    return None


def _unordered_equal(a: tuple[Node, ...], b: tuple[Node, ...], oracle: Oracle, multiset: bool) -> bool:
    if multiset and len(a) != len(b):
        return False
    if multiset:
        unused = list(b)
        for item in a:
            for index, candidate in enumerate(unused):
                if trees_equal(item, candidate, oracle):
                    del unused[index]
                    break
            else:
                return False
        return True
    return all(any(trees_equal(x, y, oracle) for y in b) for x in a) and all(
        any(trees_equal(y, x, oracle) for x in a) for y in b
    )


def _ordered_equal(a: tuple[Node, ...], b: tuple[Node, ...], oracle: Oracle) -> bool:
    return len(a) == len(b) and all(trees_equal(x, y, oracle) for x, y in zip(a, b))


def _vector(matrix: Matrix) -> tuple[Node, ...] | None:
    if len(matrix.rows) == 1:
        return matrix.rows[0]
    if all(len(row) == 1 for row in matrix.rows):
        return tuple(row[0] for row in matrix.rows)
    return None


def trees_equal(a: Node, b: Node, oracle: Oracle) -> bool:
    """Whether two answer trees mean the same thing (conventions in ``data.answers``)."""
    if a == b:
        return True
    if isinstance(a, Assign) or isinstance(b, Assign):
        return _assign_equal(a, b, oracle)
    match a, b:
        case Leaf(), Leaf():
            return oracle.leaves(a, b)
        case Text(), Text():
            return a.value == b.value
        case Many(), Many():
            return _many_equal(a, b, oracle)
        case SetOf(), SetOf():
            return _unordered_equal(a.items, b.items, oracle, multiset=False)
        case Seq(), Seq():
            return a.open == b.open and a.close == b.close and _ordered_equal(a.items, b.items, oracle)
        case UnionOf(), UnionOf():
            return _unordered_equal(a.parts, b.parts, oracle, multiset=True) or oracle.sets(a, b)
        case Matrix(), Matrix():
            return len(a.rows) == len(b.rows) and all(_ordered_equal(x, y, oracle) for x, y in zip(a.rows, b.rows))
        case Equation(), Equation():
            return oracle.equations(a, b)
        case Relation(), Relation():
            return oracle.relations(a, b)
    return _mixed_equal(a, b, oracle) or _mixed_equal(b, a, oracle)


def _assign_equal(a: Node, b: Node, oracle: Oracle) -> bool:
    if isinstance(a, Assign) and isinstance(b, Assign):
        labels = [name for name in (a.name, b.name) if _LABEL_LHS_RE.fullmatch(name)]
        if labels and a.name != b.name:  # AB = 4 vs CD = 4: different quantities
            return False
        return trees_equal(a.value, b.value, oracle)
    assign, other = (a, b) if isinstance(a, Assign) else (b, a)
    assert isinstance(assign, Assign)
    if isinstance(other, Equation) and isinstance(assign.value, Leaf) and _SHORT_LHS_RE.fullmatch(assign.name):
        return oracle.equations(Equation(make_leaf(assign.name), assign.value), other)
    return trees_equal(assign.value, other, oracle)


def _many_equal(a: Many, b: Many, oracle: Oracle) -> bool:
    names_a = [item.name for item in a.items if isinstance(item, Assign)]
    names_b = [item.name for item in b.items if isinstance(item, Assign)]
    if (
        len(names_a) == len(a.items) == len(names_b) == len(b.items)
        and len(set(names_a)) == len(names_a)
        and sorted(names_a) == sorted(names_b)
    ):  # x = 1, y = 2  vs  y = 2, x = 1: match by name
        by_name = {item.name: item.value for item in b.items}  # type: ignore[union-attr]
        return all(trees_equal(item.value, by_name[item.name], oracle) for item in a.items)  # type: ignore[union-attr]
    return _unordered_equal(a.items, b.items, oracle, multiset=False)


def _mixed_equal(a: Node, b: Node, oracle: Oracle) -> bool:
    """Comparisons across node types that can still agree (tried in both orders)."""
    if isinstance(a, Many) and isinstance(b, Seq) and b.open == "(" and b.close == ")":
        return _ordered_equal(a.items, b.items, oracle)  # 6, 31, -1  vs  (6, 31, -1)
    if isinstance(a, Many) and isinstance(b, SetOf):
        return _unordered_equal(a.items, b.items, oracle, multiset=False)
    if isinstance(a, Matrix) and isinstance(b, Seq) and (b.open + b.close) in ("()", "[]"):
        vector = _vector(a)
        return vector is not None and _ordered_equal(vector, b.items, oracle)
    if isinstance(a, Matrix) and isinstance(b, Leaf):
        return oracle.matrix_leaf(a, b)
    if isinstance(a, Relation) and isinstance(b, Seq):
        interval = _as_interval(a)
        return interval is not None and trees_equal(interval, b, oracle)
    if _set_like(a) and _set_like(b) and isinstance(a, UnionOf):
        return oracle.sets(a, b)
    return False
