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
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from reasoner.steps import StepFormat, get_format, is_final_step
from search.protocols import State, StepSample

__all__ = ["VLLMStepGenerator", "VLLMGenerationStats"]

_INSTALL_HINT = "the vllm backend needs vLLM: pip install 'reasoner[vllm]' on a CUDA machine"


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
        seed: engine seed (sampling is reproducible for a fixed seed and call order).
        top_p: nucleus sampling threshold (1.0 = off).
        dtype, gpu_memory_utilization, tensor_parallel_size: passed to ``vllm.LLM``.
        tokenizer: tokenizer name or path when it differs from ``model``; for a GGUF file vLLM otherwise
            converts the tokenizer stored in the file, which its docs call slow and less reliable than the
            base model's tokenizer.
        gguf_file: a GGUF file name inside ``model``.
        llm: an already built ``vllm.LLM`` to use instead of building one (``model`` then only locates
            ``step_format.json``).
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
        gpu_memory_utilization: float = 0.9,
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

        embedded = embedded_model_dir(model)
        directory = embedded or Path(model)
        where = str(embedded) if embedded else str(model)
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
                gpu_memory_utilization=gpu_memory_utilization,
                tensor_parallel_size=tensor_parallel_size,
                **llm_kwargs,
            )
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.step_format = _resolve_step_format(Path(where), self.tokenizer, step_format)
        self.top_p = top_p
        self.seed = seed
        self.name = where if model is not None else "embedded"
        self.stats = VLLMGenerationStats()
        self._sampling_params_cls = SamplingParams

    # ----------------------------------------------------------------- protocol
    def expand(
        self, states: Sequence[State], n: int, *, temperature: float = 1.0, max_step_tokens: int = 64
    ) -> list[list[StepSample]]:
        """``n`` sampled next steps for each state (greedy when ``temperature == 0``), in one engine call."""
        self.stats.calls += 1
        if not states:
            return []
        greedy = temperature <= 0
        params = self._sampling_params(1 if greedy else n, temperature, max_step_tokens)
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

    def encode(self, text: str) -> list[int]:
        """Token ids of a rendered prefix, with the tokenizer's BOS as the model was trained.

        Same ids as the HF backend's ``encode``, except that no second BOS is added when the text already
        starts with the BOS token (chat templates such as Llama 3's write it themselves).
        """
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and text.startswith(bos))
        return list(self.tokenizer.encode(text, add_special_tokens=add_special))

    # ------------------------------------------------------------------ helpers
    def _sampling_params(self, n: int, temperature: float, max_step_tokens: int) -> Any:
        """vLLM sampling parameters: stop at the delimiter (not returned), 1 logprob so that
        ``cumulative_logprob`` is filled, no penalties (the defaults), greedy at temperature 0."""
        return self._sampling_params_cls(
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
        # token id for extra EOS ids that vLLM takes from the model's generation_config.
        hit_eos = completion.finish_reason == "stop" and not isinstance(completion.stop_reason, str)
        return StepSample(
            text=text,
            num_tokens=len(completion.token_ids),
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


def _sum_token_logprobs(completion: Any) -> float:
    """Sum of the sampled tokens' logprobs (per-position ``{token_id: Logprob}`` maps), 0.0 if absent."""
    positions = completion.logprobs or []
    total = 0.0
    for token_id, position in zip(completion.token_ids, positions):
        entry = position.get(token_id) if hasattr(position, "get") else None
        if entry is not None:
            total += float(getattr(entry, "logprob", entry))
    return total
