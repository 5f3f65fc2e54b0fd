"""`StepGenerator` on vLLM's offline engine (``vllm.LLM``), for CUDA machines.

Same contract as the HF backend (`reasoner.backends.hf`): one `expand` call renders every state with the
policy's `StepFormat`, samples ``n`` continuations per state in one ``LLM.generate`` call, stops each at the
step delimiter (a stop string), EOS or ``max_step_tokens``, and returns `StepSample`s whose ``logprob`` is
the summed log-probability of the sampled tokens under the raw model (vLLM V1 returns raw logprobs, before
temperature or top-p, by default: ``logprobs_mode="raw_logprobs"``), so priors mean the same as with HF.

Prefix KV reuse: the HF backend keeps a `PrefixKVCache` of prefix KV states keyed by token ids, so the
``n`` children of a node share one prefill and every later expansion below the node encodes only its new
steps. vLLM's automatic prefix caching (``enable_prefix_caching=True``, always on here) does the same job
inside the engine: the paged KV cache is split into fixed-size blocks (16 tokens by default), each block is
hashed together with all tokens before it, and a new request whose prompt starts with already computed
full blocks reuses them instead of recomputing them. Because ``render(q, steps[:k])`` is a text (and, in
practice, token) prefix of ``render(q, steps)``, a child's prompt hits every full block of its parent's
prompt; the ``n`` samples of one request share a single prefill; blocks are evicted least-recently-used
when the GPU cache is full. The differences: reuse is per block (the last partial block is recomputed) and
it lives in GPU memory sized by ``gpu_memory_utilization`` instead of a byte budget.
``RequestOutput.num_cached_tokens`` (where the vLLM version reports it) is summed into
``stats.cached_prompt_tokens``.

Greedy (``temperature == 0``): vLLM requires ``n == 1`` for greedy requests, and greedy samples are all the
same, so each state is generated once and its sample is copied ``n`` times.

Seeds: until `reseed` is called, sampling draws from the engine's seed. Search and eval call `reseed` before every
batch (`search.protocols.reseed_generator`); from then on every request gets its own seed, drawn from that batch's
stream in prompt order (vLLM seeds the request's ``n`` samples ``seed``, ``seed + 1``, ...), so a batch draws the
same samples whatever ran before it in the process, and a resumed run redraws the uninterrupted run's samples, as
with the HF backend. Seeded requests cost some sampler speed in vLLM, and the draws are reproducible only up to
vLLM's batch-dependent numerics (its docs: https://docs.vllm.ai/en/latest/usage/reproducibility.html).

Memory: the engine reserves ``gpu_memory_utilization`` of the GPU (vLLM's default 0.9) for weights and KV blocks.
When another model shares the GPU (a value model, ``--value likelihood``), lower it with the environment variable
``REASONER_VLLM_GPU_MEMORY_UTILIZATION`` (e.g. 0.6), which every command that builds a vLLM generator reads.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from reasoner.steps import StepFormat, get_format, is_final_step
from search.protocols import State, StepSample

__all__ = ["VLLMStepGenerator", "VLLMGenerationStats"]

_INSTALL_HINT = "the vllm backend needs vLLM: pip install 'reasoner[vllm]' on a CUDA machine"
MEMORY_VARIABLE = "REASONER_VLLM_GPU_MEMORY_UTILIZATION"


@dataclass
class VLLMGenerationStats:
    """Counters over the generator's lifetime (tokens sampled, prompt tokens sent, prompt tokens served from
    the prefix cache, expand calls)."""

    generated_tokens: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    calls: int = 0


class VLLMStepGenerator:
    """Samples next reasoning steps with vLLM (see the module docstring).

    Args:
        model: model directory or hub name (None: the embedded tiny policy), or a local ``.gguf`` file;
            with ``gguf_file``, the directory holding that GGUF file.
        step_format: a `StepFormat` (or its dict), a format name, ``"chat"``, or None to pick it like
            `load_policy`: ``step_format.json`` in the model directory, else the chat format when the
            tokenizer has a chat template, else ``newline2``.
        seed: engine seed, used until the first `reseed` (see the module docstring).
        top_p: nucleus sampling threshold (1.0 = off).
        dtype, gpu_memory_utilization, tensor_parallel_size: passed to ``vllm.LLM``; ``gpu_memory_utilization``
            None reads ``$REASONER_VLLM_GPU_MEMORY_UTILIZATION``, else vLLM's 0.9.
        tokenizer: tokenizer name or path when it differs from ``model``; for a GGUF file vLLM otherwise
            converts the tokenizer stored in the file, which its docs call slow and less reliable than the
            base model's tokenizer.
        gguf_file: a GGUF file name inside ``model``.
        llm: an already built ``vllm.LLM`` to use instead of building one (``model`` then only locates
            ``step_format.json`` and the EOS ids; without ``model``, ``step_format`` is required).
        **llm_kwargs: further ``vllm.LLM`` arguments (``max_model_len``, ``enforce_eager``, ...).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        step_format: str | dict[str, Any] | StepFormat | None = None,
        seed: int = 0,
        top_p: float = 1.0,
        dtype: str = "auto",
        gpu_memory_utilization: float | None = None,
        tensor_parallel_size: int = 1,
        tokenizer: str | None = None,
        gguf_file: str | None = None,
        llm: Any = None,
        **llm_kwargs: Any,
    ):
        try:
            from vllm import SamplingParams
        except ImportError as exc:
            raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
        from reasoner.models import embedded_model_dir

        located = llm is None or model is not None  # a model directory or name to read settings from
        if not located and step_format is None:
            raise ValueError("VLLMStepGenerator(llm=...) needs model= (the directory holding step_format.json) or "
                             "step_format=: the served model's step format cannot be guessed")
        embedded = embedded_model_dir(model) if located else None
        directory = embedded or Path(model or ".")
        where = str(embedded) if embedded else str(model or ".")
        if gguf_file is None and directory.suffix == ".gguf" and directory.is_file():
            where, gguf_file = str(directory.parent), directory.name
        if llm is None:
            from vllm import LLM

            engine_model = str(Path(where) / gguf_file) if gguf_file else where
            llm = LLM(
                model=engine_model,
                tokenizer=tokenizer,
                enable_prefix_caching=True,
                seed=seed,
                dtype=dtype,
                gpu_memory_utilization=gpu_memory_share(gpu_memory_utilization),
                tensor_parallel_size=tensor_parallel_size,
                **llm_kwargs,
            )
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.step_format = _resolve_step_format(Path(where), self.tokenizer, step_format)
        self.eos_ids = _eos_ids(self.tokenizer, where if located else None)
        self.top_p = top_p
        self.seed = seed
        self.name = where if model is not None else ("embedded" if llm is None else "vllm")
        self.stats = VLLMGenerationStats()
        self._sampling_params_cls = SamplingParams
        self._stream: random.Random | None = None  # per-request seeds once `reseed` was called

    # ----------------------------------------------------------------- protocol
    def expand(
        self, states: Sequence[State], n: int, *, temperature: float = 1.0, max_step_tokens: int = 64
    ) -> list[list[StepSample]]:
        """``n`` sampled next steps for each state (greedy when ``temperature == 0``), in one engine call."""
        self.stats.calls += 1
        if not states:
            return []
        greedy = temperature <= 0
        if greedy or self._stream is None:
            params: Any = self._sampling_params(1 if greedy else n, temperature, max_step_tokens)
        else:  # one seed per request, drawn in prompt order from the batch's stream
            params = [self._sampling_params(n, temperature, max_step_tokens, seed=self._stream.getrandbits(62))
                      for _ in states]
        prompts = [{"prompt_token_ids": self.encode(self.step_format.render(s.question, s.steps))} for s in states]
        self.stats.prompt_tokens += sum(len(p["prompt_token_ids"]) for p in prompts)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results: list[list[StepSample]] = []
        for request in outputs:  # LLM.generate returns outputs in prompt order
            cached = getattr(request, "num_cached_tokens", None)
            if cached:
                self.stats.cached_prompt_tokens += int(cached)
            completions = sorted(request.outputs, key=lambda completion: completion.index)
            samples = [self._sample_record(completion) for completion in completions]
            self.stats.generated_tokens += sum(sample.num_tokens for sample in samples)
            if greedy:
                samples = [dataclasses.replace(samples[0]) for _ in range(n)]
            results.append(samples)
        return results

    def reseed(self, seed: int) -> None:
        """Restart sampling at ``seed``: from now on every request of a sampled `expand` gets its own seed from
        this stream (the `StepGenerator` protocol's optional hook; vLLM's prefix cache holds no randomness)."""
        self._stream = random.Random(seed)

    def encode(self, text: str) -> list[int]:
        """Token ids of a rendered prefix, the HF backend's (`reasoner.models.encode_prefix`): the tokenizer's BOS,
        unless a chat template already wrote it."""
        from reasoner.models import encode_prefix

        return list(encode_prefix(self.tokenizer, text))

    # ------------------------------------------------------------------ helpers
    def _sampling_params(self, n: int, temperature: float, max_step_tokens: int, seed: int | None = None) -> Any:
        """vLLM sampling parameters: stop at the delimiter (not returned), 1 logprob so that
        ``cumulative_logprob`` is filled, no penalties (the defaults), greedy at temperature 0."""
        return self._sampling_params_cls(
            seed=seed,
            n=n,
            temperature=max(temperature, 0.0),
            top_p=self.top_p if temperature > 0 else 1.0,
            max_tokens=max_step_tokens,
            stop=[self.step_format.delimiter],
            include_stop_str_in_output=False,
            logprobs=0,
        )

    def _sample_record(self, completion: Any) -> StepSample:
        """A `StepSample` from one vLLM ``CompletionOutput``."""
        text = completion.text
        delimiter = self.step_format.delimiter
        if delimiter in text:
            text = text.split(delimiter, 1)[0]
        text = text.strip()
        logprob = completion.cumulative_logprob
        if logprob is None:
            logprob = _sum_token_logprobs(completion)
        # stop_reason is the matched stop string for our delimiter, None for the tokenizer's EOS, and a
        # token id for extra EOS ids that vLLM takes from the model's generation_config. Some vLLM versions test
        # the length cap first and report an EOS sampled as the last allowed token as "length": the id decides too.
        token_ids = list(completion.token_ids)
        hit_eos = (completion.finish_reason == "stop" and not isinstance(completion.stop_reason, str)) or (
            bool(token_ids) and token_ids[-1] in self.eos_ids)
        return StepSample(
            text=text,
            num_tokens=len(token_ids),
            logprob=float(logprob) if math.isfinite(logprob) else -1e4,
            finished=hit_eos or is_final_step(text),
        )


def _resolve_step_format(
    directory: Path, tokenizer: Any, requested: str | dict[str, Any] | StepFormat | None
) -> StepFormat:
    """The step format the way `load_policy` picks it (an explicit `StepFormat` is used as given)."""
    if isinstance(requested, StepFormat):
        return requested
    if isinstance(requested, dict):
        return get_format(requested)
    from reasoner.models import _step_format_for

    return _step_format_for(directory, tokenizer, requested)


def gpu_memory_share(requested: float | None) -> float:
    """``requested``, else ``$REASONER_VLLM_GPU_MEMORY_UTILIZATION``, else vLLM's default 0.9; a ValueError naming
    the variable when it is not a number in (0, 1]."""
    if requested is not None:
        return requested
    text = os.environ.get(MEMORY_VARIABLE, "0.9")
    try:
        share = float(text)
    except ValueError:
        share = math.nan
    if not 0 < share <= 1:
        raise ValueError(f"${MEMORY_VARIABLE}={text!r}: give the share of GPU memory vLLM may reserve, in (0, 1]")
    return share


def _eos_ids(tokenizer: Any, model_dir: str | None) -> set[int]:
    """`reasoner.models.eos_token_ids` with the ``generation_config`` of ``model_dir`` (as the HF backend stops)."""
    from reasoner.models import eos_token_ids

    config = None
    if model_dir is not None:
        try:
            from transformers import GenerationConfig

            config = GenerationConfig.from_pretrained(model_dir)
        except (OSError, ValueError):  # no generation_config.json (a GGUF file, a bare checkpoint)
            config = None
    return eos_token_ids(tokenizer, config)


def _sum_token_logprobs(completion: Any) -> float:
    """Sum of the sampled tokens' logprobs (per-position ``{token_id: Logprob}`` maps); a RuntimeError when vLLM
    returned neither these nor ``cumulative_logprob`` (every prior would silently be 1)."""
    if completion.logprobs is None:
        raise RuntimeError("vLLM returned no logprobs for a step (logprobs=0 was requested): this vLLM is too old; "
                           "pip install 'vllm>=0.11'")
    positions = completion.logprobs
    total = 0.0
    for token_id, position in zip(completion.token_ids, positions):
        entry = position.get(token_id) if hasattr(position, "get") else None
        if entry is not None:
            total += float(getattr(entry, "logprob", entry))
    return total
