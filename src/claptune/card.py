"""Model cards: the ``README.md`` with the Hub's metadata header in every model folder.

Every ``save()`` of a model writes a card (``base_card``) naming what the model was made
from; the commands that know more (``train``, ``improve``, ``pretrain``) rewrite it with
``write_model_card`` and a ``CardInfo``: the datasets, the curation methods and loss used, and
the before/after numbers of the run's report as ``model-index`` results. Cards are built with
``huggingface_hub.ModelCard`` / ``ModelCardData`` so the header is what the Hub parses;
``ModelCard.load(folder / "README.md")`` reads one back.

The base model is worked out from the model itself (``base_of``): a registered release maps to
its Hub repository, a file in the Hugging Face cache to the repository and commit it came
from, a folder with a card to that card's base model and licence (so a fine-tune of a
fine-tune keeps its lineage).

The header is the Hub's own: ``library_name: transformers`` for a folder that
``transformers.ClapModel.from_pretrained`` loads (``claptune`` otherwise), ``base_model`` and
``datasets`` as Hub ids only (a data set without one is described in the text), and no local
path anywhere: a path in any field or in the text is shown by its last component
(``public_text``), so a card can be pushed as it is.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claptune.textfiles import public_text

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
TASK = "zero-shot-audio-classification"  # the Hub's pipeline tag for CLAP-style models
TAGS = ["claptune", "clap", "audio", "audio-text", TASK]

# Hub repositories of the published weights claptune registers, and their licences
# (microsoft/CLAP: MIT; LAION-CLAP: CC0-1.0; the laion/clap-* transformers ports: Apache-2.0).
KNOWN_BASES: dict[str, tuple[str, str]] = {
    "microsoft/msclap": ("microsoft/msclap", "mit"),
    "lukewys/laion_clap": ("lukewys/laion_clap", "cc0-1.0"),
    "laion/clap-htsat-unfused": ("laion/clap-htsat-unfused", "apache-2.0"),
    "laion/clap-htsat-fused": ("laion/clap-htsat-fused", "apache-2.0"),
    "laion/larger_clap_general": ("laion/larger_clap_general", "apache-2.0"),
    "laion/larger_clap_music_and_speech": ("laion/larger_clap_music_and_speech", "apache-2.0"),
}
# Hub ids of the data sets claptune reads by name, where a copy of the same set is on the Hub
# (ESC-50: the 2,000 clips, CC BY-NC 3.0). us8k, tut2017, folder and csv have none: the card
# names them in its text only.
HUB_DATASETS: dict[str, str] = {"esc50": "ashraq/esc50"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# The default model: aisfx's CNN weights are CC BY 4.0 (attribution), MiniLM Apache-2.0.
DEFAULT_MODEL_LICENSE = "cc-by-4.0"
_HF_CACHE_PATH = re.compile(r"models--([^/]+)--([^/]+)/snapshots/([0-9a-f]{40})/")


@dataclass
class BaseModel:
    """What a model was made from: a Hub repository (and commit) where known."""

    repo_id: str | None = None
    revision: str | None = None
    license: str | None = None
    description: str = ""  # human-readable origin, e.g. a file path or "claptune default"


@dataclass
class CardResult:
    """One evaluation: zero-shot accuracy (0-1) on a dataset, before and after the run."""

    dataset: str  # claptune's name (e.g. "esc50"), a Hub id, or a local folder
    dataset_name: str  # pretty name
    after: float
    before: float | None = None
    split: str = "test"
    metric: str = "accuracy"
    task: str = TASK
    note: str = ""  # how it was measured (runs, parts)


@dataclass
class CardInfo:
    """Everything a card says; only ``made_by`` and ``base`` are needed."""

    made_by: str  # the command that wrote the folder, e.g. "claptune improve"
    base: BaseModel = field(default_factory=BaseModel)
    datasets: list[str] = field(default_factory=list)  # claptune names, Hub ids or folders
    curation: list[str] = field(default_factory=list)  # curation methods of the pairs
    loss: str | None = None
    results: list[CardResult] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # "training" table rows
    model_name: str | None = None


def base_of(model: Any) -> BaseModel:
    """The ``BaseModel`` of a loaded model, from where it was loaded (see the module doc)."""
    if getattr(model, "backend", None) == "default":
        return BaseModel(
            license=DEFAULT_MODEL_LICENSE,
            description="claptune's default model (aisfx audio encoder + "
            "all-MiniLM-L6-v2 text encoder + trained heads)",
        )
    source = getattr(model, "source", None)
    if not source:
        return BaseModel(description="unknown")
    source = str(source)
    if m := _HF_CACHE_PATH.search(Path(source).as_posix() + "/"):
        repo_id = f"{m.group(1)}/{m.group(2)}"
        return BaseModel(
            repo_id=repo_id,
            revision=m.group(3),
            license=KNOWN_BASES.get(repo_id, (None, None))[1],
            description=f"{repo_id} ({Path(source).name})",
        )
    path = Path(source).expanduser()
    if path.is_dir() and (path / CARD_FILE).is_file():
        return _base_from_card(path)
    if path.exists():
        return BaseModel(description=str(path))
    if source.count("/") == 1:  # a hub id loaded through transformers
        return BaseModel(
            repo_id=source, license=KNOWN_BASES.get(source, (None, None))[1], description=source
        )
    return BaseModel(description=source)


def _base_from_card(folder: Path) -> BaseModel:
    from huggingface_hub import ModelCard

    try:
        data = ModelCard.load(folder / CARD_FILE).data
    except Exception:  # noqa: BLE001 - an unreadable card only loses the lineage
        logger.warning("cannot read the model card of %s; lineage not recorded", folder)
        return BaseModel(description=str(folder))
    base = data.get("base_model")
    if isinstance(base, list):
        base = base[0] if base else None
    return BaseModel(
        repo_id=base,
        license=data.get("license"),
        description=f"{folder} (a fine-tune of {base or 'an unknown model'})",
    )


def hub_dataset(name: str) -> str | None:
    """The Hub id of a data set named in a card: claptune's name of a set with a Hub copy
    (``HUB_DATASETS``), a Hub id as given (``org/name``), else None (a local folder)."""
    if name in HUB_DATASETS:
        return HUB_DATASETS[name]
    if _HUB_ID.match(name) and not Path(name).exists():
        return name
    return None


def library_of(directory: str | Path) -> str:
    """``transformers`` for a folder ``transformers.ClapModel.from_pretrained`` loads (a CLAP
    ``config.json``), else ``claptune`` (MS-CLAP and default-model folders need claptune)."""
    config = Path(directory) / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return "claptune"
    return "transformers" if model_type == "clap" else "claptune"


def build_model_card(info: CardInfo, library_name: str = "claptune"):
    """A ``huggingface_hub.ModelCard`` for ``info``; ``library_name``: see ``library_of``."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = []
    for r in info.results:
        for when, value in (("before", r.before), ("after", r.after)):
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type=r.task,
                    dataset_type=hub_dataset(r.dataset) or public_text(r.dataset),
                    dataset_name=public_text(r.dataset_name),
                    dataset_split=r.split,
                    metric_type=r.metric,
                    metric_value=round(float(value), 4),
                    metric_name=f"zero-shot {r.metric} ({when})"
                    if r.task == TASK
                    else f"{r.metric} ({when})",
                )
            )
    tags = list(TAGS) + [f"curation-{m}" for m in info.curation]
    if info.loss:
        tags.append(f"loss-{info.loss}")
    # claptune's own block: what made the model, machine-readable beside the Hub's fields
    own = {
        "made_by": info.made_by,
        "curation": info.curation or None,
        "loss": info.loss,
        "base_revision": info.base.revision,
    }
    hub_ids = [d for d in (hub_dataset(name) for name in info.datasets) if d]
    data = ModelCardData(
        base_model=info.base.repo_id,
        license=info.base.license,
        datasets=list(dict.fromkeys(hub_ids)) or None,
        tags=tags,
        pipeline_tag=TASK,
        library_name=library_name,
        model_name=public_text(info.model_name or "claptune model") if results else None,
        eval_results=results or None,
        claptune={k: v for k, v in own.items() if v is not None},
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_body(info, library_name)}")


def _body(info: CardInfo, library_name: str = "claptune") -> str:
    title = public_text(info.model_name or "claptune model")
    origin = info.base.repo_id or public_text(info.base.description) or "an unknown model"
    if info.base.revision:
        origin += f" (revision {info.base.revision})"
    lines = [
        f"# {title}",
        "",
        f"An audio-text (CLAP) model written by `{info.made_by}` (claptune), made from `{origin}`.",
        "",
    ]
    rows = [
        ("curation", ", ".join(info.curation) or None),
        ("loss", info.loss),
        ("data", ", ".join(_dataset_words(d) for d in info.datasets) or None),
        *((k, public_text(v)) for k, v in info.details.items()),
    ]
    rows = [(k, v) for k, v in rows if v is not None and v != ""]
    if rows:
        lines += ["## Training", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in rows]
        lines.append("")
    if info.results:
        lines += [
            "## Results",
            "",
            "| dataset | split | metric | before | after | measured |",
            "|---|---|---|---:|---:|---|",
        ]
        for r in info.results:
            before = "" if r.before is None else f"{100 * r.before:.1f} %"
            lines.append(
                f"| {public_text(r.dataset_name)} | {r.split} | {r.metric} | {before} | "
                f"{100 * r.after:.1f} % | {public_text(r.note)} |"
            )
        lines.append("")
    lines += [
        "## Use",
        "",
        "```python",
        "from claptune import load_model",
        "from claptune.embed import encode_audio, encode_text",
        'model = load_model("PATH/TO/THIS/FOLDER")  # or a local clone of this repository',
        'audio_emb = encode_audio(model, ["clip.wav"]).embeddings',
        'text_emb = encode_text(model, ["a dog barks"])',
        "```",
        "",
    ]
    if info.details.get("class head"):
        lines += [
            "The folder's class head scores its task's classes as they were measured: "
            "`claptune zeroshot --model PATH/TO/THIS/FOLDER ...`, or in Python "
            "`model.class_head.classifier(text_classifier, class_names)` "
            "(`claptune.evaluate.zeroshot.text_classifier`).",
            "",
        ]
    if library_name == "transformers":
        lines += [
            "The folder is also a `transformers` CLAP model:",
            "",
            "```python",
            "from transformers import ClapModel, ClapProcessor",
            'model = ClapModel.from_pretrained("PATH/TO/THIS/FOLDER")',
            'processor = ClapProcessor.from_pretrained("PATH/TO/THIS/FOLDER")',
            "```",
            "",
        ]
    if info.base.license is None:
        lines += [
            "## Licence",
            "",
            "The licence of the base model applies; it was not known when this card was written.",
            "",
        ]
    return "\n".join(lines)


def _dataset_words(name: str) -> str:
    """A data set as the card's text names it: its Hub id linked where it has one, a local
    folder by its name."""
    hub = hub_dataset(name)
    if hub is None:
        return f"{public_text(name)} (local)"
    shown = name if name in HUB_DATASETS else hub
    return f"{shown} ([{hub}](https://huggingface.co/datasets/{hub}))"


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def methods_of(pairs: Any) -> list[str]:
    """The curation methods named in a pairs CSV's ``method`` column (a ``Pairs`` table's
    ``method`` list), in order of first appearance; empty when there is none."""
    methods = getattr(pairs, "method", None)
    if methods is None and isinstance(pairs, (str, Path)) and Path(pairs).is_file():
        import csv

        with Path(pairs).open(newline="", encoding="utf-8-sig") as fh:
            methods = [row.get("method") or "" for row in csv.DictReader(fh)]
    return list(dict.fromkeys(m for m in methods or [] if m))


def write_model_card(directory: str | Path, info: CardInfo) -> Path:
    """Write ``directory/README.md`` for ``info`` (replacing an older card); return its path."""
    path = Path(directory) / CARD_FILE
    build_model_card(info, library_of(directory)).save(path)
    return path


def base_card(directory: str | Path, model: Any) -> Path:
    """The card a bare ``model.save()`` writes: made by claptune, from ``base_of(model)``.

    Keeps the base model of a card already in the folder when the model cannot tell more
    (a model re-saved into its own folder)."""
    base = base_of(model)
    card = Path(directory) / CARD_FILE
    if base.repo_id is None and card.is_file():
        old = _base_from_card(Path(directory))
        base = BaseModel(old.repo_id, None, old.license or base.license, base.description)
    return write_model_card(directory, CardInfo(made_by="claptune", base=base))


def ensure_model_card(directory: str | Path) -> Path:
    """The card of a model folder, written first (from the folder's files) if missing."""
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        marker = Path(directory) / "claptune_model.json"
        backend = json.loads(marker.read_text()).get("backend") if marker.is_file() else None
        base = BaseModel(
            license=DEFAULT_MODEL_LICENSE if backend == "default" else None,
            description=f"a {backend or 'transformers'} model folder",
        )
        logger.info("%s has no model card; writing one", directory)
        write_model_card(directory, CardInfo(made_by="claptune", base=base))
    return path


__all__ = [
    "BaseModel",
    "CardInfo",
    "CardResult",
    "base_of",
    "base_card",
    "build_model_card",
    "hub_dataset",
    "library_of",
    "public_text",
    "methods_of",
    "write_model_card",
    "ensure_model_card",
    "CARD_FILE",
]
