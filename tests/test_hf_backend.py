"""The HF step generator: batching and prefix KV reuse must not change what is generated."""

import math

import pytest
import torch

from data.synthetic import load_split
from reasoner.backends.hf import HFStepGenerator
from reasoner.backends.kv_cache import KVEntry, PrefixKVCache, cache_argument, output_cache
from reasoner.models import EMBEDDED_POLICY, load_policy
from reasoner.steps import get_format
from reasoner.tiny import TinyBuildArgs, build_tokenizer, tiny_model
from reasoner.trainers.sft import solution_steps
from search.protocols import State

FMT = get_format("tiny")


@pytest.fixture(scope="module")
def policy():
    """The embedded policy when built, else a random tiny Llama on the synthetic tokenizer."""
    if (EMBEDDED_POLICY / "config.json").exists():
        loaded = load_policy()
        return loaded.model, loaded.tokenizer
    problems = load_split("train", limit=2000)
    tokenizer = build_tokenizer((FMT.render(p.question, solution_steps(p, FMT)) for p in problems), 512)
    return tiny_model(tokenizer, TinyBuildArgs()).eval(), tokenizer


@pytest.fixture(scope="module")
def states():
    problems = load_split("test", limit=5)
    return [State(p.question, tuple(solution_steps(p, FMT)[:k])) for p in problems for k in (0, 1, 2)]


def test_batched_greedy_equals_unbatched_token_for_token(policy, states):
    model, tokenizer = policy
    batched = HFStepGenerator(model, tokenizer, FMT).expand(states, 1, temperature=0, max_step_tokens=24)
    for state, (sample,) in zip(states, batched):
        alone = HFStepGenerator(model, tokenizer, FMT, reuse_prefix=False)
        (single,) = alone.expand([state], 1, temperature=0, max_step_tokens=24)[0]
        assert sample.text == single.text
        assert sample.num_tokens == single.num_tokens
        assert sample.logprob == pytest.approx(single.logprob, abs=1e-3)


def test_prefix_reuse_gives_same_greedy_steps_and_hits_cache(policy, states):
    model, tokenizer = policy
    generator = HFStepGenerator(model, tokenizer, FMT)
    first = generator.expand(states, 2, temperature=0, max_step_tokens=24)
    encoded = generator.stats.prefill_tokens
    second = generator.expand(states, 2, temperature=0, max_step_tokens=24)
    assert [[s.text for s in g] for g in first] == [[s.text for s in g] for g in second]
    assert generator.stats.prefill_tokens == encoded  # nothing re-encoded the second time
    assert generator.cache.hits >= len(states)
    # A child of a cached prefix only encodes its new step.
    child = states[0].child(first[0][0].text or "1 + 1 = 2")
    before = generator.stats.prefill_tokens
    generator.expand([child], 1, temperature=0, max_step_tokens=8)
    new_tokens = len(generator.encode(FMT.render(child.question, child.steps)))
    assert generator.stats.prefill_tokens - before < new_tokens / 2


def test_logprob_matches_a_full_forward(policy, states):
    model, tokenizer = policy
    generator = HFStepGenerator(model, tokenizer, FMT, seed=3)
    state = states[1]
    (sample,) = generator.expand([state], 1, temperature=1.0, max_step_tokens=24)[0]
    prefix = generator.encode(FMT.render(state.question, state.steps))
    continuation = tokenizer(sample.text + FMT.delimiter, add_special_tokens=False)["input_ids"]
    if sample.finished and not sample.text:
        pytest.skip("sampled an immediate EOS")
    ids = torch.tensor([prefix + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    expected = sum(logprobs[len(prefix) - 1 + i, t].item() for i, t in enumerate(continuation))
    if len(continuation) == sample.num_tokens:  # same tokenization as sampled
        assert sample.logprob == pytest.approx(expected, abs=1e-3)
    assert sample.logprob <= 0 and math.isfinite(sample.logprob)
    assert 0 < sample.prior <= 1


def test_sampling_is_seeded_and_stops_at_the_delimiter(policy, states):
    model, tokenizer = policy
    a = HFStepGenerator(model, tokenizer, FMT, seed=7).expand(states[:4], 4, temperature=1.0, max_step_tokens=16)
    b = HFStepGenerator(model, tokenizer, FMT, seed=7).expand(states[:4], 4, temperature=1.0, max_step_tokens=16)
    assert [[s.text for s in g] for g in a] == [[s.text for s in g] for g in b]
    assert all(len(g) == 4 for g in a)
    assert all("\n" not in s.text and 1 <= s.num_tokens <= 16 for g in a for s in g)


def test_kv_cache_longest_prefix_and_eviction():
    cache = PrefixKVCache(max_bytes=10_000)

    def entry(ids):
        kv = torch.zeros(1, 1, len(ids), 4)
        return KVEntry(tuple(ids), [(kv, kv.clone())], torch.zeros(8))

    cache.put(entry([1, 2, 3]))
    cache.put(entry([1, 2, 3, 4, 5]))
    assert cache.longest_prefix([1, 2, 3, 4, 5, 6]).ids == (1, 2, 3, 4, 5)
    assert cache.longest_prefix([1, 2, 3, 9]).ids == (1, 2, 3)
    assert cache.longest_prefix([2, 3]) is None
    for start in range(100):  # push past the byte budget
        cache.put(entry([100 + start] * 20))
    assert cache.bytes <= cache.max_bytes
    assert cache.longest_prefix([1, 2, 3, 4, 5]) is None  # oldest entries went first


def test_cache_keyword_follows_the_installed_transformers(policy):
    """transformers 5.2x takes and returns the KV cache as ``cache`` (``past_key_values`` is deprecated);
    older releases (vLLM's pins) only know ``past_key_values``: the generator must speak whichever is there."""
    model, tokenizer = policy

    class OldModel(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None, past_key_values=None, use_cache=None):
            return None

    class OldOutput:
        past_key_values = "old-cache"

    assert cache_argument(OldModel()) == "past_key_values"
    assert output_cache(OldOutput()) == "old-cache"
    keyword = cache_argument(model)
    assert keyword in ("cache", "past_key_values")
    ids = torch.tensor([tokenizer("Mia has 12 apples.")["input_ids"]])
    with torch.no_grad():
        first = model(input_ids=ids[:, :-1], use_cache=True)
        step = model(input_ids=ids[:, -1:], use_cache=True, **{keyword: output_cache(first)})
        whole = model(input_ids=ids)
    torch.testing.assert_close(step.logits[:, -1], whole.logits[:, -1], atol=1e-4, rtol=1e-4)
