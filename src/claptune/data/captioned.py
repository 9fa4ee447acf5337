"""A captioned corpus: ``manifest.csv`` with ``path,caption`` (+ optional ``source``,
``license``), paths relative to the manifest's folder, as in ../shared/data/captioned-sfx;
captioned webdataset shards; or a Hugging Face dataset (``claptune.data.hf_corpus``)."""

from __future__ import annotations

from pathlib import Path

from claptune.data.dataset import PairedCorpus, read_csv
from claptune.errors import ClaptuneError

# what a run without a paired corpus loses, said once as a warning and in its report
NO_CORPUS = (
    "no paired corpus (--corpus or $CLAPTUNE_CORPUS): fine-tuning runs without replay, and the "
    "forgetting and transfer checks are skipped; a folder with manifest.csv, webdataset shards "
    "or a Hugging Face dataset with a caption column (a Hub id, a save_to_disk folder) adds "
    "them (docs/adapt.md, 'A paired corpus')"
)


def load_captioned_corpus(root: str | Path, caption_key: str | None = None) -> PairedCorpus:
    """Read ``root/manifest.csv`` (or ``root`` itself when it is a CSV), or captioned webdataset
    shards (a pattern or URL; audio as shard member references, captions from each sample's
    .txt or the ``caption_key`` field of its .json; see claptune.data.shards), or a Hugging
    Face dataset: a Hub id, a ``save_to_disk`` folder or an audiofolder (``caption_key``: its
    caption column; see claptune.data.hf_corpus)."""
    from claptune.data.hf_corpus import is_hf_corpus, load_hf_corpus
    from claptune.data.shards import captioned_pairs, is_shard_spec

    if is_shard_spec(str(root)):
        _, refs, captions = captioned_pairs(str(root), caption_key)
        return PairedCorpus(audio=refs, captions=captions, sources=[""] * len(refs))
    if is_hf_corpus(root):
        return load_hf_corpus(root, caption_key)
    root = Path(root).expanduser()
    manifest = root if root.suffix.lower() == ".csv" else root / "manifest.csv"
    rows = read_csv(manifest, ["path", "caption"])
    audio, captions, sources = [], [], []
    for n, row in enumerate(rows, start=2):
        if not row["path"] or not row["caption"]:
            raise ClaptuneError(f"{manifest}:{n}: empty path or caption")
        path = Path(row["path"]).expanduser()
        audio.append(path if path.is_absolute() else manifest.parent / path)
        captions.append(row["caption"])
        sources.append(row.get("source", ""))
    return PairedCorpus(audio=audio, captions=captions, sources=sources)


def read_captions(path: str | Path, column: str = "caption") -> list[str]:
    """Unpaired captions from a .txt (one per non-empty line) or a .csv column."""
    from claptune.textfiles import csv_reader, read_text

    path = Path(path)
    if not path.is_file():
        raise ClaptuneError(f"caption file not found: {path}")
    if path.suffix.lower() == ".csv":
        reader = csv_reader(path, what="captions file")
        if column not in (reader.fieldnames or []):
            raise ClaptuneError(
                f"{path} has no column {column!r}; columns: {', '.join(reader.fieldnames or [])}"
            )
        captions = [(row[column] or "").strip() for row in reader]
    else:
        captions = [line.strip() for line in read_text(path, what="captions file").splitlines()]
    captions = [c for c in captions if c]
    if not captions:
        raise ClaptuneError(f"no captions in {path}")
    return captions
