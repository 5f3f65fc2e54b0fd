"""search.tree and search.render: backup arithmetic, navigation, JSONL/GraphML round trips, errors, pictures."""

import json
import random
import time

import pytest

from data.records import RecordError, append_jsonl
from search.render import render_tree
from search.tree import Tree, read_trees, tree_summary


def _solved_tree() -> Tree:
    """root ─ 1 ─ 3 ─ 5 ✓ / 1 ─ 4 ✗ / 2 ─ 6 ✗, plus an unvisited child 7 of node 2."""
    tree = Tree("p-1", "What is (2 + 3) * 4?", "20", config={"algo": "mcts", "children": 2})
    a = tree.add_child(0, "Add 2 and 3 to get 5", prior=0.6, tokens=7, logprob=-3.5)
    b = tree.add_child(0, "Pay $2 and $3", prior=0.4, tokens=5, logprob=-4.6)
    c = tree.add_child(a.id, "5 times 4 is 20", prior=0.9, tokens=6)
    d = tree.add_child(a.id, "The answer is 9", tokens=4, terminal=True, answer="9", correct=False)
    e = tree.add_child(c.id, "The answer is 20", tokens=4, terminal=True, answer="20", correct=True)
    f = tree.add_child(b.id, "The answer is -1", tokens=4, terminal=True, answer="-1", correct=False)
    tree.add_child(b.id, "Subtract once more", prior=0.2, tokens=3)
    tree.backup(e.id, 1.0)
    tree.backup(d.id, -1.0)
    tree.backup(f.id, -1.0)
    tree.backup(c.id, 0.5)
    return tree


def _unsolved_tree() -> Tree:
    tree = Tree("p-2", "What is 1 + 1?", "2")
    leaf = tree.add_child(0, "The answer is 3", tokens=4, terminal=True, answer="3", correct=False)
    tree.backup(leaf.id, -1.0)
    return tree


def _random_tree(size: int, seed: int = 0) -> Tree:
    rng = random.Random(seed)
    tree = Tree(f"rand-{seed}", "A random question with a $ sign?", "42")
    while len(tree.nodes) < size:
        open_nodes = [n.id for n in tree.nodes if not n.terminal and n.depth < 8]
        parent = rng.choice(open_nodes)
        terminal = rng.random() < 0.3
        correct = rng.random() < 0.4 if terminal else None
        node = tree.add_child(parent, f"step {len(tree.nodes)}: x = {rng.randint(0, 99)} + {rng.randint(0, 99)}",
                              prior=rng.random(), tokens=rng.randint(3, 20), terminal=terminal,
                              answer=("42" if correct else "7") if terminal else None, correct=correct)
        if rng.random() < 0.8:
            tree.backup(node.id, (1.0 if correct else -1.0) if terminal else rng.uniform(-1, 1))
    return tree


def test_backup_arithmetic_q_and_first_value():
    tree = _solved_tree()
    root, n1, n2, n3 = tree.nodes[0], tree.nodes[1], tree.nodes[2], tree.nodes[3]
    assert (root.visits, root.value_sum) == (4, pytest.approx(-0.5))
    assert root.q == pytest.approx(-0.125)
    assert (n1.visits, n1.q) == (3, pytest.approx(0.5 / 3))
    assert (n2.visits, n2.q) == (1, -1.0)
    assert (n3.visits, n3.q, n3.value) == (2, pytest.approx(0.75), 1.0)  # .value keeps the first backup
    assert tree.nodes[7].visits == 0 and tree.nodes[7].q == 0.0 and tree.nodes[7].value is None


def test_structure_path_steps_and_leaves():
    tree = _solved_tree()
    assert [n.id for n in tree.path(5)] == [0, 1, 3, 5]
    assert tree.steps(5) == ["Add 2 and 3 to get 5", "5 times 4 is 20", "The answer is 20"]
    assert tree.steps(0) == [] and tree.path(0) == [tree.root]
    assert tree.nodes[1].children == [3, 4] and tree.nodes[5].depth == 3 and tree.root.parent is None
    assert {n.id for n in tree.leaves()} == {4, 5, 6, 7}
    assert {n.id for n in tree.terminal_leaves()} == {4, 5, 6}
    assert tree.num_tokens() == 7 + 5 + 6 + 4 + 4 + 4 + 3


def test_best_child_greedy_path_and_ties():
    tree = _solved_tree()
    assert tree.best_child(0).id == 1
    assert tree.best_child(0, key="prior").id == 1
    assert tree.best_child(2, key="visits").id == 6
    assert tree.best_child(5) is None
    assert [n.id for n in tree.greedy_path()] == [0, 1, 3, 5]
    tree.config["committed"] = [0, 2, 6]  # a step-by-step search went the other way: its path wins
    assert [n.id for n in tree.greedy_path()] == [0, 2, 6]
    tree.config["committed"] = [0, 1]  # committed one step: best Q below it
    assert [n.id for n in tree.greedy_path()] == [0, 1, 3, 5]
    tree.config["committed"] = [0, 2, 6]
    assert tree_summary([tree])["greedy_path_accuracy"] == 0.0
    tie = Tree("t", "q", "1")
    low, high = tie.add_child(0, "a"), tie.add_child(0, "b")
    tie.backup(low.id, 0.5)
    for _ in range(3):
        tie.backup(high.id, 0.5)
    assert tie.best_child(0).id == high.id  # equal Q: more visits wins
    assert tie.best_child(0, key="value").id == high.id
    opened = tie.add_child(0, "c", prior=2.0)  # never visited (leaf_value="leaf"): its Q of 0 is no value
    tie.backup(low.id, -3.0)
    tie.backup(high.id, -3.0)
    assert tie.nodes[high.id].q < 0 and tie.best_child(0).id == high.id
    assert tie.best_child(0, key="prior").id == opened.id and opened.visits == 0  # other keys: every child as before


def test_is_solved_and_summary():
    solved, unsolved = _solved_tree(), _unsolved_tree()
    assert solved.is_solved() and not unsolved.is_solved()
    summary = tree_summary([solved, unsolved])
    assert summary == {
        "problems": 2,
        "nodes": len(solved.nodes) + len(unsolved.nodes),
        "tokens": solved.num_tokens() + unsolved.num_tokens(),
        "pass_at_tree": 0.5,
        "greedy_path_accuracy": 0.5,
        "mean_best_child_q": round((0.5 / 3 + -1.0) / 2, 4),
    }
    assert tree_summary([])["problems"] == 0


def test_summary_counts_correct_leaves_reached_through_a_wrong_step():
    tree = Tree("p", "Lily has 45 marbles. ...", "45")
    first = tree.add_child(0, "45 * 4 = 180")
    for middle in ("75% of 180 = 135", "75% of 180 = 130", "75% of 180 = 125"):
        step = tree.add_child(first.id, middle)
        tree.add_child(tree.add_child(step.id, "180 - 135 = 45").id, "The answer is 45", terminal=True,
                       answer="45", correct=True)
    tree.add_child(first.id, "The answer is 180", terminal=True, answer="180", correct=False)  # wrong: not counted
    assert tree_summary([tree])["correct_leaves_with_a_wrong_step"] == round(2 / 3, 4)


def test_record_fields_and_jsonl_round_trip(tmp_path):
    trees = [_solved_tree(), _unsolved_tree()]
    record = trees[0].to_record()
    assert set(record) == {"problem_id", "question", "answer", "config", "nodes"}
    assert set(record["nodes"][0]) == {"id", "parent", "step", "depth", "prior", "visits", "value_sum", "q",
                                       "terminal", "answer", "correct", "tokens", "logprob", "value"}
    path = tmp_path / "trees.jsonl"
    append_jsonl(path, (t.to_record() for t in trees))
    back = list(read_trees(path))
    assert [t.to_record() for t in back] == [t.to_record() for t in trees]
    assert back[0].nodes[1].children == [3, 4] and back[0].is_solved()


def test_graphml_round_trip_and_networkx(tmp_path):
    tree = _solved_tree()
    graph = tree.to_networkx()
    assert graph.number_of_nodes() == len(tree.nodes) and sorted(graph.edges) == sorted(
        (n.parent, n.id) for n in tree.nodes[1:])
    assert graph.graph["problem_id"] == "p-1" and graph.nodes[5]["correct"] is True
    assert all(value is not None for _, attrs in graph.nodes(data=True) for value in attrs.values())
    assert Tree.from_networkx(graph).to_record() == tree.to_record()
    path = tree.write_graphml(tmp_path / "tree.graphml")
    assert Tree.read_graphml(path).to_record() == tree.to_record()
    big = _random_tree(60, seed=3)
    assert Tree.read_graphml(big.write_graphml(tmp_path / "big.graphml")).to_record() == big.to_record()


def _broken(mutate) -> dict:
    record = _solved_tree().to_record()
    mutate(record)
    return record


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("nodes"), "missing field 'nodes'"),
    (lambda r: r.pop("problem_id"), "missing field 'problem_id'"),
    (lambda r: r["nodes"][3].pop("visits"), "node 3: missing field 'visits'"),
    (lambda r: r["nodes"][4].update(id=3), "node 3: duplicate id"),
    (lambda r: r["nodes"][2].update(parent=5), "node 2: parent 5 is not an earlier node"),
    (lambda r: r["nodes"][2].update(parent=None), "node 2: parent None is not an earlier node"),
    (lambda r: r["nodes"][5].update(terminal="yes"), "node 5: field 'terminal' must be true or false"),
    (lambda r: r["nodes"][1].update(visits=1.5), "node 1: field 'visits' must be an integer"),
    (lambda r: r["nodes"][1].update(depth=4), "node 1: depth 4"),
    (lambda r: r.update(nodes=[]), "field 'nodes' must be a non-empty list"),
    (lambda r: r.update(config=[1]), "field 'config' must be an object"),
])
def test_from_record_errors_name_file_line_and_node(mutate, message):
    with pytest.raises(RecordError) as info:
        Tree.from_record(_broken(mutate), path="runs/x/trees.jsonl", line=7)
    assert str(info.value).startswith("runs/x/trees.jsonl:7: ")
    assert message in str(info.value)


def test_read_trees_errors_carry_file_and_line(tmp_path):
    good = json.dumps(_solved_tree().to_record())
    path = tmp_path / "trees.jsonl"
    path.write_text(good + "\n" + good[: len(good) // 2] + "\n" + good + "\n")
    with pytest.raises(RecordError, match=r"trees\.jsonl:2: "):
        list(read_trees(path))

    bad = _broken(lambda r: r["nodes"][3].pop("visits"))
    path.write_text(good + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError, match=r"trees\.jsonl:2: node 3: missing field 'visits'"):
        list(read_trees(path))

    # A killed writer's cut last line is skipped by default and reported when asked to be strict.
    path.write_text(good + "\n" + good[:100])
    assert len(list(read_trees(path))) == 1
    with pytest.raises(RecordError, match=r"trees\.jsonl:2: truncated"):
        list(read_trees(path, skip_incomplete_tail=False))


def test_render_png_and_html(tmp_path):
    tree = _solved_tree()
    png = render_tree(tree, tmp_path / "pics" / "tree.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    page = render_tree(tree, tmp_path / "tree.html").read_text(encoding="utf-8")
    assert "<svg" in page and "5 times 4 is 20" in page and "Pay $2 and $3" in page
    assert "<title>" in page and "Q = +0.750" in page and "visits = 2" in page and "prior = 0.900" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    with pytest.raises(ValueError, match=r"\.svg"):
        render_tree(tree, tmp_path / "tree.svg")
    assert "greedy path answer: 20 ✓" in page
    tree.config["committed"] = [0, 2, 6]
    page = render_tree(tree, tmp_path / "committed.html").read_text(encoding="utf-8")
    assert "committed path answer: -1 ✗" in page and "bold = committed path" in page


def test_render_bare_and_random_trees_fast(tmp_path):
    render_tree(Tree("bare", "q", "1"), tmp_path / "bare.png")  # a root alone still draws
    tree = _random_tree(200, seed=1)
    start = time.perf_counter()
    png = render_tree(tree, tmp_path / "random.png")
    html = render_tree(tree, tmp_path / "random.html")
    assert time.perf_counter() - start < 5.0
    assert png.stat().st_size > 10_000 and html.read_text(encoding="utf-8").count("<circle") == 200
