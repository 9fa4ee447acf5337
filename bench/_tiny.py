"""The tests' tiny random ClapModel + processor (tests/conftest.py), for benchmarks to save."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tiny_model_dir(out: Path) -> Path:
    """Save the tiny random ClapModel (seed 0) and its offline processor to ``out``."""
    import torch
    from transformers import ClapModel

    spec = importlib.util.spec_from_file_location(
        "claptune_conftest", ROOT / "tests" / "conftest.py"
    )
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    torch.manual_seed(0)
    ClapModel(conftest.tiny_clap_config()).eval().save_pretrained(out)
    conftest._save_tiny_processor(out)
    return out
