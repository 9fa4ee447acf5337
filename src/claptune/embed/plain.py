"""The plain ("npz") store, written: per-item parts in a cache, shared by concurrent writers.

    OUT/cache/<key>/part-r<rank>-<writer>-<n>.npz   computed vectors, keyed per item
    OUT/cache/<key>/lock, claims/<writer>.json     coordination of concurrent writers
    OUT/manifest.json, OUT/embeddings-<hash>.npy    the view (``claptune.embed.view``)

``write_plain`` computes only the items missing from the cache of this model and kind
(``claptune.embed.store`` keys both), ``chunk_size`` items per part. Parts are written
atomically (temporary file, fsync, ``os.replace``, fsync of the folder); a rerun loads them and
computes only what is missing. A part that cannot be read (truncated by a crash or a full disk)
is reported in one warning, renamed ``*.damaged`` and its items are computed again; a part
holding pickled object arrays (claptune never writes one) is refused, never unpickled.

Several writers may share one store: ``torchrun`` ranks (each embeds its slice), and
independent runs into the same folder. Every writer names its parts with a unique writer id
(host, pid, random), and under an advisory lock (``fcntl.flock`` on ``lock``) it claims the
next chunk of items that no live writer has finished or claimed, so identical items are
embedded once. A claim lapses when its writer dies (the writer holds a lock on its claim file
for as long as it lives). The view is rewritten under the same lock as the union of the
earlier view (same model and kind) and this run's items, so concurrent runs never drop each
other's items; ``load_store(..., items=...)`` reads back exactly one run's items.

The audio of webdataset shards goes into the same parts: item ids ``<shard>/<key>``, cache key
``s:<id>``, so a rerun, from the same shards here or a copy elsewhere, computes only what is
missing; under ``torchrun`` shard ``i`` goes to rank ``i % world_size``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from claptune.atomic import atomic_file, remove_stale_temporaries, set_aside, write_json_atomic
from claptune.distributed import barrier, join_process_group
from claptune.embed.encode import (
    EncodingInterrupted,
    chunked,
    embedding_dim,
    encode_audio,
    encode_samples,
    encode_text,
)
from claptune.embed.store import (
    STORE_FORMAT,
    StoreRequest,
    check_unique_ids,
    identity_key,
    item_key,
    locked_file,
)
from claptune.embed.view import earlier_view, swap_view
from claptune.errors import AudioDecodeError, ClaptuneError, first_line

if TYPE_CHECKING:  # models call into the embed package; it only needs their methods
    from claptune.data.shards import ShardSample
    from claptune.models.base import AudioTextModel

CLAIM_POLL_S = 0.2  # how often a writer waiting for another writer's claimed items looks again
PART_ARRAYS = ("keys", "embeddings", "failed_keys", "reasons")


def write_plain(model: AudioTextModel, out_dir: Path, request: StoreRequest) -> Path:
    """Carry out ``request`` in the plain layout at ``out_dir``; return ``out_dir``.

    With ``on_error="raise"`` the first bad clip stops the run, keeping every part already
    written; ``"skip"`` records it in the manifest's ``failed`` list. Under ``torchrun`` every
    rank must call this with the same request; rank 0 writes the merged view once all ranks are
    done. Other runs may write into the same ``out_dir`` at the same time: items one of them has
    embedded or is embedding are not computed twice, and the view holds the items of all of
    them.
    """
    if request.shards is not None:
        return _write_shards(model, out_dir, request)
    return _write_items(model, out_dir, request)


def _write_items(model: AudioTextModel, out_dir: Path, request: StoreRequest) -> Path:
    items, kind = request.items, request.kind
    identity = model.identity()  # hashes every weight: compute once
    key = identity_key(identity, kind)
    cache = out_dir / "cache" / key
    cache.mkdir(parents=True, exist_ok=True)
    for folder in (out_dir, cache):  # what writers killed with kill -9 left behind
        remove_stale_temporaries(folder)
    _record_identity(cache, kind, identity)

    env, created_group = join_process_group()
    rank, world_size = env.rank, env.world_size
    try:
        keys = [item_key(it, kind) for it in items]
        unique = list(dict.fromkeys(keys))
        first_item = {k: it for k, it in zip(reversed(keys), reversed(items), strict=True)}
        parts = _Parts(cache)
        with _locked(cache):
            parts.refresh()
        if request.on_error == "raise":  # failures cached by an earlier run with on_error="skip"
            _raise_cached_failure(unique, parts, first_item)
        mine = [k for j, k in enumerate(unique) if j % world_size == rank]
        remaining = [k for k in mine if k not in parts.done and k not in parts.failed]
        unit = "clip" if kind == "audio" else "text"
        with (
            tqdm(
                total=len(remaining),
                desc=f"embedding {kind}",
                unit=unit,
                disable=not request.progress,
            ) as bar,
            _Claims(cache, rank) as claims,
        ):
            while remaining:
                with _locked(cache):
                    parts.refresh()
                    left = [k for k in remaining if k not in parts.done and k not in parts.failed]
                    taken = claims.others()
                    chunk = [k for k in left if k not in taken][: request.chunk_size]
                    claims.set(chunk)
                bar.update(len(remaining) - len(left))
                remaining = left
                if not remaining:
                    break
                if not chunk:  # everything left is being embedded by another writer
                    time.sleep(CLAIM_POLL_S)
                    continue
                _embed_part(
                    model,
                    [first_item[k] for k in chunk],
                    chunk,
                    claims.next_part(),
                    request,
                    on_clip=bar.update if kind == "audio" else None,
                )
                if kind == "audio":
                    bar.update(-len(chunk))  # counted clip by clip; the refresh counts them again
        barrier(env)
        if rank == 0:
            with _locked(cache):
                parts.refresh()
                if request.on_error == "raise":  # another writer may have skipped a bad clip
                    _raise_cached_failure(unique, parts, first_item)
                _write_view(out_dir, items, keys, key, kind, identity, model, parts)
        barrier(env)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()
    return out_dir


def _write_shards(model: AudioTextModel, out_dir: Path, request: StoreRequest) -> Path:
    """The audio of webdataset shards, streamed into parts: ids ``<shard>/<key>`` in shard
    order, then tar order. Samples without an audio member count as failures."""
    from claptune.data.shards import expand_shards, iter_samples

    urls = expand_shards(request.shards)
    identity = model.identity()
    key = identity_key(identity, "audio")
    cache = out_dir / "cache" / key
    cache.mkdir(parents=True, exist_ok=True)
    _record_identity(cache, "audio", identity)
    env, created_group = join_process_group()
    rank, world_size = env.rank, env.world_size
    try:
        parts = _Parts(cache)
        with _locked(cache):
            parts.refresh()
        done, failed = parts.done, parts.failed
        ids_of: dict[str, list[str]] = {}  # shard url -> its sample ids, in tar order

        def todo() -> Iterator[ShardSample]:
            for sample in iter_samples(urls, rank=rank, world_size=world_size, split_workers=False):
                ids_of.setdefault(sample.url, []).append(sample.id)
                k = "s:" + sample.id
                if k in failed and request.on_error == "raise":
                    raise AudioDecodeError(sample.id, failed[k])
                if k not in done and k not in failed:
                    yield sample

        # Shards are split between ranks, so ranks never share items; the store's claims
        # (which share identical items between concurrent runs) only name the parts here.
        with (
            tqdm(desc="embedding shards", unit="clip", disable=not request.progress) as bar,
            _Claims(cache, rank) as claims,
        ):
            for chunk in chunked(todo(), request.chunk_size):
                ids, emb, bad = encode_samples(
                    model, chunk, request.batch_size, request.num_workers, request.on_error
                )
                _write_part(
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
            check_unique_ids(ordered)
            with _locked(cache):
                parts.refresh()
                ordered_keys = ["s:" + i for i in ordered]
                _write_view(out_dir, ordered, ordered_keys, key, "audio", identity, model, parts)
        barrier(env)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()
    return out_dir


def _record_identity(cache: Path, kind: str, identity: dict[str, Any]) -> None:
    """identity.json: whose vectors a cache folder holds, for a reader of the folder."""
    with _locked(cache):
        if not (cache / "identity.json").is_file():
            write_json_atomic(cache / "identity.json", {"kind": kind, "identity": identity})


def _gather_ids(ids_of: dict[str, list[str]], world_size: int) -> dict[str, list[str]]:
    if world_size <= 1:
        return ids_of
    gathered: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(gathered, ids_of)
    merged: dict[str, list[str]] = {}
    for part in gathered:
        merged.update(part)
    return merged


def _raise_cached_failure(unique: list[str], parts: _Parts, first_item: dict) -> None:
    for k in unique:
        if k in parts.failed:
            raise AudioDecodeError(str(first_item[k]), parts.failed[k])


def _embed_part(
    model: AudioTextModel,
    chunk_items: list,
    chunk_keys: list[str],
    path: Path,
    request: StoreRequest,
    on_clip=None,
) -> None:
    """Embed one chunk into the part at ``path``. Ctrl-C keeps the clips finished so far as a
    part of their own (a rerun embeds only the rest) and stops."""
    failed_keys: list[str] = []
    reasons: list[str] = []
    if request.kind == "audio":
        try:
            enc = encode_audio(
                model,
                chunk_items,
                batch_size=request.batch_size,
                num_workers=request.num_workers,
                progress=False,
                on_error=request.on_error,
                on_clip=on_clip,
            )
        except EncodingInterrupted as stop:
            done = stop.partial
            if len(done.kept):
                keys = [chunk_keys[i] for i in done.kept.tolist()]
                _write_part(path, keys, done.embeddings, [], [])
            raise KeyboardInterrupt from None
        embeddings = enc.embeddings
        kept = set(enc.kept.tolist())
        ok_keys = [chunk_keys[i] for i in enc.kept.tolist()]
        reason_of = iter(reason for _, reason in enc.failed)
        for i, k in enumerate(chunk_keys):
            if i not in kept:
                failed_keys.append(k)
                reasons.append(next(reason_of))
    else:
        embeddings = encode_text(
            model, [str(t) for t in chunk_items], batch_size=request.batch_size, progress=False
        )
        ok_keys = chunk_keys
    _write_part(path, ok_keys, embeddings, failed_keys, reasons)


def _write_part(
    path: Path, keys: list[str], embeddings: np.ndarray, failed_keys: list[str], reasons: list[str]
) -> Path:
    with atomic_file(path) as fh:
        np.savez(
            fh,
            keys=np.array(keys, dtype=str),
            embeddings=embeddings.astype(np.float32),
            failed_keys=np.array(failed_keys, dtype=str),
            reasons=np.array(reasons, dtype=str),
        )
    return path


class _Parts:
    """The parts of one cache folder read so far: vectors and failures by item key. Each
    ``refresh`` reads only the parts that appeared since the last one."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.done: dict[str, np.ndarray] = {}
        self.failed: dict[str, str] = {}
        self.seen: set[str] = set()
        self.dim: int | None = None

    def refresh(self) -> None:
        for path in sorted(self.cache.glob("part-*.npz")):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            part = _read_part(path, self.dim)
            if part is None:
                continue
            keys, embeddings, failed_keys, reasons = part
            if len(keys):
                self.dim = embeddings.shape[1]
            self.done.update(zip(keys.tolist(), embeddings, strict=True))
            self.failed.update(zip(failed_keys.tolist(), reasons.tolist(), strict=True))


def _read_part(path: Path, dim: int | None) -> tuple[np.ndarray, ...] | None:
    """A part's arrays, or None for a damaged part (reported once and renamed ``*.damaged``,
    so that its items count as missing and are computed again)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = tuple(npz[name] for name in PART_ARRAYS)
    except ValueError as err:
        if "allow_pickle" in str(err):  # pickled data: claptune never writes it, never load it
            raise ClaptuneError(
                f"refusing to load {path}: it holds pickled objects, which claptune never "
                "writes into a store and will not unpickle (unpickling can run code); "
                "delete the file and rerun"
            ) from None
        return set_aside(path, f"unreadable ({first_line(err)})")
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        return set_aside(path, f"unreadable ({first_line(err)})")
    keys, embeddings, failed_keys, reasons = arrays
    if not (
        keys.ndim == 1
        and keys.dtype.kind == "U"
        and embeddings.dtype == np.float32
        and embeddings.ndim == 2
        and embeddings.shape[0] == keys.shape[0]
        and (dim is None or not len(keys) or embeddings.shape[1] == dim)
        and failed_keys.ndim == 1
        and failed_keys.shape == reasons.shape
        and np.isfinite(embeddings).all()
    ):
        return set_aside(path, "wrong contents")
    return arrays


# -- concurrent writers --------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """Hold the store's advisory lock (one per cache folder) for the block."""
    with locked_file(cache / "lock"):
        yield


class _Claims:
    """This writer's claim on the items it is embedding, seen by concurrent writers.

    The claim file stays locked (``flock``) while the writer lives, so a claim whose file is
    unlocked belongs to a writer that died and lapses. Read and written under ``_locked``.
    """

    def __init__(self, cache: Path, rank: int):
        host = re.sub(r"[^A-Za-z0-9.]", "", socket.gethostname())[:32] or "host"
        self.writer = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.cache, self.rank, self.n_parts = cache, rank, 0
        self.folder = cache / "claims"
        self.path = self.folder / f"{self.writer}.json"

    def __enter__(self) -> _Claims:
        self.folder.mkdir(exist_ok=True)
        with _locked(self.cache):  # created and locked at once: never seen unlocked
            self.fh = open(self.path, "w+b")  # noqa: SIM115 - held until __exit__
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        with _locked(self.cache):
            self.path.unlink(missing_ok=True)
            self.fh.close()

    def next_part(self) -> Path:
        """A part name no other writer can pick."""
        self.n_parts += 1
        return self.cache / f"part-r{self.rank}-{self.writer}-{self.n_parts:06d}.npz"

    def set(self, keys: list[str]) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(json.dumps(keys).encode())
        self.fh.flush()

    def others(self) -> set[str]:
        """Item keys claimed by other live writers; the files of dead ones are removed."""
        claimed: set[str] = set()
        for path in self.folder.glob("*.json"):
            if path == self.path:
                continue
            try:
                fh = open(path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                continue
            with fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its writer lives
                    with contextlib.suppress(ValueError):
                        claimed.update(json.loads(fh.read() or b"[]"))
                    continue
                path.unlink(missing_ok=True)
        return claimed


# -- the view ------------------------------------------------------------------------------------
def _write_view(
    out_dir: Path,
    items: Sequence,
    keys: list[str],
    key: str,
    kind: str,
    identity: dict[str, Any],
    model: AudioTextModel,
    parts: _Parts,
) -> None:
    """Write manifest.json + its vectors (``swap_view``): the earlier view's items (same model
    and kind) that this run did not ask for, then this run's items. Called under the store
    lock."""
    done, failed_by_key = parts.done, parts.failed
    this_run = {str(item) for item in items}
    ids, rows, failed = [], [], []
    earlier_ids, earlier_failed = earlier_view(out_dir, key)
    for item in earlier_ids:
        k = item_key(item, kind)
        if item not in this_run and k in done:  # a changed file drops out until re-embedded
            ids.append(item)
            rows.append(done[k])
    failed.extend(
        f for f in earlier_failed if f[0] not in this_run and item_key(f[0], kind) in failed_by_key
    )
    for item, k in zip(items, keys, strict=True):
        if k in done:
            ids.append(str(item))
            rows.append(done[k])
        elif k in failed_by_key:
            failed.append([str(item), failed_by_key[k]])
        else:
            raise ClaptuneError(f"the store at {out_dir} lacks {item}: a rank did not finish")
    dim = rows[0].shape[0] if rows else embedding_dim(model)
    embeddings = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    manifest = {
        "format": STORE_FORMAT,
        "kind": kind,
        "key": key,
        "identity": identity,
        "n_items": len(ids) + len(failed),
        "n_embedded": len(ids),
        "dim": int(dim),
        "ids": ids,
        "failed": failed,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    swap_view(out_dir, manifest, embeddings)


__all__ = ["CLAIM_POLL_S", "PART_ARRAYS", "write_plain"]
