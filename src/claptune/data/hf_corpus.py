"""A paired corpus read through the Hugging Face ``datasets`` library.

``--corpus`` (and ``load_captioned_corpus``) accepts, beside a folder with ``manifest.csv`` and
webdataset shards:

- a Hub dataset id (``org/name``), streamed (``load_dataset(..., streaming=True)``), its
  ``train`` split (else its first);
- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
- an ``audiofolder``: clips beside a ``metadata.csv`` or ``metadata.jsonl`` whose
  ``file_name`` column names each clip and another column holds its caption.

The caption column is the first of ``CAPTION_COLUMNS`` present (a list of captions gives its
first); the audio column is the one typed ``Audio`` (else ``audio``). Rows are read as Arrow
batches, so ``datasets`` never decodes audio (claptune decodes it, as for every other corpus,
and no ``torchcodec`` is needed). Clips that exist as local files are used in place; clips
held as bytes (Hub data, ``save_to_disk`` folders) are written once, in their own format, under
``$CLAPTUNE_DATA/corpora/<name>/`` with a ``manifest.csv``, so that replay and the feature
cache read plain files; a second run reads that folder without touching ``datasets``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path

from claptune.audio import AUDIO_EXTENSIONS
from claptune.data.dataset import PairedCorpus, default_data_dir, read_csv
from claptune.errors import ClaptuneError

CAPTION_COLUMNS = ("caption", "captions", "text", "caption_1", "description")
_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_AUDIOFOLDER_METADATA = ("metadata.csv", "metadata.jsonl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DONE = ".complete"  # written last: a folder without it was interrupted and is redone
BATCH_ROWS = 64


def is_hf_corpus(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a ``datasets`` corpus: a ``save_to_disk`` folder, an audiofolder
    (metadata file, no ``manifest.csv``), or a Hub id that is not a local path."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        if any((path / m).is_file() for m in _DISK_MARKERS):
            return True
        return not (path / "manifest.csv").is_file() and any(
            (path / m).is_file() for m in _AUDIOFOLDER_METADATA
        )
    return not path.exists() and _HUB_ID.match(text) is not None


def load_hf_corpus(spec: str | os.PathLike, caption_column: str | None = None) -> PairedCorpus:
    """The ``PairedCorpus`` of a ``datasets`` corpus (see the module doc)."""
    text = str(spec)
    folder = default_data_dir() / "corpora" / _folder_name(text)
    manifest = folder / "manifest.csv"
    if (folder / _DONE).is_file():
        rows = [(r["path"], r["caption"], r.get("source", "")) for r in read_csv(manifest, [])]
        return _corpus(rows, folder)
    dataset = _open(text)
    columns = list(dataset.features or {}) if dataset.features else None
    audio_column = _audio_column(dataset.features)
    folder.mkdir(parents=True, exist_ok=True)
    source = text if not Path(text).expanduser().exists() else Path(text).expanduser().name
    rows: list[tuple[str, str, str]] = []
    for batch in dataset.with_format("arrow").iter(batch_size=BATCH_ROWS):
        names = batch.column_names
        columns = columns or names
        if audio_column not in names:
            raise ClaptuneError(
                f"corpus {text}: no audio column {audio_column!r}; columns: {names}"
            )
        caption = caption_column or next((c for c in CAPTION_COLUMNS if c in names), None)
        if caption is None or caption not in names:
            raise ClaptuneError(
                f"corpus {text}: no caption column (looked for "
                f"{caption_column or ', '.join(CAPTION_COLUMNS)}); columns: {', '.join(names)}"
            )
        audio = batch.column(audio_column).to_pylist()
        captions = batch.column(caption).to_pylist()
        for clip, words in zip(audio, captions, strict=True):
            words = _first_caption(words)
            if words:
                rows.append((_clip_file(clip, folder, len(rows), text), words, source))
    if not rows:
        raise ClaptuneError(f"corpus {text}: no clip with a caption")
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "caption", "source"])
        writer.writerows(rows)
    (folder / _DONE).write_text(f"{len(rows)} pairs from {text}\n")
    return _corpus(rows, folder)


def _corpus(rows: list[tuple[str, str, str]], folder: Path) -> PairedCorpus:
    return PairedCorpus(
        audio=[Path(p) if Path(p).is_absolute() else folder / p for p, _, _ in rows],
        captions=[c for _, c, _ in rows],
        sources=[s for _, _, s in rows],
    )


def _open(spec: str):
    try:
        import datasets
    except ImportError:
        raise ClaptuneError(
            f"corpus {spec!r} is a Hugging Face dataset: install the datasets library "
            "(pip install 'claptune[datasets]')"
        ) from None
    path = Path(spec).expanduser()
    try:
        if path.is_dir() and any((path / m).is_file() for m in _DISK_MARKERS):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_dir():
            loaded = datasets.load_dataset("audiofolder", data_dir=str(path), streaming=True)
        else:
            loaded = datasets.load_dataset(spec, streaming=True)
    except ClaptuneError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets' and the network's own types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        where = (
            "folder"
            if path.is_dir()
            else "Hub dataset (no local folder of that name; no network, or no such dataset?)"
        )
        raise ClaptuneError(f"cannot read corpus {spec!r} as a {where}: {first}") from None
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        split = "train" if "train" in loaded else next(iter(loaded))
        loaded = loaded[split]
    return loaded


def _audio_column(features) -> str:
    from datasets import Audio

    for name, feature in (features or {}).items():
        if isinstance(feature, Audio):
            return name
    return "audio"


def _first_caption(value) -> str:
    if isinstance(value, (list, tuple)):
        value = next((v for v in value if isinstance(v, str) and v.strip()), "")
    return value.strip() if isinstance(value, str) else ""


def _clip_file(clip, folder: Path, index: int, spec: str) -> str:
    """The manifest path of one clip: a local file as it is, bytes written once into
    ``folder/audio`` (relative path)."""
    if isinstance(clip, str):
        clip = {"path": clip, "bytes": None}
    if not isinstance(clip, dict):
        raise ClaptuneError(f"corpus {spec}: row {index} has no audio (got {type(clip).__name__})")
    data, path = clip.get("bytes"), clip.get("path")
    if not data:
        if path and Path(path).is_file():
            return str(Path(path).resolve())
        raise ClaptuneError(
            f"corpus {spec}: row {index}: audio {path!r} is neither bytes nor a file"
        )
    name = f"audio/{index:07d}{_extension(data, path)}"
    target = folder / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return name


def _extension(data: bytes, path: str | None) -> str:
    suffix = Path(path or "").suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        return suffix
    import soundfile as sf

    try:
        kind = sf.info(io.BytesIO(data)).format
    except Exception:  # noqa: BLE001 - not something libsndfile reads: let decoding say so
        return ".wav"
    return {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3", "AIFF": ".aiff"}.get(
        kind, ".wav"
    )


def _folder_name(spec: str) -> str:
    """Where a corpus's clips are kept: ``org--name`` for a Hub id; a local folder's name and
    a hash of its path and metadata files' times (a changed folder is read again)."""
    path = Path(spec).expanduser()
    if not path.exists():
        return spec.replace("/", "--")
    stamp = [str(path.resolve())]
    for name in (*_DISK_MARKERS, *_AUDIOFOLDER_METADATA):
        if (path / name).is_file():
            info = (path / name).stat()
            stamp.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
    digest = hashlib.sha1("|".join(stamp).encode()).hexdigest()[:10]
    return f"{path.resolve().name}-{digest}"


__all__ = ["CAPTION_COLUMNS", "is_hf_corpus", "load_hf_corpus"]
