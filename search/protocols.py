"""The two protocols between the search engine and models (DESIGN.md section 4).

`search` knows models only through these: a `StepGenerator` proposes next steps for partial solutions, a
`StepScorer` gives one value per step. The HF and vLLM backends implement the first, value models and
PRMs the second. Both work on many states per call, so that search can batch across problems.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

__all__ = ["derived_seed", "reseed_generator", "scorer_head", "State", "StepSample", "StepGenerator", "StepScorer"]


@dataclass(frozen=True)
class State:
    """A partial solution: the question and the steps written so far (each without its delimiter)."""

    question: str
    steps: tuple[str, ...] = field(default_factory=tuple)

    def child(self, step: str) -> "State":
        return State(self.question, (*self.steps, step))


@dataclass
class StepSample:
    """One sampled next step.

    ``logprob`` is the summed token log-probability of the step under the model (temperature 1), so that
    ``exp(logprob / num_tokens)`` is the geometric-mean token probability used as the PUCT prior.
    ``finished`` is True when the step ends the solution (EOS or a final answer).
    """

    text: str
    num_tokens: int
    logprob: float
    finished: bool

    @property
    def prior(self) -> float:
        """Geometric-mean token probability of the step, in (0, 1]."""
        import math

        return math.exp(self.logprob / max(self.num_tokens, 1))


@runtime_checkable
class StepGenerator(Protocol):
    """Samples ``n`` next steps for each state, in one batched call.

    A generator may also have ``reseed(seed: int)``, which restarts its sampling stream: runs that work in
    batches call it (through `reseed_generator`) before each batch, so that a batch's samples depend on the
    batch alone, not on what the process sampled before it (a resumed run then redraws what an uninterrupted
    run would have drawn). Optional: without it a generator keeps one stream for its lifetime.
    """

    def expand(
        self, states: Sequence[State], n: int, *, temperature: float, max_step_tokens: int
    ) -> list[list[StepSample]]: ...


@runtime_checkable
class StepScorer(Protocol):
    """One value per step of each solution: [-1, 1] for value heads, [0, 1] for PRMs. A scorer says which by
    its ``head`` attribute (`scorer_head`): ``"tanh"`` for [-1, 1]; any other head, or none, for [0, 1]."""

    def score(self, questions: Sequence[str], step_lists: Sequence[Sequence[str]]) -> list[list[float]]: ...


def derived_seed(*parts: object) -> int:
    """A seed derived from ``parts`` (a run's seed, a problem id, a step number, ...): the CRC-32 of their
    ``repr``, stable across processes and Python versions, unlike ``hash``."""
    return zlib.crc32(repr(parts).encode("utf-8"))


def reseed_generator(generator: object, seed: int, *keys: object) -> None:
    """Call ``generator.reseed`` (when it has one) with `derived_seed` of ``seed`` and ``keys`` (such as the
    first problem id of a batch)."""
    reseed = getattr(generator, "reseed", None)
    if reseed is not None:
        reseed(derived_seed(seed, *keys))


def scorer_head(scorer: object) -> str:
    """The ``head`` of a `StepScorer` (``"tanh"``: values on [-1, 1]); ``"sigmoid"`` (a PRM's [0, 1]) when it
    has none. Every reader of scores goes through this, so that search, decoding and labels agree."""
    return getattr(scorer, "head", "sigmoid")
