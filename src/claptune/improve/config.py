"""The configuration of an ``improve``, ``adapt`` or ``ablate`` run: one dataclass that
validates itself.

``ImproveConfig`` holds typed settings all the way down: curation is a
``claptune.curation.CurationSettings``, training a ``claptune.train.TrainConfig``. ``adapt``'s
configuration is the same object with an unlabeled target (``ImproveConfig.unlabeled``: the
user's clips and class names instead of a named data set). Every field says why it has its
default, and carries the help of the CLI flag generated from it (``metadata``;
``claptune.cli._common.add_config_flags``). The resolved config is written into report.json and
beside the saved model, so a run can be repeated exactly; ``from_dict`` reads it back
(``claptune.typed``: unknown keys rejected, nested settings given as overrides of their
defaults).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from claptune.curation.methods import METHODS, NEEDS
from claptune.curation.settings import CurationSettings
from claptune.errors import ClaptuneError, did_you_mean
from claptune.train.config import STUDENT_LOSSES, TrainConfig
from claptune.typed import cli

CURATION_METHODS = METHODS  # the one list, claptune.curation.methods
LOSSES = STUDENT_LOSSES  # the one list: claptune.train.config
TARGETS = ("esc50", "us8k", "tut2017", "folder", "csv")
# how clips are split (claptune.improve.splits); here so that parsers list them without numpy
STRATEGIES = ("auto", "grouped", "random", "stratified")
# a target whose clips have no labels (claptune adapt): its clips and class names are given to
# the Workspace directly, so this name is not a choice of improve's --target
UNLABELED = "unlabeled"
# where the shared paired corpus lives in this repo's development layout (../shared/data)
_DEV_CORPUS = Path(__file__).resolve().parents[4] / "shared" / "data" / "captioned-sfx"


# the ImproveConfig fields adapt does not read: no data set to load (its clips are ``audio``),
# no test parts or splits (the guard slice is ``guard_fraction``), one training seed, and its
# report's players are ``audio_per_class`` alone
IMPROVE_ONLY = (
    "root",
    "download",
    "n_splits",
    "n_seeds",
    "test_fraction",
    "split",
    "audio_samples",
)


def default_cache_dir() -> str:
    """CLAPTUNE_CACHE, else ~/.cache/claptune: frozen features reused across runs."""
    return os.environ.get("CLAPTUNE_CACHE") or str(Path.home() / ".cache" / "claptune")


def default_corpus() -> str | None:
    """CLAPTUNE_CORPUS, else the shared captioned-sfx corpus when it exists, else None."""
    env = os.environ.get("CLAPTUNE_CORPUS")
    if env:
        return env
    return str(_DEV_CORPUS) if _DEV_CORPUS.is_dir() else None


def improve_training() -> TrainConfig:
    """improve's training defaults: heads only on a model with frozen encoders and cached
    features (``trainable="auto"``) for HEAD_EPOCHS (``epochs=None``), the fast path that makes
    3 x 3 runs affordable on a CPU; every parameter for the published 20 epochs otherwise. No
    progress bar per epoch (improve logs one line per run)."""
    return TrainConfig(trainable="auto", epochs=None, progress=False)


@dataclass
class ImproveConfig:
    model: str = field(
        default="default",
        metadata=cli("registered name, model folder or hub id", default_text="the embedded model"),
    )
    # a named labelled data set (esc50, us8k, tut2017, folder, csv), or "unlabeled": a user's
    # clips (audio) and class names (adapt), whose labels do not exist
    target: str = field(default="esc50", metadata=cli("target task", choices=TARGETS))
    root: str | None = field(
        default=None,
        metadata=cli("local copy of the target data set, a folder (a CSV for csv)"),
    )  # None downloads where supported
    download: bool = field(
        default=False,
        metadata=cli("download the target data set when --root is not given", default_text="off"),
    )
    # the unlabeled target's clips (files, folders searched recursively, .txt lists) and class
    # names, in the user's words (target "unlabeled")
    audio: tuple[str, ...] = field(
        default=(),
        metadata=cli(
            "clip files, folders (searched recursively) or .txt lists of clips",
            nargs="+",
            metavar="PATH",
        ),
    )
    class_names: tuple[str, ...] = field(
        default=(),
        metadata=cli(
            "class names: a file with one per line (# comments and blank lines ignored) or 'a,b,c'",
            "--classes",
            metavar="CLASSES",
        ),
    )
    # refined pseudo-labels with the hard loss: the row with the largest mean gain in our
    # ablation of the default model on the ESC-50 subset (rule fixed before it ran;
    # bench/results/ablation.md, README); the paper's DS + soft did not gain there
    methods: tuple[str, ...] = field(
        default=("pseudo_refined",),
        metadata=cli(
            f"comma-separated curation methods of {', '.join(CURATION_METHODS)}; "
            "'none' fine-tunes on replay only"
        ),
    )
    loss: str = field(default="hard", metadata=cli("contrastive loss", choices=LOSSES))
    # 3 x 3 runs: split-to-split and training-seed noise are both a few points, so one run
    # cannot tell a gain from luck; every figure is reported as mean ± std over the runs
    n_splits: int = field(default=3, metadata=cli("adaptation/test splits", "--splits"))
    n_seeds: int = field(default=3, metadata=cli("training seeds per split", "--seeds"))
    test_fraction: float = field(default=0.5, metadata=cli("share of the clips scored only"))
    # how clips are split: auto = whole source recordings to one side where the data set names
    # them (ESC-50's src_file), else at random; never by label, which would hand the unlabeled
    # pool the task's exact class shares (stratified stays available for comparison)
    split: str = field(
        default="auto",
        metadata=cli(
            "how clips are split: auto = grouped where the data set names each clip's source "
            "recording, else random; stratified hands the unlabeled pool the task's exact "
            "class shares (for comparison only)",
            choices=STRATEGIES,
        ),
    )
    seed: int = field(
        default=0,
        metadata=cli("base seed: split i uses seed + i, training seed j uses seed + j"),
    )
    corpus: str | None = field(
        default_factory=default_corpus,
        metadata=cli(
            "paired captioned corpus, replayed in fine-tuning and held out for the forgetting "
            "and transfer checks: a folder with manifest.csv, webdataset shards, or a Hugging "
            "Face dataset (a Hub id, a save_to_disk folder or an audiofolder with a caption "
            "column; needs claptune[datasets]); '' or none for none",
            default_text="$CLAPTUNE_CORPUS, else shared/data/captioned-sfx beside a "
            "development checkout of claptune where it exists, else none",
        ),
    )  # paired corpus: replay + DS captions
    corpus_holdout: float = field(
        default=0.1,
        metadata=cli("share of the corpus held out for the forgetting check"),
    )
    # zero-shot prompts: template set names (default, ensemble) or templates with {}; the
    # 8-prompt ensemble smooths the quirks of one wording and uses no label
    templates: tuple[str, ...] = field(
        default=("ensemble",),
        metadata=cli(
            "zero-shot prompts: ensemble (8 templates averaged), the set named default (the "
            "paper's 'this is a sound of {}'), or your own template with {} for the class "
            "name; repeat to average several",
            "--template",
            action="append",
            metavar="TEMPLATE",
        ),
    )
    # thresholds are quantiles of the teacher's own similarity distribution by default (raw
    # cosines are per-checkpoint): the one table of claptune.curation.methods
    curation: CurationSettings = field(
        default_factory=CurationSettings, metadata={"what": "curation settings"}
    )
    train: TrainConfig = field(
        default_factory=improve_training, metadata={"what": "training override"}
    )
    save_model: bool = field(
        default=True,
        metadata=cli("do not write RUN/model", "--no-save-model", negate=True, default_text="off"),
    )  # the model worth saving (claptune.improve.loop.train_final)
    keep_student: bool = field(
        default=False,
        metadata=cli(
            "when the guard saves the teacher, write the fine-tuned student to RUN/student as "
            "well (for classifying single clips without transduction; the guard did not "
            "vouch for it)"
        ),
    )
    # best-scored curated pairs of each class playable in report.html: 2 on a labelled target,
    # 1 on a user's clips (its report lists every class's surest clips too); None: that choice
    audio_per_class: int | None = field(
        default=None,
        metadata=cli(
            "best-scored curated pairs of each class playable in report.html",
            default_text="2; 1 for adapt",
        ),
    )
    audio_samples: int | None = field(
        default=None,
        metadata=cli(
            "cap on all players in report.html, spread over the classes",
            default_text="no cap",
        ),
    )
    on_error: str = field(
        default="raise",
        metadata=cli(
            "what to do with a clip that cannot be decoded: raise stops, skip leaves the clip "
            "out and lists it in the report",
            choices=("raise", "skip"),
        ),
    )
    # label-free transductive inference on top of every model's scores (teacher and student;
    # claptune.evaluate.transductive): the labels adapt writes, and a figure of every report
    transduction: str = field(
        default="claptune",
        metadata=cli(
            "transductive inference over the clips taken together, for the labels "
            "(predictions.csv) and the side-by-side figures: claptune, sinkhorn, "
            "label_propagation, gaussian_em, entropy or none",
            "--transductive",
            metavar="METHOD",
        ),
    )
    # the class head (claptune.evaluate.prototypes): each class's text embedding moved towards
    # the mean audio embedding of the pool's clips transduction assigns to it, this much; fitted
    # on each split's pool and scored on its test part, and saved beside RUN/model
    class_head: float = field(
        default=0.5,  # claptune.evaluate.prototypes.DEFAULT_HEAD_WEIGHT (numpy-free import here)
        metadata=cli(
            "weight of the class head: each class's prompt embedding moved towards the mean "
            "audio embedding of the clips transduction assigns to it (fitted on the clips "
            "curation sees, saved with RUN/model, used by zeroshot); 0 turns it off",
            metavar="WEIGHT",
        ),
    )
    # share of an unlabeled target's clips held out of curation for the label-free guard (and
    # of the model worth saving's); a measured split's guard reads its test part's audio
    guard_fraction: float = field(
        default=0.2,
        metadata=cli(
            "share of the clips held out of curation, on whose audio the label-free guard "
            "decides whether the saved student beats the teacher; 0 turns the guard off"
        ),
    )
    # a labelled data set scored before and after an unlabeled target's run, never read by any
    # choice of the run (adapt --eval TARGET:ROOT)
    eval_target: str | None = None
    eval_root: str | None = None
    # whose scores adapt's predictions.csv refines: "teacher" (measured best on fresh skewed
    # targets, bench/results/adapt_labels.md) or "saved" (the model the guard keeps)
    labels_from: str = field(
        default="teacher",
        metadata=cli(
            "whose scores predictions.csv refines: the teacher (measured best) or the saved model",
            choices=("teacher", "saved"),
        ),
    )
    # frozen encoder features are kept here (keyed by model identity and file), so a rerun or
    # an ablation of the same model skips the encoders; None keeps them in memory only
    cache_dir: str | None = field(
        default_factory=default_cache_dir,
        metadata=cli(
            "frozen features kept across runs",
            default_text="$CLAPTUNE_CACHE, else ~/.cache/claptune",
        ),
    )

    def __post_init__(self) -> None:
        if isinstance(self.methods, str):
            self.methods = tuple(m.strip() for m in self.methods.split(",") if m.strip())
        self.methods = tuple(self.methods)
        self.templates = (
            (self.templates,) if isinstance(self.templates, str) else tuple(self.templates)
        )
        self.audio = (self.audio,) if isinstance(self.audio, str) else tuple(map(str, self.audio))
        self.class_names = tuple(self.class_names)
        if isinstance(self.curation, dict):
            self.curation = CurationSettings.from_dict(self.curation)
        if isinstance(self.train, dict):
            from claptune.typed import override

            self.train = override(improve_training(), self.train, "training override")
        if self.corpus in ("", "none"):
            self.corpus = None
        # recorded absolute: a report read later names the folders used
        if self.cache_dir:
            self.cache_dir = str(Path(self.cache_dir).expanduser().resolve())
        if self.root:
            self.root = str(Path(self.root).expanduser().resolve())
        if self.audio_per_class is None:
            self.audio_per_class = 1 if self.target == UNLABELED else 2
        from claptune.evaluate.zeroshot import resolve_templates

        resolve_templates(self.templates)  # raises ClaptuneError on a malformed template
        unknown = [m for m in self.methods if m not in CURATION_METHODS]
        if unknown:
            raise ClaptuneError(
                f"unknown curation method(s) {unknown}; choose from "
                f"{', '.join(CURATION_METHODS)} (or none for a replay-only baseline)"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ClaptuneError(f"curation methods repeated: {list(self.methods)}")
        if self.loss not in LOSSES:
            raise ClaptuneError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.target not in TARGETS and self.target != UNLABELED:
            raise ClaptuneError(
                f"unknown target {self.target!r}; choose from {', '.join(TARGETS)}"
                + did_you_mean(self.target, TARGETS)
            )
        if self.target in ("folder", "csv") and not self.root:
            raise ClaptuneError(f"target {self.target!r} needs --root")
        if self.target == UNLABELED:
            if not self.audio:
                raise ClaptuneError("adapt needs audio: clip files, folders or .txt lists")
            if not self.class_names:
                raise ClaptuneError("adapt needs class names")
            from claptune.data.dataset import check_class_names

            check_class_names(self.class_names)
        elif self.audio or self.class_names or self.eval_target:
            raise ClaptuneError(
                "audio, class names and an eval target belong to an unlabeled target (adapt); "
                f"target {self.target!r} brings its own clips and labels"
            )
        if self.eval_target is not None and self.eval_target not in TARGETS:
            raise ClaptuneError(
                f"unknown eval target {self.eval_target!r}; choose from {', '.join(TARGETS)}"
            )
        if not (isinstance(self.class_head, (int, float)) and 0 <= self.class_head < math.inf):
            raise ClaptuneError(
                f"--class-head must be a finite weight of at least 0, got {self.class_head}"
            )
        if self.labels_from not in ("teacher", "saved"):
            raise ClaptuneError(f"labels_from must be teacher or saved, got {self.labels_from!r}")
        if self.train.seed != improve_training().seed:
            raise ClaptuneError(
                f"--train seed={self.train.seed} would be ignored: the runs' training seeds "
                "come from --seed (improve and ablate: split i and seed j use seed + i and "
                "seed + j; adapt: seed); set --seed instead"
            )
        if self.n_splits < 1 or self.n_seeds < 1:
            raise ClaptuneError(
                f"--splits and --seeds (n_splits, n_seeds) must be at least 1, got "
                f"{self.n_splits} and {self.n_seeds}"
            )
        if self.split not in STRATEGIES:
            raise ClaptuneError(
                f"unknown split strategy {self.split!r}; choose from {', '.join(STRATEGIES)}"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ClaptuneError(
                f"--test-fraction (test_fraction) must be in (0, 1), got {self.test_fraction}"
            )
        if not 0.0 <= self.corpus_holdout < 1.0:
            raise ClaptuneError(
                f"--corpus-holdout (corpus_holdout) must be in [0, 1), got {self.corpus_holdout}"
            )
        # improve's unpaired captions are the corpus's: a method reading either needs one
        if self.corpus is None and any({"corpus", "text"} & set(NEEDS[m]) for m in self.methods):
            raise ClaptuneError(
                "these curation methods need a paired corpus: give --corpus or set CLAPTUNE_CORPUS"
            )
        if self.on_error not in ("raise", "skip"):
            raise ClaptuneError("on_error must be 'raise' or 'skip'")
        if self.audio_samples is not None and self.audio_samples < 0:
            raise ClaptuneError("audio_samples must be >= 0")
        if self.audio_per_class < 0:
            raise ClaptuneError("audio_per_class must be >= 0")
        from claptune.evaluate.transductive import TRANSDUCTIONS

        if self.transduction not in TRANSDUCTIONS:
            raise ClaptuneError(
                f"unknown transduction {self.transduction!r}; choose from {', '.join(TRANSDUCTIONS)}"
            )
        if self.keep_student and not self.save_model:
            raise ClaptuneError(
                "--keep-student writes the student beside the saved model; with --no-save-model "
                "nothing is saved: drop one of the two"
            )
        if not 0.0 <= self.guard_fraction < 0.9:
            raise ClaptuneError(
                f"--guard-fraction (guard_fraction) must be in [0, 0.9), got {self.guard_fraction}"
            )

    @classmethod
    def unlabeled(
        cls, audio: str | tuple[str, ...], class_names: tuple[str, ...], **values: Any
    ) -> ImproveConfig:
        """The configuration of ``adapt``: the user's clips and class names as the target."""
        return cls.from_dict(
            {"target": UNLABELED, "audio": audio, "class_names": class_names, **values}
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ImproveConfig:
        """Build from a dict (a saved config), rejecting keys this version does not know;
        ``curation`` and ``train`` are overrides of their defaults."""
        from claptune.typed import from_mapping

        return from_mapping(cls, values, "improve config keys")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("methods", "templates", "audio", "class_names"):
            d[key] = list(d[key])
        return d

    def record(self) -> dict[str, Any]:
        """``to_dict`` without the settings this run does not read: ``adapt`` (the unlabeled
        target) has no data set to load, no splits and one training seed, so its reports and
        saved configuration leave those out (``from_dict`` restores their defaults)."""
        d = self.to_dict()
        if self.target == UNLABELED:
            for key in IMPROVE_ONLY:
                d.pop(key, None)
        return d


__all__ = [
    "ImproveConfig",
    "CURATION_METHODS",
    "LOSSES",
    "STRATEGIES",
    "TARGETS",
    "UNLABELED",
    "default_corpus",
    "improve_training",
]
