"""`reasoner train ALGO` and `reasoner train-prm`: the training commands of the CLI (wired to data, search,
the trainers and the value model here, as the rest of `reasoner.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Sequence

__all__ = ["cmd_train", "cmd_train_prm"]


def cmd_train(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """`reasoner train ALGO [--config YAML] [--key value ...]`: SFT, a step-preference algorithm, or an online one
    (Tree-GRPO, MCTS-DPO)."""
    if args.algo == "tree-grpo":
        return _train_tree_grpo(rest)
    if args.algo == "mcts-dpo-online":
        return _train_online_dpo(rest)
    if args.algo != "sft":
        return _train_preference(args.algo, rest)
    from reasoner.config import parse_config, save_training_config
    from reasoner.trainers.sft import SFTArgs

    config = parse_config(SFTArgs, rest, prog="reasoner train sft", description="SFT on gold step-by-step solutions")
    from data.problems import load_problems
    from reasoner.models import load_policy
    from reasoner.trainers.common import TRAINING_DTYPE
    from reasoner.trainers.sft import train_sft

    policy = load_policy(config.model, device=config.device, dtype=TRAINING_DTYPE)
    policy.model.train()
    problems = load_problems(config.data, limit=config.limit)
    if not any(p.solution for p in problems):
        limit = f" (--limit {config.limit})" if config.limit is not None else ""
        raise ValueError(f"{config.data}: none of its {len(problems)} problems{limit} has a gold 'solution' to train on")
    save_training_config(config, config.output, "sft training")
    trainer = train_sft(policy.model, policy.tokenizer, policy.step_format, problems, config)
    policy.model.eval()
    _save_trained(trainer, policy, config.output, "sft")
    return 0


def _train_preference(algo: str, rest: Sequence[str]) -> int:
    from reasoner.config import parse_config, save_training_config
    from reasoner.models import load_policy
    from reasoner.trainers.common import TRAINING_DTYPE
    from reasoner.trainers.preference import PreferenceArgs, load_pairs, resolve_beta, train_preference

    config = parse_config(PreferenceArgs, rest, prog=f"reasoner train {algo}",
                          description=f"{algo} on step pairs from `reasoner label`")
    config.algo = algo
    resolve_beta(config)
    if not config.data:
        raise ValueError(f"--data is required: a pairs JSONL from `reasoner label --kind {algo}`")
    if algo == "full-step-dpo":
        from reasoner.trainers.full_step import load_step_rewards

        records = load_step_rewards(config.data, config.limit)
    else:
        records = load_pairs(config.data, config.limit, algo, config.visit_smoothing)
    policy = load_policy(config.model, device=config.device, dtype=TRAINING_DTYPE)
    reference = None
    if config.ref_model is not None:
        reference = load_policy(config.ref_model, device=config.device)
        if reference.tokenizer.get_vocab() != policy.tokenizer.get_vocab():
            raise ValueError(f"--ref_model {config.ref_model}: its tokenizer is not the trained policy's "
                             f"({config.model or 'embedded'}); the reference must score the same token ids")
        reference = reference.model
    save_training_config(config, config.output, f"{algo} training")
    _, trainer = train_preference(policy, records, config, reference=reference)
    if not _save_trained(trainer, policy, config.output, algo):
        return 0
    if algo == "svpo":
        # Weights from the files just written, not from memory: under ZeRO-3 the modules hold only partitions.
        from safetensors.torch import load_file

        from prm.model import ValueModel
        from reasoner.trainers.preference import VALUE_HEAD_WEIGHTS

        value = ValueModel(policy.model, policy.tokenizer, policy.step_format, head="tanh", source=f"svpo:{config.output}")
        weights = {f"lm.{name}": tensor for name, tensor in load_file(Path(config.output, "model.safetensors")).items()}
        weights.update({f"value_head.{name}": tensor
                        for name, tensor in load_file(Path(config.output, VALUE_HEAD_WEIGHTS)).items()})
        value.save_pretrained(f"{config.output}/value-model", state_dict=weights)
        print(f"saved its value head as a value model to {config.output}/value-model")
    return 0


def _train_tree_grpo(rest: Sequence[str]) -> int:
    from data.problems import load_problems
    from reasoner.config import parse_config, save_training_config
    from reasoner.models import load_policy
    from reasoner.trainers.common import TRAINING_DTYPE
    from reasoner.trainers.common import sampling_seed
    from reasoner.trainers.tree_grpo import TreeGRPOArgs, train_tree_grpo
    from search.tree_grpo import TreeGRPOConfig, grpo_leaves, run_tree_grpo

    config = parse_config(TreeGRPOArgs, rest, prog="reasoner train tree-grpo",
                          description="online Tree-GRPO: sample trees with the policy, verify leaves, update")
    sampling = TreeGRPOConfig(trees_per_prompt=config.trees_per_prompt, expand_nodes=config.expand_nodes,
                              rounds=config.rounds, temperature=config.temperature, max_depth=config.max_depth,
                              max_step_tokens=config.max_step_tokens)

    def sample(problems, generator, step):
        seeded = dataclasses.replace(sampling, seed=sampling_seed(config.seed, step))  # new trees every step
        trees = run_tree_grpo(problems, generator, seeded)
        return [dict(leaf, prompt=index) for index, tree in enumerate(trees) for leaf in grpo_leaves(tree)]

    problems = load_problems(config.problems, limit=config.limit, needed_for="sample trees for")
    policy = load_policy(config.model, device=config.device, dtype=TRAINING_DTYPE)
    save_training_config(config, config.output, "tree-grpo training")
    trainer = train_tree_grpo(policy, problems, config, sample)
    _save_trained(trainer, policy, config.output, "tree-grpo")
    return 0


def _train_online_dpo(rest: Sequence[str]) -> int:
    from data.problems import load_problems
    from prm.labels import label_trees
    from reasoner.config import parse_config, save_training_config
    from reasoner.models import load_policy
    from reasoner.trainers.common import TRAINING_DTYPE
    from reasoner.trainers.common import sampling_seed
    from reasoner.trainers.online_dpo import OnlineDPOArgs, train_online_dpo
    from search.mcts import MCTSConfig, run_mcts

    config = parse_config(OnlineDPOArgs, rest, prog="reasoner train mcts-dpo-online",
                          description="online MCTS-DPO: MCTS trees from the current policy, committed-path pairs, DPO step")
    search = MCTSConfig(simulations=config.simulations, commit_simulations=config.commit_simulations,
                        children=config.children, c_puct=config.c_puct,
                        max_depth=config.max_depth, temperature=config.temperature,
                        rollout_temperature=config.temperature, max_step_tokens=config.max_step_tokens)
    problems = load_problems(config.problems, limit=config.limit, needed_for="search trees for")
    policy = load_policy(config.model, device=config.device, dtype=TRAINING_DTYPE)

    def sample(batch, generator, step):
        seed = sampling_seed(config.seed, step)  # new tie-breaks every step
        trees = run_mcts(batch, generator, dataclasses.replace(search, seed=seed))
        return label_trees(trees, "mcts-dpo", policy.step_format, seed=seed, max_pairs=config.max_pairs)[0]

    save_training_config(config, config.output, "mcts-dpo-online training")
    trainer = train_online_dpo(policy, problems, config, sample)
    _save_trained(trainer, policy, config.output, "mcts-dpo-online")
    return 0


def cmd_train_prm(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """`reasoner train-prm [--config YAML] [--key value ...]`: a step value model on MC labels."""
    from reasoner.config import parse_config, save_training_config
    from prm.trainer import PRMArgs, train_prm

    config = parse_config(PRMArgs, rest, prog="reasoner train-prm",
                          description="train a step value model on MC labels (+ sibling pairs)")
    if not config.data:
        raise ValueError("--data is required: an mc-labels JSONL from `reasoner label --kind mc-labels`")
    save_training_config(config, config.output, "train-prm")
    _, trainer = train_prm(config)
    if trainer.is_world_process_zero():
        print(f"saved the value model to {config.output}")
    return 0


def _save_trained(trainer, policy, output: str, name: str) -> bool:
    """Write a trained policy to ``output``: weights through ``trainer.save_model`` (gathers ZeRO-3 shards and
    writes on the main process only), then, on the main process, tokenizer + step format. Drops the Trainer's
    pickled ``training_args.bin`` (config.yaml says it all). Returns whether this is the main process."""
    from reasoner.models import save_policy

    trainer.save_model(output)
    if not trainer.is_world_process_zero():
        return False
    save_policy(policy, output, weights=False)
    Path(output, "training_args.bin").unlink(missing_ok=True)
    print(f"saved the {name} policy to {output}")
    return True
