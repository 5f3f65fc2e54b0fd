"""`reasoner label`: every kind from one MCTS run, loadable with `datasets`, with the documented invariants."""

import json

import datasets
import pytest

from data.records import append_jsonl
from data.synthetic import load_split
from prm.labels import KINDS, label_trees, subtree_outcomes
from reasoner.cli import main
from reasoner.steps import get_format
from scripted import ScriptedGenerator
from search.mcts import MCTSConfig, run_mcts

FMT = get_format("tiny")


@pytest.fixture(scope="module")
def trees():
    return run_mcts(load_split("test", limit=12), ScriptedGenerator(p_correct=0.6, seed=2),
                    MCTSConfig(simulations=8, children=3, seed=2))


def test_pairs_respect_their_rules(trees):
    for kind in ("step-dpo", "svpo", "step-apo", "mcts-dpo"):
        records, report = label_trees(trees, kind, FMT)
        assert records, kind
        for record in records:
            assert record["chosen"] != record["rejected"]
            assert record["prompt"].startswith("Question: ")
            if kind in ("svpo", "mcts-dpo"):
                assert record["q_chosen"] > record["q_rejected"]
            if kind == "svpo":
                assert record["q_chosen"] > 0 > record["q_rejected"]


def test_mcts_dpo_pairs_lie_on_the_committed_path_and_carry_visit_counts():
    from search.tree import Tree

    tree = Tree("p", "What is 2 + 3?", "5")
    good = tree.add_child(0, "2 + 3 = 5")
    off = tree.add_child(0, "2 + 3 = 6")
    right = tree.add_child(good.id, "The answer is 5", terminal=True, answer="5", correct=True)
    wrong = tree.add_child(good.id, "The answer is 4", terminal=True, answer="4", correct=False)
    off_a = tree.add_child(off.id, "The answer is 6", terminal=True, answer="6", correct=False)
    off_b = tree.add_child(off.id, "The answer is 5", terminal=True, answer="5", correct=True)
    for leaf, value, times in ((right, 1.0, 3), (wrong, -1.0, 1), (off_a, -1.0, 1), (off_b, 1.0, 1)):
        for _ in range(times):
            tree.backup(leaf.id, value)
    records, _ = label_trees([tree], "mcts-dpo", FMT)
    # the root (good: Q 0.5 over 4 visits vs off: Q 0) and good's children; never the pair below "off"
    assert [(r["chosen"], r["rejected"], r["n_chosen"], r["n_rejected"]) for r in records] == [
        ("2 + 3 = 5", "2 + 3 = 6", 4, 2), ("The answer is 5", "The answer is 4", 3, 1)]
    assert records[1]["prompt"].endswith("2 + 3 = 5\n")


def test_step_dpo_prompt_holds_correct_prefix(trees):
    records, _ = label_trees(trees, "step-dpo", FMT)
    gold = {p.question: p.solution.split("\n") for p in load_split("test", limit=12)}
    for record in records:
        question = record["prompt"].split("\n")[0][len("Question: "):]
        prefix = [line for line in record["prompt"].split("Answer:\n", 1)[1].split("\n") if line]
        assert prefix == gold[question][: len(prefix)]  # the scripted generator's correct steps are gold steps


def test_mc_labels_and_step_rewards(trees):
    labels, _ = label_trees(trees, "mc-labels", FMT)
    for record in labels:
        assert len(record["completions"]) == len(record["labels"]) == len(record["values"])
        assert all(label == (value > 0) for label, value in zip(record["labels"], record["values"]))
    rewards, _ = label_trees(trees, "step-rewards", FMT)
    for record in rewards:
        assert len(record["responses"]) == len(record["rewards"]) == len(record["step_rewards"])
        assert all(0 < r < 1 for steps in record["step_rewards"] for r in steps)


def test_subtree_outcomes_count_leaves(trees):
    tree = trees[0]
    correct, verified = subtree_outcomes(tree)
    assert verified[0] == len(tree.terminal_leaves())
    assert correct[0] == sum(bool(n.correct) for n in tree.terminal_leaves())


def test_cli_writes_every_kind_loadable_by_datasets(trees, tmp_path, capsys):
    run = tmp_path / "run"
    append_jsonl(run / "trees.jsonl", (t.to_record() for t in trees))
    for kind in KINDS:
        out = tmp_path / f"{kind}.jsonl"
        assert main(["label", str(run), "--kind", kind, "--output", str(out)]) == 0
        table = datasets.load_dataset("json", data_files=str(out), split="train")
        assert len(table) > 0
    captured = capsys.readouterr()
    assert "records from 12 problems" in captured.out and "step_format.json is missing" in captured.err
    before = (run / "trees.jsonl").read_bytes()
    for inside in ("trees.jsonl", "trees-labels.jsonl"):
        assert main(["label", str(run), "--kind", "svpo", "--output", str(run / inside)]) == 2
        assert "would overwrite or join the run's trees" in capsys.readouterr().err
    assert (run / "trees.jsonl").read_bytes() == before and not (run / "trees-labels.jsonl").exists()


def test_malformed_trees_name_file_and_line(tmp_path, capsys):
    run = tmp_path / "bad"
    run.mkdir()
    (run / "trees.jsonl").write_text('{"problem_id": "a", "question": "q", "answer": "1"}\n')
    assert main(["label", str(run), "--kind", "svpo", "--output", str(tmp_path / "o.jsonl")]) == 2
    assert f"{run / 'trees.jsonl'}:1: missing field 'nodes'" in capsys.readouterr().err


def _hand_tree(children):
    """A tree whose root has ``children``: (step, [(leaf step, correct or None for no answer)]) or a leaf tuple."""
    from search.tree import Tree

    tree = Tree("p", "q?", "5")
    for step, below in children:
        if isinstance(below, list):
            node = tree.add_child(0, step)
            for leaf, correct in below:
                child = tree.add_child(node.id, leaf, terminal=True, answer="5" if correct else "7", correct=correct)
                tree.backup(child.id, 1.0 if correct else -1.0)
        else:  # a terminal child of the root: True / False = a final answer, None = a sentinel (no answer)
            child = tree.add_child(0, step, terminal=True, answer=None if below is None else ("5" if below else "7"),
                                   correct=bool(below))
            tree.backup(child.id, 1.0 if below else -1.0)
    return tree


def test_copies_of_a_step_share_their_statistics_and_sentinels_are_never_rejected():
    tree = _hand_tree([("A", [("The answer is 5", True)]), ("A", [("The answer is 5", True), ("The answer is 7", False)]),
                       ("B", [("The answer is 7", False)]), ("C", None)])
    # Copies of A are one state: Q = (1 + 1 - 1) / 3 > 0 for both (alone, the second copy's Q would be 0).
    # One record per copy: a step the policy sampled twice weighs twice.
    svpo, _ = label_trees([tree], "svpo", FMT)
    assert [(r["chosen"], r["rejected"], r["q_chosen"]) for r in svpo] == [  # never C (a sentinel)
        ("A", "B", pytest.approx(1 / 3)), ("A", "B", pytest.approx(1 / 3)), ("The answer is 5", "The answer is 7", 1.0)]
    step_dpo, _ = label_trees([tree], "step-dpo", FMT)
    assert [(r["chosen"], r["rejected"]) for r in step_dpo] == [  # C is a lost step for Step-DPO
        ("A", "B"), ("A", "C"), ("The answer is 5", "The answer is 7")]
    mc, _ = label_trees([tree], "mc-labels", FMT)
    assert [(tuple(r["completions"]), tuple(r["values"])) for r in mc] == [
        (("A", "The answer is 5"), (2 / 3, 1.0)), (("A", "The answer is 5"), (2 / 3, 1.0)),
        (("A", "The answer is 7"), (2 / 3, 0.0)), (("B", "The answer is 7"), (0.0, 0.0)), (("C",), (0.0,))]


def test_step_apo_scales_final_answer_pairs_only():
    tree = _hand_tree([("The answer is 5", True), ("The answer is 7", False), ("The answer is 8", False),
                       ("I", [("The answer is 5", True)])])
    records, _ = label_trees([tree], "step-apo", FMT)
    assert [(r["chosen"], r["rejected"], r["q_chosen"], r["q_rejected"]) for r in records] == [
        ("The answer is 5", "The answer is 7", 0.3, -0.3),  # final vs final: argmax vs argmin, CPL's sw = 0.3
        ("I", "The answer is 7", 1.0, -1.0), ("I", "The answer is 8", 1.0, -1.0)]


def test_label_renders_prompts_in_the_format_the_search_recorded(tmp_path, capsys):
    from search.runner import SearchConfig, run_search

    generator = ScriptedGenerator(seed=1)
    generator.step_format = get_format("step-dpo")  # as the HF / vLLM generators carry their policy's
    run = tmp_path / "run"
    run_search(SearchConfig(limit=3, output=str(run), simulations=3, children=2, quiet=True), lambda c: generator)
    assert main(["label", str(run), "--kind", "mc-labels", "--output", str(tmp_path / "mc.jsonl")]) == 0
    assert main(["label", str(run), "--kind", "mc-labels", "--output", str(tmp_path / "tiny.jsonl"),
                 "--step-format", "tiny"]) == 0
    recorded = [json.loads(line)["prompt"] for line in (tmp_path / "mc.jsonl").read_text().splitlines()]
    forced = [json.loads(line)["prompt"] for line in (tmp_path / "tiny.jsonl").read_text().splitlines()]
    assert recorded and all(p.endswith("Let's think step by step.\n") for p in recorded)
    assert all(p.startswith("Question: ") for p in forced)


def test_mcts_dpo_pairs_follow_a_stored_committed_path_and_records_check_it():
    from search.tree import Tree

    tree = _hand_tree([("A", [("The answer is 5", True), ("The answer is 7", False)]),
                       ("B", [("The answer is 5", True), ("The answer is 7", False), ("The answer is 7", False)])])
    best_q_path = [(r["chosen"], r["rejected"]) for r in label_trees([tree], "mcts-dpo", FMT)[0]]
    assert best_q_path == [("A", "B"), ("The answer is 5", "The answer is 7")]
    b_id = next(n.id for n in tree.nodes if n.step == "B")
    tree.config["committed"] = [0, b_id]  # a step-by-step search committed to B (more visits) instead
    records, _ = label_trees([tree], "mcts-dpo", FMT)
    assert [(r["chosen"], r["rejected"]) for r in records] == [("A", "B"), ("The answer is 5", "The answer is 7")]
    assert records[1]["prompt"].endswith("B\n") and records[1]["n_rejected"] == 2
    tree.config["committed"] = [0]  # committed to nothing below the root: only the root's pair
    assert len(label_trees([tree], "mcts-dpo", FMT)[0]) == 1
    record = {**tree.to_record(), "config": {"committed": [0, 3]}}  # node 3 is not a child of the root
    with pytest.raises(ValueError, match="committed"):
        Tree.from_record(record)


def _solved_and_lost():
    """A tree with two distinct correct solutions (one reached by luck, one written twice), two with a wrong answer
    and one cut off without an answer; and a tree with no correct solution."""
    from search.tree import Tree

    tree = Tree("p", "What is 2 + 3 * 4?", "14")
    mul = tree.add_child(0, "3 * 4 = 12")
    add = tree.add_child(mul.id, "2 + 12 = 14")
    tree.add_child(add.id, "The answer is 14", terminal=True, answer="14", correct=True)
    tree.add_child(add.id, "The answer is 14", terminal=True, answer="14", correct=True)  # a copy: counted once
    tree.add_child(add.id, "The answer is 15", terminal=True, answer="15", correct=False)
    other = tree.add_child(0, "2 + 3 = 5")
    tree.add_child(other.id, "The answer is 20", terminal=True, answer="20", correct=False)
    tree.add_child(other.id, "The answer is 14", terminal=True, answer="14", correct=True)  # right by luck: kept
    tree.add_child(other.id, "5 * 4 =", terminal=True, answer=None, correct=False)  # cut off
    lost = Tree("q", "What is 1 + 1?", "2")
    lost.add_child(0, "The answer is 3", terminal=True, answer="3", correct=False)
    return tree, lost


def test_rft_keeps_distinct_correct_solutions_that_train_sft_reads_back(tmp_path, capsys):
    from data.problems import load_problems
    from reasoner.trainers.sft import solution_steps
    from search.tree import Tree

    tree, lost = _solved_and_lost()
    blank = Tree("r", "What is 1 + 2?", "3")
    blank.add_child(blank.add_child(0, " ").id, "The answer is 3", terminal=True, answer="3", correct=True)
    _, report = label_trees([blank], "rft", FMT)
    assert report.empty == {"every correct solution holds an empty step": 1}
    for fmt_name in ("tiny", "step-dpo", "newline2"):
        fmt = get_format(fmt_name)
        records, report = label_trees([tree, lost], "rft", fmt)
        assert report.empty == {"no correct leaf in the tree": 1}
        assert sorted(r["solution"] for r in records) == sorted(
            [fmt.render_solution(["3 * 4 = 12", "2 + 12 = 14", "The answer is 14"]),
             fmt.render_solution(["2 + 3 = 5", "The answer is 14"])])
        assert all(r["completion"] == r["solution"] and r["prompt"] == fmt.prompt(tree.question) for r in records)
        path = tmp_path / f"rft-{fmt_name}.jsonl"
        append_jsonl(path, records)
        problems = load_problems(str(path))  # ids unique per solution, the gold answer kept
        assert [p.answer for p in problems] == ["14", "14"] and len({p.id for p in problems}) == 2
        assert sorted(solution_steps(p, fmt) for p in problems) == [
            ["2 + 3 = 5", "The answer is 14"], ["3 * 4 = 12", "2 + 12 = 14", "The answer is 14"]]
    sft = tmp_path / "sft"  # the embedded policy trains on the tiny-format rows as they are
    assert main(["--quiet", "train", "sft", "--data", str(tmp_path / "rft-tiny.jsonl"), "--max_steps", "1",
                 "--batch_size", "2", "--output", str(sft)]) == 0
    assert (sft / "model.safetensors").exists()
    run, out = tmp_path / "run", tmp_path / "rft.jsonl"
    append_jsonl(run / "trees.jsonl", [tree.to_record(), lost.to_record()])
    for flags, rows in (([], 2), (["--max-solutions", "1"], 1)):
        assert main(["label", str(run), "--kind", "rft", *flags, "--output", str(out)]) == 0
        assert len(out.read_text().splitlines()) == rows
    capsys.readouterr()
    for flags, error in ((["--kind", "rft", "--max-solutions", "0"], "--max-solutions must be 1 or more"),
                         (["--kind", "svpo", "--max-solutions", "2"], "--max-solutions only applies to --kind rft")):
        assert main(["label", str(run), *flags, "--output", str(out)]) == 2
        assert error in capsys.readouterr().err


def test_sft_reads_a_blank_line_format_by_paragraphs_and_line_based_gold_by_lines():
    from data.problems import Problem
    from reasoner.trainers.sft import solution_steps

    fmt = get_format("newline2")
    written = fmt.render_solution(["We have\n$$x = 2$$", "So \\boxed{2}"])
    assert solution_steps(Problem("a", "q", "2", written), fmt) == ["We have\n$$x = 2$$", "So \\boxed{2}"]
    for gold in ("x = 1 + 1\n#### 2", "x = 1 + 1\n#### 2\n\n"):  # a trailing blank line is no paragraph break
        assert solution_steps(Problem("b", "q", "2", gold), fmt) == ["x = 1 + 1", "#### 2"]


def test_dpo_pairs_whole_solutions_that_train_dpo_reads(tmp_path, capsys):
    tree, lost = _solved_and_lost()  # the cut-off solution is never the rejected one
    right = [("3 * 4 = 12", "2 + 12 = 14", "The answer is 14"), ("2 + 3 = 5", "The answer is 14")]
    wrong = [("3 * 4 = 12", "2 + 12 = 14", "The answer is 15"), ("2 + 3 = 5", "The answer is 20")]
    for fmt_name in ("tiny", "step-dpo", "newline2"):
        fmt = get_format(fmt_name)
        records, report = label_trees([tree, lost], "dpo", fmt)
        assert report.empty == {"no correct solution": 1}
        prompt = fmt.render(tree.question, ())
        # prompt + completion is the whole solution as the policy writes it, headers included
        whole = {fmt.prompt(tree.question) + fmt.render_solution(s): s for s in right + wrong}
        pairs = {(whole[prompt + r["chosen"] + fmt.delimiter], whole[prompt + r["rejected"] + fmt.delimiter])
                 for r in records}
        assert pairs == {(c, w) for c in right for w in wrong} and len(records) == 4
        assert all(r["prompt"] == prompt and (r["q_chosen"], r["q_rejected"], r["depth"]) == (1.0, -1.0, 0)
                   for r in records)
    few, _ = label_trees([tree], "dpo", FMT, max_pairs=3)
    assert len({(r["chosen"], r["rejected"]) for r in few}) == 3
    assert few == label_trees([tree], "dpo", FMT, max_pairs=3)[0]  # seeded
    run, out = tmp_path / "run", tmp_path / "dpo.jsonl"
    append_jsonl(run / "trees.jsonl", [tree.to_record(), lost.to_record()])
    assert main(["label", str(run), "--kind", "dpo", "--max-pairs", "2", "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert main(["--quiet", "train", "dpo", "--data", str(out), "--max_steps", "1", "--sft_weight", "1",
                 "--output", str(tmp_path / "policy")]) == 0
    assert (tmp_path / "policy" / "model.safetensors").exists()
    capsys.readouterr()
    for flags, error in ((["--kind", "dpo", "--max-pairs", "0"], "--max-pairs must be 1 or more"),
                         (["--kind", "svpo", "--max-pairs", "2"], "--max-pairs only applies to --kind dpo and mcts-dpo")):
        assert main(["label", str(run), *flags, "--output", str(out)]) == 2
        assert error in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["step-dpo", "svpo", "mcts-dpo", "dpo"])
def test_step_dpo_format_pairs_read_as_the_policy_wrote_them(kind):
    """With a headed format the prompt ends with the open header ("Step 2:", as Step-DPO's data does) and each
    completion starts with the header's space, so that prompt + chosen is the policy's text and the pair tokenizes
    as that whole text does (the way the policy saw it in training): never a lone space token before the step."""
    from reasoner.models import encode_prefix, load_policy
    from reasoner.trainers.pairs import tokenize_pair

    fmt, tokenizer = get_format("step-dpo"), load_policy().tokenizer
    tree = _hand_tree([("A", [("The answer is 5", True), ("The answer is 7", False)]),
                       ("B", [("The answer is 5", True), ("The answer is 7", False), ("The answer is 7", False)])])
    records, _ = label_trees([tree], kind, fmt)
    assert records
    for record in records:
        assert record["prompt"].endswith(f"Step {record['depth'] + 1}:")
        for side in ("chosen", "rejected"):
            assert record[side].startswith(" ") and not record[side].startswith("  ")
        text = record["prompt"] + record["chosen"]
        assert fmt.parse(text + fmt.delimiter)[1][record["depth"]] == record["chosen"].split(fmt.delimiter)[0].strip()
        ids = tokenize_pair(tokenizer, fmt, record["prompt"], record["chosen"], record["rejected"])
        assert ids["prompt"] + ids["chosen"] == encode_prefix(tokenizer, text + fmt.delimiter)
