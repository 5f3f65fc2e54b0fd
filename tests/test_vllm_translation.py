"""The vLLM step generator's own logic on CPU, against a stand-in engine: what it asks vLLM for (sampling
parameters, per-request seeds after `reseed`) and how it reads vLLM's outputs back into `StepSample`s. The real
engine is tested in `tests/test_vllm_backend.py` (GPU only); the fields used here are vLLM's documented ones
(`SamplingParams`; `RequestOutput.outputs` of `CompletionOutput`: index, text, token_ids, cumulative_logprob,
logprobs, finish_reason, stop_reason)."""

import sys
import types
from dataclasses import dataclass, field

import pytest
from transformers import AutoTokenizer

from reasoner.backends.vllm import MEMORY_VARIABLE, VLLMStepGenerator, gpu_memory_share
from reasoner.models import EMBEDDED_POLICY, encode_prefix
from search.protocols import State, reseed_generator

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


class SamplingParams:
    """vLLM's `SamplingParams`, keeping what it is given."""

    def __init__(self, **settings):
        self.__dict__.update(settings)


@dataclass
class Completion:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = -1.5
    logprobs: list | None = field(default_factory=list)
    finish_reason: str = "stop"
    stop_reason: object = "\n"


@dataclass
class Request:
    outputs: list[Completion]
    num_cached_tokens: int = 0


class Engine:
    """Answers every request with ``script(index)`` for each of its ``n`` samples; records what it was asked."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script, self.calls = tokenizer, script, []

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        per_prompt = params if isinstance(params, list) else [params] * len(prompts)
        return [Request([self.script(i) for i in range(p.n)], num_cached_tokens=3) for p in per_prompt]


@pytest.fixture
def tokenizer(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=SamplingParams))
    return AutoTokenizer.from_pretrained(EMBEDDED_POLICY)


def generator(tokenizer, script, **kwargs):
    return VLLMStepGenerator(str(EMBEDDED_POLICY), llm=Engine(tokenizer, script), **kwargs)


def test_a_step_is_read_back_as_the_hf_backend_returns_it(tokenizer):
    ids = tokenizer.encode("3 + 4 = 7\n", add_special_tokens=False)
    made = generator(tokenizer, lambda i: Completion(i, " 3 + 4 = 7 ", ids, cumulative_logprob=-0.25 * (i + 1)))
    (group,) = made.expand([State(QUESTION)], 2, temperature=1.0, max_step_tokens=16)
    assert [(s.text, s.num_tokens, s.finished) for s in group] == [("3 + 4 = 7", len(ids), False)] * 2
    assert [s.logprob for s in group] == [-0.25, -0.5]
    (prompts, params), = made.llm.calls
    assert prompts == [{"prompt_token_ids": encode_prefix(tokenizer, made.step_format.render(QUESTION, []))}]
    assert prompts[0]["prompt_token_ids"].count(tokenizer.bos_token_id) == 1 == (prompts[0]["prompt_token_ids"][0]
                                                                                 == tokenizer.bos_token_id)
    assert (params.n, params.stop, params.include_stop_str_in_output, params.logprobs, params.max_tokens) == (
        2, ["\n"], False, 0, 16)
    assert made.stats.cached_prompt_tokens == 3 and made.stats.generated_tokens == 2 * len(ids)


def test_eos_is_finished_even_when_vllm_reports_the_length_cap(tokenizer):
    """Some vLLM versions check the length cap before EOS: an EOS sampled as the last allowed token comes back
    as finish_reason "length". The token id decides, as in the HF backend."""
    eos = tokenizer.eos_token_id
    cases = [Completion(0, "3 + 4", [5, 6, eos], finish_reason="length", stop_reason=None),
             Completion(1, "3 + 4", [5, 6, 7], finish_reason="length", stop_reason=None),
             Completion(2, "3 + 4 = 7", [5, 6, eos], finish_reason="stop", stop_reason=None)]
    made = generator(tokenizer, lambda i: cases[i])
    (group,) = made.expand([State(QUESTION)], 3, temperature=1.0, max_step_tokens=3)
    assert [s.finished for s in group] == [True, False, True]


def test_reseed_gives_every_request_its_own_reproducible_seed(tokenizer):
    made = generator(tokenizer, lambda i: Completion(i, "3 + 4 = 7", [5]))
    states = [State(QUESTION), State(QUESTION, ("3 + 4 = 7",))]
    made.expand(states, 2, temperature=1.0, max_step_tokens=8)
    assert made.llm.calls[-1][1].seed is None  # before any reseed: the engine's seed

    def seeds(seed):
        reseed_generator(made, seed, "synthetic-test-000")
        made.expand(states, 2, temperature=1.0, max_step_tokens=8)
        params = made.llm.calls[-1][1]
        assert isinstance(params, list) and all(p.n == 2 for p in params)
        return [p.seed for p in params]

    first = seeds(0)
    assert len(set(first)) == 2 and all(isinstance(s, int) for s in first)
    assert seeds(0) == first and seeds(1) != first
    (greedy,) = made.expand(states[:1], 3, temperature=0, max_step_tokens=8)
    params = made.llm.calls[-1][1]
    assert params.n == 1 and params.seed is None and params.temperature == 0 and len(greedy) == 3


def test_missing_logprobs_are_an_error_not_a_prior_of_one(tokenizer):
    made = generator(tokenizer, lambda i: Completion(i, "3 + 4 = 7", [5], cumulative_logprob=None, logprobs=None))
    with pytest.raises(RuntimeError, match="no logprobs"):
        made.expand([State(QUESTION)], 1, temperature=1.0, max_step_tokens=8)


def test_an_engine_without_its_model_needs_a_step_format(tokenizer):
    engine = Engine(tokenizer, lambda i: Completion(i, "x", [5]))
    with pytest.raises(ValueError, match="step_format"):
        VLLMStepGenerator(llm=engine)
    made = VLLMStepGenerator(llm=engine, step_format="tiny")
    assert made.step_format.name == "tiny" and made.eos_ids == {tokenizer.eos_token_id}


def test_gpu_memory_share_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(MEMORY_VARIABLE, raising=False)
    assert gpu_memory_share(None) == 0.9
    monkeypatch.setenv(MEMORY_VARIABLE, "0.4")
    assert gpu_memory_share(None) == 0.4 and gpu_memory_share(0.7) == 0.7
    for bad in ("half", "0", "1.5"):
        monkeypatch.setenv(MEMORY_VARIABLE, bad)
        with pytest.raises(ValueError, match=MEMORY_VARIABLE):
            gpu_memory_share(None)
