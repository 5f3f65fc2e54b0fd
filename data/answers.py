"""Final answers: find them in a solution text (``extract_answer``) and compare them (``is_equivalent``).

Extraction order (``extract_answer``): the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces
matched; ``\\boxed 5`` works too), together with the boxes right before it that only separators keep apart
(``\\boxed{1} and \\boxed{-2}`` -> ``1, -2``, so boxing several candidates is a multi-part answer, not a
hedge that the last one wins); else the text after the last ``####`` (GSM8K; commas between digits
removed; a markdown heading such as ``#### Step 2`` is skipped); else the last "The final answer is ...",
"The answer is ...", "answer is: ...", "Answer: ..." (the rest of that line: its leading ``$...$`` if it
starts with one (``\\$`` inside does not end it), joined with the ``$...$`` that follow it separated only by
commas / 'and' / 'or' (``$5$ or $6$`` -> ``5, 6``), else up to the end of the sentence; trailing
``.``/``$`` stripped); else the last number in the text (commas removed; ``-.5`` keeps its sign and point);
else None.

Equivalence conventions (``is_equivalent(pred, gold)``; symmetric; ``pred=None`` is never equivalent):

* Numbers are exact rationals: ``0.5 == .5 == 1/2 == \\frac12``, ``18 == 18.00``, ``1.5e3 ==
  1.5\\times 10^3 == 1500``, mixed numbers ``1\\frac12 == 1 1/2 == 1.5``, repeating decimals
  ``0.\\overline{3} == 1/3``. Two terminating decimals / integers must be exactly equal (``1.0001 != 1``;
  there is no absolute tolerance, so ``1e-10 != 0``).
* Tolerance: a hand-written decimal matches a rational whose expansion does not terminate when within
  1e-4 relative (``0.3333 == 1/3``, ``2.6667 == 8/3``, but ``0.333 != 1/3``, ``0.67 != 2/3``). When sympy
  evaluates an expression that holds a decimal, the same 1e-4 relative tolerance applies (``1.4142 ==
  \\sqrt2``, ``3.1416 == \\pi``, ``3.14 != \\pi``); exact symbolic values are compared exactly (``2^{100} !=
  2^{100}-1``, ``\\frac{1}{10^{40}} != 0``; see ``data._sympy_compare``).
* Thousands separators: ``1,000 == 1000 == 1{,}000 == 1,\\!000 == 1 000``; other spaces between digits are
  kept (``1 1/2 != 11/2``, ``1 2 != 12``). Commas inside brackets
  separate items (``(1,000)`` is a pair), and ``32, 349`` (with a space) is two answers. A decimal comma
  is NOT supported: ``1,5`` is the two answers 1 and 5.
* Percent: ``x%`` (``x\\%``, ``x percent``, ``x pct``) equals ``x`` and also ``x/100`` when the other side
  has no percent sign and is a plain number (``50\\% == 50 == 0.5``); without a percent sign on either
  side ``0.5 != 50``.
* Units and text: a trailing unit is dropped (``5 \\text{ cm}^2``, ``5\\mbox{ inches}``, ``125 miles``,
  ``10 square units``, ``10weeks``, ``5 cm``; but ``10cm``, ``4 ab`` and ``6xyz`` stay products: a plain word
  is a unit when it is a short unit name or has 4+ letters); scale words are applied, never dropped
  (``1.5 million == 1500000 != 1.5``, ``3 \\text{ thousand} == 3000``), as are ``\\$``, ``$``, ``\\text{}`` /
  ``\\mbox{}`` wrappers (``\\text{5} == 5``), ``\\left``/``\\right``, ``\\!``/``\\,``, ``\\displaystyle``, a
  leading ``+`` and a trailing period; ``\\dfrac``/``\\tfrac`` mean ``\\frac``. Word answers compare
  case-insensitively (``\\text{Evelyn} == evelyn``); multiple choice ``(B) == \\text{(B)} == B``; a numeral
  with a base subscript compares as written (``204_5 == 204_{5}``, ``204_5 != 204``).
* Degrees: ``^\\circ`` is dropped (``30^\\circ == 30``; no conversion, so ``\\frac{\\pi}{6} != 30^\\circ``),
  except inside a trigonometric function, where degrees become radians (``\\cos 60^\\circ == 0.5``).
* Structures: ``(a, b)`` is ordered and brackets must match (``(0,1) != [0,1]``; tuples and intervals
  share this rule); ``\\langle a, b \\rangle == (a, b)``; a one-row / one-column matrix equals the tuple of
  its entries; ``\\{...\\}`` is a set (order and repeats ignored); answers separated by commas, 'or' or
  'and' are unordered, repeats ignored (``1, 2 == 2, 1``; ``5, 5 == 5``), but match a parenthesised tuple only in order
  (``6, 31, -1 == (6,31,-1)``); ``\\cup`` unions compare part by part, then as sympy sets (``(0,1] \\cup (1,2) == (0,2)``);
  ``a \\pm b`` is the two answers ``a+b, a-b``; ``\\mathbb{R} == (-\\infty, \\infty)``.
* Equations: a lone variable (or ``f(x)``) on the left is dropped (``x = 3 == 3``, ``y = 2x+3 == 2x+3``);
  ``x=1 \\text{ or } x=2 == 1, 2``; named answers match by name (``x=1, y=2 == y=2, x=1``); in a chain
  ``x = 5+6 = 11`` the last member counts; ``x = 1/3 \\approx 0.33`` counts as 1/3; other equations are
  equal up to a nonzero factor (``2x+4y=3 == y = -x/2 + 3/4``), inequalities up to a positive factor
  (``x < 1 == -x > -1``); ``a \\le x \\le b == [a, b]``, ``x > 5 == (5, \\infty)``, ``x \\in S == S``.
* Symbols: latex2sympy lower-cases letters (``3R^2 == 3r^2``); ``i`` is the imaginary unit and ``e`` is
  Euler's number; expressions are compared numerically at fixed positive sample points (so identities
  that hold for positive values, like ``\\sqrt{x^2} == x``, count as equal), ``simplify`` as a last resort.

Safety: nothing is ever evaluated as Python (no ``eval``/``sympify``/``parse_expr`` of input); numbers
are read with regular expressions and ``fractions.Fraction``; LaTeX is parsed by latex2sympy's ANTLR
grammar in a separate worker process (``data._sympy_worker``, 2 GiB memory cap) that is killed and
replaced when it does not answer within ``timeout`` seconds (the verdict is then False). Inputs longer
than 2,000 characters, nested deeper than 50 brackets, or holding huge powers / power towers /
factorials are only compared as strings; canonical forms longer than 1,000 characters never go to
sympy. The first symbolic comparison in a process starts a worker (1-2 s, not counted in ``timeout``;
``warm_up`` starts workers ahead of time). Works from threads (a pool of workers, one request per
worker at a time) and from forked / daemonic pool processes (each process starts its own workers; no
signals are used). Plain numbers never touch the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from data._canonical import MAX_ANSWER_CHARS, MAX_NESTING, canonicalize, compact, final_boxed
from data._compare import FastOracle, trees_equal
from data._normalize import NeedsSympy, Node, parse_tree
from data._numbers import looks_hostile, nesting_depth, numbers_equal
from data._sympy_pool import POOL, warm_up, worker_stats

__all__ = ["extract_answer", "is_equivalent", "warm_up", "worker_stats"]

MAX_SYMPY_CHARS = 1000  # longer canonical answers are not sent to sympy (its parser slows down a lot)

# --------------------------------------------------------------------------- extraction
_ANSWER_PHRASE_RE = re.compile(r"\b(?:final\s+answer|answer)\b\**\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_HEADING_RE = re.compile(r"[A-Za-z]{2,}")  # "#### Step 2" in a model's markdown is not a GSM8K answer
# ``\$`` (an escaped dollar, ``$\$18.90$``) does not end a ``$...$`` span
_LEADING_MATH_RE = re.compile(
    r"\$\$((?:\\.|[^$\\])+)\$\$|\$((?:\\.|[^$\\])+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]"
)
_MATH_GAP_RE = re.compile(r"(?:\s|[,;]|\band\b|\bor\b)+")  # between two answers: "$5$ or $6$" -> "5, 6"
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_LAST_NUMBER_RE = re.compile(r"-?(?:\d[\d,]*(?:\.\d*)?|\.\d+)")
# the first non-blank line after an answer phrase (at most 4,000 characters of it: bounded work per phrase)
_PHRASE_LINE_RE = re.compile(r"[ \t*:]*\s*([^\n]{0,4000})")
_DIGIT_COMMA_RE = re.compile(r"(?<=\d),(?=\d)")


def _math_content(match: re.Match) -> str:
    return next(group for group in match.groups() if group is not None).strip()


def _answer_phrase_value(text: str, start: int) -> str | None:
    """The answer following an "answer is" phrase that ends at ``start``: its leading ``$...$`` (with the
    ``$...$`` after it that only separators keep apart, joined with ``", "``) or its sentence."""
    line = _PHRASE_LINE_RE.match(text, start).group(1).strip()
    math = _LEADING_MATH_RE.match(line)
    if math:
        parts = [_math_content(math)]
        while True:
            gap = _MATH_GAP_RE.match(line, math.end())
            following = _LEADING_MATH_RE.match(line, gap.end()) if gap else None
            if following is None:
                break
            parts.append(_math_content(following))
            math = following
        line = ", ".join(part.strip().strip("*").strip().rstrip(".$").strip() for part in parts if part)
    else:
        line = _SENTENCE_END_RE.split(line, maxsplit=1)[0]
    line = line.strip().strip("*").strip().rstrip(".$").strip()
    return line or None


def extract_answer(text: str) -> str | None:
    """The final answer written in a model's or a reference solution's text; None when there is none.

    Priority: last ``\\boxed{}``/``\\fbox{}`` (with the boxes right before it that only separators keep
    apart, joined with ``", "``), then ``#### N`` (GSM8K), then the last "the answer is" phrase, then the
    last number (see the module docstring for the details). Linear in the length of ``text``.
    """
    if not text:
        return None
    text = str(text)
    boxed = final_boxed(text)
    if boxed is not None:
        return boxed
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip()
        line = tail.split("\n", 1)[0] if tail else ""
        line = _DIGIT_COMMA_RE.sub("", line).strip().rstrip(".").strip()
        if line and not _HEADING_RE.match(line):
            return line
    for match in reversed(list(_ANSWER_PHRASE_RE.finditer(text))):
        value = _answer_phrase_value(text, match.end())
        if value:
            return value
    numbers = _LAST_NUMBER_RE.findall(text)
    if numbers:
        value = numbers[-1].rstrip(".,").replace(",", "")
        return value or None
    return None


# --------------------------------------------------------------------------- fast paths
_PLAIN_NUMBER_RE = re.compile(r"\s*(?:\\?\$)?\s*([+-]?)(\d{1,3}(?:,\d{3})+|\d+)?(\.\d+)?\s*")


def _plain_number(text: str) -> tuple[Fraction, bool] | None:
    """Value and 'has a decimal point' of a bare number such as ``18``, ``1,000``, ``$3.50``; else None."""
    if len(text) > 64:
        return None
    match = _PLAIN_NUMBER_RE.fullmatch(text)
    if not match or not (match.group(2) or match.group(3)):
        return None
    literal = (match.group(2) or "0").replace(",", "") + (match.group(3) or "")
    value = Fraction(literal)
    return (-value if match.group(1) == "-" else value), bool(match.group(3))


@dataclass(frozen=True)
class _Analysis:
    canonical: str
    key: str  # whitespace-free canonical form
    tree: Node | None  # None when hostile or unparseable: compared as strings only


_CACHED_ANSWER_CHARS = 256  # longer answers are rare; caching them could hold a lot of memory


def _analyze(answer: str) -> _Analysis:
    """Canonical form and tree of an answer (cached for short answers)."""
    return _analyze_cached(answer) if len(answer) <= _CACHED_ANSWER_CHARS else _analyze_uncached(answer)


def _analyze_uncached(answer: str) -> _Analysis:
    if nesting_depth(answer) > MAX_NESTING:  # before any other work on it
        key = "".join(answer.split())
        return _Analysis(key, key, None)
    canonical = canonicalize(answer)
    key = compact(canonical)
    if looks_hostile(canonical):
        return _Analysis(canonical, key, None)
    try:
        tree = parse_tree(canonical)
    except (ValueError, RecursionError):
        tree = None
    return _Analysis(canonical, key, tree)


_analyze_cached = lru_cache(maxsize=65536)(_analyze_uncached)


_FAST_ORACLE = FastOracle()


def is_equivalent(pred: str | None, gold: str, timeout: float = 5.0) -> bool:
    """Whether the predicted final answer means the same as the gold one (conventions: module docstring).

    Plain numbers are decided in-process (exact fractions, cached normalisation); symbolic answers go
    to the sympy worker process, bounded by ``timeout`` seconds (late means False). Never raises on
    odd input and never executes it.
    """
    if pred is None or gold is None:
        return False
    pred, gold = str(pred), str(gold)
    plain_pred, plain_gold = _plain_number(pred), _plain_number(gold)
    if plain_pred is not None and plain_gold is not None:
        return numbers_equal(plain_pred[0], plain_pred[1], plain_gold[0], plain_gold[1])
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return "".join(pred.split()) == "".join(gold.split())
    analysis_pred, analysis_gold = _analyze(pred), _analyze(gold)
    if not analysis_pred.key or not analysis_gold.key:
        return False
    if analysis_pred.key == analysis_gold.key:
        return True
    if analysis_pred.tree is None or analysis_gold.tree is None:
        return False
    try:
        return trees_equal(analysis_pred.tree, analysis_gold.tree, _FAST_ORACLE)
    except NeedsSympy:
        pass
    except RecursionError:
        return False
    if max(len(analysis_pred.canonical), len(analysis_gold.canonical)) > MAX_SYMPY_CHARS:
        return False
    return _symbolic_verdict(analysis_pred.canonical, analysis_gold.canonical, timeout)


# --------------------------------------------------------------------------- verdict cache over the worker pool
_VERDICTS: dict[tuple[str, str], bool] = {}
_MAX_VERDICTS = 50_000


def _symbolic_verdict(pred: str, gold: str, timeout: float) -> bool:
    cached = _VERDICTS.get((pred, gold))
    if cached is not None:
        return cached
    verdict = POOL.compare(pred, gold, max(timeout, 0.01))
    if verdict is None:
        return False
    if len(_VERDICTS) >= _MAX_VERDICTS:
        _VERDICTS.clear()
    _VERDICTS[(pred, gold)] = verdict
    return verdict
