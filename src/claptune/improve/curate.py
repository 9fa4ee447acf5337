"""Curation inside ``improve``: which of the run's data plays which role for
``claptune.curation``.

- *paired corpus* (DS captions, replay, DU's unpaired captions): the training part of the
  captioned corpus; its held-out part (forgetting check) is never curated;
- *unpaired audio* of DU and ADS: the adaptation part of the split (target-domain clips, their
  labels unread);
- *unpaired audio* of a2a: the corpus clips with their captions ignored, kept when close to
  the adaptation clips (a2a compares two pools, so the target clips cannot be both);
- *unlabeled target clips* of pseudo and pseudo_refined: the adaptation part, scored with the
  run's zero-shot classifier (the prompt ensemble when ``templates`` asks for it);
- *class prompts*: "this is a sound of <class>" for the target's class names.

``Workspace.curate`` (``claptune.improve.workspace``) hands these roles to
``claptune.curation.inputs.build_curation_inputs``, the path ``claptune curate`` takes too, with
the one default threshold table and prompt builder. Every similarity is the teacher's; nothing
reads a target label or a test-part clip. Here: the DS prompt and how pairs are shown.
"""

from __future__ import annotations

from claptune.curation import DEFAULT_TEMPLATE, Pairs

DS_PROMPT = DEFAULT_TEMPLATE  # the paper's DS, pseudo-label and evaluation prompt


def pair_rows(pairs: Pairs) -> list[dict]:
    return [
        {"audio": a, "text": t, "score": float(s), "method": m, "class": c}
        for a, t, s, m, c in zip(
            pairs.audio, pairs.text, pairs.score, pairs.method, pairs.classes, strict=True
        )
    ]


def describe(pairs: Pairs) -> str:
    if not len(pairs):
        return "no pairs (replay only)"
    return (
        ", ".join(f"{m} {n}" for m, n in pairs.method_counts().items() if m != "total") + " pairs"
    )


__all__ = ["DS_PROMPT", "pair_rows", "describe"]
