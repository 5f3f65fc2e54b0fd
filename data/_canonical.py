"""Canonical form of a final-answer string (pure Python, no sympy): boxed-answer extraction and the
string rewrites ``canonicalize`` applies before ``data._normalize`` parses and compares answers.

``canonicalize`` removes styling, units, dollar signs, thousands separators, degrees and ``\\text{}`` and
braces fractions and roots; ``compact`` is the whitespace-free comparison key; ``last_boxed`` /
``boxed_run`` find ``\\boxed{...}`` answers. Every regular expression is linear-time, and callers cap the
input length (``MAX_ANSWER_CHARS``).
"""

from __future__ import annotations

import re

MAX_ANSWER_CHARS = 2000  # longer answers are only compared as whitespace-free strings
MAX_NESTING = 50  # deeper bracket nesting is treated as hostile (string comparison only)

_COMMAND_RE = re.compile(r"\\(?:[A-Za-z]+|.)")


# --------------------------------------------------------------------------- brace helpers
def match_brace(text: str, open_index: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_index`` (escaped ``\\{``/``\\}`` are skipped); -1 if none."""
    depth = 0
    i = open_index
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BOX_TOKEN_RE = re.compile(r"[^\s$]+")


_BOX_GAP_RE = re.compile(
    r"(?:\s|[,;&.$]|\\[()\[\]]|\\q?quad|\\[,;!]|\\text\{\s*(?:and|or)?\s*\}|\band\b|\bor\b)*"
)


def _closing_braces(text: str) -> dict[int, int]:
    """Index of the closing ``}`` of every ``{`` that has one (escaped braces skipped), in one linear pass:
    the same answer ``match_brace`` gives for each, without rescanning the text once per ``{``."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            stack.append(i)
        elif char == "}" and stack:
            closing[stack.pop()] = i
        i += 1
    return closing


def _box_spans(text: str, braced_only: bool) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of the boxes in ``text``, in order; unclosed ``\\boxed{`` are skipped.

    ``braced_only``: only ``\\boxed{...}`` and boxes nested inside a box are skipped (``boxed_run``);
    otherwise every box start counts, ``\\boxed 5`` included (``last_boxed``)."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return []
    closing: dict[int, int] | None = None
    spans: list[tuple[int, int, str]] = []
    position = 0
    for match in _BOX_RE.finditer(text):
        if match.start() < position:
            continue
        i = match.end()
        while i < len(text) and (text[i] == " " or not braced_only and text[i] == "\t"):
            i += 1
        if i < len(text) and text[i] == "{":
            if closing is None:
                closing = _closing_braces(text)
            end = closing.get(i, -1)
            if end < 0:
                continue
            spans.append((match.start(), end + 1, text[i + 1 : end].strip()))
            if braced_only:
                position = end + 1
        elif not braced_only:
            token = _BOX_TOKEN_RE.match(text, i)
            content = token.group(0).rstrip(".,;") if token else ""
            spans.append((match.start(), token.end() if token else i, content))
    return spans


def boxed_run(text: str) -> list[str]:
    """Contents of the last ``\\boxed{}`` and of the boxes right before it that only separators
    (commas, 'and', 'or', spaces, math delimiters) keep apart: ``\\boxed{1} and \\boxed{2}`` -> [1, 2]."""
    spans = _box_spans(text, braced_only=True)
    run: list[str] = []
    for index in range(len(spans) - 1, -1, -1):
        start, end, content = spans[index]
        if run and not _BOX_GAP_RE.fullmatch(text[end : spans[index + 1][0]]):
            break
        if content:
            run.append(content)
    return run[::-1]


def last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``), else None."""
    for _, _, content in reversed(_box_spans(text, braced_only=False)):
        if content:
            return content
    return None


def final_boxed(text: str) -> str | None:
    """The boxed final answer: the last box, together with the boxes right before it that only separators
    keep apart (``boxed_run``), joined with ``", "``: ``\\boxed{1} and \\boxed{-2}`` -> ``1, -2``. None when
    there is no complete, non-empty box."""
    last = last_boxed(text)
    if last is None:
        return None
    run = boxed_run(text)
    if len(run) > 1 and run[-1] == last:
        return ", ".join(run)
    return last


# --------------------------------------------------------------------------- canonicalize
_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": r"\times ", "\u22c5": r"\cdot ", "\u00b7": r"\cdot ",
    "\u03c0": r"\pi ", "\u221e": r"\infty ", "\u221a": r"\sqrt", "\u2264": r"\le ", "\u2265": r"\ge ",
    "\u2260": r"\ne ", "\u00b0": r"^\circ", "\u00a0": " ", "\u222a": r"\cup ", "\u2208": r"\in ",
    "\u2205": r"\emptyset ", "\u00bd": "1/2",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
_DISPLAY_RE = re.compile(r"\$|(?<!\\)\\[()\[\]]")
_SIZING_RE = re.compile(r"\\(?:left|right|[bB]igg?[lrm]?)(?![A-Za-z])\s*\.?")
_TEXT_MACRO_RE = re.compile(
    r"\\(?:text(?:bf|it|rm|sf|tt|normal|up|sc)?|math(?:rm|bf|it|sf|tt|normal)|mbox|hbox)\s*\{"
)
_THOUSANDS_BRACE_RE = re.compile(r"(?<=\d)\{,\}(?=\d{3})")
_THOUSANDS_BANG_RE = re.compile(r"(?<=\d),\s*\\!\s*(?=\d{3}(?!\d))")
_THIN_SPACE_RE = re.compile(r"(?<!\\)\\[,!;:>]")
_WIDE_SPACE_RE = re.compile(r"\\q?quad|(?<!\\)\\ |~|\\(?:display|text|script)style|\\limits|\\nolimits")
_FRAC_ALIAS_RE = re.compile(r"\\[dtc]frac(?![A-Za-z])")
_BINOM_ALIAS_RE = re.compile(r"\\[dt]binom(?![A-Za-z])")
_REL_ALIASES = [
    (re.compile(r"\\leq?(?:slant)?(?![A-Za-z])|<="), r"\\le "),
    (re.compile(r"\\geq?(?:slant)?(?![A-Za-z])|>="), r"\\ge "),
    (re.compile(r"\\neq?(?![A-Za-z])|!="), r"\\ne "),
    (re.compile(r"\\lt(?![A-Za-z])"), "<"),
    (re.compile(r"\\gt(?![A-Za-z])"), ">"),
    (re.compile(r"\\dots|\\ldots|\\cdots"), " "),
]
_DOUBLE_BACKSLASH_RE = re.compile(r"\\\\(?=[A-Za-z])")
_DEGREE_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])")
_TRIG_RE = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![A-Za-z])")
_DEGREE_NUMBER_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\degree(?![A-Za-z]))"
)
# whitespace is collapsed to single spaces before these run, so " ?" is enough (and keeps them linear)
_PERCENT_WORD_RE = re.compile(r" ?\\text\{ ?(?:percentage|percent|pct) ?\}| ?\b(?:percentage|percent|pct)\b")
_OR_AND_RE = re.compile(r" ?\\text\{ ?(?:or|and) ?\} ?| (?:or|and) |(?<=[)\]}])(?:or|and)(?=[(\[{\\])")
_COMMA_RUN_RE = re.compile(r"(?: ?,){2,}")
_TRAILING_TEXT_RE = re.compile(r"\\text\{([^{}]*)\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$")
_UNIT_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z .\-/]*")
_UNIT_WORD_RE = re.compile(r"[A-Za-z]{2,}\.?(?:\^\{?[23]\}?)?")
_ATTACHED_UNIT_RE = re.compile(r"([+-]?\d+(?:\.\d+)?)([A-Za-z]{3,})")
# A plain (not \text{}) word after a value is a unit when it is one of these short unit names or has 4+
# letters: ``4 ab``, ``2 xy``, ``6xyz`` are products of variables, not a number and a unit.
_SHORT_UNITS = frozenset(
    "cm mm km nm in ft yd mi kg mg lb lbs oz ml hr hrs min mins day yr yrs wk wks mph kph kmh cc sq cu deg "
    "gal qt pt ton am pm usd eur gbp cup tsp tbs mo ms kw kwh hz khz mhz ghz kb mb gb tb px "
    "men kid boy cat dog cow pig hen egg car bus box bag pen toy hat pie jar".split()
)
# Scale words change the value: never dropped as units; after a number they multiply it (1.5 million).
_SCALES = {"hundred": 2, "thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_SCALE_WORDS = frozenset([*_SCALES, *(word + "s" for word in _SCALES), "dozen", "dozens"])
_SCALED_NUMBER_RE = re.compile(
    r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)? ?(?:\\text\{ ?(hundred|thousand|million|billion|trillion)s? ?\}"
    r"|(hundred|thousand|million|billion|trillion)s?\b)"
)
_TEXT_RE = re.compile(r"\\text\{([^{}]*)\}")
_BRACED_COMMAND_RE = re.compile(r"\\(frac|binom|sqrt)(?![A-Za-z])")
_SINGLE_SUBSCRIPT_RE = re.compile(r"_\{\s*([A-Za-z0-9])\s*\}")
_SPACE_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_MIXED_SPACE_RE = re.compile(r"([+-]?\d+)\s+(\d+)\s*/\s*(\d+)")
_COMMA_THOUSANDS_RE = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")
_MATH_WORDS = frozenset(
    "sin cos tan cot sec csc log ln exp pi sqrt frac mod gcd lcm max min det arcsin arccos arctan sinh cosh tanh "
    "infty inf lim sum prod int cup cap".split()
)


def _brace_arguments(text: str, depth: int = 0) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt2`` -> ``\\sqrt{2}``, ``\\frac{270}7`` -> ``\\frac{270}{7}``."""
    if depth > MAX_NESTING or "\\frac" not in text and "\\sqrt" not in text and "\\binom" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        match = _BRACED_COMMAND_RE.search(text, i)
        if not match:
            out.append(text[i:])
            break
        out.append(text[i : match.end()])
        i = match.end()
        arity = 1 if match.group(1) == "sqrt" else 2
        if arity == 1 and i < n and text[i] == "[":  # \sqrt[3]{x}
            close = text.find("]", i)
            if close < 0:
                continue
            out.append(text[i : close + 1])
            i = close + 1
        for _ in range(arity):
            while i < n and text[i] == " ":
                i += 1
            if i >= n:
                break
            if text[i] == "{":
                end = match_brace(text, i)
                if end < 0:
                    break
                out.append("{" + _brace_arguments(text[i + 1 : end], depth + 1) + "}")
                i = end + 1
            elif text[i] == "\\":
                name = _COMMAND_RE.match(text, i)
                token = name.group(0) if name else text[i : i + 2]
                out.append("{" + token + "}")
                i += len(token)
            else:
                out.append("{" + text[i] + "}")
                i += 1
    return "".join(out)


def _is_unit_word(token: str) -> bool:
    """A plain word that reads as a unit: a known short unit name, or 4+ letters (not a math or scale word)."""
    if not _UNIT_WORD_RE.fullmatch(token):
        return False
    word = re.sub(r"[^A-Za-z]", "", token).lower()
    if word in _MATH_WORDS or word in _SCALE_WORDS:
        return False
    return len(word) >= 4 or word in _SHORT_UNITS


def _scaled(match: re.Match) -> str:
    digits, fraction = match.group(1).replace(",", ""), (match.group(2) or ".")[1:]
    shift = _SCALES[match.group(3) or match.group(4)]
    whole = (digits + fraction[:shift].ljust(shift, "0")).lstrip("0") or "0"
    return whole + ("." + fraction[shift:] if len(fraction) > shift else "")


def _apply_scale_words(text: str) -> str:
    """``1.5 million`` -> ``1500000``, ``3 \\text{ thousand}`` -> ``3000``, ``1.2345 thousand`` -> ``1234.5``
    (the decimal point is moved: exact)."""
    if not any(word in text for word in _SCALES):
        return text
    return _SCALED_NUMBER_RE.sub(_scaled, text)


def _strip_units(text: str) -> str:
    """Drop a trailing unit (``5 \\text{ cm}^2``, ``125 miles``, ``10 square units``, ``10weeks``, ``5 cm``).

    Products of variables stay (``4 ab``, ``6xyz``; ``10cm`` too), and scale words are applied, never dropped
    (``1.5 million == 1500000``)."""
    text = _apply_scale_words(text)
    for _ in range(4):
        match = _TRAILING_TEXT_RE.search(text)
        if match:
            head = text[: match.start()].rstrip()
            unit = match.group(1).strip()
            words = unit.lower().replace("-", " ").replace("/", " ").split()
            if (
                head
                and head[-1] not in ",=+-([{"
                and (not unit or _UNIT_TEXT_RE.fullmatch(unit))
                and not any(word.strip(".") in _SCALE_WORDS for word in words)
            ):
                text = head
                continue
        tokens = text.rstrip().split(" ")
        cut = len(tokens)
        while cut > 1 and _is_unit_word(tokens[cut - 1]):
            cut -= 1
        if cut < len(tokens) and tokens[cut - 1] and tokens[cut - 1][-1] in "0123456789})]%":
            text = " ".join(tokens[:cut])
            continue
        match = _ATTACHED_UNIT_RE.fullmatch(text.strip())
        if (
            match
            and not any(match.group(2).lower().startswith(word) for word in _MATH_WORDS)
            and _is_unit_word(match.group(2))
        ):
            text = match.group(1)
            continue
        break
    return text


def _remove_thousands_commas(text: str) -> str:
    """Remove ``1,000``-style separators outside tuples / intervals / sets (where a comma separates items)."""
    if "," not in text:
        return text
    pieces: list[str] = []
    last = 0
    for match in _COMMA_THOUSANDS_RE.finditer(text):
        prefix = text[: match.start()]
        depth = prefix.count("(") + prefix.count("[") + prefix.count("\\{") + prefix.count("\\langle")
        depth -= prefix.count(")") + prefix.count("]") + prefix.count("\\}") + prefix.count("\\rangle")
        if depth <= 0:
            pieces.append(text[last : match.start()])
            pieces.append(match.group(0).replace(",", ""))
            last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


def canonicalize(answer: str) -> str:
    """Canonical form of a final answer: what two writings of the same answer should share.

    Removes math delimiters, ``\\boxed``, ``\\left``/``\\right``, spacing commands, ``\\text``/``\\mbox``
    wrappers, units after a value, degree signs, dollar signs and thousands separators; unifies
    ``\\dfrac``/``\\tfrac``, relation spellings, percent words and 'or'/'and' (turned into commas).
    """
    text = answer.strip()
    if "\\boxed" in text or "\\fbox" in text:
        text = ", ".join(boxed_run(text)) or last_boxed(text) or text
    text = _UNICODE_RE.sub(lambda match: _UNICODE[match.group(0)], text)
    text = " ".join(text.split())  # one space between tokens keeps the patterns below linear
    text = text.replace("\\$", " ")
    text = " ".join(_DISPLAY_RE.sub(" ", text).split())
    text = _SIZING_RE.sub("", text)
    text = _TEXT_MACRO_RE.sub(r"\\text{", text)
    text = _THOUSANDS_BRACE_RE.sub("", text)
    text = _THOUSANDS_BANG_RE.sub("", text)
    text = _THIN_SPACE_RE.sub("", text)
    text = _WIDE_SPACE_RE.sub(" ", text)
    text = _FRAC_ALIAS_RE.sub(r"\\frac", text)
    text = _BINOM_ALIAS_RE.sub(r"\\binom", text)
    for pattern, replacement in _REL_ALIASES:
        text = pattern.sub(replacement, text)
    if "matrix" not in text and "array" not in text:
        text = _DOUBLE_BACKSLASH_RE.sub(r"\\", text)
    if _TRIG_RE.search(text):  # \sin(90^\circ - x): degrees inside trigonometry become radians
        text = _DEGREE_NUMBER_RE.sub(r"(\1\\pi/180)", text)
    text = " ".join(_DEGREE_RE.sub("", text).split())
    text = text.replace("\\%", "%")
    text = _PERCENT_WORD_RE.sub("%", text)
    text = _OR_AND_RE.sub(",", text)
    text = _COMMA_RUN_RE.sub(",", text)
    text = _strip_units(text)
    for _ in range(3):
        unwrapped = _TEXT_RE.sub(lambda match: match.group(1), text)
        if unwrapped == text:
            break
        text = _strip_units(" ".join(unwrapped.split()))  # \text{3 hours}
    text = _brace_arguments(text)
    text = _SINGLE_SUBSCRIPT_RE.sub(r"_\1", text)
    text = " ".join(text.split())
    text = text.lstrip(" ,;:").rstrip(" .,;:")
    text = text.removesuffix("\\").strip()
    if _SPACE_THOUSANDS_RE.fullmatch(text):
        text = text.replace(" ", "")
    text = _remove_thousands_commas(text)
    if text.startswith("+") and len(text) > 1:
        text = text[1:].lstrip()
    return text


_SPACE_RE = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])|(?<=\d)(\s+)(?=\d)|\s+")
_DIGIT_SPACE_DIGIT_RE = re.compile(r"\d\s+\d")
_SPACE_THOUSANDS_ITEM_RE = re.compile(r"(?<![\w.^])\d{1,3}(?:\s\d{3})+(?!\d|\s*/)")


def _space_replacement(match: re.Match) -> str:
    if match.group(1):
        return match.group(1) + " "
    return " " if match.group(2) else ""


def compact(text: str) -> str:
    """``text`` without spaces, except the one a LaTeX command needs before a letter (``\\pi r``) and one
    between two digits (``1 1/2`` is a mixed number, not ``11/2``; ``1 2`` is not ``12``). Space thousands
    separators (``1 000``, ``12 345 678``) are removed."""
    if _DIGIT_SPACE_DIGIT_RE.search(text):
        text = _SPACE_THOUSANDS_ITEM_RE.sub(lambda match: "".join(match.group(0).split()), text)
    return _SPACE_RE.sub(_space_replacement, text)
