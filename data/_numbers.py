"""Exact numbers and cheap size guards for final answers (pure Python, nothing evaluated).

``parse_number`` reads a plain number (integer, decimal, scientific, ``a/b``, ``\\frac``, mixed, repeating,
small powers) into a ``Fraction``; ``numbers_equal`` compares two of them under the checker's decimal
convention; ``looks_hostile`` flags, from the text alone, inputs whose value would be too large to compute
(huge powers, towers, factorials) or too deeply nested to parse.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from data._canonical import MAX_ANSWER_CHARS, MAX_NESTING, match_brace

MAX_RESULT_DIGITS = 10_000  # an integer power with more digits than this is hostile
MAX_EXPONENT_LOG10 = 6.0  # an exponent above 10**6 is hostile whatever the base
MAX_FACTORIAL = 2_000
APPROX_REL_TOL = Fraction(1, 10_000)  # decimal written by hand vs a non-terminating rational


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
