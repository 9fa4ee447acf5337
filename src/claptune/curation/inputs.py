"""The one curation path: ``build_curation_inputs`` turns named roles into ``CurationInputs``.

Roles (each read only when a chosen method needs it, ``claptune.curation.methods.NEEDS``):

- ``audio``: unpaired clips (du, ads, a2a);
- ``texts``: unpaired captions (du);
- ``corpus``: a paired corpus, clip ``i`` with caption ``i`` (the DS captions of ds, ads, a2a);
- ``target``: unlabeled target-domain clips (a2a, pseudo, pseudo_refined);
- ``class_names``: the target's classes, made into prompts by the one prompt builder
  (``claptune.evaluate.zeroshot.class_prompts``) and embedded by the teacher.

A role is either already embedded (``Rows``, ``Corpus``; what ``improve`` holds) or a source
to embed now with ``model`` (what ``claptune curate`` is given): an embedding store written by
``claptune embed``, audio files and folders, a caption file, a corpus manifest. Sources
embedded now go into a resumable store under ``EmbedOptions.cache``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from claptune.curation.common import DEFAULT_TEMPLATE
from claptune.curation.methods import METHODS, NEEDS
from claptune.curation.pipeline import CurationInputs
from claptune.data.dataset import check_class_names
from claptune.errors import ClaptuneError, printable

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from claptune.models.base import AudioTextModel


@dataclass
class Rows:
    """Embedded items of one role: ``ids[i]`` (a clip path or a text) has row ``i`` of ``emb``."""

    ids: list[str]
    emb: np.ndarray  # (N, D) float32, L2-normalised, the teacher's
    identity: dict | None = None  # the model that embedded them, when read from a store


@dataclass
class Corpus:
    """A paired corpus: ``audio[i]`` is described by ``captions[i]``."""

    audio: list[str]
    captions: list[str]
    caption_emb: np.ndarray  # (N, D) the teacher's caption embeddings


@dataclass
class EmbedOptions:
    """How sources that are not stores are embedded now."""

    cache: Path | None = None  # resumable stores of what is embedded now; None: in memory
    batch_size: int | None = None
    progress: bool = True
    on_error: str = "raise"  # undecodable audio: raise, or skip (listed on stderr)
    text_column: str = "caption"  # the caption column of a .csv of unpaired captions
    caption_key: str | None = None  # captioned shards: the .json field (None: the .txt)


AudioRole = Rows | Sequence[str | os.PathLike] | None  # rows, a store, or clips/folders/lists
TextRole = Rows | str | os.PathLike | None  # rows, a store, or a .txt/.csv of captions
CorpusRole = Corpus | str | os.PathLike | None  # rows, or a folder with manifest.csv / the CSV


def curation_prompts(class_names: Sequence[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """One prompt per class with ``template``: the zero-shot prompt builder's single-template
    case (``dog_bark`` -> "this is a sound of dog bark")."""
    from claptune.evaluate.zeroshot import class_prompts

    if not class_names:
        raise ClaptuneError("no class names")
    return [group[0] for group in class_prompts(class_names, (template,))]


def class_names_from(spec: str) -> list[str]:
    """Class names from "a,b,c" or a file with one name per line (blank lines and lines
    starting with ``#`` ignored); a name given twice, or two spellings of one class (``dog``
    and ``Dog``, ``church_bells`` and ``church bells``), is an error."""
    path = Path(spec)
    if path.is_file():
        from claptune.textfiles import read_lines

        names = read_lines(path, what="class list")
    elif path.suffix.lower() == ".txt" and "," not in spec:
        raise ClaptuneError(f"class names file not found: {spec}")
    else:
        names = [n.strip() for n in spec.split(",")]
    names = [n for n in names if n]
    if not names:
        raise ClaptuneError(f"no class names in {spec!r}")
    check_class_names(names, f"class names in {spec!r}")
    return names


def build_curation_inputs(
    methods: Sequence[str],
    *,
    model: AudioTextModel | None = None,
    audio: AudioRole = None,
    texts: TextRole = None,
    corpus: CorpusRole = None,
    target: AudioRole = None,
    class_names: Sequence[str] | None = None,
    template: str = DEFAULT_TEMPLATE,
    class_emb: np.ndarray | None = None,
    encode_text: Callable[[list[str]], np.ndarray] | None = None,
    options: EmbedOptions | None = None,
) -> CurationInputs:
    """What ``curate(methods, ...)`` reads, from the roles the methods need.

    ``model`` is the teacher: it embeds sources that are not stores, the class prompts (and
    the corpus captions), and gives pseudo-labelling its logit scale. ``encode_text``
    replaces ``claptune.embed.encode_text`` for prompts and captions (``improve`` passes its feature
    cache). ``class_emb`` (C, D) is the classifier pseudo-labels score with (e.g. a prompt
    ensemble); None: the prompts' embeddings.
    """
    options = options or EmbedOptions()
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ClaptuneError(
            f"unknown curation method(s) {unknown or list(methods)}; choose from "
            f"{', '.join(METHODS)}"
        )
    needs = {w for m in methods for w in NEEDS[m]}
    what = "/".join(methods)
    cache = options.cache
    encode = encode_text or _model_encoder(model)
    inputs = CurationInputs()
    stores: list[tuple[str, dict]] = []
    if "audio" in needs:
        if audio is None:
            raise ClaptuneError(f"{what} needs unpaired clips (audio)")
        # du alone reads the pool one query block at a time: a sharded store stays streamed
        stream = not {"ads", "a2a"} & set(methods)
        rows = _rows(audio, "audio", model, _sub(cache, "audio"), options, stream=stream)
        inputs.audio_ids, inputs.audio_emb = rows.ids, rows.emb
        stores.append(("audio", rows.identity))
    if "text" in needs:
        if texts is None:
            raise ClaptuneError(f"{what} needs unpaired captions (texts)")
        rows = _rows(texts, "text", model, _sub(cache, "text"), options)
        inputs.texts, inputs.text_emb = rows.ids, rows.emb
        stores.append(("texts", rows.identity))
    if "corpus" in needs:
        if corpus is None:
            raise ClaptuneError(f"{what} needs a paired corpus (corpus)")
        if not isinstance(corpus, Corpus):
            corpus = _embed_corpus(corpus, model, encode_text, _sub(cache, "corpus_text"), options)
        inputs.corpus_audio, inputs.corpus_captions = list(corpus.audio), list(corpus.captions)
        inputs.corpus_caption_emb = corpus.caption_emb
    if "target" in needs:
        if target is None:
            raise ClaptuneError(f"{what} needs target clips (target)")
        rows = _rows(target, "audio", model, _sub(cache, "target"), options)
        inputs.target_ids, inputs.target_emb = rows.ids, rows.emb
        stores.append(("target", rows.identity))
    if "prompts" in needs:
        if not class_names:
            raise ClaptuneError("class prompts need class names")
        inputs.class_names = list(class_names)
        inputs.prompts = curation_prompts(inputs.class_names, template)
        inputs.prompt_emb = encode(inputs.prompts)
        inputs.class_emb = class_emb
        if model is not None:
            inputs.logit_scale = float(model.logit_scale.detach())
    if model is None:
        _check_same_model([(r, i) for r, i in stores if i is not None])
    return inputs


def _sub(cache: Path | None, name: str) -> Path | None:
    return None if cache is None else Path(cache) / name


def _model_encoder(model: AudioTextModel | None) -> Callable[[list[str]], np.ndarray]:
    def encode(texts: list[str]) -> np.ndarray:
        from claptune.embed import encode_text

        return encode_text(
            _require_model(model, "embedding captions and class prompts"), texts, progress=False
        )

    return encode


def _require_model(model: AudioTextModel | None, what: str) -> AudioTextModel:
    if model is None:
        raise ClaptuneError(f"{what} needs a model (the teacher that embeds it)")
    return model


def _is_store(source) -> Path | None:
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    if len(paths) == 1 and (Path(paths[0]) / "manifest.json").is_file():
        return Path(paths[0])
    return None


def _rows(
    source, kind: str, model, cache: Path | None, options: EmbedOptions, stream: bool = False
) -> Rows:
    """Rows of a role: given, read from a store, or embedded now. Webdataset shards and
    sharded stores (docs/shards.md) too; with ``stream`` a sharded store is not loaded: its
    ``emb`` is the ``ShardedStore`` itself (ids None), which du streams block by block."""
    if isinstance(source, Rows):
        return source
    from claptune.embed import ShardedStore, is_sharded_store, load_store

    if kind == "audio" and _is_shards(source):
        return _shard_rows(source, model, cache, options, stream)
    store_dir = _is_store(source)
    if store_dir is not None and is_sharded_store(store_dir):
        sharded = ShardedStore.open(store_dir, model)
        if sharded.kind != kind:
            raise ClaptuneError(f"{store_dir} is a {sharded.kind} store, not {kind}")
        if stream:
            return Rows(None, sharded, sharded.manifest["identity"])  # type: ignore[arg-type]
        loaded = sharded.load()
        return Rows(loaded.ids, loaded.embeddings, sharded.manifest["identity"])
    if store_dir is not None:
        store = load_store(store_dir, model)
        if store.manifest["kind"] != kind:
            raise ClaptuneError(f"{store_dir} is a {store.manifest['kind']} store, not {kind}")
        return Rows(store.ids, store.embeddings, store.manifest["identity"])
    if kind == "audio":
        from claptune.audio import find_audio

        paths = [str(p) for p in source]
        items = [str(p) for p in find_audio(paths)]
        if not items:
            raise ClaptuneError(f"no audio files found in {' '.join(paths)}")
    else:
        from claptune.data.captioned import read_captions

        items = read_captions(Path(source), options.text_column)
    return embed_items(model, items, kind, cache, options)


def _is_shards(source) -> bool:
    from claptune.data.shards import is_shard_spec

    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    if any(is_shard_spec(p) for p in paths):
        if not all(is_shard_spec(p) for p in paths):
            raise ClaptuneError(f"give either webdataset shards or files, not both: {paths}")
        return True
    return False


def _shard_rows(source, model, cache: Path | None, options: EmbedOptions, stream: bool) -> Rows:
    """The clips of webdataset shards, embedded now (streamed) into ``cache``: ids
    ``<shard>/<key>``. A pool for du (``stream``) is cached as a sharded store and streamed."""
    from claptune.embed import ShardedStore, StoreRequest, load_store, write_store

    model = _require_model(model, "embedding webdataset shards")
    specs = [source] if isinstance(source, str | os.PathLike) else list(source)
    if cache is None:  # shards are never held whole: a temporary store stands in
        from claptune.atomic import scratch_dir

        # named with this process's id: the next run removes it once this process is gone
        cache = scratch_dir("claptune-shards-")
    request = StoreRequest(
        shards=[str(s) for s in specs],
        store_format="shards" if stream else "npz",
        batch_size=options.batch_size,
        progress=options.progress,
        on_error=options.on_error,
    )
    write_store(model, cache, request)
    if stream:
        sharded = ShardedStore.open(cache, model)
        _report_failed(sharded.manifest["failed"])
        return Rows(None, sharded, sharded.manifest["identity"])  # type: ignore[arg-type]
    store = load_store(cache, model)
    _report_failed(store.manifest["failed"])
    return Rows(store.ids, store.embeddings, store.manifest["identity"])


def embed_items(
    model, items: list[str], kind: str, cache: Path | None, options: EmbedOptions
) -> Rows:
    """``items`` (clip paths or texts) embedded by ``model``, through a resumable store in
    ``cache`` when given; clips that fail to decode are left out under ``on_error="skip"``."""
    model = _require_model(model, f"embedding {len(items)} {kind} items")
    if cache is None:
        from claptune.embed import encode_audio, encode_text

        if kind == "text":
            return Rows(list(items), encode_text(model, items, progress=False))
        enc = encode_audio(
            model,
            items,
            progress=options.progress,
            on_error=options.on_error,
            **({"batch_size": options.batch_size} if options.batch_size else {}),
        )
        _report_failed(enc.failed)
        return Rows([items[i] for i in enc.kept], enc.embeddings)
    from claptune.embed import StoreRequest, load_store, write_store

    request = StoreRequest(
        items=items,
        kind=kind,
        batch_size=options.batch_size,
        progress=options.progress,
        on_error=options.on_error,
    )
    write_store(model, cache, request)
    store = load_store(cache, model, items=items)  # only these items, in their order
    _report_failed(store.manifest["failed"])
    return Rows(store.ids, store.embeddings, store.manifest["identity"])


def _report_failed(failed) -> None:
    for item, reason in failed:
        logger.warning("skipped %s: %s", printable(item), reason)


def _embed_corpus(source, model, encode_text, cache: Path | None, options: EmbedOptions) -> Corpus:
    from claptune.data import load_captioned_corpus

    corpus = load_captioned_corpus(source, options.caption_key)
    captions = list(corpus.captions)
    if encode_text is not None:
        emb = encode_text(captions)
    else:
        emb = embed_items(model, captions, "text", cache, options).emb
    return Corpus([str(a) for a in corpus.audio], captions, emb)


def _check_same_model(stores: list[tuple[str, dict]]) -> None:
    """Stores read without a model must all come from one model (and preprocessing)."""
    if len(stores) < 2:
        return
    first_role, first = stores[0]
    for role, ident in stores[1:]:
        if ident != first:
            raise ClaptuneError(
                f"the {role} and {first_role} stores were embedded by different "
                "models or preprocessing; embed both with the same model"
            )


def target_rows_of_dataset(dataset, model, options: EmbedOptions) -> Rows:
    """The clips of a target data set embedded now (labels never read)."""
    return embed_items(
        model, [str(p) for p in dataset.items], "audio", _sub(options.cache, "target"), options
    )


__all__ = [
    "Corpus",
    "EmbedOptions",
    "Rows",
    "build_curation_inputs",
    "class_names_from",
    "curation_prompts",
    "embed_items",
    "target_rows_of_dataset",
]
