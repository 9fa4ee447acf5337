"""The sharded ("shards") store: webdataset shards of (id, embedding), written and streamed.

``write_sharded`` writes the store itself as webdataset shards instead of one vectors file::

    OUT/manifest.json                  layout "shards": kind, model identity, shard list, failures
    OUT/shards/<key>/<unit>.tar        one sample per item: id.txt + emb.npy (float32, (D,))
    OUT/shards/<key>/<unit>.json       the unit's item count and failures (written first)

A unit is one input shard (``StoreRequest.shards``: its audio streamed, decoded in memory in
chunks of ``chunk_size``, never unpacked to disk; item ids ``<shard>/<key>``) or ``chunk_size``
audio files or captions (named by a hash of their items' cache keys), written atomically when
done; a rerun skips the units already written without reading their input. Under ``torchrun``
unit ``i`` goes to rank ``i % world_size``. Nothing holds all vectors at once, neither here nor
in ``ShardedStore.blocks()``, through which ``claptune curate`` streams a pool block by block
into the search.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from claptune.atomic import atomic_file, remove_stale_temporaries, set_aside, write_json_atomic
from claptune.data.shards import expand_shards, iter_samples, shard_name
from claptune.distributed import barrier, join_process_group
from claptune.embed.encode import (
    chunked,
    embedding_dim,
    encode_audio,
    encode_samples,
    encode_text,
)
from claptune.embed.store import (
    STORE_FORMAT,
    StoredEmbeddings,
    StoreRequest,
    check_unique_ids,
    identity_key,
    item_key,
    store_key,
)
from claptune.errors import ClaptuneError, first_line

if TYPE_CHECKING:  # models call into the embed package; it only needs their methods
    from claptune.models.base import AudioTextModel


# -- writing -------------------------------------------------------------------------------------
def write_sharded(model: AudioTextModel, out_dir: Path, request: StoreRequest) -> Path:
    """Carry out ``request`` in the sharded layout at ``out_dir``; return ``out_dir``. Samples
    of a shard without an audio member count as failures."""
    if request.shards is not None:
        units: list[tuple[str, Any]] = [(shard_name(u), u) for u in expand_shards(request.shards)]
    else:
        items = [str(i) for i in request.items]
        units = []
        for n, start in enumerate(range(0, len(items), request.chunk_size)):
            chunk = items[start : start + request.chunk_size]
            keys = "\n".join(item_key(i, request.kind) for i in chunk)
            units.append((f"part-{n:06d}-{hashlib.sha256(keys.encode()).hexdigest()[:12]}", chunk))
    return _write_units(model, out_dir, units, request)


def _write_units(
    model: AudioTextModel, out_dir: Path, units: list[tuple[str, Any]], request: StoreRequest
) -> Path:
    """Embed every unit (an input shard URL, or a list of files or captions) not yet written."""
    kind = request.kind
    identity = model.identity()
    key = identity_key(identity, kind)
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
            mine, desc=f"embedding {kind} units", unit="unit", disable=not request.progress
        ):
            ids, emb, failed = _embed_unit(model, source, request)
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
    model: AudioTextModel, source: Any, request: StoreRequest
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    batch_size, num_workers, on_error = request.batch_size, request.num_workers, request.on_error
    if request.kind == "text":
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
    for chunk in chunked(iter_samples([source], split_workers=False), request.chunk_size):
        got, emb, bad = encode_samples(model, chunk, batch_size, num_workers, on_error)
        ids += got
        failed += bad
        if got:
            parts.append(emb)
    check_unique_ids(ids + [i for i, _ in failed])
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
            "format": STORE_FORMAT,
            "layout": "shards",
            "kind": kind,
            "key": key,
            "identity": identity,
            "n_items": n_items,
            "n_embedded": n_items - len(failed),
            "dim": int(dim or embedding_dim(model)),
            "shards": shards,
            "failed": failed,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


# -- reading -------------------------------------------------------------------------------------
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
        if model is not None and manifest["key"] != store_key(model, manifest["kind"]):
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
    "ShardedStore",
    "is_sharded_store",
    "write_sharded",
]
