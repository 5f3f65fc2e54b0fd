"""Step generators: `hf` (transformers, prefix KV reuse) and `vllm` (prefix caching), same protocol."""

from __future__ import annotations

from typing import Any

__all__ = ["make_generator"]


def make_generator(policy: Any, backend: str = "hf", *, seed: int = 0, **kwargs: Any):
    """A `StepGenerator` for a loaded `Policy` (hf) or a model name/path (vllm)."""
    if backend == "hf":
        from reasoner.backends.hf import HFStepGenerator

        return HFStepGenerator(policy.model, policy.tokenizer, policy.step_format, seed=seed, **kwargs)
    if backend == "vllm":
        from reasoner.backends.vllm import VLLMStepGenerator

        return VLLMStepGenerator(policy, seed=seed, **kwargs)
    raise ValueError(f"unknown backend {backend!r}: use hf or vllm")
