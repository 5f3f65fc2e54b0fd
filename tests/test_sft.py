"""The SFT loss as `train_sft` computes it: solution tokens only, optionally label-smoothed."""

import pytest
import torch
import torch.nn.functional as F

from data.synthetic import load_split
from reasoner.models import load_policy
from reasoner.trainers.sft import SFTArgs, SFTCollator, SFTDataset, train_sft


def expected_loss(policy, problems, epsilon: float) -> float:
    """(1 - eps) * mean NLL of the solution tokens + eps * their mean over the vocabulary of -log p, by hand."""
    batch = SFTCollator(policy.tokenizer.pad_token_id)(list(SFTDataset(problems, policy.tokenizer, policy.step_format)))
    with torch.no_grad():
        logits = policy.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)
    labels = batch["labels"][:, 1:]
    solution = labels != -100
    nll = -log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)[solution].mean()
    uniform = -log_probs.mean(dim=-1)[solution].mean()
    return float((1 - epsilon) * nll + epsilon * uniform)


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_sft_loss_covers_solution_tokens_only_and_label_smoothing(epsilon, tmp_path):
    policy = load_policy()
    problems = load_split("train", limit=4)
    want = expected_loss(policy, problems, epsilon)
    args = SFTArgs(output=str(tmp_path), batch_size=4, learning_rate=0.0, max_steps=1, logging_steps=1,
                   save_steps=10**6, label_smoothing=epsilon)
    trainer = train_sft(policy.model, policy.tokenizer, policy.step_format, problems, args)
    logged = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    assert logged == pytest.approx(want, abs=2e-3)


def test_sft_example_writes_every_step_header_once():
    from reasoner.steps import get_format
    from reasoner.trainers.sft import sft_example

    tokenizer = load_policy().tokenizer
    example = sft_example(tokenizer, get_format("step-dpo"), "Mia has 3 apples. How many?", ["3 + 1 = 4", "The answer is 4"])
    assert tokenizer.decode(example["input_ids"], skip_special_tokens=True).endswith(
        "step by step.\nStep 1: 3 + 1 = 4\nStep 2: The answer is 4\n")


def test_resume_starts_fresh_in_a_new_folder_and_continues_a_checkpoint(tmp_path):
    """`--resume` (a recipe's `resume: true`) in a folder with no checkpoint yet trains from the start instead of
    failing with transformers' "no valid checkpoint found"; with one, it continues its step count."""
    from reasoner.cli import main

    out = tmp_path / "sft"
    common = ["--quiet", "train", "sft", "--limit", "8", "--batch_size", "4", "--save_steps", "1", "--resume", "true",
              "--output", str(out)]
    assert main([*common, "--max_steps", "1"]) == 0
    assert (out / "checkpoint-1").is_dir()
    assert main([*common, "--max_steps", "2"]) == 0
    assert (out / "checkpoint-2").is_dir()
