"""`reasoner bench train`: step-pair DPO training steps with and without prefix sharing, same pairs, one run.

Three layouts of the same batches of pairs (`reasoner.trainers.pairs`), each timed over the same number of
full training steps (forward, DPO loss, backward, AdamW step), interleaved step by step so that load from
other processes hits all of them alike:

* ``unshared``: two rows per pair, [prompt][chosen] and [prompt][rejected] (a plain DPO trainer);
* ``pair_packed``: one row per pair, [prompt][chosen][copy][rejected] (algorithms.md section 9);
* ``shared``: one row per prompt group, every distinct completion of that prompt as a branch (what
  `reasoner train` does by default).

``prefix_sharing_speedup`` = steps/s of ``shared`` over ``unshared``; ``pair_packing_speedup`` the same for
``pair_packed``. Pairs come from ``--pairs FILE`` (a `reasoner label` output), else from synthetic first-error
pairs: for each problem of ``synthetic:train``, the gold prefix before a corrupted step, the gold step as
chosen and ``rejected_per_prompt`` different wrong results of that step as rejected (Step-DPO's data shape).
"""

from __future__ import annotations

import random
import time
from typing import Any

__all__ = ["run_bench", "synthetic_step_pairs"]


def synthetic_step_pairs(n_prompts: int, rejected_per_prompt: int, step_format: Any, seed: int = 0) -> list[dict]:
    """First-error step pairs from the synthetic task, several rejected steps per prompt."""
    from data.corruption import corrupt_solution
    from data.synthetic import load_split

    pairs = []
    for problem in load_split("train", n_prompts):
        gold = problem.solution.split("\n")
        wrong_steps = {}
        for attempt in range(8 * rejected_per_prompt):
            corrupted = corrupt_solution(problem, random.Random(f"{seed}:{problem.id}:{attempt}"))
            wrong_steps.setdefault(corrupted.first_error, set()).add(corrupted.steps[corrupted.first_error])
        index, wrong = max(wrong_steps.items(), key=lambda item: len(item[1]))
        prompt = step_format.render(problem.question, gold[:index])
        pairs.extend({"prompt": prompt, "chosen": gold[index], "rejected": step, "q_chosen": 1.0, "q_rejected": -1.0}
                     for step in sorted(wrong)[:rejected_per_prompt])
    return pairs


def run_bench(policy: str | None = None, pairs_file: str | None = None, prompts: int = 128,
              rejected_per_prompt: int = 4, batch_size: int = 8, steps: int = 12, seed: int = 0) -> dict:
    """Time the three layouts on the same batches; returns steps/s, tokens per step and the speedups."""
    import torch

    from reasoner.losses import dpo_loss
    from reasoner.models import load_policy
    from reasoner.trainers.common import TRAINING_DTYPE, bf16_autocast, mixed_precision
    from reasoner.trainers.pairs import collate_shared, collate_unshared, group_pairs, pair_logps, tokenize_pair
    from reasoner.trainers.preference import load_pairs

    torch.manual_seed(seed)
    loaded = load_policy(policy, dtype=TRAINING_DTYPE)  # fp32 weights, bf16 autocast on a GPU: as `reasoner train`
    model, tokenizer, fmt = loaded.model, loaded.tokenizer, loaded.step_format
    records = load_pairs(pairs_file) if pairs_file else synthetic_step_pairs(prompts, rejected_per_prompt, fmt, seed)
    tokenized = [tokenize_pair(tokenizer, fmt, r["prompt"], r["chosen"], r["rejected"]) for r in records]
    groups = group_pairs(tokenized)
    random.Random(seed).shuffle(groups)
    batches = [groups[i:i + batch_size] for i in range(0, len(groups), batch_size)][:steps]
    pad = tokenizer.pad_token_id or 0
    layouts = {
        "unshared": lambda batch: collate_unshared(batch, pad),
        "pair_packed": lambda batch: collate_shared(
            [{"prompt": g["prompt"], "completions": [g["completions"][c], g["completions"][r]], "pairs": [(0, 1)]}
             for g in batch for c, r in g["pairs"]], pad),
        "shared": lambda batch: collate_shared(batch, pad),
    }
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    device = next(model.parameters()).device
    inputs = {name: [make(batch).to(device) for batch in batches] for name, make in layouts.items()}

    autocast = mixed_precision(str(device))

    def step(batch) -> None:
        with bf16_autocast(autocast, device):
            chosen, rejected = pair_logps(model, batch)
            losses, _, _ = dpo_loss(chosen, rejected, chosen.detach(), rejected.detach())
        losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # CUDA kernels run asynchronously: time the finished step

    for name in layouts:  # warm-up
        step(inputs[name][0])
    seconds = dict.fromkeys(layouts, 0.0)
    for index in range(len(batches)):
        for name in layouts:
            started = time.perf_counter()
            step(inputs[name][index])
            seconds[name] += time.perf_counter() - started
    pairs_timed = sum(len(g["pairs"]) for batch in batches for g in batch)
    report = {"policy": policy or "embedded", "pairs_source": pairs_file or "synthetic first-error pairs",
              "steps": len(batches), "pairs_per_step": round(pairs_timed / len(batches), 1),
              "prompt_groups_per_step": batch_size}
    for name in layouts:
        tokens = sum(int(b.input_ids.numel()) for b in inputs[name])
        report[name] = {"steps_per_s": round(len(batches) / seconds[name], 3),
                        "tokens_per_step": round(tokens / len(batches)), "seconds": round(seconds[name], 2)}
    report["prefix_sharing_speedup"] = round(seconds["unshared"] / seconds["shared"], 2)
    report["pair_packing_speedup"] = round(seconds["unshared"] / seconds["pair_packed"], 2)
    return report
