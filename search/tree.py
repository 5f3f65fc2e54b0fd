"""Search trees over reasoning steps: nodes with visit counts and value sums, JSONL and GraphML round trips.

A `Tree` holds one problem's nodes in a flat list (node id = index; the root, id 0, is the bare question).
``Q = value_sum / visits`` is the plain Monte-Carlo mean of the values backed up through a node (0 when
unvisited). The hot operations (`add_child`, `backup`, `steps`) touch plain lists only; networkx is used
for export alone.

Record (one JSON object per tree, DESIGN.md section 3): ``problem_id``, ``question``, ``answer``, ``config``,
``nodes`` = ``[{id, parent, step, depth, prior, visits, value_sum, q, terminal, answer, correct, tokens,
logprob, value}]``; children are derived from ``parent``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from data.records import RecordError, read_jsonl

__all__ = ["Node", "Tree", "read_trees", "tree_summary"]

_NODE_FIELDS = ("id", "parent", "step", "depth", "prior", "visits", "value_sum", "terminal")
_TREE_FIELDS = ("problem_id", "question", "answer", "nodes")


@dataclass
class Node:
    """One step of a search tree (see the module docstring for the fields)."""

    id: int
    parent: int | None
    step: str
    depth: int
    prior: float = 1.0
    visits: int = 0
    value_sum: float = 0.0
    terminal: bool = False
    answer: str | None = None
    correct: bool | None = None
    tokens: int = 0
    logprob: float = 0.0
    children: list[int] = field(default_factory=list)
    value: float | None = None

    @property
    def q(self) -> float:
        """Mean backed-up value, 0.0 when the node was never visited."""
        return self.value_sum / self.visits if self.visits else 0.0


class Tree:
    """One problem's search tree; node 0 is the root (the question, no step)."""

    def __init__(self, problem_id: str, question: str, answer: str, config: dict[str, Any] | None = None):
        self.problem_id = problem_id
        self.question = question
        self.answer = answer
        self.config = dict(config or {})
        self.nodes: list[Node] = [Node(id=0, parent=None, step="", depth=0)]

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add_child(self, parent: int, step: str, *, prior: float = 1.0, tokens: int = 0, logprob: float = 0.0,
                  terminal: bool = False, answer: str | None = None, correct: bool | None = None) -> Node:
        """Append a child of ``parent`` and return it."""
        node = Node(id=len(self.nodes), parent=parent, step=step, depth=self.nodes[parent].depth + 1, prior=prior,
                    terminal=terminal, answer=answer, correct=correct, tokens=tokens, logprob=logprob)
        self.nodes.append(node)
        self.nodes[parent].children.append(node.id)
        return node

    def path(self, node_id: int) -> list[Node]:
        """Nodes from the root to ``node_id``, both included."""
        path = []
        current: int | None = node_id
        while current is not None:
            node = self.nodes[current]
            path.append(node)
            current = node.parent
        return path[::-1]

    def steps(self, node_id: int) -> list[str]:
        """Step texts from the root's child down to ``node_id``."""
        return [node.step for node in self.path(node_id)[1:]]

    def backup(self, node_id: int, value: float) -> None:
        """Add ``value`` to every node from ``node_id`` up to the root (``N += 1``, ``W += v``)."""
        current: int | None = node_id
        while current is not None:
            node = self.nodes[current]
            if node.value is None:
                node.value = value
            node.visits += 1
            node.value_sum += value
            current = node.parent

    def leaves(self) -> list[Node]:
        return [node for node in self.nodes if not node.children]

    def terminal_leaves(self) -> list[Node]:
        return [node for node in self.nodes if node.terminal]

    def is_solved(self) -> bool:
        """Pass@tree: some terminal node holds a correct answer."""
        return any(node.correct for node in self.nodes if node.terminal)

    def best_child(self, node_id: int, key: str = "q") -> Node | None:
        """The child with the highest ``key`` (``q``, ``visits``, ``prior``); ties go to more visits."""
        children = [self.nodes[c] for c in self.nodes[node_id].children]
        if not children:
            return None
        return max(children, key=lambda n: (getattr(n, key), n.visits))

    def greedy_path(self, key: str = "q") -> list[Node]:
        """Follow `best_child` from the root to a leaf."""
        path = [self.root]
        while (child := self.best_child(path[-1].id, key)) is not None:
            path.append(child)
        return path

    def num_tokens(self) -> int:
        return sum(node.tokens for node in self.nodes)

    # ------------------------------------------------------------ records
    def to_record(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "question": self.question,
            "answer": self.answer,
            "config": self.config,
            "nodes": [
                {"id": n.id, "parent": n.parent, "step": n.step, "depth": n.depth, "prior": n.prior,
                 "visits": n.visits, "value_sum": n.value_sum, "q": n.q, "terminal": n.terminal,
                 "answer": n.answer, "correct": n.correct, "tokens": n.tokens, "logprob": n.logprob,
                 "value": n.value}
                for n in self.nodes
            ],
        }

    @classmethod
    def from_record(cls, record: Any, *, path: str | os.PathLike = "<memory>", line: int = 0) -> "Tree":
        """Rebuild a tree, checking fields; errors name ``path:line`` and the node."""
        if not isinstance(record, dict):
            raise RecordError(path, line, "expected a tree object")
        for name in _TREE_FIELDS:
            if name not in record:
                raise RecordError(path, line, f"missing field {name!r}")
        if not isinstance(record["nodes"], list) or not record["nodes"]:
            raise RecordError(path, line, "field 'nodes' must be a non-empty list")
        tree = cls(str(record["problem_id"]), str(record["question"]), str(record["answer"]), record.get("config") or {})
        tree.nodes = []
        for position, raw in enumerate(record["nodes"]):
            if not isinstance(raw, dict):
                raise RecordError(path, line, f"node {position}: expected an object")
            for name in _NODE_FIELDS:
                if name not in raw:
                    raise RecordError(path, line, f"node {raw.get('id', position)}: missing field {name!r}")
            if raw["id"] != position:
                raise RecordError(path, line, f"node {raw['id']}: ids must be 0..n-1 in order (expected {position})")
            parent = raw["parent"]
            if position == 0 and parent is not None:
                raise RecordError(path, line, "node 0: the root has no parent")
            if position > 0 and not (isinstance(parent, int) and 0 <= parent < position):
                raise RecordError(path, line, f"node {position}: parent {parent!r} is not an earlier node")
            try:
                node = Node(id=position, parent=parent, step=str(raw["step"]), depth=int(raw["depth"]),
                            prior=float(raw["prior"]), visits=int(raw["visits"]), value_sum=float(raw["value_sum"]),
                            terminal=bool(raw["terminal"]), answer=raw.get("answer"), correct=raw.get("correct"),
                            tokens=int(raw.get("tokens", 0)), logprob=float(raw.get("logprob", 0.0)),
                            value=raw.get("value"))
            except (TypeError, ValueError) as exc:
                raise RecordError(path, line, f"node {position}: bad value ({exc})") from None
            tree.nodes.append(node)
            if parent is not None:
                tree.nodes[parent].children.append(position)
        return tree

    # ------------------------------------------------------------ graphs
    def to_networkx(self):
        """A `networkx.DiGraph` (edges parent → child); None fields are left out so GraphML can hold it."""
        import networkx as nx

        graph = nx.DiGraph(problem_id=self.problem_id, question=self.question, answer=self.answer)
        for node in self.to_record()["nodes"]:
            graph.add_node(node["id"], **{k: v for k, v in node.items() if v is not None and k != "id"})
        graph.add_edges_from((n.parent, n.id) for n in self.nodes if n.parent is not None)
        return graph

    @classmethod
    def from_networkx(cls, graph) -> "Tree":
        nodes = []
        for node_id in sorted(graph.nodes, key=int):
            attrs = dict(graph.nodes[node_id])
            nodes.append({"id": int(node_id), "parent": attrs.get("parent"), "step": attrs.get("step", ""),
                          "depth": attrs.get("depth", 0), "prior": attrs.get("prior", 1.0),
                          "visits": attrs.get("visits", 0), "value_sum": attrs.get("value_sum", 0.0),
                          "terminal": attrs.get("terminal", False), "answer": attrs.get("answer"),
                          "correct": attrs.get("correct"), "tokens": attrs.get("tokens", 0),
                          "logprob": attrs.get("logprob", 0.0), "value": attrs.get("value")})
        data = graph.graph
        return cls.from_record({"problem_id": data.get("problem_id", ""), "question": data.get("question", ""),
                                "answer": data.get("answer", ""), "nodes": nodes})

    def write_graphml(self, path: str | os.PathLike) -> Path:
        import networkx as nx

        nx.write_graphml(self.to_networkx(), path)
        return Path(path)

    @classmethod
    def read_graphml(cls, path: str | os.PathLike) -> "Tree":
        import networkx as nx

        graph = nx.read_graphml(path, node_type=int)
        return cls.from_networkx(graph)


def read_trees(path: str | os.PathLike, *, skip_incomplete_tail: bool = True) -> Iterator[Tree]:
    """Trees of a ``trees.jsonl``; a bad line or record raises `RecordError` naming file and line."""
    for line, record in read_jsonl(path, skip_incomplete_tail=skip_incomplete_tail, with_line_numbers=True):
        yield Tree.from_record(record, path=path, line=line)


def tree_summary(trees: Iterable[Tree]) -> dict[str, Any]:
    """Problems, nodes, tokens, pass@tree, greedy-path accuracy and mean Q of the root's best child."""
    count = nodes = tokens = solved = greedy_correct = 0
    best_q = 0.0
    for tree in trees:
        count += 1
        nodes += len(tree.nodes)
        tokens += tree.num_tokens()
        solved += tree.is_solved()
        leaf = tree.greedy_path()[-1]
        greedy_correct += bool(leaf.terminal and leaf.correct)
        best = tree.best_child(0)
        best_q += best.q if best else 0.0
    return {
        "problems": count,
        "nodes": nodes,
        "tokens": tokens,
        "pass_at_tree": round(solved / count, 4) if count else 0.0,
        "greedy_path_accuracy": round(greedy_correct / count, 4) if count else 0.0,
        "mean_best_child_q": round(best_q / count, 4) if count else 0.0,
    }
