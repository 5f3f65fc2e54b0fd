"""Load and save a policy (causal LM + tokenizer + its step format).

``load_policy()`` with no argument gives the embedded tiny policy in ``reasoner/assets/tiny-policy``;
``load_policy("embedded-verifier")`` gives its better-trained sibling in ``reasoner/assets/tiny-verifier``, the
backbone of the demo's step value model (a stronger model than the policy, as in search-and-learn); a
local directory or a hub name gives that model (``gguf_file=`` for GGUF checkpoints). Weights are saved as
safetensors only. Device and dtype come from arguments: fp32 on CPU (bf16 on a CPU is ~160x slower),
bf16 on a GPU unless told otherwise.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from data.records import read_json_file
from reasoner.steps import StepFormat, get_format

__all__ = ["Policy", "load_policy", "save_policy", "encode_prefix", "encode_continuation", "eos_token_ids", "pad_right", "token_logps", "EMBEDDED_POLICY",
           "EMBEDDED_VERIFIER", "embedded_model_dir",
           "resolve_device", "resolve_dtype", "standalone_state_dict"]

log = logging.getLogger(__name__)

EMBEDDED_POLICY = Path(__file__).resolve().parent / "assets" / "tiny-policy"
EMBEDDED_VERIFIER = Path(__file__).resolve().parent / "assets" / "tiny-verifier"
EMBEDDED_MODELS = {"embedded": (EMBEDDED_POLICY, "build-tiny-policy"),
                   "embedded-verifier": (EMBEDDED_VERIFIER, "build-tiny-verifier")}
STEP_FORMAT_FILE = "step_format.json"


@dataclass
class Policy:
    """A causal LM, its tokenizer and the step format it writes."""

    model: Any
    tokenizer: Any
    step_format: StepFormat
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``dtype`` by name if given; else fp32 on CPU and bf16 on GPU."""
    if dtype and dtype != "auto":
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def embedded_model_dir(name_or_path: str | Path | None) -> Path | None:
    """The asset directory of an embedded model name (None = "embedded", or "embedded-verifier"); None for any
    other name or path. The built-in names win over a local directory of the same name."""
    embedded = EMBEDDED_MODELS.get(str(name_or_path or "embedded"))
    if embedded is None:
        return None
    directory, build_command = embedded
    if not (directory / "config.json").exists():
        raise FileNotFoundError(f"the embedded model is missing at {directory}; build it with `reasoner {build_command}`")
    return directory


def load_policy(
    name_or_path: str | Path | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    step_format: str | None = None,
    gguf_file: str | None = None,
) -> Policy:
    """Load a policy: the embedded default (None or "embedded"), "embedded-verifier", a local directory, or a hub name.

    The step format is, in order: the ``step_format`` argument, ``step_format.json`` in the model directory,
    the chat format when the tokenizer has a chat template, else ``newline2``.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    embedded = embedded_model_dir(name_or_path)
    where = str(embedded) if embedded else str(name_or_path)
    target_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target_device)
    extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    _check_local_path(where, gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **extra)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **extra)
    except OSError as exc:  # transformers' "not a local folder and not a valid model on the hub" and kin
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FileNotFoundError(f"{where}: cannot load a policy from it: {first_line}") from exc
    except SafetensorError as exc:
        raise ValueError(f"{where}: unreadable weights ({exc}); was the save cut short?") from None
    if gguf_file:
        _drop_dequantized_gguf_quantizer(model)
    model.to(target_device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    fmt = _step_format_for(Path(where), tokenizer, step_format)
    name = str(name_or_path or "embedded") if embedded else where
    return Policy(model=model, tokenizer=tokenizer, step_format=fmt, name=name)


def _check_local_path(where: str, gguf_file: str | None) -> None:
    """A name written as a local path (absolute, ``./``, ``../``, ``~``) must exist, and an existing folder must
    hold a model: else transformers tries the name as a hub id, or fails on the tokenizer, with a message that
    never says what is missing."""
    path = Path(where).expanduser()
    written_as_path = path.is_absolute() or where.startswith(("./", "../", "~", ".\\", "..\\"))
    if written_as_path and not path.exists():
        raise FileNotFoundError(f"{where}: no such model directory (give a local model directory, 'embedded', "
                                f"'embedded-verifier' or a hub name such as HuggingFaceTB/SmolLM2-135M-Instruct)")
    if path.is_dir() and not gguf_file and not (path / "config.json").exists():
        raise FileNotFoundError(f"{where}: not a model directory (no config.json); a policy directory is what "
                                "`reasoner train ...` or `save_pretrained` writes")
    if path.is_file() and not gguf_file:
        raise FileNotFoundError(f"{where}: a file, not a model directory (a GGUF file loads through "
                                "load_policy(its folder, gguf_file=its name); see docs/bring-your-own-model.md)")


def encode_prefix(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prefix: BOS added by the tokenizer unless a chat template already wrote it."""
    bos = tokenizer.bos_token
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """The ids a step generator stops on as end of text: the tokenizer's EOS and the ``eos_token_id`` (one id or
    a list) of the model's ``generation_config`` (chat models end a turn with their own token)."""
    ids = {tokenizer.eos_token_id} if getattr(tokenizer, "eos_token_id", None) is not None else set()
    config_eos = getattr(generation_config, "eos_token_id", None)
    ids.update([config_eos] if isinstance(config_eos, int) else list(config_eos or []))
    return ids


_ANCHOR = "\n"  # what every continuation piece follows in our formats, or text that tokenizes apart from it


def encode_continuation(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as they come when ``text`` follows earlier text (a completion after its prompt, a step
    after the one before), so that rows built piece by piece match the whole text the generator encodes.

    Byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, the embedded policy's) tokenize a piece alone as in context.
    SentencePiece-style ones (Llama 2, Mistral: a dummy-prefix ``▁``) start any text they are given with a space,
    so ``Step 2: ...`` alone becomes ``▁Step`` where the model, mid-text, sees ``Step``: for those the piece is
    tokenized after an anchor (``"\n"``) whose tokens are then dropped.
    """
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not text or not _adds_dummy_prefix(tokenizer):
        return ids
    anchor = tokenizer(_ANCHOR, add_special_tokens=False)["input_ids"]
    anchored = tokenizer(_ANCHOR + text, add_special_tokens=False)["input_ids"]
    return anchored[len(anchor):] if anchored[:len(anchor)] == anchor else ids


def _adds_dummy_prefix(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` tokenizes a piece alone differently from the same piece after a newline (checked once
    per tokenizer object, on a plain word)."""
    known = getattr(tokenizer, "_reasoner_dummy_prefix", None)
    if known is None:
        alone = tokenizer("word", add_special_tokens=False)["input_ids"]
        anchor = tokenizer(_ANCHOR, add_special_tokens=False)["input_ids"]
        after = tokenizer(_ANCHOR + "word", add_special_tokens=False)["input_ids"]
        known = after[:len(anchor)] == anchor and after[len(anchor):] != alone
        try:
            tokenizer._reasoner_dummy_prefix = known
        except AttributeError:  # a tokenizer that takes no attributes: checked again next time
            pass
    return known


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (causal attention needs no position shift)."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        attention[row, : len(sequence)] = 1
    return input_ids.to(device), attention.to(device)


def token_logps(logits: torch.Tensor, input_ids: torch.Tensor, with_entropy: bool = False):
    """log p(token_{j+1} | ≤ j) at every position j, shape [B, L-1] (fp32 whatever the model's dtype); with
    ``with_entropy`` also the entropy H_j = −Σ_v p_v log p_v of each of those distributions, from the same
    log-softmax."""
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = torch.gather(logps, 2, input_ids[:, 1:, None]).squeeze(-1)
    return (picked, -(logps.exp() * logps).sum(-1)) if with_entropy else picked


def _drop_dequantized_gguf_quantizer(model: Any) -> None:
    """Detach transformers' GGUF quantizer when the weights were de-quantized to plain tensors on load
    (otherwise ``save_pretrained`` refuses and the model claims to be quantized)."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    if any(not p.dtype.is_floating_point for p in model.parameters()):
        return  # real quantized blocks are in use: keep them
    quantizer.remove_quantization_config(model)


def _step_format_for(directory: Path, tokenizer: Any, requested: str | None) -> StepFormat:
    if requested:
        return StepFormat.chat(tokenizer) if requested == "chat" else get_format(requested)
    saved = directory / STEP_FORMAT_FILE
    if saved.exists():
        return get_format(read_json_file(saved))
    if getattr(tokenizer, "chat_template", None):
        return StepFormat.chat(tokenizer)
    return get_format("newline2")


def standalone_state_dict(module: torch.nn.Module, state_dict: dict[str, torch.Tensor] | None = None
                          ) -> dict[str, torch.Tensor]:
    """``module``'s weights as standalone, contiguous CPU tensors with each tied parameter stored once: ready
    for ``safetensors.torch.save_file``, and loadable by ``safetensors.torch.load_model``.

    ``state_dict`` replaces the module's own values: ``Trainer.save_model`` passes the full weights gathered
    from every process under DeepSpeed ZeRO-3, where the module itself holds empty partitions. The copies
    matter under ZeRO-1/2, where parameters are views into one flat buffer that safetensors refuses to
    save. Tied names (one ``Parameter`` under several names, e.g. tied input and output embeddings) keep
    the alphabetically first present one, the name ``safetensors.torch.save_model`` would keep.
    """
    state = module.state_dict() if state_dict is None else state_dict
    names_by_parameter: dict[int, list[str]] = {}
    for name, parameter in module.named_parameters(remove_duplicate=False):
        names_by_parameter.setdefault(id(parameter), []).append(name)
    tied_copies = {name for names in names_by_parameter.values() for name in sorted(n for n in names if n in state)[1:]}
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in state.items()
            if name not in tied_copies}


def save_policy(policy: Policy | Any, output_dir: str | Path, tokenizer: Any = None, step_format: StepFormat | None = None,
                weights: bool = True) -> Path:
    """Save model (safetensors), tokenizer and step format to ``output_dir`` (``weights=False``: all but the
    model, for when a distributed trainer has written the weights itself)."""
    if isinstance(policy, Policy):
        model, tokenizer, step_format = policy.model, policy.tokenizer, policy.step_format
    else:
        model = policy
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if weights:
        model.save_pretrained(output, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(output)
    if step_format is not None:
        (output / STEP_FORMAT_FILE).write_text(json.dumps(step_format.to_dict(), indent=2) + "\n")
    return output
