"""Embedding from webdataset shards, and the sharded store layout that curation streams.

Two things beside ``claptune.embed``'s store:

``embed_shards_to_store(model, specs, out_dir)`` embeds the audio of webdataset shards
(``claptune.data.shards``) streamed: samples are decoded in memory in chunks of ``chunk_size``,
never unpacked to disk. Item ids are ``<shard>/<key>``; the cache key of an item is its id
(``s:<id>``), so a rerun, from the same shards here or a copy elsewhere, computes only what is
missing. Under ``torchrun`` shard ``i`` goes to rank ``i % world_size``.

``store_format="shards"`` (also for audio files and captions, ``embed_to_sharded_store``)
writes the store itself as webdataset shards of (id, embedding) instead of one
``embeddings.npy``::

    OUT/manifest.json                  layout "shards": kind, model identity, shard list, failures
    OUT/shards/<key>/<unit>.tar        one sample per item: id.txt + emb.npy (float32, (D,))
    OUT/shards/<key>/<unit>.json       the unit's item count and failures (written first)

A unit is one input shard (or ``chunk_size`` files/captions), written atomically when done; a
rerun skips the units already written without reading their input. Nothing holds all vectors
at once, neither here nor in ``ShardedStore.blocks()``, through which ``claptune curate``
streams a pool block by block into the search.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from claptune import embed as _store
from claptune.atomic import (
    atomic_file,
    remove_stale_temporaries,
    set_aside,
    write_json_atomic,
)
from claptune.data.shards import ShardSample, decode_sample, expand_shards, iter_samples, shard_name
from claptune.distributed import barrier, join_process_group
from claptune.embed import StoredEmbeddings, encode_audio, encode_text
from claptune.errors import AudioDecodeError, ClaptuneError, first_line
from claptune.models.base import AudioTextModel

STORE_FORMATS = ("npz", "shards")


# -- embedding the samples of shards ------------------------------------------------------------
def _embed_samples(
    model: AudioTextModel,
    samples: list[ShardSample],
    batch_size: int,
    num_workers: int,
    on_error: str,
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """(ids embedded, their (N, D) vectors, failures) of a chunk of samples."""

    def decode(sample: ShardSample) -> np.ndarray | AudioDecodeError:
        try:
            return decode_sample(sample, model.sample_rate)
        except AudioDecodeError as err:
            return err

    # libsndfile and soxr release the GIL: threads decode the chunk in parallel.
    if num_workers > 0:
        with ThreadPoolExecutor(num_workers, thread_name_prefix="claptune-shard") as pool:
            waves = list(pool.map(decode, samples))
    else:
        waves = [decode(s) for s in samples]
    failed = [
        (s.id, w.reason)
        for s, w in zip(samples, waves, strict=True)
        if isinstance(w, AudioDecodeError)
    ]
    if failed and on_error == "raise":
        raise AudioDecodeError(*failed[0])
    ok = [
        (s.id, w)
        for s, w in zip(samples, waves, strict=True)
        if not isinstance(w, AudioDecodeError)
    ]
    if not ok:
        return [], np.zeros((0, 0), np.float32), failed
    enc = encode_audio(
        model,
        [w for _, w in ok],
        batch_size=batch_size,
        num_workers=0,
        progress=False,
        on_error="raise",
    )
    return [sid for sid, _ in ok], enc.embeddings, failed


def _chunks(samples: Iterator[ShardSample], size: int) -> Iterator[list[ShardSample]]:
    chunk: list[ShardSample] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def embed_shards_to_store(
    model: AudioTextModel,
    specs: str | Sequence[str],
    out_dir: str | os.PathLike,
    store_format: str = "npz",
    chunk_size: int | None = None,
    batch_size: int | None = None,
    num_workers: int = 2,
    progress: bool = True,
    on_error: str = "raise",
) -> Path:
    """Embed the audio of the shards ``specs`` (patterns or URLs) into a store at ``out_dir``.

    ``store_format="npz"`` writes ``claptune.embed``'s store (read by ``load_store``; ids are
    ``<shard>/<key>`` in shard order, then tar order); ``"shards"`` the sharded layout (read by
    ``ShardedStore``). Samples without an audio member count as failures.
    """
    _check(store_format, num_workers, on_error)
    urls = expand_shards(specs)
    chunk_size = chunk_size or 256
    batch_size = batch_size or 32
    out_dir = Path(out_dir)
    if store_format == "shards":
        units = [(shard_name(u), u) for u in urls]
        return _write_sharded(
            model, units, out_dir, "audio", batch_size, num_workers, progress, on_error, chunk_size
        )
    identity = model.identity()
    key = _store._key_of(identity, "audio")
    cache = out_dir / "cache" / key
    cache.mkdir(parents=True, exist_ok=True)
    with _store._locked(cache):
        if not (cache / "identity.json").is_file():
            write_json_atomic(cache / "identity.json", {"kind": "audio", "identity": identity})
    env, created_group = join_process_group()
    rank, world_size = env.rank, env.world_size
    try:
        parts = _store._Parts(cache)
        with _store._locked(cache):
            parts.refresh()
        done, failed = parts.done, parts.failed
        ids_of: dict[str, list[str]] = {}  # shard url -> its sample ids, in tar order

        def todo() -> Iterator[ShardSample]:
            for sample in iter_samples(urls, rank=rank, world_size=world_size, split_workers=False):
                ids_of.setdefault(sample.url, []).append(sample.id)
                k = "s:" + sample.id
                if k in failed and on_error == "raise":
                    raise AudioDecodeError(sample.id, failed[k])
                if k not in done and k not in failed:
                    yield sample

        # Shards are split between ranks, so ranks never share items; the store's claims
        # (which share identical items between concurrent runs) only name the parts here.
        with (
            tqdm(desc="embedding shards", unit="clip", disable=not progress) as bar,
            _store._Claims(cache, rank) as claims,
        ):
            for chunk in _chunks(todo(), chunk_size):
                ids, emb, bad = _embed_samples(model, chunk, batch_size, num_workers, on_error)
                _store._write_part(
                    claims.next_part(),
                    ["s:" + i for i in ids],
                    emb,
                    ["s:" + i for i, _ in bad],
                    [r for _, r in bad],
                )
                bar.update(len(chunk))
        all_ids = _gather_ids(ids_of, world_size)
        if rank == 0:
            ordered = [sid for url in urls for sid in all_ids.get(url, [])]
            _check_unique(ordered)
            with _store._locked(cache):
                parts.refresh()
                _store._write_view(
                    out_dir,
                    ordered,
                    ["s:" + i for i in ordered],
                    key,
                    "audio",
                    identity,
                    model,
                    parts,
                )
        barrier(env)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()
    return out_dir


def _gather_ids(ids_of: dict[str, list[str]], world_size: int) -> dict[str, list[str]]:
    if world_size <= 1:
        return ids_of
    gathered: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(gathered, ids_of)
    merged: dict[str, list[str]] = {}
    for part in gathered:
        merged.update(part)
    return merged


def _check_unique(ids: list[str]) -> None:
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


def _check(store_format: str, num_workers: int, on_error: str) -> None:
    if store_format not in STORE_FORMATS:
        raise ValueError(f"store_format must be one of {STORE_FORMATS}, got {store_format!r}")
    _store._check_args(1, num_workers, on_error)


# -- the sharded layout ----------------------------------------------------------------------------
def embed_to_sharded_store(
    model: AudioTextModel,
    items: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    kind: str = "audio",
    chunk_size: int | None = None,
    batch_size: int | None = None,
    num_workers: int = 2,
    progress: bool = True,
    on_error: str = "raise",
) -> Path:
    """``claptune.embed.embed_to_store`` for audio files or captions, in the sharded layout.

    Units of ``chunk_size`` items (256 clips, 4096 captions) are named by a hash of their items'
    cache keys, so a rerun over the same items skips the units already written.
    """
    if kind not in ("audio", "text"):
        raise ValueError(f"kind must be 'audio' or 'text', got {kind!r}")
    _check("shards", num_workers, on_error)
    chunk_size = chunk_size or (256 if kind == "audio" else 4096)
    batch_size = batch_size or (32 if kind == "audio" else 256)
    items = [str(i) for i in items]
    units = []
    for n, start in enumerate(range(0, len(items), chunk_size)):
        chunk = items[start : start + chunk_size]
        digest = hashlib.sha256("\n".join(_store.item_key(i, kind) for i in chunk).encode())
        units.append((f"part-{n:06d}-{digest.hexdigest()[:12]}", chunk))
    return _write_sharded(
        model, units, Path(out_dir), kind, batch_size, num_workers, progress, on_error, chunk_size
    )


def _write_sharded(
    model: AudioTextModel,
    units: list[tuple[str, Any]],
    out_dir: Path,
    kind: str,
    batch_size: int,
    num_workers: int,
    progress: bool,
    on_error: str,
    chunk_size: int,
) -> Path:
    """Embed every unit (an input shard URL, or a list of files or captions) not yet written."""
    identity = model.identity()
    key = _store._key_of(identity, kind)
    folder = out_dir / "shards" / key
    folder.mkdir(parents=True, exist_ok=True)
    env, created_group = join_process_group()
    rank, world_size = env.rank, env.world_size
    try:
        remove_stale_temporaries(folder)
        mine = [
            u for i, u in enumerate(units) if i % world_size == rank and not _unit_ok(folder, u[0])
        ]
        for name, source in tqdm(
            mine, desc=f"embedding {kind} units", unit="unit", disable=not progress
        ):
            ids, emb, failed = _embed_unit(
                model, source, kind, batch_size, num_workers, on_error, chunk_size
            )
            _write_unit(folder, name, ids, emb, failed)
        barrier(env)
        if rank == 0:
            _write_sharded_manifest(out_dir, folder, units, kind, key, identity, model)
        barrier(env)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()
    return out_dir


def _embed_unit(
    model, source, kind: str, batch_size: int, num_workers: int, on_error: str, chunk_size: int
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    if kind == "text":
        return list(source), encode_text(model, source, batch_size=batch_size, progress=False), []
    if isinstance(source, list):  # audio files
        enc = encode_audio(
            model,
            source,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=False,
            on_error=on_error,
        )
        return [source[i] for i in enc.kept.tolist()], enc.embeddings, list(enc.failed)
    ids: list[str] = []
    parts: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    # One input shard, streamed in chunks: its vectors (D floats a clip) are all that is held.
    for chunk in _chunks(iter_samples([source], split_workers=False), chunk_size):
        got, emb, bad = _embed_samples(model, chunk, batch_size, num_workers, on_error)
        ids += got
        failed += bad
        if got:
            parts.append(emb)
    _check_unique(ids + [i for i, _ in failed])
    return ids, (np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)), failed


def _write_unit(
    folder: Path, name: str, ids: list[str], emb: np.ndarray, failed: list[tuple[str, str]]
) -> None:
    import webdataset as wds

    # The sidecar first: a unit counts as done once its .tar exists, and then its sidecar does.
    write_json_atomic(
        folder / f"{name}.json",
        {
            "n": len(ids),
            "dim": int(emb.shape[1]) if len(ids) else None,
            "failed": [list(f) for f in failed],
        },
    )
    with atomic_file(folder / f"{name}.tar") as fh:
        writer = wds.TarWriter(fh)
        for n, (sid, row) in enumerate(zip(ids, emb.astype(np.float32), strict=True)):
            writer.write({"__key__": f"{n:08d}", "id.txt": sid, "emb.npy": row})
        writer.close()


class _Damaged(Exception):
    """A unit of the sharded store that cannot be read back whole."""


def _read_unit(path: Path, n: int | None, dim: int | None) -> tuple[list[str], list[np.ndarray]]:
    """The ids and (D,) float32 vectors of one unit, checked: every sample whole, no pickled
    array, ``n`` samples of dimension ``dim`` (None: not checked); else ``_Damaged``."""
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.isfile():
                    key, _, ext = member.name.partition(".")
                    samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise _Damaged(f"unreadable ({first_line(err)})") from None
    ids, rows = [], []
    for sample in samples.values():
        try:
            sid = sample["id.txt"].decode("utf-8")
            row = np.load(io.BytesIO(sample["emb.npy"]), allow_pickle=False)
        except KeyError:
            raise _Damaged("a sample lacks its id or its vector") from None
        except ValueError as err:
            if "allow_pickle" in str(err):
                raise _Damaged("it holds pickled objects, never unpickled") from None
            raise _Damaged(f"unreadable ({first_line(err)})") from None
        except (OSError, EOFError) as err:
            raise _Damaged(f"unreadable ({first_line(err)})") from None
        if row.dtype != np.float32 or row.ndim != 1 or not np.isfinite(row).all():
            raise _Damaged("a vector is not finite float32 of one dimension")
        if dim is not None and row.shape[0] != dim:
            raise _Damaged(f"a vector has {row.shape[0]} values, not {dim}")
        ids.append(sid)
        rows.append(row)
    if n is not None and len(ids) != n:
        raise _Damaged(f"{len(ids)} samples where its record says {n}")
    return ids, rows


def _unit_ok(folder: Path, name: str) -> bool:
    """Whether unit ``name`` is written and reads back whole; a damaged one (truncated, pickled,
    not what its sidecar says) is set aside with one warning, to be computed again."""
    tar, side = folder / f"{name}.tar", folder / f"{name}.json"
    if not tar.is_file():
        return False
    try:
        info = json.loads(side.read_text())
        n, dim = int(info["n"]), info["dim"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        set_aside(tar, f"its record {side.name} is unreadable ({first_line(err)})")
        return False
    try:
        _read_unit(tar, n, dim)
    except _Damaged as err:
        set_aside(tar, str(err))
        return False
    return True


def _write_sharded_manifest(
    out_dir: Path,
    folder: Path,
    units: list[tuple[str, Any]],
    kind: str,
    key: str,
    identity: dict[str, Any],
    model: AudioTextModel,
) -> None:
    shards, failed, dim = [], [], None
    for name, _ in units:
        side = folder / f"{name}.json"
        if not (folder / f"{name}.tar").is_file() or not side.is_file():
            raise ClaptuneError(f"the store at {out_dir} lacks unit {name}: a rank did not finish")
        info = json.loads(side.read_text())
        shards.append({"name": name, "n": info["n"]})
        failed += info["failed"]
        dim = dim or info["dim"]
    n_items = sum(s["n"] for s in shards) + len(failed)
    write_json_atomic(
        out_dir / "manifest.json",
        {
            "format": _store.STORE_FORMAT,
            "layout": "shards",
            "kind": kind,
            "key": key,
            "identity": identity,
            "n_items": n_items,
            "n_embedded": n_items - len(failed),
            "dim": int(dim or _store._embedding_dim(model)),
            "shards": shards,
            "failed": failed,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def is_sharded_store(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a store in the sharded layout."""
    manifest = Path(directory) / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("layout") == "shards"
    except ValueError:
        return False


@dataclass
class ShardedStore:
    """A store in the sharded layout, read block by block (``blocks``) or whole (``load``)."""

    directory: Path
    manifest: dict[str, Any]

    @staticmethod
    def open(directory: str | os.PathLike, model: AudioTextModel | None = None) -> ShardedStore:
        """With ``model``, refuse a store whose vectors came from another model or
        preprocessing."""
        directory = Path(directory)
        if not is_sharded_store(directory):
            raise ClaptuneError(f"no sharded embedding store at {directory}")
        manifest = json.loads((directory / "manifest.json").read_text())
        if model is not None and manifest["key"] != _store.store_key(model, manifest["kind"]):
            raise ClaptuneError(
                f"the store at {directory} was written by another model or "
                "preprocessing; embed again"
            )
        return ShardedStore(directory, manifest)

    def __len__(self) -> int:
        return int(self.manifest["n_embedded"])

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def shard_paths(self) -> list[Path]:
        folder = self.directory / "shards" / self.manifest["key"]
        return [folder / f"{s['name']}.tar" for s in self.manifest["shards"]]

    def blocks(self, block_size: int = 65536) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, (n, D) float32 vectors) of up to ``block_size`` items at a time, in order.
        A damaged unit (truncated, pickled, not what its manifest entry says) is a one-line
        ``ClaptuneError``: ``claptune embed`` into the same folder recomputes it."""
        if block_size < 1:
            raise ValueError("block_size must be >= 1")
        ids: list[str] = []
        rows: list[np.ndarray] = []
        for path, entry in zip(self.shard_paths(), self.manifest["shards"], strict=True):
            try:
                unit_ids, unit_rows = _read_unit(path, entry["n"], self.dim)
            except _Damaged as err:
                raise ClaptuneError(
                    f"damaged store shard {path}: {err}; rerun claptune embed into "
                    f"{self.directory}, which recomputes it"
                ) from None
            for sid, row in zip(unit_ids, unit_rows, strict=True):
                ids.append(sid)
                rows.append(row)
                if len(ids) >= block_size:
                    yield ids, np.stack(rows).astype(np.float32, copy=False)
                    ids, rows = [], []
        if ids:
            yield ids, np.stack(rows).astype(np.float32, copy=False)

    def load(self) -> StoredEmbeddings:
        """Every vector in memory, as ``load_store`` returns them (for small roles)."""
        ids: list[str] = []
        parts: list[np.ndarray] = []
        for block_ids, emb in self.blocks():
            ids += block_ids
            parts.append(emb)
        emb = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        return StoredEmbeddings(ids=ids, embeddings=emb, manifest=self.manifest)


__all__ = [
    "STORE_FORMATS",
    "ShardedStore",
    "embed_shards_to_store",
    "embed_to_sharded_store",
    "is_sharded_store",
]
