"""Answer comparison with sympy: the decisions the sympy worker process (``data._sympy_worker``) makes.

``compare_canonical(pred, gold)`` compares two canonical answer strings: their trees (``data._normalize``) are
matched by ``data._compare.trees_equal`` with ``SympyOracle`` deciding the leaves, equations, relations, sets
and matrices.

Leaves are parsed with ``latex2sympy2_extended`` (an ANTLR grammar, no ``eval``). Two exact expressions
(no decimal) are compared exactly: their difference must be 0, decided with rational arithmetic when it
evaluates to a rational, else by evaluating the difference itself with adaptive precision (sympy raises its
working precision until 40 digits of the difference are known, up to 150 digits; a difference that still
cancels completely counts as 0), so ``2^{100} != 2^{100}-1`` and ``\frac{1}{10^{40}} != 0``. Only where
that is not possible (sums, integrals, limits, or no sample point gives a number) are the two sides' 40-digit
values compared, to 1e-25 relative. Expressions holding a decimal (a sympy ``Float``) must agree to 1e-4
relative. Values are never compared with an absolute tolerance (only 0 is close to 0). Expressions
with free symbols are compared at several fixed rational points (probabilistic identity test), ``simplify``
is only a last resort.

Importing this module loads sympy and latex2sympy: only the worker process does, never the parent that checks
answers.
"""

from __future__ import annotations

import sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy
from sympy.matrices import MatrixBase
from sympy.matrices.expressions import MatrixExpr

from data._compare import leaf_numbers_equal, trees_equal
from data._normalize import (
    Equation,
    Leaf,
    Matrix,
    Node,
    Relation,
    Seq,
    SetOf,
    UnionOf,
    parse_tree,
)
from data._numbers import looks_hostile

_CONVERSION = ConversionConfig(
    interpret_as_mixed_fractions=True,
    interpret_simple_eq_as_assignment=False,
    interpret_contains_as_eq=True,
    lowercase_symbols=True,
)
_POINTS = tuple(
    sympy.Rational(p, q) for p, q in ((137, 100), (271, 100), (53, 100), (319, 100), (113, 50), (97, 40))
)
_CONSTANTS = {sympy.Symbol("i"): sympy.I, sympy.Symbol("e"): sympy.E}
_MAX_INTEGER_DIGITS = 20_000
EXACT_REL_TOL = 1e-25
APPROX_REL_TOL = 1e-4
PRECISION_DIGITS = 40
_MAX_WORKING_DIGITS = 150  # evalf may raise its working precision this far to resolve a cancelling difference
_ZERO_ACCURACY_BITS = 8  # an evaluated difference known to fewer bits than this cancelled out: it is 0

Parsed = tuple[sympy.Basic | MatrixBase, bool]  # expression, holds a decimal (approximate)


def _has_huge_integer(expr: sympy.Basic) -> bool:
    return any(abs(atom.p) > 10**_MAX_INTEGER_DIGITS for atom in expr.atoms(sympy.Integer))


def _substitutions(symbols: list[sympy.Symbol]) -> list[dict]:
    """The fixed rational sample points for ``symbols`` (one empty substitution when there are none)."""
    if not symbols:
        return [{}]
    return [
        {symbol: _POINTS[(k + 2 * j) % len(_POINTS)] + sympy.Rational(j, 7) for j, symbol in enumerate(symbols)}
        for k in range(4)
    ]


def _point_values(expr: sympy.Basic, symbols: list[sympy.Symbol]) -> list[sympy.Expr | None]:
    """``expr`` evaluated at the fixed sample points (None where the value is not a finite number)."""
    values: list[sympy.Expr | None] = []
    for substitution in _substitutions(symbols):
        try:
            value = expr.evalf(PRECISION_DIGITS, subs=substitution or None)
            real, imag = value.as_real_imag()
            real, imag = real.evalf(PRECISION_DIGITS), imag.evalf(PRECISION_DIGITS)
            if real.is_Number and imag.is_Number and real.is_finite and imag.is_finite:
                values.append(sympy.Float(real, PRECISION_DIGITS) + sympy.I * sympy.Float(imag, PRECISION_DIGITS))
            else:
                values.append(None)
        except (TypeError, ValueError, ArithmeticError, AttributeError, RecursionError, NotImplementedError):
            values.append(None)
    return values


def _close(a: sympy.Expr, b: sympy.Expr, approx: bool) -> bool:
    """Relative closeness of two numeric values (no absolute tolerance: only 0 is close to 0)."""
    difference = abs(sympy.N(a - b, PRECISION_DIGITS))
    scale = max(abs(sympy.N(a, PRECISION_DIGITS)), abs(sympy.N(b, PRECISION_DIGITS)))
    return bool(difference <= (APPROX_REL_TOL if approx else EXACT_REL_TOL) * scale)


_UNEVALUATED = (sympy.Integral, sympy.Sum, sympy.Product, sympy.Limit, sympy.Derivative)


def _zero_part(part: sympy.Expr) -> bool | None:
    """Whether one (real or imaginary) part of an evaluated difference is 0; None when it is not a number."""
    if part.is_zero:
        return True
    if not isinstance(part, sympy.Float) or not part.is_finite:
        return None
    # a Float's precision is the accuracy evalf reached: a difference that cancelled at every working
    # precision up to ``maxn`` digits comes back with (almost) no accurate bit, e.g. ``-0.e-171``
    return part._prec < _ZERO_ACCURACY_BITS


def _zero_difference(difference: sympy.Expr, substitution: dict) -> bool | None:
    """Whether an exact difference is 0 (at ``substitution``): True, False, or None when it cannot be evaluated."""
    if not substitution and difference.is_Rational:
        return bool(difference == 0)
    try:
        value = difference.evalf(PRECISION_DIGITS, subs=substitution or None, maxn=_MAX_WORKING_DIGITS)
        if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            return None
        if value.is_Rational:
            return bool(value == 0)
        real, imag = value.as_real_imag()
        verdicts = (_zero_part(real), _zero_part(imag))
    except (TypeError, ValueError, ArithmeticError, AttributeError, RecursionError, NotImplementedError):
        return None
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _exactly_equal(a: sympy.Expr, b: sympy.Expr) -> bool | None:
    """Exact comparison of two expressions without decimals: their difference must be 0 (at every sample
    point when they have free symbols). None when the difference cannot be evaluated anywhere, or holds a
    sum / integral / limit (then the numeric comparison of the two sides decides)."""
    difference = a - b
    if difference.has(*_UNEVALUATED):  # sums, integrals: evalf at high precision can take minutes
        return None
    if not difference.is_Rational:
        try:
            difference = difference.doit()  # latex2sympy leaves 2^{100}, 1000! unevaluated; integers stay exact
        except Exception:  # noqa: BLE001 - sympy raises many kinds; the numeric comparison decides
            return None
    if _has_huge_integer(difference):
        return None
    symbols = sorted(difference.free_symbols, key=str)
    decided = 0
    for substitution in _substitutions(symbols):
        verdict = _zero_difference(difference, substitution)
        if verdict is False:
            return False
        decided += verdict is True
    return True if decided else None


def _numerically_equal(a: sympy.Basic, b: sympy.Basic, approx: bool) -> bool | None:
    """Compare at the sample points; None when no point gives finite numbers on both sides."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    checked = 0
    for value_a, value_b in zip(_point_values(a, symbols), _point_values(b, symbols)):
        if value_a is None or value_b is None:
            continue
        if not _close(value_a, value_b, approx):
            return False
        checked += 1
    return True if checked else None


def exprs_equal(a: sympy.Basic | MatrixBase, b: sympy.Basic | MatrixBase, approx: bool) -> bool:
    """Whether two sympy objects are equal (numbers, expressions, matrices, sets)."""
    if any(isinstance(side, sympy.Basic) and side.has(sympy.zoo, sympy.nan) for side in (a, b)):
        return False  # 1/0 is no answer, even when compared with another 1/0
    if a == b:
        return True
    if isinstance(a, MatrixBase) or isinstance(b, MatrixBase):
        return (
            isinstance(a, MatrixBase)
            and isinstance(b, MatrixBase)
            and a.shape == b.shape
            and all(exprs_equal(x, y, approx) for x, y in zip(a, b))
        )
    if not isinstance(a, sympy.Expr) or not isinstance(b, sympy.Expr):
        return False  # sets, relations, booleans: structural equality only (checked above)
    if _has_huge_integer(a) or _has_huge_integer(b):
        return False
    if a.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan) or b.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
        return False
    verdict = None if approx else _exactly_equal(a, b)
    if verdict is None:
        verdict = _numerically_equal(a, b, approx)
    if verdict is not None:
        return verdict
    if sympy.count_ops(a) + sympy.count_ops(b) > 200:  # simplify is too slow to be worth it on big input
        return False
    try:
        return bool(sympy.simplify(a - b) == 0)
    except Exception:  # noqa: BLE001 - sympy raises many kinds; undecidable means not equal
        return False


class SympyOracle:
    """Leaf decisions with latex2sympy + sympy (numeric leaves still use exact fractions)."""

    def __init__(self) -> None:
        self._parsed: dict[str, Parsed | None] = {}

    def parse(self, leaf: Leaf) -> Parsed | None:
        if leaf.number is not None:
            return sympy.Rational(leaf.number.numerator, leaf.number.denominator), leaf.decimal
        if leaf.latex not in self._parsed:
            self._parsed[leaf.latex] = self._parse_latex(leaf.latex)
        return self._parsed[leaf.latex]

    @staticmethod
    def _parse_latex(latex: str) -> Parsed | None:
        try:
            expr = latex2sympy(latex, normalization_config=None, conversion_config=_CONVERSION)
        except Exception:  # noqa: BLE001 - the ANTLR parser raises plain Exception on bad input
            return None
        if isinstance(expr, MatrixExpr):  # e.g. a sum or product of matrices, left unevaluated
            try:
                expr = expr.doit().as_explicit()
            except Exception:  # noqa: BLE001 - symbolic shapes and the like
                return None
        if isinstance(expr, MatrixBase):
            return expr, any(entry.has(sympy.Float) for entry in expr)
        if not isinstance(expr, sympy.Basic):
            return None
        unevaluated = {atom: atom.args[0] for atom in expr.atoms(sympy.UnevaluatedExpr)}  # percent: x*(1/100)
        expr = expr.xreplace({**_CONSTANTS, **unevaluated})
        return expr, expr.has(sympy.Float)

    def leaves(self, a: Leaf, b: Leaf) -> bool:
        if a.number is not None and b.number is not None:
            return leaf_numbers_equal(a, b)
        if a.key == b.key and a.pct == b.pct:
            return True
        parsed_a, parsed_b = self.parse(a), self.parse(b)
        if parsed_a is None or parsed_b is None:
            return False
        (expr_a, approx_a), (expr_b, approx_b) = parsed_a, parsed_b
        approx = approx_a or approx_b
        if a.pct == b.pct:
            return exprs_equal(expr_a, expr_b, approx)
        percent, other = (expr_a, expr_b) if a.pct else (expr_b, expr_a)
        if exprs_equal(percent, other, approx):
            return True
        plain_number = isinstance(other, sympy.Expr) and not other.free_symbols
        return plain_number and isinstance(percent, sympy.Expr) and exprs_equal(percent / 100, other, approx)

    def _difference(self, lhs: Node, rhs: Node) -> Parsed | None:
        if not isinstance(lhs, Leaf) or not isinstance(rhs, Leaf):
            return None
        parsed_lhs, parsed_rhs = self.parse(lhs), self.parse(rhs)
        if parsed_lhs is None or parsed_rhs is None:
            return None
        if not isinstance(parsed_lhs[0], sympy.Expr) or not isinstance(parsed_rhs[0], sympy.Expr):
            return None
        return parsed_lhs[0] - parsed_rhs[0], parsed_lhs[1] or parsed_rhs[1]

    def _proportional(self, a: Parsed | None, b: Parsed | None, positive: bool) -> bool:
        """Whether ``a = k * b`` for a constant ``k != 0`` (``k > 0`` when ``positive``)."""
        if a is None or b is None:
            return False
        (expr_a, approx_a), (expr_b, approx_b) = a, b
        approx = approx_a or approx_b
        symbols = sorted(expr_a.free_symbols | expr_b.free_symbols, key=str)
        if not symbols:
            return exprs_equal(expr_a, expr_b, approx)
        ratios = []
        for value_a, value_b in zip(_point_values(expr_a, symbols), _point_values(expr_b, symbols)):
            if value_a is None or value_b is None:
                continue
            a_zero, b_zero = abs(value_a) < 1e-30, abs(value_b) < 1e-30
            if a_zero != b_zero:
                return False
            if not a_zero:
                ratios.append(sympy.N(value_a / value_b, PRECISION_DIGITS))
        if not ratios:
            return False
        first = ratios[0]
        if positive and not (abs(sympy.im(first)) < 1e-20 and sympy.re(first) > 0):
            return False
        return all(_close(ratio, first, approx) for ratio in ratios[1:])

    def equations(self, a: Equation, b: Equation) -> bool:
        if trees_equal(a.lhs, b.lhs, self) and trees_equal(a.rhs, b.rhs, self):
            return True
        return self._proportional(self._difference(a.lhs, a.rhs), self._difference(b.lhs, b.rhs), positive=False)

    def relations(self, a: Relation, b: Relation) -> bool:
        if a.op != b.op:
            return False
        if trees_equal(a.lhs, b.lhs, self) and trees_equal(a.rhs, b.rhs, self):
            return True
        return self._proportional(
            self._difference(a.lhs, a.rhs), self._difference(b.lhs, b.rhs), positive=a.op != "\\ne"
        )

    def _to_set(self, node: Node) -> sympy.Set | None:
        if isinstance(node, UnionOf):
            parts = [self._to_set(part) for part in node.parts]
            return None if any(part is None for part in parts) else sympy.Union(*parts)
        if isinstance(node, SetOf):
            items = [self.parse(item) if isinstance(item, Leaf) else None for item in node.items]
            if any(item is None for item in items):
                return None
            return sympy.FiniteSet(*(item[0] for item in items))  # type: ignore[index]
        if isinstance(node, Seq) and len(node.items) == 2 and node.open in "([" and node.close in ")]":
            ends = [self.parse(item) if isinstance(item, Leaf) else None for item in node.items]
            if any(end is None for end in ends):
                return None
            return sympy.Interval(ends[0][0], ends[1][0], node.open == "(", node.close == ")")  # type: ignore[index]
        return None

    def sets(self, a: Node, b: Node) -> bool:
        try:
            set_a, set_b = self._to_set(a), self._to_set(b)
            if set_a is None or set_b is None:
                return False
            return bool(set_a == set_b or sympy.simplify(set_a.symmetric_difference(set_b)) == sympy.EmptySet)
        except Exception:  # noqa: BLE001 - symbolic endpoints and the like
            return False

    def matrix_leaf(self, matrix: Matrix, leaf: Leaf) -> bool:
        parsed = self.parse(leaf)
        if parsed is None or not isinstance(parsed[0], MatrixBase):
            return False
        if parsed[0].shape != (len(matrix.rows), len(matrix.rows[0]) if matrix.rows else 0):
            return False
        cells = [cell for row in matrix.rows for cell in row]
        if not all(isinstance(cell, Leaf) for cell in cells):
            return False
        parsed_cells = [self.parse(cell) for cell in cells]  # type: ignore[arg-type]
        if any(cell is None for cell in parsed_cells):
            return False
        return all(
            exprs_equal(cell[0], entry, cell[1] or parsed[1])  # type: ignore[index]
            for cell, entry in zip(parsed_cells, parsed[0])
        )


def compare_canonical(pred: str, gold: str) -> bool:
    """Full comparison of two canonical answer strings (as produced by ``canonicalize``)."""
    if looks_hostile(pred) or looks_hostile(gold):  # the parent checks too; this guards direct use
        return pred == gold
    try:
        return trees_equal(parse_tree(pred), parse_tree(gold), SympyOracle())
    except (Exception, RecursionError, MemoryError):  # noqa: BLE001 - a crash in sympy is a wrong answer
        return False

