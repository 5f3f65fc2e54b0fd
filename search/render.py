"""Pictures of a search tree: what search tried, what it believed (Q) and where it went.

`render_tree` writes a PNG (matplotlib, no pyplot state) or a self-contained HTML page (inline SVG, no
scripts, no network) with one top-down layout: leaves evenly spaced in insertion order, every parent
centred over its children, depth downwards. Nodes are filled by Q on a red (-1) → white (0) → green (+1)
scale (grey: never visited), sized by visits; terminal nodes get a green ✓ or red ✗ rim; the greedy path
(highest Q at every depth, below the committed steps of a step-by-step search) is drawn bold. Step labels
are truncated and placed greedy path first, then by visits, skipping any that would overlap one already
placed, so even a 300-node tree stays readable.
"""

from __future__ import annotations

import html
import math
import os
import textwrap
from pathlib import Path

from search.tree import Node, Tree

__all__ = ["render_tree"]

_RED, _WHITE, _GREEN = (0.843, 0.188, 0.153), (1.0, 1.0, 1.0), (0.102, 0.596, 0.314)
_UNVISITED = "#c8c8c8"
_OK, _BAD = "#1a9850", "#d73027"
_LABEL_CHARS = 18


def render_tree(tree: Tree, out: str | os.PathLike) -> Path:
    """Draw ``tree`` to ``out`` (``.png`` or ``.html``, chosen by suffix) and return the path written."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html"):
        raise ValueError(f"{out}: cannot render a tree to {suffix or 'a file without suffix'!r}; use .png or .html")
    out.parent.mkdir(parents=True, exist_ok=True)
    (_render_png if suffix == ".png" else _render_html)(tree, out)
    return out


# ---------------------------------------------------------------- shared layout
def _layout(tree: Tree) -> tuple[list[float], int]:
    """x of every node (leaves at 0, 1, 2, … in depth-first order; parents centred) and the leaf count."""
    nodes, xs, leaf = tree.nodes, [0.0] * len(tree.nodes), 0
    stack = [(0, False)]
    while stack:  # iterative post-order: deep chains must not hit the recursion limit
        node_id, closing = stack.pop()
        children = nodes[node_id].children
        if not children:
            xs[node_id], leaf = float(leaf), leaf + 1
        elif closing:
            xs[node_id] = (xs[children[0]] + xs[children[-1]]) / 2
        else:
            stack.append((node_id, True))
            stack.extend((child, False) for child in reversed(children))
    return xs, leaf


def _q_rgb(q: float) -> tuple[float, float, float]:
    """Linear red → white → green for Q in [-1, 1] (the same map as the PNG colorbar)."""
    q = max(-1.0, min(1.0, q))
    end = _GREEN if q >= 0 else _RED
    return tuple(w + (e - w) * abs(q) for w, e in zip(_WHITE, end))  # type: ignore[return-value]


def _fill(node: Node) -> str:
    if not node.visits:
        return _UNVISITED
    return "#%02x%02x%02x" % tuple(round(255 * c) for c in _q_rgb(node.q))


def _rim(node: Node) -> str:
    if node.terminal and node.correct is not None:
        return _OK if node.correct else _BAD
    return "#555555"


def _short(text: str, limit: int = _LABEL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pick_labels(tree: Tree, xs: list[float], greedy: set[int], width: float, limit: int) -> list[int]:
    """Nodes to label: greedy path first, then by visits (enough of them), none overlapping on its row.

    ``width`` is a label's width in layout x units; ``limit`` caps how many labels are drawn.
    """
    floor = max(2, 0.02 * tree.root.visits)
    ranked = sorted((n for n in tree.nodes[1:] if n.id in greedy or n.visits >= floor),
                    key=lambda n: (n.id not in greedy, -n.visits, n.id))
    taken: dict[int, list[tuple[float, float]]] = {}
    chosen: list[int] = []
    for node in ranked:
        span = (xs[node.id] - width / 2, xs[node.id] + width / 2)
        row = taken.setdefault(node.depth, [])
        if any(span[0] < right and left < span[1] for left, right in row):
            continue
        row.append(span)
        chosen.append(node.id)
        if len(chosen) >= limit:
            break
    return chosen


def _tooltip(node: Node, question: str) -> str:
    lines = [node.step if node.parent is not None else f"(question) {question}",
             f"Q = {node.q:+.3f}   visits = {node.visits}   prior = {node.prior:.3f}",
             f"depth {node.depth}   tokens {node.tokens}   id {node.id}"]
    if node.terminal:
        verdict = {True: "correct ✓", False: "wrong ✗"}.get(node.correct, "unchecked")
        lines.append(f"answer: {node.answer!s}   ({verdict})")
    return "\n".join(lines)


def _headline(tree: Tree) -> str:
    solved = "solved" if tree.is_solved() else "NOT solved"
    return (f"{tree.problem_id} · gold {tree.answer} · {solved} · {len(tree.nodes)} nodes · "
            f"{tree.num_tokens()} tokens · root Q {tree.root.q:+.2f} over {tree.root.visits} visits")


def _committed(tree: Tree) -> bool:
    """Whether a step-by-step search committed to a step below the question (`search.mcts`)."""
    return len(tree.config.get("committed") or []) > 1


def _path_name(tree: Tree) -> str:
    """What the bold path is: a step-by-step search's committed steps, or the best-Q child at every depth."""
    return "committed path" if _committed(tree) else "greedy path"


def _greedy_verdict(tree: Tree, path: list[Node]) -> str:
    leaf = path[-1]
    if not leaf.terminal:
        return f"{_path_name(tree)} stops unfinished at depth {leaf.depth}"
    mark = {True: "✓", False: "✗"}.get(leaf.correct, "?")
    return f"{_path_name(tree)} answer: {leaf.answer} {mark}"


# ---------------------------------------------------------------- PNG
def _render_png(tree: Tree, out: Path) -> None:
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    xs, leaves = _layout(tree)
    nodes, max_depth = tree.nodes, max(n.depth for n in tree.nodes)
    greedy_path = tree.greedy_path()
    greedy = {n.id for n in greedy_path}
    # Wide trees get a capped figure with tighter leaf spacing (and smaller leaf markers and marks).
    width = min(32.0, max(9.0, 1.8 + 0.26 * leaves))
    spacing_pt = 72 * width * 0.9 / max(leaves, 1)
    shrink = min(1.0, (spacing_pt / 14) ** 2)
    height = min(24.0, max(5.0, 2.4 + 0.95 * (max_depth + 1)))
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((0.9 / width, 0.55 / height, 1 - 2.0 / width, 1 - 1.65 / height))
    cmap = LinearSegmentedColormap.from_list("q", [_RED, _WHITE, _GREEN])

    top = max(1, tree.root.visits)
    edges = [((xs[n.parent], n.depth - 1), (xs[n.id], n.depth)) for n in nodes[1:]]
    ax.add_collection(LineCollection(
        edges, zorder=1, colors=["#1f1f1f" if n.id in greedy else "#9a9a9a" for n in nodes[1:]],
        linewidths=[3.2 if n.id in greedy else 0.5 + 2.0 * math.sqrt(n.visits / top) for n in nodes[1:]]))
    ax.scatter(xs, [n.depth for n in nodes], s=[18 * shrink + 300 * math.sqrt(n.visits / top) for n in nodes],
               c=[_fill(n) for n in nodes], edgecolors=[_rim(n) for n in nodes],
               linewidths=[2.2 if n.terminal else 0.7 for n in nodes], zorder=3)
    for node in nodes:
        if node.terminal and node.correct is not None:
            ax.text(xs[node.id], node.depth + 0.2, "✓" if node.correct else "✗", ha="center", va="top",
                    fontsize=min(9.0, max(5.0, spacing_pt)), fontweight="bold", color=_rim(node), zorder=4)

    # A label is ~6 pt per character at 8 pt; convert to leaf-spacing units for the overlap test.
    label_units = _LABEL_CHARS * 5.2 / spacing_pt
    for node_id in _pick_labels(tree, xs, greedy, label_units, limit=60):
        node = nodes[node_id]
        below = 0.42 if node.terminal else 0.2
        ax.text(xs[node_id], node.depth + below, _mpl(_short(node.step)), ha="center", va="top", fontsize=8,
                fontweight="bold" if node_id in greedy else "normal", zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
    ax.text(xs[0], -0.22, "question", ha="center", va="bottom", fontsize=8, style="italic")

    ax.set_xlim(-0.8, max(leaves - 0.2, 0.8))
    ax.set_ylim(max_depth + 0.75, -0.6)
    ax.set_yticks(range(max_depth + 1))
    ax.set_ylabel("depth (steps)")
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(ScalarMappable(Normalize(-1, 1), cmap), ax=ax, fraction=min(0.03, 0.35 / width), pad=0.005,
                       shrink=0.8)
    bar.set_label("Q (mean backed-up value)")
    dot = dict(ls="", marker="o", mfc="white", mec="#555555", ms=9)
    handles = [Line2D([], [], **{**dot, "mec": _OK, "mew": 2.2}, label="correct answer ✓"),
               Line2D([], [], **{**dot, "mec": _BAD, "mew": 2.2}, label="wrong answer ✗"),
               Line2D([], [], **{**dot, "mfc": _UNVISITED}, label="never visited"),
               Line2D([], [], color="#1f1f1f", lw=3.2,
                      label="committed path, then best Q" if _committed(tree) else "greedy path (best Q)"),
               Line2D([], [], **{**dot, "ms": 5}, label="size = visits")]
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.9 / width, 0.02 / height), ncol=5, fontsize=8,
               frameon=False)
    # ~6 pt a character at 10 pt: about 11 characters an inch, less a margin.
    question = textwrap.shorten(" ".join(tree.question.split()), width=int(width * 10.5), placeholder=" …")
    fig.suptitle(_mpl(f"{_headline(tree)}\n{question}\n{_greedy_verdict(tree, greedy_path)}"), fontsize=10,
                 y=1 - 0.08 / height, va="top")
    fig.savefig(out, dpi=100)


def _mpl(text: str) -> str:
    """Escape ``$`` so that prices in a step are not read as mathtext."""
    return text.replace("$", r"\$")


# ---------------------------------------------------------------- HTML / SVG
def _render_html(tree: Tree, out: Path) -> None:
    xs, leaves = _layout(tree)
    nodes, max_depth = tree.nodes, max(n.depth for n in tree.nodes)
    greedy_path = tree.greedy_path()
    greedy = {n.id for n in greedy_path}
    dx, dy, left, top_margin = 26.0, 86.0, 90.0, 40.0
    width = left + dx * max(leaves, 1) + 90
    height = top_margin + dy * max_depth + 70
    px = [left + dx * x for x in xs]
    py = [top_margin + dy * n.depth for n in nodes]
    top = max(1, tree.root.visits)
    esc = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
             f'font-family="sans-serif" font-size="11">',
             '<defs><linearGradient id="qbar" x1="0" y1="1" x2="0" y2="0">'
             f'<stop offset="0" stop-color="{_BAD}"/><stop offset="0.5" stop-color="#ffffff"/>'
             f'<stop offset="1" stop-color="{_OK}"/></linearGradient></defs>']
    for depth in range(max_depth + 1):
        parts.append(f'<text x="8" y="{top_margin + dy * depth + 4:.1f}" fill="#777">d{depth}</text>')
    for node in nodes[1:]:
        thin = 0.6 + 2.2 * math.sqrt(node.visits / top)
        colour, stroke = ("#1f1f1f", 3.5) if node.id in greedy else ("#9a9a9a", thin)
        parts.append(f'<line x1="{px[node.parent]:.1f}" y1="{py[node.parent]:.1f}" x2="{px[node.id]:.1f}" '
                     f'y2="{py[node.id]:.1f}" stroke="{colour}" stroke-width="{stroke:.2f}"/>')
    for node in nodes:
        radius = 3.5 + 10 * math.sqrt(node.visits / top)
        rim = _rim(node)
        parts.append(f'<g class="node"><title>{esc(_tooltip(node, tree.question))}</title>'
                     f'<circle cx="{px[node.id]:.1f}" cy="{py[node.id]:.1f}" r="{radius:.1f}" fill="{_fill(node)}" '
                     f'stroke="{rim}" stroke-width="{2.4 if node.terminal else 0.8}"/>')
        if node.terminal and node.correct is not None:
            parts.append(f'<text x="{px[node.id]:.1f}" y="{py[node.id] + radius + 13:.1f}" text-anchor="middle" '
                         f'font-weight="bold" fill="{rim}">{"✓" if node.correct else "✗"}</text>')
        parts.append("</g>")
    for node_id in _pick_labels(tree, xs, greedy, (_LABEL_CHARS * 6.3) / dx, limit=120):
        node = nodes[node_id]
        offset = 3.5 + 10 * math.sqrt(node.visits / top) + (25 if node.terminal else 12)
        weight = "bold" if node_id in greedy else "normal"
        parts.append(f'<text class="label" x="{px[node_id]:.1f}" y="{py[node_id] + offset:.1f}" '
                     f'text-anchor="middle" font-weight="{weight}">{esc(_short(node.step))}</text>')
    bar_x = width - 40
    parts.append(f'<rect x="{bar_x}" y="{top_margin}" width="14" height="120" fill="url(#qbar)" stroke="#555"/>')
    for value, offset in (("+1", 0), ("0", 60), ("−1", 120)):
        parts.append(f'<text x="{bar_x + 18}" y="{top_margin + offset + 4}" font-size="10">{value}</text>')
    parts.append(f'<text x="{bar_x - 4}" y="{top_margin - 8}" font-size="10">Q</text></svg>')

    steps = "".join(
        f"<li><span class='q' style='background:{_fill(n)}'>Q {n.q:+.2f}</span> <small>n={n.visits}</small> "
        f"{esc(n.step)}{' <b>→ ' + esc(str(n.answer)) + '</b>' if n.terminal else ''}</li>"
        for n in greedy_path[1:])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(tree.problem_id)}: search tree</title>
<style>
body {{ font-family: sans-serif; margin: 1.2em; color: #222; }}
.svgbox {{ overflow: auto; border: 1px solid #ddd; }}
.node:hover circle {{ stroke: #000; stroke-width: 3; }}
.label {{ paint-order: stroke; stroke: #fff; stroke-width: 3px; }}
.q {{ display: inline-block; min-width: 4.5em; padding: 0 .3em; border: 1px solid #999; font-family: monospace; }}
li {{ margin: .2em 0; }}
</style></head><body>
<h2>{esc(_headline(tree))}</h2>
<p><b>Question:</b> {esc(tree.question)}</p>
<p>Fill: Q from red (−1) through white (0) to green (+1), grey = never visited; size = visits; green ✓ / red ✗
rim = terminal answer right / wrong; bold = {_path_name(tree)}. Hover a node for its full step, Q, visits and prior.</p>
<div class="svgbox">{''.join(parts)}</div>
<h3>{esc(_greedy_verdict(tree, greedy_path))}</h3>
<ol>{steps}</ol>
</body></html>
"""
    out.write_text(page, encoding="utf-8")
