"""The vLLM step generator against the HF reference, on a CUDA machine with vLLM installed.

Run with ``pytest -m gpu tests/test_vllm_backend.py``. The model is ``$REASONER_VLLM_MODEL`` (a directory or
hub name), else the embedded tiny policy. ``$REASONER_VLLM_DTYPE`` (default ``float32``) is used by both
backends so that greedy steps can be compared token for token. Skipped without vLLM or without a GPU. The
generator's own logic (parameters asked for, outputs read back) is tested on CPU in `tests/test_vllm_translation.py`.
If vLLM has no attention kernel for the embedded policy's head size (36), point ``REASONER_VLLM_MODEL`` at
a standard small model, e.g. a local copy of HuggingFaceTB/SmolLM2-135M-Instruct.
"""

import math
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'reasoner[vllm]' on a CUDA machine)")

from data.synthetic import load_split  # noqa: E402
from reasoner.backends.hf import HFStepGenerator  # noqa: E402
from reasoner.backends.vllm import VLLMStepGenerator  # noqa: E402
from reasoner.models import EMBEDDED_POLICY, load_policy  # noqa: E402
from reasoner.steps import is_final_step  # noqa: E402
from reasoner.trainers.sft import solution_steps  # noqa: E402
from search.protocols import State  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

_EMBEDDED = str(EMBEDDED_POLICY) if (EMBEDDED_POLICY / "config.json").exists() else ""
MODEL = os.environ.get("REASONER_VLLM_MODEL") or _EMBEDDED
DTYPE = os.environ.get("REASONER_VLLM_DTYPE", "float32")
MAX_TOKENS = 32
USES_EMBEDDED = bool(MODEL) and Path(MODEL).resolve() == EMBEDDED_POLICY


@pytest.fixture(scope="module")
def vllm_generator():
    if not MODEL:
        pytest.skip("no model: set REASONER_VLLM_MODEL or build the embedded policy")
    # A small memory share leaves room for the HF reference model on the same GPU; eager mode skips the
    # CUDA-graph capture, which only costs start-up time in a test.
    return VLLMStepGenerator(MODEL, seed=0, dtype=DTYPE, gpu_memory_utilization=0.35, enforce_eager=True)


@pytest.fixture(scope="module")
def hf_generator(vllm_generator):
    policy = load_policy(MODEL, device="cuda", dtype=DTYPE)
    return HFStepGenerator(policy.model, policy.tokenizer, vllm_generator.step_format, seed=0)


@pytest.fixture(scope="module")
def states(vllm_generator):
    """Synthetic questions at depth 0, after one gold step, and before the gold final step."""
    fmt = vllm_generator.step_format
    out = []
    for problem in load_split("test", limit=4):
        steps = solution_steps(problem, fmt)
        question = problem.question
        out += [State(question), State(question, tuple(steps[:1])), State(question, tuple(steps[:-1]))]
    return out


def test_expand_returns_n_samples_per_state(vllm_generator, states):
    groups = vllm_generator.expand(states, 3, temperature=1.0, max_step_tokens=MAX_TOKENS)
    assert len(groups) == len(states)
    for group in groups:
        assert len(group) == 3
        for sample in group:
            assert 1 <= sample.num_tokens <= MAX_TOKENS
            assert math.isfinite(sample.logprob) and sample.logprob <= 0
            assert vllm_generator.step_format.delimiter not in sample.text
    assert vllm_generator.stats.generated_tokens >= sum(s.num_tokens for g in groups for s in g)


def test_greedy_matches_hf_backend(vllm_generator, hf_generator, states):
    fast = vllm_generator.expand(states, 2, temperature=0, max_step_tokens=MAX_TOKENS)
    reference = hf_generator.expand(states, 1, temperature=0, max_step_tokens=MAX_TOKENS)
    assert [len(group) for group in fast] == [2] * len(states)
    for state, group, (expected,) in zip(states, fast, reference):
        assert group[0].text == group[1].text
        assert group[0].text == expected.text, f"first step differs for {state}"
        assert group[0].finished == expected.finished
        assert group[0].logprob <= 0
        assert group[0].logprob == pytest.approx(expected.logprob, abs=0.05 * max(1, expected.num_tokens))


def test_finished_flags_on_final_steps(vllm_generator, states):
    groups = vllm_generator.expand(states, 1, temperature=0, max_step_tokens=MAX_TOKENS)
    samples = [group[0] for group in groups]
    for sample in samples:
        if is_final_step(sample.text):
            assert sample.finished
    if USES_EMBEDDED:
        # Every third state stops just before the gold final step: the trained policy writes it there.
        assert any(sample.finished for sample in samples[2::3])


def test_prefix_cache_serves_repeated_prompts(vllm_generator, states):
    import inspect

    from vllm.outputs import RequestOutput

    if "num_cached_tokens" not in inspect.signature(RequestOutput.__init__).parameters:
        pytest.skip("this vLLM does not report num_cached_tokens")
    lengths = [len(vllm_generator.encode(vllm_generator.step_format.render(s.question, s.steps))) for s in states]
    if max(lengths) < 32:
        pytest.skip("prompts shorter than two KV blocks")
    vllm_generator.expand(states, 1, temperature=0, max_step_tokens=4)
    before = vllm_generator.stats.cached_prompt_tokens
    vllm_generator.expand(states, 1, temperature=0, max_step_tokens=4)
    assert vllm_generator.stats.cached_prompt_tokens > before


def test_eval_runs_with_the_vllm_backend(vllm_generator, tmp_path, monkeypatch):
    """`reasoner eval --backend vllm` end to end. The module's engine (0.35 of the GPU) and HF model stay loaded,
    so this engine gets a smaller share through the environment variable every vLLM command reads."""
    import json

    from reasoner.backends.vllm import MEMORY_VARIABLE
    from reasoner.cli import main

    monkeypatch.setenv(MEMORY_VARIABLE, "0.3")
    code = main(["--quiet", "eval", "--backend", "vllm", "--policy", MODEL, "--limit", "16",
                 "--methods", "greedy,maj@4,beam@1x3", "--value", "likelihood", "--output", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["methods"]["greedy"]["n"] == 16
    if USES_EMBEDDED:
        assert report["methods"]["greedy"]["accuracy"] > 0.1


def test_reseeded_sampling_repeats_its_draws(vllm_generator, states):
    """After `reseed` every request carries its own seed: the same seed draws the same steps again."""
    def draw(seed):
        vllm_generator.reseed(seed)
        return [[s.text for s in group] for group in vllm_generator.expand(states, 4, temperature=1.0,
                                                                           max_step_tokens=MAX_TOKENS)]

    first = draw(7)
    assert draw(7) == first
    assert draw(8) != first
