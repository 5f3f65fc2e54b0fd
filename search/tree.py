"""Search trees over reasoning steps: nodes with visit counts and value sums, JSONL and GraphML round trips.

A `Tree` holds one problem's nodes in a flat list (node id = index; the root, id 0, is the bare question).
``Q = value_sum / visits`` is the plain Monte-Carlo mean of the values backed up through a node (0 when
unvisited). The hot operations (`add_child`, `backup`, `steps`) touch plain lists only; networkx is
imported for export alone.

Record (one JSON object per tree, DESIGN.md section 3): ``problem_id``, ``question``, ``answer``, ``config``,
``nodes`` = ``[{id, parent, step, depth, prior, visits, value_sum, q, terminal, answer, correct, tokens,
logprob, value}]``; ``children`` are derived from ``parent`` and ``q`` is recomputed on reading.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from data.records import RecordError, read_jsonl

__all__ = ["Node", "Tree", "child_rank", "read_trees", "tree_summary"]

_TREE_FIELDS = ("problem_id", "question", "answer", "nodes")
_NODE_FIELDS = ("id", "parent", "step", "depth", "prior", "visits", "value_sum", "terminal")
# Optional node fields and their defaults (older records may lack them).
_NODE_DEFAULTS: dict[str, Any] = {"answer": None, "correct": None, "tokens": 0, "logprob": 0.0, "value": None}
_GRAPH_DEFAULTS: dict[str, Any] = {"step": "", "depth": 0, "prior": 1.0, "visits": 0, "value_sum": 0.0,
                                   "terminal": False, **_NODE_DEFAULTS}


@dataclass
class Node:
    """One step of a search tree (see the module docstring for the record fields)."""

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


def child_rank(node: Node, key: str = "q") -> tuple[float, int]:
    """How a read-out ranks a child: its ``key`` (``q``, ``visits``, ``prior``, ``value``), ties to more visits. A
    ``None`` attribute (an unset ``value``) ranks lowest, and so does the Q of a child never visited
    (``leaf_value="leaf"`` leaves open children so): its 0 is not a value."""
    score = None if key == "q" and not node.visits else getattr(node, key)
    return (-math.inf if score is None else score, node.visits)


class Tree:
    """One problem's search tree; node 0 is the root (the question, no step)."""

    def __init__(self, problem_id: str, question: str, answer: str, config: dict[str, Any] | None = None):
        self.problem_id, self.question, self.answer = problem_id, question, answer
        self.config = dict(config or {})
        self.nodes: list[Node] = [Node(id=0, parent=None, step="", depth=0)]

    @property
    def root(self) -> Node:
        """Node 0: the question itself."""
        return self.nodes[0]

    def add_child(self, parent: int, step: str, *, prior: float = 1.0, tokens: int = 0, logprob: float = 0.0,
                  terminal: bool = False, answer: str | None = None, correct: bool | None = None) -> Node:
        """Append a child of ``parent`` (its id is the next free index) and return it."""
        nodes = self.nodes
        node = Node(len(nodes), parent, step, nodes[parent].depth + 1, prior, 0, 0.0, terminal, answer, correct,
                    tokens, logprob)
        nodes.append(node)
        nodes[parent].children.append(node.id)
        return node

    def path(self, node_id: int) -> list[Node]:
        """Nodes from the root to ``node_id``, both included."""
        nodes, path = self.nodes, []
        current: int | None = node_id
        while current is not None:
            node = nodes[current]
            path.append(node)
            current = node.parent
        path.reverse()
        return path

    def steps(self, node_id: int) -> list[str]:
        """Step texts from the root's child down to ``node_id``: the partial solution the node stands for."""
        return [node.step for node in self.path(node_id)[1:]]

    def backup(self, node_id: int, value: float) -> None:
        """Add ``value`` to every node from ``node_id`` up to the root (``N += 1``, ``W += v``).

        A node's first backed-up value is also kept in ``.value`` (AlphaMath's value-model estimate).
        """
        nodes = self.nodes
        current: int | None = node_id
        while current is not None:
            node = nodes[current]
            if node.value is None:
                node.value = value
            node.visits += 1
            node.value_sum += value
            current = node.parent

    def leaves(self) -> list[Node]:
        """Nodes without children (the root too, while the tree is bare)."""
        return [node for node in self.nodes if not node.children]

    def terminal_leaves(self) -> list[Node]:
        """Nodes whose step ended the solution (they carry ``answer`` and ``correct``)."""
        return [node for node in self.nodes if node.terminal]

    def is_solved(self) -> bool:
        """Pass@tree: some terminal node holds a correct answer."""
        return any(node.terminal and node.correct is True for node in self.nodes)

    def best_child(self, node_id: int, key: str = "q") -> Node | None:
        """The child with the highest ``key`` (``q``, ``visits``, ``prior``, ``value``); ties go to more visits.

        None when ``node_id`` has no children; ranked by `child_rank`.
        """
        children = self.nodes[node_id].children
        if not children:
            return None

        return max((self.nodes[c] for c in children), key=lambda node: child_rank(node, key))

    def greedy_path(self, key: str = "q") -> list[Node]:
        """The path search commits to, root to leaf: the steps a step-by-step search committed to
        (``config["committed"]``, `search.mcts`), then `best_child` at every level below the last of them."""
        path = [self.nodes[node_id] for node_id in self.config.get("committed") or [0]]
        while (child := self.best_child(path[-1].id, key)) is not None:
            path.append(child)
        return path

    def num_tokens(self) -> int:
        """Tokens generated for the whole tree (the search cost)."""
        return sum(node.tokens for node in self.nodes)

    # ------------------------------------------------------------ records
    def to_record(self) -> dict[str, Any]:
        """The JSON-ready record of DESIGN.md section 3 (children are left out: they follow from parents)."""
        return {
            "problem_id": self.problem_id, "question": self.question, "answer": self.answer, "config": self.config,
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
        """Rebuild a tree from its record, checking fields and types; errors name ``path:line`` and the node.

        Node ids must run 0..n-1 in list order, the root (id 0) has no parent and every other parent is an
        earlier node, so the record always describes one connected tree.
        """
        fail = functools.partial(RecordError, path, line)
        if not isinstance(record, dict):
            raise fail(f"expected a tree object, got {type(record).__name__}")
        for name in _TREE_FIELDS:
            if name not in record:
                raise fail(f"missing field {name!r}")
        for name in ("problem_id", "question", "answer"):
            if not isinstance(record[name], (str, int)) or isinstance(record[name], bool):
                raise fail(f"field {name!r} must be a string, got {type(record[name]).__name__}")
        config = record.get("config") or {}
        if not isinstance(config, dict):
            raise fail(f"field 'config' must be an object, got {type(config).__name__}")
        raw_nodes = record["nodes"]
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise fail("field 'nodes' must be a non-empty list")

        tree = cls(str(record["problem_id"]), str(record["question"]), str(record["answer"]), config)
        tree.nodes = nodes = []
        for position, raw in enumerate(raw_nodes):
            if not isinstance(raw, dict):
                raise fail(f"node {position}: expected an object, got {type(raw).__name__}")
            label = raw.get("id", position)
            for name in _NODE_FIELDS:
                if name not in raw:
                    raise fail(f"node {label}: missing field {name!r}")
            node_id, parent = raw["id"], raw["parent"]
            if not _is_int(node_id):
                raise fail(f"node {node_id!r}: field 'id' must be an integer")
            if node_id != position:
                kind = "duplicate id" if 0 <= node_id < position else "ids must run 0..n-1 in list order"
                raise fail(f"node {node_id}: {kind} (expected id {position})")
            if position == 0:
                if parent is not None:
                    raise fail("node 0: the root must have parent null")
            elif not (_is_int(parent) and 0 <= parent < position):
                raise fail(f"node {node_id}: parent {parent!r} is not an earlier node")
            values = {**_NODE_DEFAULTS, **raw}
            for name, check, kind in _NODE_TYPES:
                if not check(values[name]):
                    raise fail(f"node {node_id}: field {name!r} must be {kind}, got {values[name]!r}")
            depth = 0 if parent is None else nodes[parent].depth + 1
            if values["depth"] != depth:
                raise fail(f"node {node_id}: depth {values['depth']} but its parent is at depth {depth - 1}")
            if values["visits"] < 0:
                raise fail(f"node {node_id}: field 'visits' must not be negative")
            nodes.append(Node(
                node_id, parent, values["step"], depth, float(values["prior"]), values["visits"],
                float(values["value_sum"]), values["terminal"], values["answer"], values["correct"],
                values["tokens"], float(values["logprob"]),
                value=None if values["value"] is None else float(values["value"])))
            if parent is not None:
                nodes[parent].children.append(node_id)
        committed = config.get("committed")
        if committed is not None and not _is_committed_path(committed, nodes):
            raise fail(f"config 'committed' must list node ids from the root (0) down a parent-child path, got {committed!r}")
        return tree

    # ------------------------------------------------------------ graphs
    def to_networkx(self):
        """A `networkx.DiGraph` with edges parent → child and the node fields as attributes.

        ``None`` fields are left out (GraphML has no null) and ``config`` is kept as a JSON string graph
        attribute, so that `write_graphml` / `read_graphml` give back an equal `to_record`.
        """
        import networkx as nx

        graph = nx.DiGraph(problem_id=self.problem_id, question=self.question, answer=self.answer,
                           config=json.dumps(self.config, sort_keys=True))
        for node in self.to_record()["nodes"]:
            graph.add_node(node["id"], **{k: v for k, v in node.items() if v is not None and k != "id"})
        graph.add_edges_from((n.parent, n.id) for n in self.nodes if n.parent is not None)
        return graph

    @classmethod
    def from_networkx(cls, graph, *, path: str | os.PathLike = "<networkx>") -> "Tree":
        """Inverse of `to_networkx` (a node's parent is its in-edge); errors name ``path`` (a GraphML file)."""
        nodes = []
        for node_id in sorted(graph.nodes, key=int):
            attrs = dict(graph.nodes[node_id])
            preds = list(graph.predecessors(node_id))
            parent = int(preds[0]) if preds else attrs.get("parent")
            nodes.append({"id": int(node_id), "parent": parent,
                          **{name: attrs.get(name, default) for name, default in _GRAPH_DEFAULTS.items()}})
        data = graph.graph
        config = data.get("config") or {}
        config = json.loads(config) if isinstance(config, str) else config
        return cls.from_record({"problem_id": data.get("problem_id", ""), "question": data.get("question", ""),
                                "answer": data.get("answer", ""), "config": config, "nodes": nodes},
                               path=path)

    def write_graphml(self, path: str | os.PathLike) -> Path:
        """Write the tree as GraphML (Gephi, yEd, Cytoscape open it); returns the path."""
        import networkx as nx

        nx.write_graphml(self.to_networkx(), path)
        return Path(path)

    @classmethod
    def read_graphml(cls, path: str | os.PathLike) -> "Tree":
        """Read a tree written by `write_graphml`."""
        import networkx as nx

        return cls.from_networkx(nx.read_graphml(path, node_type=int), path=path)


def _is_committed_path(ids: Any, nodes: list[Node]) -> bool:
    """A step-by-step search's committed nodes (`search.mcts`): ids from the root down, each a child of the last."""
    return (isinstance(ids, list) and bool(ids) and all(_is_int(i) and 0 <= i < len(nodes) for i in ids)
            and ids[0] == 0 and all(nodes[b].parent == a for a, b in zip(ids, ids[1:])))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_NODE_TYPES = (  # (field, check, what the error says it must be)
    ("step", lambda v: isinstance(v, str), "a string"), ("depth", _is_int, "an integer"),
    ("prior", _is_number, "a number"), ("visits", _is_int, "an integer"), ("value_sum", _is_number, "a number"),
    ("terminal", lambda v: isinstance(v, bool), "true or false"),
    ("answer", lambda v: v is None or isinstance(v, str), "a string or null"),
    ("correct", lambda v: v is None or isinstance(v, bool), "true, false or null"),
    ("tokens", _is_int, "an integer"), ("logprob", _is_number, "a number"),
    ("value", lambda v: v is None or _is_number(v), "a number or null"),
)


def read_trees(path: str | os.PathLike, *, skip_incomplete_tail: bool = True) -> Iterator[Tree]:
    """Trees of a ``trees.jsonl``; a bad line or record raises `RecordError` naming file and line.

    An incomplete last line (a killed writer's) is skipped by default, as a resumed run would do.
    """
    for line, record in read_jsonl(path, skip_incomplete_tail=skip_incomplete_tail, with_line_numbers=True):
        yield Tree.from_record(record, path=path, line=line)


def tree_summary(trees: Iterable[Tree]) -> dict[str, Any]:
    """Problems, nodes, tokens, pass@tree, greedy-path accuracy and mean Q of the root's best child.

    ``greedy_path_accuracy`` counts trees whose `Tree.greedy_path` ends on a correct terminal node: what
    committing to the highest-Q step at every depth would score, against ``pass_at_tree`` (any correct leaf).
    A step-by-step search scores its committed path; a last committed step without an answer counts as wrong
    (the decoder's `tree_answer` steps back from it instead).

    ``correct_leaves_with_a_wrong_step`` (synthetic-task trees only, whose steps can be checked one by one): the
    share of the checkable correct leaves (every step parses) whose path holds a step with wrong arithmetic,
    answer-only verification's false positives, which pairs and labels built from those leaves inherit. A lower
    bound: a step with a wrong operand but right arithmetic passes.
    """
    from data.synthetic import holds_a_wrong_step

    count = nodes = tokens = solved = greedy_correct = checked = lucky = 0
    best_q = 0.0
    for tree in trees:
        count += 1
        nodes += len(tree.nodes)
        tokens += tree.num_tokens()
        solved += tree.is_solved()
        leaf = tree.greedy_path()[-1]
        greedy_correct += bool(leaf.terminal and leaf.correct is True)
        best = tree.best_child(0)
        best_q += best.q if best else 0.0
        for node in tree.nodes:
            if node.terminal and node.correct is True:
                wrong = holds_a_wrong_step(tree.steps(node.id))
                checked += wrong is not None
                lucky += bool(wrong)
    def mean(total: float) -> float:
        return round(total / count, 4) if count else 0.0

    summary = {"problems": count, "nodes": nodes, "tokens": tokens, "pass_at_tree": mean(solved),
               "greedy_path_accuracy": mean(greedy_correct), "mean_best_child_q": mean(best_q)}
    if checked:
        summary["correct_leaves_with_a_wrong_step"] = round(lucky / checked, 4)
    return summary
