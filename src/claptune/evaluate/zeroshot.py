"""Zero-shot classification with an audio-text model.

Each class name is cleaned into words (``dog_bark`` -> ``dog bark``), put into prompt
templates ("this is a sound of {}"), and the prompts' text embeddings are averaged and
renormalised into one classifier row per class (the prompt ensemble of CLIP). A clip is
assigned the class of highest cosine. Clips are embedded deterministically (every window of
the clip, see ``claptune.embed``), so the same model gives the same accuracy on every run.

    result = evaluate_zeroshot(model, load_dataset("esc50", root=...), templates="ensemble")
    result.accuracy, result.per_class, result.confusion
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from claptune.data.dataset import ClassificationDataset
from claptune.errors import ClaptuneError
from claptune.models.class_head import HEAD_FILE
from claptune.textfiles import clean_class_name  # re-exported: prompts are built here

if TYPE_CHECKING:  # torch loads only when a model is used
    from claptune.models.base import AudioTextModel

DEFAULT_TEMPLATES: tuple[str, ...] = ("this is a sound of {}",)  # the paper's single prompt
# Several phrasings averaged: smooths out the quirks of any one wording (CLIP's ensemble).
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "this is a sound of {}",
    "a sound of {}",
    "the sound of {}",
    "a recording of {}",
    "an audio clip of {}",
    "this is the sound of {}",
    "{} can be heard",
    "a clip with the sound of {}",
)
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "default": DEFAULT_TEMPLATES,
    "ensemble": ENSEMBLE_TEMPLATES,
}


def resolve_templates(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Templates from a set name (``default``, ``ensemble``), one template, or a list of
    names and templates; every template holds exactly one ``{}``."""
    if spec is None:
        return DEFAULT_TEMPLATES
    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        raise ClaptuneError("no prompt templates given")
    out: list[str] = []
    for s in specs:
        if s in TEMPLATE_SETS:
            out += TEMPLATE_SETS[s]
        elif s.count("{}") == 1 and not re.search(r"\{[^}]", s):
            out.append(s)
        else:
            raise ClaptuneError(
                f"prompt template {s!r} must be {' or '.join(TEMPLATE_SETS)} or "
                "text with exactly one {} where the class name goes"
            )
    return tuple(dict.fromkeys(out))


def class_prompts(
    class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> list[list[str]]:
    """``prompts[c][t]``: template ``t`` filled with the cleaned name of class ``c``."""
    templates = resolve_templates(templates)
    return [[t.format(clean_class_name(c)) for t in templates] for c in class_names]


def text_classifier(
    model: AudioTextModel,
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 256,
    progress: bool = False,
    encode_text: Callable[[list[str]], np.ndarray] | None = None,
) -> np.ndarray:
    """(C, D) float32: per class, the renormalised mean of its prompt embeddings.

    ``encode_text`` embeds the prompts instead of ``claptune.embed.encode_text`` (``improve`` passes
    its cache of frozen text features); it must return (N, D) L2-normalised rows.
    """
    prompts = class_prompts(class_names, templates)
    flat = [p for group in prompts for p in group]
    if encode_text is None:
        from claptune.embed import encode_text as embed_text

        text_emb = embed_text(model, flat, batch_size=batch_size, progress=progress)
    else:
        text_emb = encode_text(flat)
    return prompt_classifier(text_emb, len(class_names))


def prompt_embeddings(
    model: AudioTextModel,
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 256,
    encode_text: Callable[[list[str]], np.ndarray] | None = None,
) -> np.ndarray:
    """(C, T, D) float32: template ``t`` of class ``c`` embedded (L2-normalised rows), the
    input of the transductive methods that weigh templates (``claptune.evaluate.transductive``);
    ``prompt_classifier`` of its (C * T, D) reshape is ``text_classifier``."""
    prompts = class_prompts(class_names, templates)
    flat = [p for group in prompts for p in group]
    if encode_text is None:
        from claptune.embed import encode_text as embed_text

        emb = embed_text(model, flat, batch_size=batch_size, progress=False)
    else:
        emb = encode_text(flat)
    emb = np.asarray(emb, np.float32)
    return emb.reshape(len(class_names), len(prompts[0]), emb.shape[-1])


def prompt_classifier(prompt_emb: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, D) float32 classifier from (C * T, D) prompt embeddings in ``class_prompts`` order
    (class-major): each class's T rows averaged in float64, then renormalised."""
    mean = prompt_emb.reshape(n_classes, -1, prompt_emb.shape[-1]).astype(np.float64).mean(axis=1)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


def class_scores(audio_emb: np.ndarray, classifier: np.ndarray) -> np.ndarray:
    """(N, C) cosine of each row of ``audio_emb`` (N, D) with each class embedding."""
    return audio_emb @ classifier.T


def predict_from_scores(scores: np.ndarray) -> np.ndarray:
    """(N,) int64 class of highest score per row; ties go to the lower class index."""
    return np.argmax(scores, axis=1).astype(np.int64)


def predict(audio_emb: np.ndarray, classifier: np.ndarray) -> np.ndarray:
    """(N,) int64 class of highest cosine for each row of ``audio_emb`` (N, D); ties go to
    the lower class index."""
    return predict_from_scores(class_scores(audio_emb, classifier))


@dataclass
class ZeroShotResult:
    """Scores of one zero-shot evaluation (over the clips that decoded)."""

    accuracy: float  # top-1, 0..1
    n_clips: int
    per_class: dict[str, float]  # class -> accuracy, classes with at least one clip
    predictions: np.ndarray  # (n_clips,) int64
    labels: np.ndarray  # (n_clips,) int64
    confusion: np.ndarray  # (C, C) int64 counts, rows true class, columns predicted
    class_names: list[str]
    kept: np.ndarray  # (n_clips,) indices into the data set's items
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason) skipped
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    audio_emb: np.ndarray | None = None  # (n_clips, D) the clips' embeddings, for transduction
    # the classes the model's saved class head moved (all, or [] when none was used)
    class_head: list[str] = field(default_factory=list)


def score(
    predictions: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> tuple[float, dict[str, float], np.ndarray]:
    """Top-1 accuracy, per-class accuracy and the (C, C) confusion counts."""
    from claptune.evaluate.metrics import accuracy, confusion_matrix, per_class_accuracy

    predictions = np.asarray(predictions, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = len(class_names)
    recall = per_class_accuracy(predictions, labels, n_classes)
    per_class = {c: float(recall[i]) for i, c in enumerate(class_names) if not np.isnan(recall[i])}
    return (
        accuracy(predictions, labels),
        per_class,
        confusion_matrix(predictions, labels, n_classes),
    )


def with_class_head(
    model: AudioTextModel, classifier: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """(``classifier`` moved by the class head ``model`` carries, the classes moved): the head is
    applied only when it holds every one of ``class_names`` (``ClassHead.covers``); otherwise,
    or without a head, ``classifier`` comes back unchanged with no class."""
    head = getattr(model, "class_head", None)
    if head is None or not head.covers(class_names):
        return classifier, []
    try:
        return head.classifier(classifier, class_names), list(class_names)
    except ValueError as err:
        raise ClaptuneError(
            f"the model's class head does not fit it: {err}; remove its {HEAD_FILE} "
            "or score with the prompts alone (--no-class-head)"
        ) from None


def evaluate_zeroshot(
    model: AudioTextModel,
    dataset: ClassificationDataset,
    templates: str | Sequence[str] = DEFAULT_TEMPLATES,
    audio_emb: np.ndarray | None = None,
    on_error: str = "raise",
    batch_size: int = 32,
    num_workers: int = 2,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    class_head: bool = True,
) -> ZeroShotResult:
    """Zero-shot accuracy of ``model`` on ``dataset``.

    A model saved by ``improve`` or ``adapt`` carries a class head (``model.class_head``,
    ``claptune.evaluate.prototypes``): with ``class_head`` it moves the classifier when it holds
    every class of ``dataset`` (``with_class_head``).

    ``audio_emb`` (N, D), one row per item, skips embedding the clips. ``cache_dir`` embeds
    through the resumable store of ``claptune.embed`` instead of in memory, so a rerun (other
    templates, an interrupted run) reuses the vectors of this model. ``on_error="skip"``
    leaves out clips that do not decode and lists them in ``failed``.
    """
    templates = resolve_templates(templates)
    if len(dataset) == 0:
        raise ClaptuneError(f"data set {dataset.name} holds no clips")
    if audio_emb is None and cache_dir is not None:
        audio_emb, kept, failed = _embed_cached(
            model, dataset, cache_dir, batch_size, num_workers, progress, on_error
        )
    elif audio_emb is None:
        from claptune.embed import encode_audio

        enc = encode_audio(
            model,
            [str(p) for p in dataset.items],
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            on_error=on_error,
        )
        audio_emb, kept, failed = enc.embeddings, enc.kept, enc.failed
    else:
        if len(audio_emb) != len(dataset):
            raise ValueError(f"audio_emb has {len(audio_emb)} rows for {len(dataset)} clips")
        kept, failed = np.arange(len(dataset)), []
    if len(kept) == 0:
        raise ClaptuneError(
            f"none of the {len(dataset)} clips of {dataset.name} could be read "
            f"(first failure: {failed[0][0]}: {failed[0][1]})"
        )
    classifier = text_classifier(model, dataset.class_names, templates)
    held: list[str] = []
    if class_head:
        classifier, held = with_class_head(model, classifier, dataset.class_names)
    predictions = predict(audio_emb, classifier)
    labels = dataset.labels[kept]
    accuracy, per_class, confusion = score(predictions, labels, dataset.class_names)
    return ZeroShotResult(
        accuracy=accuracy,
        n_clips=len(kept),
        per_class=per_class,
        predictions=predictions,
        labels=labels,
        confusion=confusion,
        class_names=list(dataset.class_names),
        kept=np.asarray(kept),
        failed=list(failed),
        templates=templates,
        audio_emb=audio_emb,
        class_head=held,
    )


def _embed_cached(
    model: AudioTextModel,
    dataset: ClassificationDataset,
    cache_dir: str | Path,
    batch_size: int,
    num_workers: int,
    progress: bool,
    on_error: str,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    return embed_items_cached(
        model,
        [str(p) for p in dataset.items],
        cache_dir,
        batch_size,
        num_workers,
        progress,
        on_error,
    )


def embed_items_cached(
    model: AudioTextModel,
    items: Sequence[str],
    cache_dir: str | Path,
    batch_size: int = 32,
    num_workers: int = 2,
    progress: bool = True,
    on_error: str = "raise",
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """((K, D) embeddings, (K,) indices of ``items`` that decoded, failures) through the
    resumable store of ``claptune.embed`` under ``cache_dir``."""
    from claptune.embed import StoreRequest, load_store, write_store
    from claptune.errors import AudioDecodeError

    items = [str(p) for p in items]
    request = StoreRequest(
        items=items,
        kind="audio",
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        on_error=on_error,
    )
    store = load_store(write_store(model, cache_dir, request), model=model, items=items)
    failed = [(str(item), str(reason)) for item, reason in store.manifest["failed"]]
    if failed and on_error == "raise":  # failures recorded by an earlier run with "skip"
        raise AudioDecodeError(*failed[0])
    row_of = {item: row for row, item in enumerate(store.ids)}
    kept = np.array([i for i, item in enumerate(items) if item in row_of], dtype=np.int64)
    rows = [row_of[items[i]] for i in kept.tolist()]
    return store.embeddings[rows], kept, failed
