"""The curation methods, what each reads, and the one table of default thresholds.

Plain Python (no numpy, no torch), so that the CLI and ``improve``'s config can name the
methods without importing the library.

Thresholds are a raw cosine (0.7) or a quantile of the observed scores ("q0.99"). The default
table, ``quantile``, keeps a share of the teacher's own similarity distribution (an unlabeled
signal): a raw cosine such as the paper's 0.7 belongs to one checkpoint (MS-CLAP) and means
something else for every other one. ``paper`` holds the paper's raw cosines, for MS-CLAP.
"""

from __future__ import annotations

METHODS: tuple[str, ...] = ("du", "ds", "ads", "a2a", "pseudo", "pseudo_refined")
# what each method reads; DS captions come from the paired corpus and the class prompts
NEEDS: dict[str, tuple[str, ...]] = {
    "du": ("audio", "text"),
    "ds": ("corpus", "prompts"),
    "ads": ("audio", "corpus", "prompts"),
    "a2a": ("audio", "target", "corpus", "prompts"),
    "pseudo": ("target", "prompts"),
    "pseudo_refined": ("target", "prompts"),
}

# method -> default threshold, per preset. du's applies only without du_top_k.
THRESHOLD_PRESETS: dict[str, dict[str, float | str]] = {
    # DS keeps the fifth of the corpus captions closest to a class prompt; ADS and DU the
    # top 1 % of audio-caption cosines; a2a the fifth of corpus clips closest to the target;
    # pseudo-labels the surer half of the target clips
    "quantile": {
        "du": "q0.99",
        "ds": "q0.8",
        "ads": "q0.99",
        "a2a": "q0.8",
        "pseudo": "q0.5",
        "pseudo_refined": "q0.5",
    },
    # the paper's raw cosines (MS-CLAP on ESC-50); pseudo-labelling is not in the paper
    "paper": {
        "du": 0.75,
        "ds": 0.7,
        "ads": 0.7,
        "a2a": 0.7,
        "pseudo": "q0.5",
        "pseudo_refined": "q0.5",
    },
}
DEFAULT_PRESET = "quantile"
DEFAULT_THRESHOLDS = THRESHOLD_PRESETS[DEFAULT_PRESET]
PAPER_THRESHOLDS = THRESHOLD_PRESETS["paper"]

__all__ = [
    "DEFAULT_PRESET",
    "DEFAULT_THRESHOLDS",
    "METHODS",
    "NEEDS",
    "PAPER_THRESHOLDS",
    "THRESHOLD_PRESETS",
]
