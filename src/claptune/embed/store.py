"""The embedding store's common part: what a store is asked to hold, how vectors are keyed.

A store is a folder of vectors that survives being killed and resumes where it stopped. Two
layouts share what lives here:

    "npz"     OUT/manifest.json + OUT/embeddings-<hash>.npy, from per-item parts in
              OUT/cache/<key>/ (``claptune.embed.plain``, read back by ``load_store`` in
              ``claptune.embed.view``)
    "shards"  OUT/manifest.json + webdataset shards of (id, embedding) in OUT/shards/<key>/
              (``claptune.embed.shards``, read back block by block by ``ShardedStore``)

``StoreRequest`` says what to embed (audio paths, captions, or the audio of webdataset shards)
and how; ``claptune.embed.write.write_store`` carries it out in the layout it names.
``<key>`` (``store_key``) hashes the model identity (weights fingerprint and preprocessing) and
the kind, so another model or another preprocessing gets its own folder and never reads stale
vectors. ``item_key`` keys an item by real path + size + mtime (audio) or by the text's hash,
so a changed file is embedded again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from claptune.embed.encode import check_encode_args
from claptune.errors import ClaptuneError

if TYPE_CHECKING:  # models call into the embed package; it only needs their methods
    from claptune.models.base import AudioTextModel

STORE_FORMAT = 1  # bump when the store layout changes
STORE_FORMATS = ("npz", "shards")  # the layouts, by the name `claptune embed --store-format` uses
KINDS = ("audio", "text")
CHUNK_SIZE = {"audio": 256, "text": 4096}  # items per part or unit unless told
BATCH_SIZE = {"audio": 32, "text": 256}  # windows or captions per forward unless told


@dataclass
class StoredEmbeddings:
    """An embedding store read back by ``load_store`` (or ``ShardedStore.load``)."""

    ids: list[str]  # audio paths as given, or the texts
    embeddings: np.ndarray  # (N, D) float32, L2-normalised; row i belongs to ids[i]
    manifest: dict[str, Any]


@dataclass(frozen=True)
class StoreRequest:
    """What to embed into a store, and how; ``write_store`` carries it out.

    Give ``items`` (audio paths or captions, by ``kind``) or ``shards`` (webdataset shard
    patterns or URLs, whose audio is streamed: item ids ``<shard>/<key>``). ``chunk_size`` and
    ``batch_size`` left as None (or 0) take the kind's defaults (``CHUNK_SIZE``,
    ``BATCH_SIZE``); the request holds the resolved values.
    """

    items: Sequence[str | os.PathLike] = ()  # audio paths or captions
    shards: str | Sequence[str] | None = None  # instead of items: shards, streamed, never unpacked
    kind: str = "audio"  # "audio" or "text": which encoder, and how items are keyed
    store_format: str = "npz"  # the layout: "npz" (one vectors file) or "shards" (streamed)
    chunk_size: int | None = None  # items per atomically written part or unit: what a kill loses
    batch_size: int | None = None  # windows (audio) or captions per forward
    num_workers: int = 2  # decoding threads beside the model
    progress: bool = True
    on_error: str = "raise"  # "raise": a bad clip stops the run; "skip": listed as failed

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be 'audio' or 'text', got {self.kind!r}")
        if self.store_format not in STORE_FORMATS:
            raise ValueError(
                f"store_format must be one of {STORE_FORMATS}, got {self.store_format!r}"
            )
        if self.shards is not None and len(self.items):
            raise ValueError("give items or shards, not both")
        if self.shards is not None and self.kind != "audio":
            raise ValueError(
                f"shards are read for their audio: kind must be 'audio', not {self.kind!r}"
            )
        if self.store_format == "npz" and any(isinstance(it, np.ndarray) for it in self.items):
            raise TypeError("the store keys items by path or text: pass file paths, not waveforms")
        check_encode_args(1, self.num_workers, self.on_error)  # batch_size: checked when used
        object.__setattr__(self, "chunk_size", self.chunk_size or CHUNK_SIZE[self.kind])
        object.__setattr__(self, "batch_size", self.batch_size or BATCH_SIZE[self.kind])


def store_key(model: AudioTextModel, kind: str) -> str:
    """Hash of what determines the vectors: the model identity and the kind of item."""
    return identity_key(model.identity(), kind)


def identity_key(identity: dict[str, Any], kind: str) -> str:
    """``store_key`` from an identity already computed (``model.identity()`` hashes every
    weight: a writer computes it once)."""
    blob = json.dumps(
        {"kind": kind, "identity": identity, "format": STORE_FORMAT}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def item_key(item: str | os.PathLike, kind: str) -> str:
    """Cache key of one item: real path + size + mtime for audio, a hash for text.

    The real path (links resolved): a clip reached through a symbolic link, such as the
    variants of bench/make_skewed.py, shares the features of the file it points to."""
    if kind == "text":
        return "t:" + hashlib.sha256(str(item).encode()).hexdigest()
    path = Path(item).expanduser().resolve()
    try:
        st = path.stat()
    except OSError:
        return f"a:{path}|missing"
    return f"a:{path}|{st.st_size}|{st.st_mtime_ns}"


@contextlib.contextmanager
def locked_file(path: Path) -> Iterator[None]:
    """Hold an advisory lock (``fcntl.flock``) on ``path``, created if need be, for the block:
    how the writers of one store take turns."""
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_unique_ids(ids: list[str]) -> None:
    """Raise ``ClaptuneError`` naming an id of webdataset samples that occurs twice."""
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in _count(ids).items() if n > 1)
        raise ClaptuneError(
            f"item id {dup!r} occurs twice in the shards: keys must be unique within a shard"
        )


def _count(ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    return counts


__all__ = [
    "BATCH_SIZE",
    "CHUNK_SIZE",
    "KINDS",
    "STORE_FORMAT",
    "STORE_FORMATS",
    "StoreRequest",
    "StoredEmbeddings",
    "check_unique_ids",
    "identity_key",
    "item_key",
    "locked_file",
    "store_key",
]
