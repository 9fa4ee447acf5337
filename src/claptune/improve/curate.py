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

The roles go through ``claptune.curation.inputs.build_curation_inputs``, the path
``claptune curate`` takes too, with the one default threshold table and prompt builder.
Every similarity is the teacher's; nothing here reads a target label or a test-part clip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from claptune.curation import DEFAULT_TEMPLATE, CurationSettings, Pairs, curate
from claptune.curation.inputs import Corpus, Rows, build_curation_inputs

if TYPE_CHECKING:
    from claptune.improve.workspace import Workspace
    from claptune.improve.splits import Split

DS_PROMPT = DEFAULT_TEMPLATE  # the paper's DS, pseudo-label and evaluation prompt


def curation_settings(overrides: dict[str, Any]) -> CurationSettings:
    """The one default table (``claptune.curation.methods``, quantiles of the teacher's own
    similarities), then ``overrides``."""
    return CurationSettings.from_dict(dict(overrides))


def curate_split(
    ws: Workspace, split: Split, methods: tuple[str, ...], settings: CurationSettings
) -> Pairs:
    """The pairs of ``methods`` for one split (empty for a replay-only run), duplicates merged."""
    if not methods:
        return Pairs.empty()
    adapt = Rows([ws.items[i] for i in split.adapt], ws.target_emb[split.adapt])
    roles = dict(
        model=ws.teacher,
        corpus=Corpus(ws.replay_audio, ws.replay_text, ws.replay_text_emb),
        target=adapt,
        class_names=ws.class_names,
        template=DS_PROMPT,
        class_emb=ws.classifier(ws.teacher),  # pseudo scores with the zero-shot classifier
        encode_text=lambda texts: ws.embed_text(ws.teacher, texts),
    )
    parts = []
    on_target = [m for m in methods if m != "a2a"]
    if on_target:
        parts.append(
            curate(
                on_target,
                build_curation_inputs(
                    on_target, audio=adapt, texts=Rows(ws.replay_text, ws.replay_text_emb), **roles
                ),
                settings,
            )
        )
    if "a2a" in methods:
        replay_clips = Rows(ws.replay_audio, ws.replay_audio_emb)
        parts.append(
            curate(["a2a"], build_curation_inputs(["a2a"], audio=replay_clips, **roles), settings)
        )
    return Pairs.concat(parts).dedup() if len(parts) > 1 else parts[0]


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


__all__ = ["DS_PROMPT", "curation_settings", "curate_split", "pair_rows", "describe"]
