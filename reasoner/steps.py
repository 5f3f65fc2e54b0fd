"""Step formats: the one place that decides how a question and its steps become text, and back.

A `StepFormat` holds a prompt template, the delimiter written after every step, and an optional per-step
header (Step-DPO's ``"Step k: "``). Search, labelling, trainers and PRM scoring all render through it, so a
PRM is always scored with the delimiter it was trained on.

Formats:
  * ``tiny`` (the embedded policy): ``Question: {question}\\nAnswer:\\n`` then one step per line (``\\n``);
    the final step is ``The answer is N``.
  * ``newline2`` (chat / math models, search-and-learn convention): steps separated by a blank line
    (``\\n\\n``), final answer in ``\\boxed{}``. With a tokenizer that has a chat template, the prompt is
    the rendered chat (system + user turn + open assistant turn).
  * ``step-dpo``: ``{question}\\nLet's think step by step.\\n`` then ``Step k: ...`` lines (delimiter ``\\n``).

Invariant relied on by KV-prefix reuse: ``render(q, steps[:k])`` is a text prefix of ``render(q, steps)``.

A rendered prefix ends with the next step's header *without* its trailing whitespace (``...\nStep 3:``, as
Step-DPO's ``initial_reason_steps`` do): the space is carried by the step's first token (`` Tom``), which is
how every training row tokenizes ``Step 3: Tom``. A prefix ending in a lone space token is one the model never
saw in training, and it would sample the step's first word without its space. Completions written after such a
prefix (a pair's ``chosen`` / ``rejected``) start with that whitespace (`header_gap`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

__all__ = ["StepFormat", "FORMATS", "get_format", "is_final_step"]

_FINAL_ANSWER = re.compile(r"\\boxed\s*\{|\\fbox\s*\{|####|[Tt]he (?:final )?answer is")


def is_final_step(text: str) -> bool:
    """True when a step states the final answer (``\\boxed{}``, ``####``, ``The answer is``)."""
    return bool(_FINAL_ANSWER.search(text))


@dataclass(frozen=True)
class StepFormat:
    """How a (question, steps) state is written as model text; see the module docstring."""

    name: str
    prompt_template: str
    delimiter: str
    step_header: str = ""  # e.g. "Step {k}: " (k counts from 1); empty for plain steps

    def prompt(self, question: str) -> str:
        """The text before the first step."""
        return self.prompt_template.format(question=question.strip())

    def header(self, index: int) -> str:
        """The text written before step ``index`` (0-based)."""
        return self.step_header.format(k=index + 1) if self.step_header else ""

    @property
    def header_gap(self) -> str:
        """The whitespace a header ends with (``" "`` for ``Step {k}: ``): left off the open header that ends a
        rendered prefix, written at the start of the step after it instead (module docstring)."""
        return self.step_header[len(self.step_header.rstrip(" \t")):]

    def open_header(self, index: int) -> str:
        """The header of step ``index`` as a rendered prefix ends with it: without its trailing spaces."""
        return self.header(index)[:len(self.header(index)) - len(self.header_gap)]

    def gap_after(self, prompt: str) -> str:
        """What a completion of ``prompt`` must start with: `header_gap` when ``prompt`` ends with an open header
        (a rendered prefix of a format with headers: ``...Step 3:``), else nothing (the bare question template, or
        a prefix written with the whole header)."""
        if not self.header_gap:
            return ""
        open_part = re.escape(self.step_header[:len(self.step_header) - len(self.header_gap)])
        return self.header_gap if re.search(open_part.replace(re.escape("{k}"), r"\d+") + r"\Z", prompt) else ""

    def render(self, question: str, steps: Sequence[str]) -> str:
        """Prompt + every step with its header and delimiter + the open header of the next step (`open_header`).

        The result is exactly what the model continues from to produce the next step.
        """
        parts = [self.prompt(question)]
        for index, step in enumerate(steps):
            parts.append(self.header(index) + step.strip() + self.delimiter)
        parts.append(self.open_header(len(steps)))
        return "".join(parts)

    def render_solution(self, steps: Sequence[str]) -> str:
        """The completion text of a whole solution (what SFT trains on), without the prompt."""
        return "".join(self.header(i) + step.strip() + self.delimiter for i, step in enumerate(steps))

    def split(self, completion: str) -> list[str]:
        """Split a completion (text after the prompt) into steps, dropping headers and empty pieces."""
        pieces = completion.split(self.delimiter)
        steps = []
        for piece in pieces:
            piece = piece.strip()
            if self.step_header:
                piece = re.sub(r"^Step\s*\d+\s*:\s*", "", piece)
            if piece:
                steps.append(piece)
        return steps

    def parse(self, text: str) -> tuple[str, list[str]]:
        """Invert `render`: ``(question, steps)`` from a rendered prefix (e.g. a step pair's ``prompt``)."""
        head, tail = (part.replace("{{", "{").replace("}}", "}") for part in self.prompt_template.split("{question}", 1))
        if not text.startswith(head) or tail not in text[len(head):]:
            raise ValueError(f"text does not start with this format's ({self.name}) prompt: {text[:60]!r}")
        question, _, body = text[len(head):].partition(tail)
        return question, self.split(body)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StepFormat":
        return cls(**{key: data[key] for key in ("name", "prompt_template", "delimiter", "step_header") if key in data})

    @classmethod
    def chat(cls, tokenizer: Any, system: str = "Please reason step by step, separating steps with a blank line, "
             "and put your final answer within \\boxed{}.") -> "StepFormat":
        """The ``newline2`` format with the prompt rendered by ``tokenizer``'s chat template."""
        marker = "<<QUESTION>>"
        messages = [{"role": "system", "content": system}, {"role": "user", "content": marker}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        template = text.replace("{", "{{").replace("}", "}}").replace(marker, "{question}")
        return cls("newline2-chat", template, "\n\n")


FORMATS: dict[str, StepFormat] = {
    "tiny": StepFormat("tiny", "Question: {question}\nAnswer:\n", "\n"),
    "newline2": StepFormat(
        "newline2",
        "Solve the problem step by step, one step per paragraph, and put the final answer in \\boxed{{}}.\n\n"
        "Problem: {question}\n\nSolution:\n",
        "\n\n",
    ),
    "step-dpo": StepFormat("step-dpo", "{question}\nLet's think step by step.\n", "\n", "Step {k}: "),
}


def get_format(name_or_dict: str | dict[str, Any] | StepFormat) -> StepFormat:
    """A `StepFormat` from its name (``tiny``, ``newline2``, ``step-dpo``), a dict, or itself."""
    if isinstance(name_or_dict, StepFormat):
        return name_or_dict
    if isinstance(name_or_dict, dict):
        return StepFormat.from_dict(name_or_dict)
    if name_or_dict not in FORMATS:
        raise ValueError(f"unknown step format {name_or_dict!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name_or_dict]
