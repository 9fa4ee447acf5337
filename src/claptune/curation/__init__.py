"""Unsupervised curation: turn unpaired audio, unpaired captions and a target task's class
names into pseudo audio-text pairs (../shared/docs/METHOD.md, "Curation").

- ``methods``: the method names, what each reads, and the one table of default thresholds
  (``quantile``; ``paper`` holds the paper's raw cosines);
- ``inputs``: ``build_curation_inputs``, the one place that turns named roles (unpaired
  audio and captions, the paired corpus, target clips, class names, the teacher) into
  ``CurationInputs``; ``claptune curate`` and ``improve`` both go through it;
- ``search``: exact blocked ``threshold_pairs`` / ``topk_pairs`` (the N x M matrix is never
  held), sharded over torchrun ranks;
- one module per method, each a pure function over embeddings and their ids:
  ``domain_unspecific`` (du), ``domain_specific`` (ds), ``augmented_domain_specific`` (ads),
  ``audio_to_audio`` (a2a), ``pseudo_label`` (pseudo);
- ``thresholds``: raw cosines or quantiles (``"q0.99"``) of the observed scores;
- ``pipeline``: ``curate(methods, inputs, settings)``, several methods sharing the DS stage;
- ``pairs``: the ``Pairs`` table and its CSV; ``summary``: summary.json and scores.png.

Names are imported on first use (PEP 562), so ``claptune.curation.methods`` is readable
without loading numpy or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "A2A_THRESHOLD": "a2a",
    "audio_to_audio": "a2a",
    "ADS_THRESHOLD": "ads",
    "augmented_domain_specific": "ads",
    "DEFAULT_TEMPLATE": "common",
    "CurationWarning": "common",
    "SearchOptions": "settings",
    "DS_THRESHOLD": "ds",
    "CaptionSet": "ds",
    "domain_specific": "ds",
    "ds_captions": "ds",
    "DU_THRESHOLD": "du",
    "DU_TOP_K": "du",
    "domain_unspecific": "du",
    "Corpus": "inputs",
    "Rows": "inputs",
    "build_curation_inputs": "inputs",
    "class_names_from": "inputs",
    "curation_prompts": "inputs",
    "METHODS": "methods",
    "NEEDS": "methods",
    "THRESHOLD_PRESETS": "methods",
    "COLUMNS": "pairs",
    "Pairs": "pairs",
    "read_pairs": "pairs",
    "write_pairs": "pairs",
    "CurationInputs": "pipeline",
    "CurationSettings": "settings",
    "curate": "pipeline",
    "pseudo_label": "pseudo",
    "Triples": "search",
    "threshold_pairs": "search",
    "topk_pairs": "search",
    "summarize": "summary",
    "Threshold": "settings",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'claptune.curation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"claptune.curation.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_HOME))


__all__ = sorted(_HOME)
