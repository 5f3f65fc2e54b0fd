"""Answer extraction and equivalence: a regression table and the real benchmark files (hostile input:
`tests/test_answer_safety.py`)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from data.answers import extract_answer, is_equivalent, worker_stats

DATA_DIR = Path(os.environ.get("REASONER_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
MATH500 = DATA_DIR / "math500" / "test.jsonl"
GSM8K = DATA_DIR / "gsm8k" / "test.jsonl"

T, F = True, False

# (pred, gold, expected). Sources of inspiration: the public test suites of Math-Verify, MARIO_EVAL,
# the DeepSeekMath / PRM800K graders, and the MATH-500 answer formats; expectations follow the
# conventions in the data.answers docstring where those graders disagree.
CASES: list[tuple[str | None, str, bool]] = [
    # integers and signs
    ("2", "2", T), ("2", "3", F), ("-3", "-3", T), ("+3", "3", T), ("-3", "3", F), ("- 3", "-3", T),
    ("0", "-0", T), ("10", "10.0", T), ("18", "18.00", T), ("3.50", "3.5", T), ("1000000", "1000001", F),
    ("-5", "5", F),
    # decimals, fractions, scientific notation, mixed numbers
    ("0.5", ".5", T), ("0.5", "1/2", T), ("\\frac12", "0.5", T), ("\\frac{1}{2}", "\\dfrac{1}{2}", T),
    ("\\tfrac{3}{4}", "0.75", T), ("\\frac{2}{4}", "\\frac{1}{2}", T), ("-\\frac{3}{8}", "-0.375", T),
    ("\\frac{-3}{8}", "-\\frac{3}{8}", T), ("\\frac 34", "3/4", T), ("\\frac9{19}", "\\frac{9}{19}", T),
    ("10/9", "\\frac{10}{9}", T), ("-10/9", "-\\frac{10}{9}", T), ("\\frac{1}{3}", "0.333", F),
    ("\\frac{1}{3}", "0.3333", T), ("\\frac{1}{3}", "0.33333333", T), ("\\frac{2}{3}", "0.67", F),
    ("\\frac{8}{3}", "2.6667", T), ("\\frac{1}{12}", "0.0833333333333333", T), ("1.0001", "1", F),
    ("0.1", "0.10", T), ("0.1", "0.01", F), ("1e-3", "0.001", T), ("1e-10", "0", F), ("2.5e-4", "0.00025", T),
    ("2.314814814815 \\times 10^{-3}", "\\frac{1}{432}", T), ("1.5e3", "1500", T), ("1.5 \\times 10^3", "1500", T),
    ("1.5\\cdot 10^{3}", "1.5e3", T), ("3 \\times 10^{-2}", "0.03", T), ("2^{10}", "1024", T),
    ("1\\frac{1}{2}", "1.5", T), ("2\\frac58", "2.625", T), ("1 1/2", "3/2", T), ("137 \\frac{1}{2}", "\\frac{275}{2}", T),
    ("-1\\frac12", "-1.5", T), ("\\frac{1}{0}", "1", F), (".0000672", "6.72e-5", T), ("\\dfrac{17}{50}", "0.34", T),
    # thousands separators (no decimal comma)
    ("1,000", "1000", T), ("1{,}000", "1000", T), ("10,\\!080", "10080", T), ("11,\\! 111,\\! 111,\\! 100", "11111111100", T),
    ("7,425,000", "7425000", T), ("1 000", "1000", T), ("1,000.5", "1000.5", T), ("\\$1,000.99", "1000.99", T),
    ("32,\\! 349", "32349", T), ("32, 349", "32349", F), ("1,5", "1.5", F), ("1,000", "1", F), ("58,500", "58500", T),
    ("14{,}916", "14916", T),
    # percent: x% == x == x/100 (only with a percent sign on one side)
    ("50\\%", "50", T), ("50\\%", "0.5", T), ("50%", "50\\%", T), ("50\\%", "\\frac{1}{2}", T), ("28 percent", "28\\%", T),
    ("28\\%", "0.28", T), ("0.28", "28", F), ("28/100", "28", F), ("50\\%", "5", F), ("12.5\\%", "0.125", T),
    ("\\frac{100}{3}\\%", "33\\frac{1}{3}", T), ("28 pct", "28\\%", T), ("100%", "1", T),
    # units, dollars, degrees, text
    ("5 \\text{ cm}", "5", T), ("\\text{5}", "5", T), ("5\\mbox{ inches}", "5", T), ("15\\mbox{ cm}^2", "15", T),
    ("864 \\mbox{ inches}^2", "864", T), ("10\\text{ cm}^{2}", "10", T), ("10 square units", "10", T),
    ("125 miles", "125", T), ("10weeks", "10", T), ("10cm", "10", F), ("\\frac{1}{3} \\text{meters}", "1/3", T),
    ("\\frac{1}{3} \\textbf{meters}", "1/3", T), ("5.4 \\text{ cents}", "5.4", T),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}", T), ("125\\textnormal{ miles}", "125", T), ("10^\\circ", "10", T),
    ("90^{\\circ}", "90", T), ("30\u00b0", "30", T), ("106^\\circ", "107", F), ("\\$18.90", "18.90", T), ("$18", "18", T),
    ("\\$ 32,\\!348", "32348", T), ("18 dollars", "18", T), ("\\text{Evelyn}", "Evelyn", T), ("\\text{Evelyn}", "Navin", F),
    ("\\text{east}", "East", T), ("\\text{even}", "odd", F), ("\\text{(C)}", "C", T), ("\\text{(C)}", "(C)", T),
    ("\\textbf{(B)}", "\\text{(C)}", F), ("\\text{E}", "E", T), ("204_5", "204_{5}", T), ("204_5", "204", F),
    ("4210_{7}", "4210_7", T), ("\\text{13}", "13", T),
    # radicals, pi, complex numbers
    ("2\\sqrt{2}", "\\sqrt{8}", T), ("\\sqrt{8}", "2.8284", T), ("2\\sqrt{2}", "2.83", F), ("\\sqrt3", "\\sqrt{3}", T),
    ("\\sqrt{2}+\\sqrt{5}", "\\sqrt 2+\\sqrt 5", T), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", T),
    ("\\pi/2", "\\frac{\\pi}{2}", T), ("\\frac{9}{4}\\pi", "\\frac94\\pi", T), ("12\\pi", "37.699", T), ("\\pi", "3.14", F),
    ("\\pi", "3.1416", T), ("40\\pi", "125.663", T), ("4", "4\\sqrt{2}", F), ("1\\sqrt{19}", "1", F),
    ("2", "\\frac{1+\\sqrt{5}}{2}", F), ("11\\sqrt2", "\\sqrt{242}", T), ("\\frac{3\\sqrt{3}}{4}", "\\frac{3}{4}\\sqrt{3}", T),
    ("\\sqrt[3]{8}", "2", T), ("\\frac{\\sqrt{3}}{2}", "0.8660254037844386", T), (f"{math.sqrt(17):.15f}", "\\sqrt{17}", T),
    ("10\\sqrt{3} + \\sqrt4", "10\\sqrt3 + \\sqrt{4}", T), ("1+2i", "i(2-i)", T), ("-2 + 7i", "7i - 2", T), ("6 - 5i", "6+5i", F),
    ("e^{i\\pi}", "-1", T), ("\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{15+2\\sqrt{33}}", "\\frac{\\sqrt{\\sqrt{11}+\\sqrt{194}}}{2\\sqrt{33}+15}", T),
    # algebraic expressions
    ("2x+1", "1+2x", T), ("x^2-1", "(x-1)(x+1)", T), ("x^2", "x^3", F), ("x+2n+1", "x+1", F),
    ("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}", T), ("\\tan^2(y)+1", "\\sec^2(y)", T), ("(a+5)(b+2)", "ab+2a+5b+10", T),
    ("(a+5)(b+2)", "(+5)(b+2)", F), ("11z^{7}(5+11z^{7})", "11z^7(11z^7+5)", T), ("\\frac{8-7x}{6}", "4/3-7x/6", T),
    ("(2x+3)(2x -1)(2x+1)", "(2x - 1)(2x + 1)(2x + 3)", T), ("\\sec x", "\\frac1{\\cos x}", T),
    ("2 \\sin b \\cos a", "2\\cos a \\sin b", T), ("\\left(x-2\\right)\\left(x+2\\right)", "(x-2)(x+2)", T),
    ("6r^2-4r-24", "2(3r^2-2r-12)", T), ("3R^2", "3r^2", T), ("2k", "k", F), ("-13x+3", "3-13x", T), ("p - q", "q - p", F),
    ("x^8 + x^7 + x^6 + x^5 + x^4 + x^3 + x^2 + x + 1", "\\frac{x^9-1}{x-1}", T), ("\\cot x", "\\frac{\\cos x}{\\sin x}", T),
    ("\\frac{\\pi r}{h+r}", "\\frac{r\\pi}{r+h}", T), ("0.5x", "\\frac{x}{2}", T), ("x^{2/3}", "\\sqrt[3]{x}^2", T),
    # tuples / ordered pairs (order matters, brackets must match)
    ("(1,2)", "(1,2)", T), ("(1,2)", "(2,1)", F), ("(1, 2)", "\\left(1,2\\right)", T),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", T), ("(1,\\frac{9}{2})", "(1,4.5)", T),
    ("(6,31,-1)", "(6, 31, -1)", T), ("6, 31, -1", "(6,31,-1)", T), ("(6,31,-1)", "(6,31,1)", F), ("(1,2,3)", "(1,2)", F),
    ("[1, 2, 3]", "(1, 3, 2)", F), ("[x, x + 1]", "[x, 1 + x]", T), ("[x, x + 1]", "[x + 1, x]", F),
    ("\\langle 1, 2 \\rangle", "(1,2)", T), ("\\left( \\frac{4}{3}, -\\frac{1}{3} \\right)", "(\\frac43, -\\frac13)", T),
    ("(\\tfrac{27}{8},\\tfrac{15}{8})", "(\\frac{15}{8}, \\frac{27}{8})", F),
    # sets (order and repetition do not matter)
    ("\\{1,2\\}", "\\{2,1\\}", T), ("\\{1,2\\}", "\\{1,3\\}", F), ("\\{1,2\\}", "\\{1,2,3\\}", F), ("\\{1,1,2\\}", "\\{1,2\\}", T),
    ("\\{x, x - 1\\}", "\\{x - 1, x\\}", T), ("\\{1\\pm\\sqrt{5},-2\\}", "\\{-2, 1+\\sqrt5, 1-\\sqrt5\\}", T),
    ("\\emptyset", "\\varnothing", T), ("\\emptyset", "\\{\\}", T), ("\\{0\\}", "\\emptyset", F), ("1, 2", "\\{1,2\\}", T),
    # intervals
    ("(0, 1]", "(0,1]", T), ("[0,1]", "(0,1)", F), ("[-3,2]", "(-3,2)", F), ("[0,1)", "[0,1)", T), ("[0,9)", "[0,1)", F),
    ("(0,9)", "[0,9)", F), ("[2,\\infty)", "[2, \\infty)", T), ("[2,\\infty)", "(2,\\infty)", F),
    ("(-\\infty, 0]", "(-\\infty,0]", T), ("[1,+\\infty)", "[1,\\infty)", T), ("x \\in [0.5, \\infty)", "[1/2, \\infty)", T),
    ("x \\in [-2,7]", "[-2,7]", T), ("-2 \\le x \\le 7", "[-2,7]", T), ("x > 5", "(5,\\infty)", T), ("x \\ge 5", "(5, \\infty)", F),
    ("(\\frac{3}{5},\\frac{8}{3}]", "(0.6,2.6667]", T), ("\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(\\frac35, \\frac83]", T),
    ("[1, 2)", "[x, y)", F), ("(-\\infty,\\infty)", "\\mathbb{R}", T),
    # unions
    ("(-\\infty, 2) \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,2)", T),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty, 2] \\cup (3, \\infty)", F), ("(0,1] \\cup (1,2)", "(0,2)", T),
    ("x \\in (2,12) \\cup (12,102)", "(2, 12) \\cup (12, 102)", T), ("(0,9) \\cup (9,36)", "(0,36)", F),
    ("[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0) \\cup (0, 1) \\cup (1, \\infty)",
     "[-1, -\\tfrac12) \\cup (-\\tfrac12, 0) \\cup (0, 1) \\cup (1, \\infty)", T),
    ("\\{-1\\} \\cup [0,7)", "[0,7) \\cup \\{-1\\}", T),
    # matrices and vectors
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{bmatrix}1\\\\2\\end{bmatrix}", T),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", F),
    ("\\begin{pmatrix} 1 & 1/2 \\\\ 1/3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 0.5 \\\\ 1/3 & 4 \\end{pmatrix}", T),
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}", "\\begin{pmatrix} -\\frac13 \\\\ \\frac23 \\\\ \\frac53 \\end{pmatrix}", T),
    ("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "\\begin{pmatrix}1 & 2 \\\\ 3 & 5\\end{pmatrix}", F),
    ("\\begin{pmatrix}1 & 2 \\\\3 & 4\\end{pmatrix}", "\\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right]", T),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)", T), ("\\begin{pmatrix}1 & 2\\end{pmatrix}", "\\begin{pmatrix}1 \\\\ 2\\end{pmatrix}", F),
    ("\\begin{pmatrix} x \\\\ \\sqrt{3} + 2x \\\\ \\frac12 \\end{pmatrix}", "\\begin{pmatrix} x \\\\ 2x+\\sqrt{3} \\\\ 0.5 \\end{pmatrix}", T),
    # equations
    ("x = 3", "3", T), ("3", "x=3", T), ("k = \\frac{1}{3}", "1/3", T), ("y = 2x + 3", "2x+3", T),
    ("f(x) = 2x + 3", "2x + 3", T), ("f(x) = 2x + 3", "y = 2x + 3", T), ("y = -2x", "y=-2x", T), ("x = 3", "4", F),
    ("5x - 7y + 11z + 4 = 0", "x + y - z + 2 = 0", F), ("5x - 7y + 11z + 4 = 0", "-5x + 7y - 11z - 4 = 0", T),
    ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", T), ("\\frac{x^2}{4} + \\frac{y^2}{3} = 1", "x^2/16 + y^2/12 = 1/4", T),
    ("\\sin(x)=\\frac{42}{59}", "\\cos(x)=\\frac{42}{59}", F), ("a + 3z = 0", "0", F), ("2x + z = 1", "1", F),
    ("x = 5+5+1 = 11", "11", T), ("x = 1/3 \\approx 0.33", "1/3", T), ("x \\approx 11", "11", T), ("x=1, y=2", "y=2, x=1", T),
    ("x=1, y=2", "x=2, y=1", F), ("x = 1, y = 2, z = 3", "1, 2, 3", T), ("(x, y) = (1, 2)", "(1,2)", T), ("7 = 11a+c", "11a+c", F),
    # inequalities
    ("x \\leq 2", "x <= 2", T), ("x > 5", "x \\gt 5", T), ("x \\neq 3", "x != 3", T), ("x > 5", "x < 5", F),
    ("x \\geq 5", "x \\leq 5", F), ("x \\leq 5", "5 \\geq x", T), ("x < 1", "-x > -1", T), ("x < 1", "x > -1", F),
    ("x <= 1", "-x >= -1", T),
    # several answers (unordered)
    ("1, 2", "2, 1", T), ("1, 2", "1, 3", F), ("1, 2", "1", F), ("1, 2, 3", "1, 3, 2", T), ("7, -2, \\text{ and } -5", "-5,-2,7", T),
    ("x=1 \\text{ or } x=2", "1, 2", T), ("x = 1 or x = 2", "2, 1", T), ("-2,1", "1, -2", T), ("3, 5, 7", "3,5,7", T),
    ("1 \\pm \\sqrt{19}", "1+\\sqrt{19}, 1-\\sqrt{19}", T), ("3 \\pm 2 \\sqrt{2}", "3+2\\sqrt2,3-2\\sqrt2", T),
    ("1 \\pm \\sqrt{19}", "1+\\sqrt{19}", F), (".1, 4.0", "0.1, 4", T), ("\\frac13, \\sqrt3, \\pi", "1/3, 1.732, 3.1416", T),
    ("12 \\text{ and } 13", "12, 13", T),
    # lists of tuples, labelled values, several boxes, times (cases in the style of Math-Verify's suites)
    ("(3, 37, 3, 13), (3, 17, 3, 7), (3,17,3,7)", "(3,17,3,7),(3,37,3,13)", T), ("(p,q,r)=(3,2,7)", "(3,2,7)", T),
    ("(0;0;0),(4;-2;6)", "(4, -2, 6), (0, 0, 0)", T), ("-12;-11;-10", "\\{-10, -11, -12\\}", T), ("1, 1, 2", "1, 2", T),
    ("AB=4,CD=5", "4, 5", T), ("AB = 4", "CD = 4", F), ("|AB|=1", "1", T), ("\\angle ABC = 30^\\circ", "30", T),
    ("(11,7)or(7,11)", "(7,11),\\ (11,7)", T), ("\\boxed{1} and \\boxed{-2}", "-2, 1", T),
    ("\\boxed{1} no no no no no \\boxed{2}", "1, 2", F), ("\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}", "(2, 2), (6, 2)", T),
    ("a_3 = 2, a_{37} = 19", "a_{37} = 19, \\quad a_3 = 2", T), ("(x, y) = (5, 8) \\quad \\text{and} \\quad (8, 5)", "(5, 8), (8, 5)", T),
    ("0<f(x)<1", "(0,1)", T), ("-793 < a < 10", "(-793, 10)", T), ("\\pm 2021", "2021", F), ("\\pm 2021", "\\{-2021, 2021\\}", T),
    ("12:00", "1:00", F), ("12:00", "12:00", T), ("\\frac{1}{0}", "\\frac{2}{0}", F),
    ("1 - \\frac{1}{\\mathrm{e}}", "1 + \\frac{1}{\\mathrm{e}}", F), ("1 - \\frac{1}{\\mathrm{e}}", "1-e^{-1}", T),
    ("x_{1}=10^{\\frac{-5+\\sqrt{13}}{6}},\\quadx_{2}=10^{\\frac{-5-\\sqrt{13}}{6}}",
     "\\boxed{10^{\\frac{\\sqrt{13} - 5}{6}}} \\quad \\text{and} \\quad \\boxed{10^{-\\frac{5 + \\sqrt{13}}{6}}}", T),
    ("F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}", "F_n = \\sum_{k=0}^{n-1} F_{n-k-1} F_k", T),
    ("F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}", "F_n = \\sum_{k=0}^{n-2} F_k F_{n-k-2}", F),
    ("f(x)", "f(y)", F), ("\\boxed{004}", "4", T), ("19, 46, and 82", "19, 46, \\text{ and } 82", T),
    # LaTeX wrappers and spacing
    ("\\left( \\frac{1}{3} \\right)", "1/3", T), ("\\boxed{\\frac{1}{3}}", "1/3", T), ("$\\frac{1}{3}$", "1/3", T),
    ("\\( 9 \\)", "9", T), ("\\[ 9 \\]", "9", T), ("5.", "5", T), ("\\displaystyle \\frac{1}{2}", "0.5", T), ("1\\!000", "1000", T),
    ("2\\,x", "2x", T), ("\\frac{1}{2}.", "1/2", T), ("\\sqrt{5}", "\\\\sqrt{5}", T),
    ("\\tfrac23 +\\frac1{72}", "\\\\dfrac{2}{3} +\\frac{1}{72}", T), ("\\left\\{ 1, 2 \\right\\}", "\\{2, 1\\}", T),
    ("\u22123", "-3", T), ("x \\cdot y", "xy", T), ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", T), ("\\text{3 hours}", "3", T),
    ("(\\begin{pmatrix}-\\frac{7}{4}&-2\\\\4&\\frac{1}{4}\\\\\\end{pmatrix})",
     "\\begin{pmatrix}-\\frac{7}{4}&-2\\\\4&\\frac{1}{4}\\end{pmatrix}", T),
    ("\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}",
     "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}", T),
    # repeating decimals, degrees inside trigonometry, functions
    ("0.\\overline{3}", "1/3", T), ("1.1\\overline{6}", "7/6", T), ("0.\\overline{3}", "0.3", F),
    ("\\sin(90^{\\circ}-x)", "\\cos(x)", T), ("\\frac{\\sqrt{5}-1}{4}", "\\cos 72^\\circ", T), ("\\cos 60^\\circ", "0.5", T),
    ("\\frac{\\pi}{4}", "45^\\circ", F), ("\\log_2 8", "3", T), ("\\binom{5}{2}", "10", T), ("5!", "120", T),
    ("e", "2.7183", T), ("e", "2.7", F), ("\\text{No solution}", "no solution", T), ("yes", "Yes", T), ("no", "yes", F),
    ("(A)", "A", T), ("A", "B", F), ("x \\in (-\\infty, 2)", "x < 2", T), ("a = 2, b = 3", "(2, 3)", T),
    ("-\\infty", "\\infty", F), ("\\pm 2", "2, -2", T), ("x = \\pm 2", "-2, 2", T), ("\\frac{1}{2}\\%", "0.005", T),
    ("123456789012345678901234567890", "123456789012345678901234567891", F), ("2 \\div 4", "0.5", T),
    ("\\dfrac{3}{4} \\text{ cup}", "0.75", T), ("\\theta = \\frac{\\pi}{3}", "\\frac{\\pi}{3}", T), ("= 5", "5", T),
    # exact symbolic values are compared exactly, not to 1e-25 relative / 1e-30 absolute (review of data/)
    ("2^{100}", "2^{100}-1", F), (str(math.comb(100, 50) + 1), "\\binom{100}{50}", F),
    (str(math.comb(100, 50) + 1000), "\\binom{100}{50}", F), (str(math.comb(100, 50)), "\\binom{100}{50}", T),
    ("\\frac{1}{6^{50}}", "\\frac{5}{6^{50}}", F), ("\\frac{1}{2^{100}}", "\\frac{1}{2^{101}}", F),
    ("\\frac{1}{10^{40}}", "0", F), ("e^{-100}", "0", F), ("1000!", "1000!+1", F), ("2^{100}", str(2**100 - 1), F),
    ("2^{100}+\\sqrt{2}", "\\sqrt{2}+2^{100}", T), ("x+10^{-40}", "x", F), ("\\sqrt{11+6\\sqrt{2}}", "3+\\sqrt{2}", T),
    ("1+2i", "i(3-i)", F), ("\\frac{1}{2^{100}}", "2^{-100}", T),
    # unit stripping keeps variables and applies scale words
    ("6xyz", "6", F), ("3abc", "3", F), ("4 ab", "4", F), ("2 xy", "2", F), ("2 ab", "2ab", T), ("1.5 million", "1.5", F),
    ("1.5 million", "1500000", T), ("3 thousand", "3", F), ("3 \\text{ thousand}", "3", F), ("3 \\text{ thousand}", "3000", T),
    ("\\text{2.5 billion dollars}", "2500000000", T), ("1.2345 thousand", "1234.5", T), ("5 cm", "5", T),
    ("3 apples", "3", T), ("10lbs", "10", T), ("7 \\text{ ab}", "7", T),
    # a space between digits is kept (mixed numbers), except in space thousands separators
    ("11/2", "1 1/2", F), ("21/4", "2 1/4", F), ("1 2", "12", F), ("1 2", "3", F), ("2 1/4", "9/4", T),
    ("(1 000, 2)", "(1000, 2)", T), ("12 345 678", "12345678", T),
    # repeats ignored: the same answer written twice is that answer (MATH-500 test/prealgebra: two boxes)
    ("1, 1", "1", T), ("15\\frac{39}{40}, \\frac{639}{40}", "\\frac{639}{40}", T), ("(1,2), (1,2)", "(1,2)", T),
    ("3, 4, 5", "5", F), ("12 men", "12", T),
    # not answers / safety
    (None, "1", F), ("", "1", F), ("  ", "0", F), ("__import__('os').system('echo hi')", "1", F), ("1", "", F),
]


@pytest.mark.parametrize("pred,gold,expected", CASES)
def test_equivalence_table(pred, gold, expected):
    assert is_equivalent(pred, gold) is expected
    if pred is not None and pred.strip() and gold.strip():
        assert is_equivalent(gold, pred) is expected  # symmetric


def test_table_is_broad():
    assert len(CASES) >= 150
    assert sum(1 for *_, expected in CASES if not expected) >= 50


EXTRACTION_CASES = [
    ("so the total is \\boxed{42}", "42"),
    ("first \\boxed{1} then \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("nested \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
    ("set \\boxed{\\{1,2\\}}", "\\{1,2\\}"),
    ("\\fbox{7} is it", "7"),
    ("we get $\\boxed 5$.", "5"),
    ("unfinished \\boxed{3} and \\boxed{4", "3"),
    ("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18"),
    ("total\n#### 1,450,000", "1450000"),
    ("Final Answer: The final answer is $28 \\%$. I hope it is correct.", "28 \\%"),
    ("The answer is 42", "42"),
    ("so the answer is: 3.5.", "3.5"),
    ("**Answer:** x = 5", "x = 5"),
    ("Answer: \\(\\frac{1}{2}\\)", "\\frac{1}{2}"),
    ("The answer is 3. Later the answer is 7.", "7"),
    ("I think it costs 1,000 dollars.", "1000"),
    ("the values are 3 and -4.5", "-4.5"),
    ("no digits here", None),
    # several boxed answers kept apart only by separators are one multi-part answer
    ("The answer is \\boxed{3}, \\boxed{4}, \\boxed{5}", "3, 4, 5"),
    ("The roots are \\boxed{1} and \\boxed{-2}.", "1, -2"),
    ("$\\boxed{(2, 2)}$ \\quad \\text{and} \\quad $\\boxed{(6, 2)}$", "(2, 2), (6, 2)"),
    ("we get \\boxed{3} so the total is \\boxed{4}", "4"),
    # several $...$ right after an answer phrase, and an escaped dollar inside one
    ("The answer is $5$ or $6$.", "5, 6"),
    ("The answer is $-2$ and $1$.", "-2, 1"),
    ("The answer is $5$, since $x = 5$ works.", "5"),
    ("Final Answer: The final answer is $\\$18.90$. I hope it is correct.", "\\$18.90"),
    ("The final answer is $$\\$36$$.", "\\$36"),
    # the last-number fallback keeps a leading-dot decimal and its sign
    ("the value is -.5", "-.5"),
    ("so the probability is .75", ".75"),
    ("it is 3.5.", "3.5"),
    ("", None),
]


@pytest.mark.parametrize("text,expected", EXTRACTION_CASES)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_then_compare_round_trip():
    assert is_equivalent(extract_answer("Thus $x = \\boxed{\\dfrac{3}{4}}$."), "0.75")
    assert not is_equivalent(extract_answer("Thus the answer is 5."), "6")


@pytest.mark.parametrize("text,gold,expected", [
    ("The answer is \\boxed{3}, \\boxed{4}, \\boxed{5}", "5", F),  # a hedge over three boxes is not the answer 5
    ("The answer is \\boxed{3}, \\boxed{4}, \\boxed{5}", "3, 4, 5", T),
    ("The answer is $5$ or $6$.", "5", F),
    ("The roots are \\boxed{1} and \\boxed{-2}.", "1,-2", T),
    ("The answer is $-2$ and $1$.", "-2,1", T),
    ("Final Answer: The final answer is $\\$18.90$. I hope it is correct.", "18.90", T),
    ("The final answer is $\\$18$.", "18", T),
])
def test_extract_then_compare_multi_part(text, gold, expected):
    assert is_equivalent(extract_answer(text), gold) is expected


@pytest.mark.parametrize("text", [
    "\\boxed{" * 14_300,  # 100 KB of unclosed boxes: was quadratic (about a minute)
    "\\fbox{x" * 14_300,
    "{" * 100_000 + "\\boxed{1",
    "\\boxed\n" * 14_300,
    "Answer: .\n" * 10_000,
    "answer: . " * 10_000,
])
def test_extract_answer_is_fast_on_hostile_text(text):
    start = time.perf_counter()
    extract_answer(text)
    assert time.perf_counter() - start < 2.0  # typically < 0.1 s; generous for a busy machine


# ----------------------------------------------------------------------------- real data
def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.skipif(not MATH500.exists(), reason="MATH-500 file not found")
def test_math500_reference_solutions_match_their_answers():
    rows = _rows(MATH500)
    misses = [(row["unique_id"], extract_answer(row["solution"]), row["answer"]) for row in rows
              if not is_equivalent(extract_answer(row["solution"]), row["answer"])]
    assert len(rows) == 500
    assert not misses, misses


@pytest.mark.skipif(not MATH500.exists(), reason="MATH-500 file not found")
def test_math500_answers_differ_from_their_neighbours():
    answers = [row["answer"] for row in _rows(MATH500)]
    pairs = [(a, b) for a, b in zip(answers, answers[1:]) if a != b]
    # the only legitimate coincidence in the file: "x=5" next to "5" is the same answer
    wrong = [(a, b) for a, b in pairs if is_equivalent(a, b) and {a, b} != {"x=5", "5"}]
    assert not wrong


@pytest.mark.skipif(not GSM8K.exists(), reason="GSM8K file not found")
def test_gsm8k_extraction_matches_gold():
    rows = _rows(GSM8K)
    golds = [row["answer"].rsplit("####", 1)[1].strip().replace(",", "") for row in rows]
    assert [extract_answer(row["answer"]) for row in rows] == golds


@pytest.mark.skipif(not GSM8K.exists(), reason="GSM8K file not found")
def test_gsm8k_golds_in_minerva_format_are_extracted():
    """``Final Answer: The final answer is $\\$N$. I hope it is correct.`` (the Minerva few-shot format)."""
    golds = [row["answer"].rsplit("####", 1)[1].strip().replace(",", "") for row in _rows(GSM8K)]
    texts = [f"Final Answer: The final answer is $\\${gold}$. I hope it is correct." for gold in golds]
    assert [extract_answer(text) for text in texts] == [f"\\${gold}" for gold in golds]
    assert all(is_equivalent(extract_answer(text), gold) for text, gold in zip(texts, golds))


@pytest.mark.skipif(not GSM8K.exists(), reason="GSM8K file not found")
def test_gsm8k_checks_are_fast_and_stay_in_process():
    golds = [row["answer"].rsplit("####", 1)[1].strip().replace(",", "") for row in _rows(GSM8K)]
    variants = []
    for gold in golds:
        value = int(gold)
        variants += [(gold, f"{value:,}"), (gold, f"{gold}.00"), (gold, f"\\${value:,}"), (gold, str(value + 1))]
    before = worker_stats()["requests"]
    start = time.perf_counter()
    verdicts = [is_equivalent(pred, gold) for gold, pred in variants]
    rate = len(variants) / (time.perf_counter() - start)
    assert verdicts == [True, True, True, False] * len(golds)
    assert worker_stats()["requests"] == before
    assert rate > 5_000, rate  # typically > 100k/s; the bench reports the real figure
