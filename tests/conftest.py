"""Shared test setup: the local copy of GSM8K / MATH-500 (never the network)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REASONER_DATA_DIR", REPO.parent / "shared" / "data"))
if SHARED_DATA.exists():
    os.environ["REASONER_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason="shared GSM8K/MATH-500 files not found")
