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
Every similarity is the teacher's; nothing here reads a target label or a test-part clip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from claptune.curation import DEFAULT_TEMPLATE, CurationInputs, CurationSettings, Pairs, curate

if TYPE_CHECKING:
    from claptune.improve.pipeline import Workspace
    from claptune.improve.splits import Split

DS_PROMPT = DEFAULT_TEMPLATE  # the paper's DS, pseudo-label and evaluation prompt

# Default thresholds as quantiles of the teacher's own similarity distributions (an unlabeled
# signal): the paper's raw cosines (0.7, 0.75) belong to MS-CLAP and mean something else for
# every other checkpoint. DS keeps the fifth of the corpus captions closest to a class prompt.
DEFAULT_CURATION: dict[str, Any] = {
    "ds_threshold": "q0.8",
    "ads_threshold": "q0.99",
    "a2a_threshold": "q0.8",
    "du_threshold": "q0.99",
    "pseudo_threshold": "q0.5",
    "pseudo_refined_threshold": "q0.5",
}


def curation_settings(overrides: dict[str, Any]) -> CurationSettings:
    return CurationSettings.from_dict({**DEFAULT_CURATION, **overrides})


def curate_split(ws: Workspace, split: Split, methods: tuple[str, ...],
                 settings: CurationSettings) -> Pairs:
    """The pairs of ``methods`` for one split (empty for a replay-only run), duplicates merged."""
    if not methods:
        return Pairs.empty()
    adapt_ids = [ws.items[i] for i in split.adapt]
    adapt_emb = ws.target_emb[split.adapt]
    prompts = [DS_PROMPT.format(n) for n in ws.prompt_names]
    common = dict(
        corpus_audio=ws.replay_audio, corpus_captions=ws.replay_text,
        corpus_caption_emb=ws.replay_text_emb, class_names=ws.class_names, prompts=prompts,
        prompt_emb=ws.ds_prompt_emb(), logit_scale=float(ws.teacher.logit_scale.detach()),
        class_emb=ws.classifier(ws.teacher),  # pseudo scores with the zero-shot classifier
        target_ids=adapt_ids, target_emb=adapt_emb,
    )
    parts = []
    on_target = [m for m in methods if m != "a2a"]
    if on_target:
        parts.append(curate(on_target, CurationInputs(
            audio_ids=adapt_ids, audio_emb=adapt_emb, texts=ws.replay_text,
            text_emb=ws.replay_text_emb, **common), settings))
    if "a2a" in methods:
        parts.append(curate(["a2a"], CurationInputs(
            audio_ids=ws.replay_audio, audio_emb=ws.replay_audio_emb, **common), settings))
    pairs = Pairs.concat(parts).dedup() if len(parts) > 1 else parts[0]
    return pairs


def pair_counts(pairs: Pairs) -> dict[str, int]:
    return {**dict(sorted(pairs.counts("method").items())), "total": len(pairs)} if len(pairs) \
        else {"total": 0}


def pairs_per_class(pairs: Pairs) -> dict[str, int]:
    return {c: n for c, n in pairs.counts("class").items() if c} if len(pairs) else {}


def pair_rows(pairs: Pairs) -> list[dict]:
    return [{"audio": a, "text": t, "score": float(s), "method": m, "class": c}
            for a, t, s, m, c in zip(pairs.audio, pairs.text, pairs.score, pairs.method,
                                     pairs.classes, strict=True)]


def describe(pairs: Pairs) -> str:
    if not len(pairs):
        return "no pairs (replay only)"
    return ", ".join(f"{m} {n}" for m, n in pair_counts(pairs).items() if m != "total") + " pairs"


__all__ = ["DS_PROMPT", "DEFAULT_CURATION", "curation_settings", "curate_split", "pair_counts",
           "pairs_per_class", "pair_rows", "describe"]
