"""The ``Workspace``: what every run of one invocation shares, computed once.

The teacher, the target's clips (labelled, or a user's unlabeled clips with class names), the
paired corpus split into replay and the held-out part of the forgetting and transfer checks,
the teacher's embeddings and scores of all of them, and the splits. Its methods embed and score
clips with any student of the teacher (through the feature cache when the model has frozen
encoders), curate one split, train one student (``claptune.train.fit``) and measure it
(``outcome``). It runs nothing by itself: ``claptune.improve.loop`` drives it over splits x
seeds, ``claptune.improve.pipeline`` (improve), ``adapt`` and ``ablation`` compose the results.

Target labels are never read here except into ``labels``, which only the summaries score with.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from claptune.atomic import ram_disk, scratch_dir
from claptune.curation import CurationSettings, Pairs
from claptune.data.captioned import NO_CORPUS
from claptune.distributed import torch_threads
from claptune.errors import ClaptuneError, InputWarning
from claptune.evaluate.label_free import agreement, guard_signals
from claptune.evaluate.prototypes import MIN_HEAD_CLIPS, ClassHead, fit_class_head
from claptune.evaluate.zeroshot import class_scores, predict_from_scores
from claptune.features import FeatureStore
from claptune.improve.config import UNLABELED, ImproveConfig
from claptune.improve.curate import DS_PROMPT
from claptune.improve.runs import (
    RunOutcome,
)
from claptune.improve.splits import Split, corpus_holdout, make_splits
from claptune.models.base import AudioTextModel

if TYPE_CHECKING:
    from claptune.data.dataset import UnlabeledClips

logger = logging.getLogger(__name__)


def log_progress(msg: str, progress: bool) -> None:
    """A progress line through ``logging`` (``--log-level``); ``progress=False`` (--quiet)
    keeps it out of the log."""
    if progress:
        logger.info(msg)


class Workspace:
    """Everything the runs of one invocation share, computed once: the teacher, the data, the
    teacher's embeddings and predictions, the splits."""

    def __init__(
        self,
        config: ImproveConfig,
        out_dir: Path,
        progress: bool = True,
        target: UnlabeledClips | None = None,
    ):
        """``target``: clips with class names and no labels (``claptune adapt``; config.target
        is then ``unlabeled``): one split adapts on every clip and scores none, ``labels`` is
        None. Without it, ``config.target`` is loaded as a labelled data set."""
        from claptune.data import load_captioned_corpus, load_dataset
        from claptune.models import load_model

        if (target is None) == (config.target == UNLABELED):
            raise ClaptuneError(
                "an unlabeled target's clips go to Workspace(target=...) "
                "(claptune adapt); a labelled one is named by config.target"
            )
        self.config, self.out_dir, self.progress = config, out_dir, progress
        self._references: dict[bytes, np.ndarray] = {}  # reference_probs, by clip indices
        # transduction runs over every clip of the target (no label read), as a user labelling
        # their collection would run it: the teacher's and its peers', computed once
        self._teacher_transduced: np.ndarray | None = None
        self._peers: dict[str, np.ndarray] | None = None
        self._head_peers: dict[int, np.ndarray | None] = {}  # teacher + class head, by split
        t0 = time.perf_counter()
        log_progress(f"loading model {config.model!r}", progress)
        self.teacher: AudioTextModel = load_model(config.model).eval()
        # the run's training settings with their model-dependent choices made for this teacher
        # (heads on cached features for HEAD_EPOCHS where its encoders can stay frozen)
        self.train_config = config.train.for_model(self.teacher)
        self.head_only = (
            self.teacher.supports_feature_cache and self.train_config.trainable == "projections"
        )
        self.features = None
        if self.head_only:
            self.features = FeatureStore(
                self.teacher, cache_dir=config.cache_dir, progress=progress
            )

        dataset = (
            target
            if target is not None
            else load_dataset(config.target, root=config.root, download=config.download)
        )
        self.failed: list[tuple[str, str]] = []
        log_progress(
            f"target {dataset.name}: {len(dataset.items)} clips, "
            f"{len(dataset.class_names)} classes",
            progress,
        )
        kept = self.add_clips([str(p) for p in dataset.items], "target audio")
        if len(kept) < len(dataset.items):
            dataset = dataset.subset(kept)
        self.dataset = dataset
        self.items = [str(p) for p in dataset.items]
        # no labels (adapt): None, so that nothing can score or split by them by accident
        self.labels = None if target is not None else np.asarray(dataset.labels)
        self.class_names = list(dataset.class_names)

        self.replay_audio: list[str] = []
        self.replay_text: list[str] = []
        self.holdout_audio: list[str] = []
        self.holdout_text: list[str] = []
        self.replay_sources: list[str] = []
        self.holdout_source = ""
        if config.corpus:
            corpus = load_captioned_corpus(config.corpus)
            audio = [str(p) for p in corpus.audio]
            ok = set(self.add_clips(audio, "corpus audio").tolist())
            keep, held, self.holdout_source = corpus_holdout(
                audio,
                config.corpus,
                getattr(self.teacher, "metadata", {}).get("heldout_ids") or [],
                config.corpus_holdout,
                config.seed,
            )
            self.replay_audio = [audio[i] for i in keep if i in ok]
            self.replay_text = [corpus.captions[i] for i in keep if i in ok]
            self.replay_sources = [corpus.sources[i] for i in keep if i in ok]
            self.holdout_audio = [audio[i] for i in held if i in ok]
            self.holdout_text = [corpus.captions[i] for i in held if i in ok]
            log_progress(
                f"corpus {config.corpus}: {len(self.replay_audio)} pairs for replay and "
                f"curation, {len(self.holdout_audio)} held out for the forgetting check "
                f"({self.holdout_source})",
                progress,
            )
        else:
            warnings.warn(NO_CORPUS, InputWarning, stacklevel=2)

        # the teacher's view of everything, once
        self.target_emb = self.embed_audio(self.teacher, self.items)
        self.replay_audio_emb = self.embed_audio(self.teacher, self.replay_audio)
        self.replay_text_emb = self.embed_text(self.teacher, self.replay_text)
        self.scores_before = self.scores(self.teacher, self.target_emb)
        self.pred_before = predict_from_scores(self.scores_before)
        self.retrieval_before = self.retrieval(self.teacher) if self.holdout_audio else {}
        # transfer check: held-out corpus clips whose caption names one target class
        from claptune.improve.transfer import match_captions

        self.transfer_idx, self.transfer_labels = match_captions(
            self.holdout_text, self.class_names
        )
        self.transfer_audio = [self.holdout_audio[i] for i in self.transfer_idx]
        self.transfer_scores_before = self.transfer_scores(self.teacher)
        self.transfer_before = (
            None
            if self.transfer_scores_before is None
            else predict_from_scores(self.transfer_scores_before)
        )
        # nothing to score on without labels: no measured split (the model worth saving,
        # claptune.improve.loop.train_final, adapts on every clip but the guard's slice)
        self.splits: list[Split] = []
        if self.labels is not None:
            self.splits = make_splits(
                self.labels,
                config.n_splits,
                config.test_fraction,
                config.seed,
                config.split,
                dataset.groups,
            )
        self.seeds = [config.seed + j for j in range(config.n_seeds)]
        self.setup_seconds = time.perf_counter() - t0
        log_progress(f"teacher ready in {self.setup_seconds:.0f} s", progress)

    def train_record(self) -> dict[str, Any]:
        """The training settings as reports record them: whether only heads trained, and every
        setting that differs from ``TrainConfig``'s defaults."""
        from claptune.train.config import TrainConfig
        from claptune.typed import changed_fields

        return {"head_only": self.head_only, **changed_fields(self.train_config, TrainConfig())}

    def add_clips(self, items: list[str], desc: str) -> np.ndarray:
        """Make clips embeddable by ``embed_audio`` (decoded once, through the feature cache
        when there is one); the indices of those that decoded, the others join ``failed``
        (``config.on_error`` says whether a failure stops the run)."""
        if self.features is not None:
            kept, failed = self.features.add_clips(items, self.config.on_error, desc)
        else:
            from claptune.embed import encode_audio

            enc = encode_audio(
                self.teacher, items, progress=self.progress, on_error=self.config.on_error
            )
            kept, failed = enc.kept, enc.failed
            self._teacher_audio_cache = getattr(self, "_teacher_audio_cache", {})
            self._teacher_audio_cache.update(
                zip([items[i] for i in kept], enc.embeddings, strict=True)
            )
        self.failed.extend(failed)
        return kept

    def embed_audio(self, model: AudioTextModel, items: list[str]) -> np.ndarray:
        if not items:
            return np.zeros((0, 0), np.float32)
        if self.features is not None:
            return self.features.embed_audio(model, items)
        if model is self.teacher:
            return np.stack([self._teacher_audio_cache[i] for i in items])
        from claptune.embed import encode_audio

        return encode_audio(model, items, progress=False).embeddings

    def embed_text(self, model: AudioTextModel, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), np.float32)
        return self.text_encoder(model)(texts)

    def text_encoder(self, model: AudioTextModel):
        """``texts -> (N, D)`` embeddings by ``model``, through the feature cache when there is
        one: a function of the stage that owns the embedding, handed to the stages that embed
        prompts and captions (zero-shot classifier, curation) so that they never call back up."""
        if self.features is not None:
            return functools.partial(self.features.embed_text, model)
        from claptune.embed import encode_text

        return functools.partial(encode_text, model, progress=False)

    def classifier(self, model: AudioTextModel) -> np.ndarray:
        """(C, D) zero-shot classifier of ``model`` (``claptune.evaluate.zeroshot``), its
        prompts embedded through this workspace (the feature cache when there is one)."""
        from claptune.evaluate.zeroshot import text_classifier

        return text_classifier(
            model, self.class_names, self.templates, encode_text=self.text_encoder(model)
        )

    @property
    def templates(self) -> list[str]:
        from claptune.evaluate.zeroshot import resolve_templates

        return list(resolve_templates(self.config.templates))

    def predictions(self, model: AudioTextModel, audio_emb: np.ndarray) -> np.ndarray:
        """(N,) zero-shot class of each row of ``audio_emb`` under ``model``'s classifier."""
        from claptune.evaluate.zeroshot import predict

        return predict(audio_emb, self.classifier(model))

    def scores(
        self, model: AudioTextModel, audio_emb: np.ndarray, head: ClassHead | None = None
    ) -> np.ndarray:
        """(N, C) float32 cosines of each row of ``audio_emb`` with ``model``'s class
        embeddings (its argmax is ``predictions``), moved by ``head`` when one is given."""
        classifier = self.classifier(model)
        if head is not None:
            classifier = head.classifier(classifier, self.class_names)
        return class_scores(audio_emb, classifier).astype(np.float32)

    def class_head(
        self, model: AudioTextModel, audio_emb: np.ndarray, clips: np.ndarray
    ) -> ClassHead | None:
        """``model``'s class head (``claptune.evaluate.prototypes``) fitted on ``clips`` (indices
        into the target; no label read) from their rows of ``audio_emb``; None when
        ``config.class_head`` is 0 or there are too few clips."""
        clips = np.asarray(clips, dtype=np.int64)
        if self.config.class_head <= 0 or len(clips) < MIN_HEAD_CLIPS:
            return None
        return fit_class_head(
            audio_emb[clips],
            self.prompt_embeddings(model),
            float(model.logit_scale.detach()),
            self.class_names,
            self.config.class_head,
            self.config.transduction,
        )

    def reference_probs(self, clips: np.ndarray) -> np.ndarray:
        """(len(clips), C) the teacher's refined class probabilities of ``clips`` (indices into
        the target), from their audio alone: its zero-shot probabilities mixed with those of
        each clip's 3 nearest clips among ``clips`` and balanced to equal class shares, the
        refinement of ``pseudo_refined`` at its defaults. One fixed reference for every
        configuration, whatever its own curation settings: the label-free selection signals
        score students against its argmax (``reference_labels``)."""
        from claptune.curation.pseudo import refined_probs

        key = np.asarray(clips, dtype=np.int64).tobytes()
        if key not in self._references:
            self._references[key], _ = refined_probs(
                self.target_emb[np.asarray(clips, dtype=np.int64)],
                self.classifier(self.teacher),
                float(self.teacher.logit_scale.detach()),
                "knn_balance",
            )
        return self._references[key]

    def reference_labels(self, clips: np.ndarray) -> np.ndarray:
        """(len(clips),) the teacher's refined pseudo-label of each of ``clips``: the argmax of
        ``reference_probs``."""
        return predict_from_scores(self.reference_probs(clips))

    def prompt_embeddings(self, model: AudioTextModel) -> np.ndarray:
        """(C, T, D) every template of every class embedded by ``model`` (through the feature
        cache when there is one)."""
        from claptune.evaluate.zeroshot import prompt_embeddings

        return prompt_embeddings(
            model, self.class_names, self.templates, encode_text=self.text_encoder(model)
        )

    def transduced(self, model: AudioTextModel, audio_emb: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities of the clips ``audio_emb`` taken together by the run's
        transduction (``claptune.evaluate.transductive``), with ``model``'s prompts and scale."""
        from claptune.evaluate.transductive import transduce

        return transduce(
            audio_emb,
            self.prompt_embeddings(model),
            float(model.logit_scale.detach()),
            self.config.transduction,
        )

    def teacher_transduced(self) -> np.ndarray:
        """(N, C) ``transduced`` for the teacher over every clip of the target (computed once)."""
        if self._teacher_transduced is None:
            self._teacher_transduced = self.transduced(self.teacher, self.target_emb)
        return self._teacher_transduced

    def peers(self, split: Split) -> dict[str, np.ndarray]:
        """(N,) the teacher's classes by every transduction of
        ``claptune.evaluate.transductive`` over every clip of the target taken together, kept on
        the split's guard clips (-1 elsewhere): the training-free peers of the student, on the
        clips it is scored on; and ``class head``, the teacher with a class head fitted on the
        split's pool (``claptune.evaluate.prototypes``), when the run fits heads."""
        from claptune.evaluate.transductive import TRANSDUCTIONS, transduce

        if self._peers is None:
            prompts = self.prompt_embeddings(self.teacher)
            scale = float(self.teacher.logit_scale.detach())
            self._peers = {  # the run's own transduction is computed once, for the guard too
                name: predict_from_scores(
                    self.teacher_transduced()
                    if name == self.config.transduction
                    else transduce(self.target_emb, prompts, scale, name)
                )
                for name in TRANSDUCTIONS
            }
        preds = dict(self._peers)
        # the teacher with its class head fitted on the split's pool: the training-free peer of
        # the student's own head, scored clip by clip like the student (fitted once per split,
        # whichever seeds ask)
        if split.index not in self._head_peers:
            head = self.class_head(self.teacher, self.target_emb, split.adapt)
            self._head_peers[split.index] = (
                None
                if head is None
                else predict_from_scores(self.scores(self.teacher, self.target_emb, head))
            )
        if self._head_peers[split.index] is not None:
            preds["class head"] = self._head_peers[split.index]
        clips = split.guard_clips
        out = {}
        for name, pred in preds.items():
            out[name] = np.full(len(self.items), -1, dtype=np.int64)
            out[name][clips] = pred[clips]
        return out

    def guard(
        self, split: Split, scores_after: np.ndarray, student_transduced: np.ndarray
    ) -> dict[str, float]:
        """The label-free guard's signals on the split's guard clips (held out of curation; their
        labels are never read) and its decision ``keep_student``
        (``claptune.evaluate.label_free.guard_signals``). ``student_transduced``: (N, C) the
        student's transduction over every clip of the target."""
        clips = split.guard_clips
        if len(clips) < 2:
            return {}
        return guard_signals(
            teacher_plain=self.pred_before[clips],
            teacher_transduced=predict_from_scores(self.teacher_transduced()[clips]),
            student_plain=predict_from_scores(scores_after[clips]),
            student_transduced=predict_from_scores(student_transduced[clips]),
        )

    def transfer_scores(
        self, model: AudioTextModel, head: ClassHead | None = None
    ) -> np.ndarray | None:
        """(T, C) cosines of the transfer-check clips (with ``head`` when given), None when the
        corpus names no class."""
        if not self.transfer_audio:
            return None
        return self.scores(model, self.embed_audio(model, self.transfer_audio), head)

    def retrieval(self, model: AudioTextModel) -> dict[str, float]:
        from claptune.evaluate.retrieval import retrieval_metrics

        metrics = retrieval_metrics(
            self.embed_audio(model, self.holdout_audio),
            self.embed_text(model, self.holdout_text),
            ks=(1, 5),
        )
        return {k: float(v) for k, v in metrics.items() if k in RETRIEVAL_KEYS}

    # -- one run ----------------------------------------------------------------------------------
    def curate(
        self, split: Split, methods: tuple[str, ...], settings: CurationSettings | None = None
    ) -> Pairs:
        """The pairs of ``methods`` for ``split`` with ``settings`` (the run's by default),
        duplicates merged; empty for a replay-only run. Which data plays which role:
        ``claptune.improve.curate``."""
        from claptune.curation import curate
        from claptune.curation.inputs import Corpus, Rows, build_curation_inputs

        if not methods:
            return Pairs.empty()
        settings = settings or self.config.curation
        adapt = Rows([self.items[i] for i in split.adapt], self.target_emb[split.adapt])
        roles = dict(
            model=self.teacher,
            corpus=Corpus(self.replay_audio, self.replay_text, self.replay_text_emb),
            target=adapt,
            class_names=self.class_names,
            template=DS_PROMPT,
            class_emb=self.classifier(self.teacher),  # pseudo scores with the zero-shot classifier
            encode_text=self.text_encoder(self.teacher),
        )
        parts = []
        on_target = [m for m in methods if m != "a2a"]
        if on_target:
            texts = Rows(self.replay_text, self.replay_text_emb)
            inputs = build_curation_inputs(on_target, audio=adapt, texts=texts, **roles)
            parts.append(curate(on_target, inputs, settings))
        if "a2a" in methods:  # a2a compares two pools: the corpus clips against the target's
            replay_clips = Rows(self.replay_audio, self.replay_audio_emb)
            inputs = build_curation_inputs(["a2a"], audio=replay_clips, **roles)
            parts.append(curate(["a2a"], inputs, settings))
        return Pairs.concat(parts).dedup() if len(parts) > 1 else parts[0]

    def train(
        self,
        pairs: Pairs,
        loss: str,
        seed: int,
        work_dir: Path | None = None,
        progress: bool = False,
    ):
        """A fresh student fine-tuned from the teacher; returns (student, fit's TrainResult)."""
        from claptune.train import fit
        from claptune.train.data import TrainPairs

        student = copy.deepcopy(self.teacher)
        train_config = dataclasses.replace(
            self.train_config, loss=loss, seed=seed, progress=progress or self.train_config.progress
        )
        # fit writes checkpoints and its final model: to a scratch folder on a RAM disk if any
        scratch = scratch_dir("claptune-fit-", ram_disk())  # removes killed runs' ones
        replay = TrainPairs(self.replay_audio, self.replay_text) if self.replay_audio else None
        try:
            with torch_threads(1 if self.head_only else None):
                result = fit(
                    student,
                    pairs,
                    train_config,
                    replay=replay,
                    out_dir=work_dir or scratch,
                    features=self.features,
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return result.model, result

    def agreement(self, split: Split, pred: np.ndarray) -> dict[str, float]:
        """How often a student's classes agree with the teacher's refined pseudo-labels
        (``reference_labels``), on the adaptation clips and on the held-out clips' audio (their
        labels are not read): label-free selection signals."""
        out = {}
        for name, clips in (
            ("pseudo_agreement", split.adapt),
            ("pseudo_agreement_held_out", split.test),
        ):
            if len(clips) > 1:
                out[name] = agreement(pred[clips], self.reference_labels(clips))
        return out

    def outcome(self, split: Split, seed: int, pairs: Pairs, student, result) -> RunOutcome:
        student_emb = self.embed_audio(student, self.items)
        plain = self.scores(student, student_emb)
        # the student's class head, fitted on the clips curation saw (the split's pool): what
        # it hands a user for clips it never saw, the test part's among them
        head = self.class_head(student, student_emb, split.adapt)
        scores = plain if head is None else self.scores(student, student_emb, head)
        pred = predict_from_scores(scores)
        transfer = self.transfer_scores(student, head)
        # transduction over every clip of the target taken together, by each model (no label
        # read), kept on the guard clips (the test part's audio, or adapt's held-out slice):
        # scored on a labelled target, the guard's input always
        clips = split.guard_clips
        trans_before = np.full(len(self.items), -1, dtype=np.int64)
        trans_after = np.full(len(self.items), -1, dtype=np.int64)
        guard: dict[str, float | int | bool] = {}
        if len(clips) >= 2:
            student_trans = self.transduced(student, student_emb)
            trans_before[clips] = predict_from_scores(self.teacher_transduced()[clips])
            trans_after[clips] = predict_from_scores(student_trans[clips])
            guard = self.guard(split, plain, student_trans)  # plain models, as it compares
        return RunOutcome(
            trans_before=trans_before,
            trans_after=trans_after,
            guard=guard,
            peers=self.peers(split) if len(split.test) else {},
            split=split.index,
            seed=seed,
            test=split.test,
            pred_before=self.pred_before,
            pred_after=pred,
            pred_after_plain=None if head is None else predict_from_scores(plain),
            scores_after=scores,
            agreement=self.agreement(split, pred),
            n_pairs=pairs.method_counts(),
            pairs_per_class=pairs.class_counts(),
            retrieval_after=self.retrieval(student) if self.holdout_audio else {},
            transfer_after=None if transfer is None else predict_from_scores(transfer),
            transfer_scores_after=transfer,
            train={
                "steps": result.steps,
                "epochs": result.epochs_completed,
                "final": result.history[-1] if result.history else None,
            },
            class_shares=pairs.class_shares(),
        )


RETRIEVAL_KEYS = ("a2t_R@1", "a2t_R@5", "t2a_R@1", "t2a_R@5")


__all__ = ["Workspace", "RETRIEVAL_KEYS", "log_progress"]
