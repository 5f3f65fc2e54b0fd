"""Structural comparison of two parsed answers (``data._normalize.parse_tree``), pure Python, no sympy.

``trees_equal`` walks two trees (numbers, tuples, sets, intervals, unions, matrices, equations, relations,
multiple answers) and asks an ``Oracle`` about what structure alone cannot decide. The in-process
``FastOracle`` decides numeric leaves exactly (``Fraction``) and raises ``NeedsSympy`` for everything else;
the sympy worker (``data._sympy_worker``) runs the very same comparison with ``data._sympy_compare.SympyOracle``,
which parses leaves with latex2sympy. The conventions are listed in the docstring of ``data.answers``.
"""

from __future__ import annotations

from typing import Protocol

from data._normalize import (
    Assign,
    Equation,
    Leaf,
    Many,
    Matrix,
    NeedsSympy,
    Node,
    Relation,
    Seq,
    SetOf,
    Text,
    UnionOf,
    _LABEL_LHS_RE,
    _SHORT_LHS_RE,
    make_leaf,
)
from data._numbers import numbers_equal


def leaf_numbers_equal(a: Leaf, b: Leaf) -> bool:
    """Compare two numeric leaves; ``x%`` matches ``x`` and ``x/100`` when only one side has a percent sign."""
    assert a.number is not None and b.number is not None
    if a.pct == b.pct:
        return numbers_equal(a.number, a.decimal, b.number, b.decimal)
    percent, other = (a, b) if a.pct else (b, a)
    return numbers_equal(percent.number, percent.decimal, other.number, other.decimal) or numbers_equal(
        percent.number / 100, percent.decimal, other.number, other.decimal
    )


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
    if (
        isinstance(a, Many)
        and not isinstance(b, Many)
        and not any(isinstance(item, Assign) for item in a.items)
        and all(trees_equal(item, b, oracle) for item in a.items)
    ):
        return True  # repeats ignored: one answer written twice (15\frac{39}{40}, \frac{639}{40}) is that answer
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
