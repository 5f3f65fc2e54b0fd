"""Problems, answers and records: the bottom layer of reasoner. Never imports torch.

Names are resolved lazily so that ``import data.records`` stays cheap (no sympy import).
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Problem": "data.problems",
    "load_problems": "data.problems",
    "extract_answer": "data.answers",
    "is_equivalent": "data.answers",
    "RecordError": "data.records",
    "append_jsonl": "data.records",
    "read_jsonl": "data.records",
    "done_ids": "data.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'data' has no attribute {name!r}")
