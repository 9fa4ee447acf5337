"""``improve``: zero-shot before, curation, fine-tuning, zero-shot after, over splits x seeds.

The flow of one invocation (``run_improve``):

1. ``Workspace``: load the teacher, the target task and the paired corpus; hold out part of
   the corpus for the forgetting check (never replayed, never curated); embed everything with
   the teacher once; score the teacher (before); draw the splits (by source recording or at
   random: never by label).
2. For each split: curate pairs with the chosen methods from the teacher's embeddings, the
   corpus and the split's *adaptation* part (its audio, never its labels).
3. For each training seed: fine-tune a fresh student from the teacher on the curated pairs
   with the corpus as replay (``claptune.train.fit``); score it on all clips; retrieval on
   the held-out corpus part; zero-shot on the held-out corpus clips whose caption names a
   target class (``claptune.improve.transfer``: the classes on recordings from other sources).
4. Summarise over runs (test parts only for the headline figures, two-stage intervals, the
   label-free pipelines side by side) and write the report.
5. The model worth saving (``train_final``): one student trained with the configuration on
   every clip but a held-out slice, kept by the label-free guard or replaced by the teacher,
   saved as ``RUN/model``.

Target labels are read only to score predictions (``summary``); no choice inside a run
depends on them. A target with no labels at all (``claptune adapt``, ``claptune.improve.adapt``)
goes through the same ``Workspace``: one split adapts on every clip and scores none.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from claptune.atomic import scratch_dir
from claptune.curation import Pairs, write_pairs
from claptune.data.captioned import NO_CORPUS
from claptune.errors import ClaptuneError, InputWarning
from claptune.evaluate.zeroshot import class_scores, predict_from_scores
from claptune.features import FeatureStore
from claptune.improve.config import UNLABELED, ImproveConfig
from claptune.improve.curate import (
    curate_split,
    curation_settings,
    describe,
    pair_rows,
)
from claptune.improve.runs import (
    RunOutcome,
    guard_keeps,
    summarize_label_free,
    summarize_priors,
    summarize_retrieval,
    summarize_runs,
)
from claptune.improve.splits import Split, holdout_indices, make_splits, whole_pool_split
from claptune.models.base import AudioTextModel
from claptune.report.schema import ModelInfo, ModelRun, Report, TargetInfo

if TYPE_CHECKING:
    from claptune.data.dataset import UnlabeledClips

logger = logging.getLogger(__name__)


def log_progress(msg: str, progress: bool) -> None:
    """A progress line through ``logging`` (``--log-level``); ``progress=False`` (--quiet)
    keeps it out of the log."""
    if progress:
        logger.info(msg)


@dataclass
class ImproveResult:
    report: Report  # what report.json holds
    out_dir: Path
    model_dir: Path | None  # the saved model (train_final), loadable by load_model


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
        self._teacher_transduced: dict[bytes, np.ndarray] = {}  # by clip indices
        self._peers: dict[int, dict[str, np.ndarray]] = {}  # by split index
        t0 = time.perf_counter()
        log_progress(f"loading model {config.model!r}", progress)
        self.teacher: AudioTextModel = load_model(config.model).eval()
        self.train_overrides = self._train_overrides()
        self.head_only = (
            self.teacher.supports_feature_cache
            and self.train_overrides.get("trainable") == "projections"
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
        kept = self._add_clips([str(p) for p in dataset.items], "target audio")
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
            ok = set(self._add_clips(audio, "corpus audio").tolist())
            keep, held = self._corpus_holdout(corpus, audio)
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
        if self.labels is None:  # nothing to score on: every clip adapts
            self.splits: list[Split] = [
                whole_pool_split(len(self.items), config.seed, config.guard_fraction)
            ]
        else:
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

    def _corpus_holdout(self, corpus, audio: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(replay, held-out) corpus indices for the forgetting check.

        A teacher whose metadata names the corpus clips it held out of its own training
        (``heldout_ids``, as ``claptune pretrain`` records) keeps exactly those out, so the check
        runs on pairs it never trained on; otherwise a seeded random ``corpus_holdout`` share.
        """
        held_ids = set(getattr(self.teacher, "metadata", {}).get("heldout_ids") or [])
        if held_ids:
            base = Path(self.config.corpus)
            base = base.parent if base.suffix.lower() == ".csv" else base
            rel = [
                Path(a).relative_to(base).as_posix() if Path(a).is_relative_to(base) else a
                for a in audio
            ]
            held = np.array([i for i, r in enumerate(rel) if r in held_ids], dtype=np.int64)
            if len(held):
                self.holdout_source = "the teacher's own pretraining hold-out"
                return np.setdiff1d(np.arange(len(audio)), held), held
        self.holdout_source = f"random {self.config.corpus_holdout:.0%} (seed {self.config.seed})"
        return holdout_indices(len(audio), self.config.corpus_holdout, seed=self.config.seed)

    # -- embedding and scoring with any student of the teacher --------------------------------
    def _train_overrides(self) -> dict[str, Any]:
        overrides = dict(self.config.train)
        # a model with a frozen-encoder split trains its heads on cached features by default:
        # the fast path that makes 3 x 3 runs affordable on a CPU
        if self.teacher.supports_feature_cache:
            overrides.setdefault("trainable", "projections")
            if overrides["trainable"] == "projections":
                # 10 epochs (about 200 steps on a 2.5k-pair replay set), not the published 20:
                # the compute budget that lets 3 x 3 runs (and the 144 of ablate) finish on a
                # busy 2-core CPU; chosen for time, never by a target label
                overrides.setdefault("epochs", 10)
        overrides.setdefault("progress", False)
        return overrides

    def add_clips(self, items: list[str], desc: str) -> np.ndarray:
        """Make clips embeddable by ``embed_audio`` (decoded once, through the feature cache
        when there is one); the indices of those that decoded, the others join ``failed``
        (``config.on_error`` says whether a failure stops the run)."""
        return self._add_clips(items, desc)

    def _add_clips(self, items: list[str], desc: str) -> np.ndarray:
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
        if self.features is not None:
            return self.features.embed_text(model, texts)
        from claptune.embed import encode_text

        return encode_text(model, texts, progress=False)

    def classifier(self, model: AudioTextModel) -> np.ndarray:
        """(C, D) zero-shot classifier of ``model`` (``claptune.evaluate.zeroshot``), its
        prompts embedded through this workspace (the feature cache when there is one)."""
        from claptune.evaluate.zeroshot import text_classifier

        return text_classifier(
            model,
            self.class_names,
            self.templates,
            encode_text=lambda texts: self.embed_text(model, texts),
        )

    @property
    def templates(self) -> list[str]:
        from claptune.evaluate.zeroshot import resolve_templates

        return list(resolve_templates(self.config.templates))

    def predictions(self, model: AudioTextModel, audio_emb: np.ndarray) -> np.ndarray:
        """(N,) zero-shot class of each row of ``audio_emb`` under ``model``'s classifier."""
        from claptune.evaluate.zeroshot import predict

        return predict(audio_emb, self.classifier(model))

    def scores(self, model: AudioTextModel, audio_emb: np.ndarray) -> np.ndarray:
        """(N, C) float32 cosines of each row of ``audio_emb`` with ``model``'s class
        embeddings (its argmax is ``predictions``)."""
        return class_scores(audio_emb, self.classifier(model)).astype(np.float32)

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
            model,
            self.class_names,
            self.templates,
            encode_text=lambda texts: self.embed_text(model, texts),
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

    def teacher_transduced(self, clips: np.ndarray) -> np.ndarray:
        """``transduced`` for the teacher over the clips at ``clips`` (cached per clip set)."""
        key = np.asarray(clips, dtype=np.int64).tobytes()
        if key not in self._teacher_transduced:
            self._teacher_transduced[key] = self.transduced(
                self.teacher, self.target_emb[np.asarray(clips, dtype=np.int64)]
            )
        return self._teacher_transduced[key]

    def peers(self, split: Split) -> dict[str, np.ndarray]:
        """(N,) the teacher's classes by every transduction of
        ``claptune.evaluate.transductive`` over the split's guard clips taken together (-1
        elsewhere): the training-free peers of the student, on the clips it is scored on."""
        from claptune.evaluate.transductive import TRANSDUCTIONS, transduce

        clips = split.guard_clips
        if split.index not in self._peers:
            prompts = self.prompt_embeddings(self.teacher)
            scale = float(self.teacher.logit_scale.detach())
            out = {}
            for name in TRANSDUCTIONS:
                probs = (  # the run's own transduction is computed once, for the guard too
                    self.teacher_transduced(clips)
                    if name == self.config.transduction
                    else transduce(self.target_emb[clips], prompts, scale, name)
                )
                out[name] = np.full(len(self.items), -1, dtype=np.int64)
                out[name][clips] = predict_from_scores(probs)
            self._peers[split.index] = out
        return self._peers[split.index]

    def guard(
        self, split: Split, scores_after: np.ndarray, student_transduced: np.ndarray
    ) -> dict[str, float]:
        """The label-free guard's signals on the split's guard clips (held out of curation; their
        labels are never read), and its decision ``keep_student`` (1.0 or 0.0).

        How much transduction has to correct a model is read as how far its plain predictions
        stand from the structure of the clips: ``consistency_student`` is the share of guard
        clips whose plain student class equals the student's transductive class,
        ``consistency_teacher`` the same for the teacher. The student is kept when it is the
        more consistent of the two by at least ``GUARD_MARGIN``; otherwise teacher + transduction
        is what a user gets. ``agreement_*``: each model's plain class against the teacher's
        transductive class, recorded beside it (bench/bench_guard.py measures both).
        """
        clips = split.guard_clips
        if len(clips) < 2:
            return {}
        ref = predict_from_scores(self.teacher_transduced(clips))
        student_plain = predict_from_scores(scores_after[clips])
        teacher_plain = self.pred_before[clips]
        student_trans = predict_from_scores(student_transduced)
        out = {
            "n_clips": float(len(clips)),
            "consistency_student": float(np.mean(student_plain == student_trans)),
            "consistency_teacher": float(np.mean(teacher_plain == ref)),
            "agreement_student": float(np.mean(student_plain == ref)),
            "agreement_teacher": float(np.mean(teacher_plain == ref)),
            "transductive_agreement": float(np.mean(student_trans == ref)),
        }
        out["keep_student"] = float(
            out["consistency_student"] >= out["consistency_teacher"] + GUARD_MARGIN
        )
        return out

    def transfer_scores(self, model: AudioTextModel) -> np.ndarray | None:
        """(T, C) cosines of the transfer-check clips, None when the corpus names no class."""
        if not self.transfer_audio:
            return None
        return self.scores(model, self.embed_audio(model, self.transfer_audio))

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
        self, split: Split, methods: tuple[str, ...], overrides: dict[str, Any] | None = None
    ) -> Pairs:
        """The pairs of ``methods`` for ``split``; ``overrides`` of the run's curation settings
        (an ablation row's)."""
        settings = curation_settings({**self.config.curation, **(overrides or {})})
        return curate_split(self, split, methods, settings)

    def train(self, pairs: Pairs, loss: str, seed: int, work_dir: Path | None = None):
        """A fresh student fine-tuned from the teacher; returns (student, fit's TrainResult)."""
        from claptune.train import TrainConfig, fit
        from claptune.train.data import TrainPairs

        student = copy.deepcopy(self.teacher)
        train_config = TrainConfig(**{**self.train_overrides, "loss": loss, "seed": seed})
        # fit writes checkpoints and its final model: to a scratch folder on a RAM disk if any
        scratch = scratch_dir("claptune-fit-", _scratch_root())  # removes killed runs' ones
        replay = TrainPairs(self.replay_audio, self.replay_text) if self.replay_audio else None
        try:
            with _torch_threads(1 if self.head_only else None):
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
                out[name] = float(np.mean(pred[clips] == self.reference_labels(clips)))
        return out

    def outcome(self, split: Split, seed: int, pairs: Pairs, student, result) -> RunOutcome:
        student_emb = self.embed_audio(student, self.items)
        scores = self.scores(student, student_emb)
        pred = predict_from_scores(scores)
        transfer = self.transfer_scores(student)
        # transduction over the guard clips taken together (the test part's audio, or adapt's
        # held-out slice), by each model: scored on a labelled target, the guard's input always
        clips = split.guard_clips
        trans_before = np.full(len(self.items), -1, dtype=np.int64)
        trans_after = np.full(len(self.items), -1, dtype=np.int64)
        guard: dict[str, float] = {}
        if len(clips) >= 2:
            student_trans = self.transduced(student, student_emb[clips])
            trans_before[clips] = predict_from_scores(self.teacher_transduced(clips))
            trans_after[clips] = predict_from_scores(student_trans)
            guard = self.guard(split, scores, student_trans)
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
            class_shares=class_shares(pairs),
        )


RETRIEVAL_KEYS = ("a2t_R@1", "a2t_R@5", "t2a_R@1", "t2a_R@5")
# the guard keeps a student only when it is this much more consistent than the teacher on the
# guard clips (a share of clips): ties and noise keep the model the user started from
GUARD_MARGIN = 0.0


def class_shares(pairs: Pairs) -> dict[str, float] | None:
    """The class shares a balancing curation method aimed at (estimated without labels), from
    the pairs' meta; None when no method balanced."""
    for meta in pairs.meta.values():
        if isinstance(meta, dict) and meta.get("class_shares"):
            return dict(meta["class_shares"])
    return None


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run a block with ``n`` intra-op threads (None: unchanged), then restore the count.

    Heads on cached features are small matrices: on a busy 2-core machine, two threads fight
    over the cores and one head-training step takes ~10x longer than with one thread.
    """
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


def run_improve(config: ImproveConfig, out_dir: str | Path, progress: bool = True) -> ImproveResult:
    """Run the whole method for ``config``; write report.json/md/html and RUN/model."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ws = Workspace(config, out_dir, progress)
    runs: list[RunOutcome] = []
    model_dir = None
    rep_pairs: Pairs | None = None
    n_total = len(ws.splits) * len(ws.seeds)
    for split in ws.splits:
        pairs = ws.curate(split, config.methods)
        log_progress(
            f"split {split.index}: {len(split.adapt)} adaptation / {len(split.test)} test clips; "
            f"curated {describe(pairs)}",
            progress,
        )
        for seed in ws.seeds:
            t_run = time.perf_counter()
            student, result = ws.train(pairs, config.loss, seed)
            run = ws.outcome(split, seed, pairs, student, result)
            # the report keeps predictions; every clip's class scores are for ablate alone
            run.scores_after = run.transfer_scores_after = None
            runs.append(run)
            if split.index == 0 and seed == ws.seeds[0]:
                rep_pairs = pairs
            acc_b = np.mean(run.pred_before[split.test] == ws.labels[split.test])
            acc_a = np.mean(run.pred_after[split.test] == ws.labels[split.test])
            log_progress(
                f"run {len(runs)}/{n_total} (split {split.index}, seed {seed}): test accuracy "
                f"{100 * acc_b:.1f} -> {100 * acc_a:.1f} % in {time.perf_counter() - t_run:.0f} s",
                progress,
            )
    final = None
    if config.save_model:
        final = train_final(ws)
        model_dir = final.model.save(out_dir / "model")
        from claptune.card import public_text

        # the folder may be published: no path of this machine in its config
        (Path(model_dir) / "improve_config.json").write_text(
            json.dumps(public_text(config.to_dict()), indent=2)
        )
    report, confusions = build_report(ws, runs, time.perf_counter() - t0, model_dir)
    if final is not None:
        report.model_run = ModelRun(
            split=0,
            seed=ws.seeds[0],
            saved=final.saved,
            n_clips=final.n_clips,
            n_pairs=final.n_pairs,
            guard=final.guard,
        )
    rows = pair_rows(rep_pairs) if rep_pairs is not None else []
    from claptune.report.precision import pseudo_label_precision

    # scored now that every choice is made; nothing above read it
    report.pseudo_precision = pseudo_label_precision(
        rows, ws.items, ws.labels, ws.class_names, split=report.model_run.split
    )
    if model_dir is not None:
        write_improve_card(ws, report, model_dir)
    from claptune.report import ReportAssets, write_report
    from claptune.report.html import surest_rows

    adapt_clips = ws.splits[report.model_run.split].adapt  # the clips its pairs came from
    write_report(
        out_dir,
        report,
        ReportAssets(
            class_names=ws.class_names,
            confusion_before=confusions["before"],
            confusion_after=confusions["after"],
            pairs=rows,
            audio_per_class=config.audio_per_class,
            audio_samples=config.audio_samples,
            surest=surest_rows(
                ws.items, ws.scores_before, ws.class_names, config.audio_per_class, adapt_clips
            ),
        ),
    )
    if rep_pairs is not None and len(rep_pairs):
        write_pairs(rep_pairs, out_dir / "pairs_split0.csv")
    log_progress(
        f"before {100 * report.before.accuracy:.1f} % -> after "
        f"{100 * report.after.accuracy:.1f} % (test parts, {len(runs)} runs); "
        f"report: {out_dir / 'report.html'}",
        progress,
    )
    return ImproveResult(report, out_dir, None if model_dir is None else Path(model_dir))


@dataclass
class FinalModel:
    """The model ``improve`` saves (``train_final``)."""

    model: AudioTextModel
    saved: str  # "student" or "teacher"
    n_clips: int  # clips curated for the student
    n_pairs: int  # pairs curated for it
    guard: dict[str, float]


def train_final(ws: Workspace) -> FinalModel:
    """The model worth saving: once the splits have measured the configuration, one student
    trained with it on every clip of the target (no label read) except the guard's held-out
    slice (``guard_fraction``), with the first training seed; the guard then decides on that
    slice's audio whether it beats teacher + transduction, and the teacher is kept otherwise."""
    split = whole_pool_split(len(ws.items), ws.config.seed, ws.config.guard_fraction)
    pairs = ws.curate(split, ws.config.methods)
    student, _ = ws.train(pairs, ws.config.loss, ws.seeds[0])
    emb = ws.embed_audio(student, ws.items)
    clips = split.guard_clips
    guard = (
        ws.guard(split, ws.scores(student, emb), ws.transduced(student, emb[clips]))
        if len(clips) >= 2
        else {}
    )
    keep = guard_keeps(guard)
    log_progress(
        f"saved model: trained on {len(split.adapt)} clips; "
        + (
            "the guard kept it"
            if keep
            else "the guard found it no better than teacher + transduction on "
            f"{len(clips)} held-out clips: the teacher is saved instead"
        ),
        ws.progress,
    )
    if not keep:
        logger.warning(
            "the student trained on all clips did not beat the teacher on %d held-out clips "
            "(no label read): saving the teacher",
            len(clips),
        )
    return FinalModel(
        model=student if keep else ws.teacher,
        saved="student" if keep else "teacher",
        n_clips=len(split.adapt),
        n_pairs=len(pairs),
        guard=guard,
    )


def write_improve_card(ws: Workspace, report: Report, model_dir: str | Path) -> Path:
    """The saved model's card: base model, target and corpus, curation and loss, what was
    saved (``train_final``) and the configuration's measured gain over the runs, with its
    two-stage interval."""
    from claptune.card import CardInfo, CardResult, base_of, write_model_card

    config, saved = ws.config, report.model_run
    # the corpus spec whole: a Hub id stays one, a local path is cut by the card itself
    datasets = [config.target] + ([config.corpus] if config.corpus else [])
    ts = report.paired_test.two_stage
    measured = (
        f"measured over {report.n_runs} runs ({len(report.splits)} splits x "
        f"{len(report.seeds)} seeds), test parts: {100 * report.before.accuracy:.1f} -> "
        f"{100 * report.after.accuracy:.1f} %"
        + (
            ""
            if ts is None
            else f", gain {100 * ts.difference:+.1f} points, two-stage 95 % CI "
            f"[{100 * ts.ci_low:+.1f}, {100 * ts.ci_high:+.1f}]"
        )
    )
    what = (
        f"this model: the student trained on {saved.n_clips} of the {len(ws.items)} clips (no "
        "label read), kept by the label-free guard"
        if saved.saved == "student"
        else "this model is the teacher: the label-free guard found the student trained on "
        "all clips no better than teacher + transduction"
    )
    return write_model_card(
        model_dir,
        CardInfo(
            made_by="claptune improve",
            base=base_of(ws.teacher),
            datasets=datasets,
            curation=list(config.methods),
            loss=config.loss,
            results=[
                CardResult(
                    dataset=config.target,
                    dataset_name=config.target,
                    before=report.before.accuracy,
                    after=report.after.accuracy,
                    note=f"{measured}; {what}",
                )
            ],
            details={
                "teacher": config.model,
                "curation settings": config.curation or None,
                "training settings": report.train or None,
                "saved": saved.saved,
                "guard": saved.guard or None,
            },
            model_name=f"{config.model} improved on {config.target}",
        ),
    )


def build_report(
    ws: Workspace, runs: list[RunOutcome], seconds: float, model_dir: str | Path | None
) -> tuple[Report, dict[str, np.ndarray]]:
    """(report.json content, pooled test-part confusion matrices before/after)."""
    import claptune
    from claptune.improve.transfer import summarize_transfer

    summary, confusions = summarize_runs(
        runs,
        ws.labels,
        ws.class_names,
        transfer_labels=ws.transfer_labels,
        transductive_method=ws.config.transduction,
    )
    settings = curation_settings(ws.config.curation)
    priors = summarize_priors(
        runs, ws.splits, ws.labels, ws.class_names, settings.pseudo_refined_prior
    )
    transfer = None
    if ws.transfer_before is not None and all(r.transfer_after is not None for r in runs):
        transfer = summarize_transfer(
            ws.transfer_labels,
            ws.class_names,
            ws.transfer_before,
            [r.transfer_after for r in runs],
            ws.transfer_audio,
        )
    forgetting = None
    if ws.holdout_audio:
        forgetting = summarize_retrieval(
            ws.retrieval_before, runs, len(ws.holdout_audio), ws.holdout_source, ws.holdout_audio
        )
    report = Report.from_summary(
        summary,
        claptune_version=claptune.__version__,
        model=ModelInfo(
            spec=ws.config.model, backend=ws.teacher.backend, identity=ws.teacher.identity()
        ),
        target=TargetInfo(
            name=ws.config.target,
            root=ws.config.root,
            n_clips=len(ws.items),
            n_classes=len(ws.class_names),
            class_names=ws.class_names,
            items=ws.items,
        ),
        splits=[s.to_dict() for s in ws.splits],
        seeds=ws.seeds,
        templates=ws.templates,
        forgetting=forgetting,
        transfer=transfer,
        model_dir=None if model_dir is None else str(model_dir),
        model_run=ModelRun(split=0, seed=ws.seeds[0]),
        train={"head_only": ws.head_only, **ws.train_overrides},
        failed_clips=[{"item": i, "reason": r} for i, r in ws.failed],
        timing_s={"setup": ws.setup_seconds, "total": seconds},
        config=ws.config.to_dict(),
        priors=priors,
        label_free=summarize_label_free(summary.runs),
    )
    return report, confusions


__all__ = [
    "ImproveResult",
    "Workspace",
    "run_improve",
    "build_report",
    "write_improve_card",
    "RETRIEVAL_KEYS",
]
