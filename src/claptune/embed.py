"""Batched, deterministic embedding of audio and text, and the resumable on-disk store.

``encode_audio`` works with any ``AudioTextModel``: background threads decode and resample
files (libsndfile and soxr run in C and release the GIL, so threads overlap with the model
without the start-up and pickling costs of worker processes), each clip is cut into windows
(``claptune.audio.windows``), windows from several clips are batched through
``model.audio_embeddings`` under ``torch.inference_mode()`` in eval mode, and a clip's vector is
the mean of its L2-normalised window embeddings, renormalised. A clip's vector depends only on
the clip, never on what else shares its batch.

``embed_to_store`` writes embeddings to a folder that survives being killed:

    OUT/manifest.json          the view: kind, model identity, ids, failures, vectors file
    OUT/embeddings-<hash>.npy  (N, D) float32, rows in the order of manifest["ids"]
    OUT/cache/<key>/part-r<rank>-<writer>-<n>.npz   computed vectors, keyed per item
    OUT/cache/<key>/lock, claims/<writer>.json     coordination of concurrent writers

``<key>`` hashes the model identity (weights fingerprint and preprocessing) and the kind, so
another model or another preprocessing gets its own cache folder and never reads stale
vectors. Items are keyed by absolute path + size + mtime (audio) or by the text's hash, so a
changed file is embedded again. Parts are written atomically (temporary file, fsync,
``os.replace``, fsync of the folder); a rerun loads them and computes only what is missing. A
part that cannot be read (truncated by a crash or a full disk) is reported in one warning,
renamed ``*.damaged`` and its items are computed again; a part holding pickled object arrays
(claptune never writes one) is refused, never unpickled.

Several writers may share one store: ``torchrun`` ranks (each embeds its slice), and
independent runs into the same folder. Every writer names its parts with a unique writer id
(host, pid, random), and under an advisory lock (``fcntl.flock`` on ``lock``) it claims the
next chunk of items that no live writer has finished or claimed, so identical items are
embedded once. A claim lapses when its writer dies (the writer holds a lock on its claim file
for as long as it lives). The view is rewritten under the same lock as the union of the
earlier view (same model and kind) and this run's items, so concurrent runs never drop each
other's items; ``load_store(..., items=...)`` reads back exactly one run's items. A view
changes in one atomic step (``swap_view``): a reader polling the store while it is rewritten
sees the old view or the new one, never ids paired with other items' vectors.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
import uuid
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from claptune.atomic import (
    atomic_file,
    remove_stale_temporaries,
    set_aside,
    write_json_atomic,
)
from claptune.audio import stream_audio, stream_windows, windows
from claptune.distributed import barrier, join_process_group
from claptune.errors import AudioDecodeError, ClaptuneError, first_line

if TYPE_CHECKING:  # models call into this module (``encode_audio``); it only needs their methods
    from claptune.models.base import AudioItem, AudioTextModel

ON_ERROR = ("raise", "skip")
STORE_FORMAT = 1  # bump when the store layout changes
CLAIM_POLL_S = 0.2  # how often a writer waiting for another writer's claimed items looks again
VIEW_RETRIES = 20  # reads of a view whose vectors a newer view deleted meanwhile

log = logging.getLogger(__name__)


@dataclass
class AudioEncoding:
    """Result of ``encode_audio``: vectors of the clips that decoded, and the failures."""

    embeddings: np.ndarray  # (N_kept, D) float32, L2-normalised
    kept: np.ndarray  # (N_kept,) int64 indices into the items
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)


@dataclass
class StoredEmbeddings:
    """An embedding store read back by ``load_store``."""

    ids: list[str]  # audio paths as given, or the texts
    embeddings: np.ndarray  # (N, D) float32, L2-normalised; row i belongs to ids[i]
    manifest: dict[str, Any]


# -- in-memory encoding ------------------------------------------------------------------------
def encode_audio(
    model: AudioTextModel,
    items: Sequence[AudioItem],
    batch_size: int = 32,
    num_workers: int = 2,
    progress: bool = True,
    on_error: str = "raise",
    precision: str = "float32",
) -> AudioEncoding:
    """Embed files or 1-D waveforms (at ``model.sample_rate``) into (N_kept, D) float32.

    ``batch_size`` counts windows handed to the model per call (a model may run them in
    smaller chunks of its own, measured per device: the default model 16 windows on CPU);
    ``num_workers`` decoding threads (0 decodes in the calling thread). ``on_error="raise"``
    raises ``AudioDecodeError`` at the first bad clip; ``"skip"`` leaves it out of
    ``embeddings``/``kept`` and lists it in ``failed``. ``precision``: ``"float32"`` (exact, the
    default), or on a GPU ``"tf32"`` (TF32 matmuls and convolutions) or ``"bf16"`` (bfloat16
    autocast): faster, vectors about 1e-3 (tf32) to 1e-2 (bf16) away, so never mixed into a
    store; the output is float32 either way.
    """
    _check_args(batch_size, num_workers, on_error)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    decode = _window_decoder(model)
    sums: dict[int, torch.Tensor] = {}  # item index -> sum of its window embeddings
    pending_windows: list[np.ndarray] = []
    pending_owner: list[int] = []
    failed: list[tuple[str, str]] = []

    def run_batch(count: int) -> None:
        emb = _forward_audio(model, np.stack(pending_windows[:count]))
        for owner, row in zip(pending_owner[:count], emb, strict=True):
            sums[owner] = sums[owner] + row if owner in sums else row.clone()
        del pending_windows[:count], pending_owner[:count]

    def drop(owner: int) -> None:
        # a long file that failed mid-stream: forget the windows it had already given
        sums.pop(owner, None)
        keep = [i for i, o in enumerate(pending_owner) if o != owner]
        pending_windows[:] = [pending_windows[i] for i in keep]
        pending_owner[:] = [pending_owner[i] for i in keep]

    with (
        _eval_mode(model),
        torch.inference_mode(),
        _precision(precision, _model_device(model)),
        tqdm(total=len(items), desc="embedding audio", unit="clip", disable=not progress) as bar,
    ):
        # A few clips per thread keep the threads busy; long files come as lazy window streams
        # (see _window_decoder), so what is held ahead stays small whatever the files' lengths.
        for index, result in _prefetch(decode, items, num_workers, lookahead=4 * num_workers):
            bar.update(1)
            try:
                for chunk in (
                    [result] if isinstance(result, (np.ndarray, AudioDecodeError)) else result
                ):
                    if isinstance(chunk, AudioDecodeError):
                        raise chunk
                    pending_windows.extend(chunk)
                    pending_owner.extend([index] * len(chunk))
                    while len(pending_windows) >= batch_size:
                        run_batch(batch_size)
            except AudioDecodeError as err:
                if on_error == "raise":
                    raise
                drop(index)
                failed.append((err.path, err.reason))
        if pending_windows:
            run_batch(len(pending_windows))

    kept = np.array(sorted(sums), dtype=np.int64)
    if len(kept) == 0:
        return AudioEncoding(np.zeros((0, _embedding_dim(model)), np.float32), kept, failed)
    # Mean of unit vectors, renormalised: the sum has the same direction as the mean.
    stacked = torch.stack([sums[i] for i in kept.tolist()]).double()
    embeddings = torch.nn.functional.normalize(stacked, dim=-1).float().cpu().numpy()
    return AudioEncoding(embeddings, kept, failed)


def encode_text(
    model: AudioTextModel, texts: Sequence[str], batch_size: int = 256, progress: bool = True
) -> np.ndarray:
    """Embed captions into (N, D) float32 L2-normalised rows, ``batch_size`` at a time."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    texts = list(texts)
    if not texts:
        return np.zeros((0, _embedding_dim(model)), np.float32)
    chunks = []
    with _eval_mode(model), torch.inference_mode():
        for start in tqdm(
            range(0, len(texts), batch_size),
            desc="embedding text",
            unit="batch",
            disable=not progress,
        ):
            emb = model.text_embeddings(texts[start : start + batch_size])
            chunks.append(emb.float().cpu().numpy())
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _check_args(batch_size: int, num_workers: int, on_error: str) -> None:
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if num_workers < 0:
        raise ValueError("num_workers must be >= 0")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


# A file whose waveform at the model's rate would pass this many samples (64 MiB of float32;
# about 6 minutes at 44.1 kHz) is decoded lazily, block by block, while its windows are
# embedded; shorter ones are decoded whole ahead of time by the decoding threads.
STREAM_SAMPLES = 1 << 24


def _window_decoder(
    model: AudioTextModel,
) -> Callable[[int, AudioItem], np.ndarray | Iterator[np.ndarray]]:
    """item -> its windows: an (n, clip_samples) array, or for a long file an iterator of such
    arrays that decodes as it is read (same windows, bounded memory)."""
    padding = getattr(model, "padding", "repeatpad")

    def decode(index: int, item: AudioItem) -> np.ndarray | Iterator[np.ndarray]:
        if isinstance(item, np.ndarray):
            wave = np.asarray(item, dtype=np.float32)
            name = f"<waveform {index}>"
            if wave.ndim != 1 or wave.size == 0 or not np.isfinite(wave).all():
                raise AudioDecodeError(name, "waveform must be a non-empty finite 1-D array")
            return windows(wave, model.clip_samples, padding)
        from claptune.data.shards import is_member_ref, load_member

        if is_member_ref(item):  # an audio member of a webdataset shard: short, read whole
            return windows(load_member(str(item), model.sample_rate), model.clip_samples, padding)
        chunks = stream_windows(stream_audio(item, model.sample_rate), model.clip_samples, padding)
        if _resampled_length(item, model.sample_rate) > STREAM_SAMPLES:
            return chunks
        return np.concatenate(list(chunks))

    return decode


def _resampled_length(path: AudioItem, sample_rate: int) -> int:
    try:
        info = sf.info(str(path))
    except Exception:  # unreadable: stream_audio reports why when it is read
        return 0
    return int(info.frames * sample_rate / max(info.samplerate, 1))


def _prefetch(
    decode: Callable[[int, AudioItem], np.ndarray | Iterator[np.ndarray]],
    items: Sequence[AudioItem],
    num_workers: int,
    lookahead: int,
) -> Iterator[tuple[int, np.ndarray | Iterator[np.ndarray] | AudioDecodeError]]:
    """Yield (index, windows or the decode error) in item order, decoding ahead in threads."""

    def safe(index: int, item: AudioItem) -> np.ndarray | Iterator[np.ndarray] | AudioDecodeError:
        try:
            return decode(index, item)
        except AudioDecodeError as err:
            return err
        except MemoryError:
            return AudioDecodeError(
                item if isinstance(item, (str, os.PathLike)) else f"<waveform {index}>",
                "not enough memory to decode",
            )

    if num_workers == 0:
        for index, item in enumerate(items):
            yield index, safe(index, item)
        return
    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="claptune-decode") as pool:
        queue: deque[tuple[int, Future]] = deque()
        it = iter(enumerate(items))
        for index, item in it:
            queue.append((index, pool.submit(safe, index, item)))
            if len(queue) >= lookahead:
                break
        while queue:
            index, future = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt[0], pool.submit(safe, *nxt)))
            yield index, future.result()


def _forward_audio(model: AudioTextModel, batch: np.ndarray) -> torch.Tensor:
    device = _model_device(model)
    windows_ = torch.from_numpy(batch)
    if device.type == "cuda":  # page-locked: the copy runs by DMA, beside the host's work
        windows_ = windows_.pin_memory().to(device, non_blocking=True)
    else:
        windows_ = windows_.to(device)
    return model.audio_embeddings(windows_).float()


PRECISIONS = ("float32", "tf32", "bf16")


@contextlib.contextmanager
def _precision(precision: str, device: torch.device) -> Iterator[None]:
    """float32 as is; on CUDA, TF32 matmuls/convolutions or bfloat16 autocast for the block."""
    if precision == "float32" or device.type != "cuda":
        yield
        return
    if precision == "bf16":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _model_device(model: AudioTextModel) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _embedding_dim(model: AudioTextModel) -> int:
    with _eval_mode(model), torch.inference_mode():
        return int(model.text_embeddings(["a"]).shape[-1])


class _eval_mode:
    """Put a model in eval mode for a block and restore its previous mode afterwards."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def __enter__(self) -> None:
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


# -- the on-disk store ---------------------------------------------------------------------------
def store_key(model: AudioTextModel, kind: str) -> str:
    """Hash of what determines the vectors: the model identity and the kind of item."""
    return _key_of(model.identity(), kind)


def _key_of(identity: dict[str, Any], kind: str) -> str:
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


def embed_to_store(
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
    """Embed ``items`` (audio paths or texts) into the store at ``out_dir``; return ``out_dir``.

    Computes only the items missing from the cache of this model and kind, ``chunk_size`` items
    per atomically written part (default 256 clips or 4096 texts). With ``on_error="raise"``
    the first bad clip stops the run, keeping every part already written; ``"skip"`` records it
    in the manifest's ``failed`` list. Under ``torchrun`` every rank must call this with the
    same items; rank 0 writes the merged view once all ranks are done. Other runs may write
    into the same ``out_dir`` at the same time: items one of them has embedded or is embedding
    are not computed twice, and the view holds the items of all of them.
    """
    if kind not in ("audio", "text"):
        raise ValueError(f"kind must be 'audio' or 'text', got {kind!r}")
    if any(isinstance(it, np.ndarray) for it in items):
        raise TypeError("the store keys items by path or text: pass file paths, not waveforms")
    _check_args(1, num_workers, on_error)
    chunk_size = chunk_size or (256 if kind == "audio" else 4096)
    batch_size = batch_size or (32 if kind == "audio" else 256)
    out_dir = Path(out_dir)
    identity = model.identity()  # hashes every weight: compute once
    key = _key_of(identity, kind)
    cache = out_dir / "cache" / key
    cache.mkdir(parents=True, exist_ok=True)
    for folder in (out_dir, cache):  # what writers killed with kill -9 left behind
        remove_stale_temporaries(folder)
    with _locked(cache):
        if not (cache / "identity.json").is_file():
            write_json_atomic(cache / "identity.json", {"kind": kind, "identity": identity})

    env, created_group = join_process_group()
    rank, world_size = env.rank, env.world_size
    try:
        keys = [item_key(it, kind) for it in items]
        unique = list(dict.fromkeys(keys))
        first_item = {k: it for k, it in zip(reversed(keys), reversed(items), strict=True)}
        parts = _Parts(cache)
        with _locked(cache):
            parts.refresh()
        if on_error == "raise":  # failures cached by an earlier run with on_error="skip"
            _raise_cached_failure(unique, parts, first_item)
        mine = [k for j, k in enumerate(unique) if j % world_size == rank]
        remaining = [k for k in mine if k not in parts.done and k not in parts.failed]
        unit = "clip" if kind == "audio" else "text"
        with (
            tqdm(
                total=len(remaining), desc=f"embedding {kind}", unit=unit, disable=not progress
            ) as bar,
            _Claims(cache, rank) as claims,
        ):
            while remaining:
                with _locked(cache):
                    parts.refresh()
                    left = [k for k in remaining if k not in parts.done and k not in parts.failed]
                    taken = claims.others()
                    chunk = [k for k in left if k not in taken][:chunk_size]
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
                    kind,
                    batch_size,
                    num_workers,
                    on_error,
                )
        barrier(env)
        if rank == 0:
            with _locked(cache):
                parts.refresh()
                if on_error == "raise":  # another writer may have skipped a bad clip of ours
                    _raise_cached_failure(unique, parts, first_item)
                _write_view(out_dir, items, keys, key, kind, identity, model, parts)
        barrier(env)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()
    return out_dir


def _raise_cached_failure(unique: list[str], parts: _Parts, first_item: dict) -> None:
    for k in unique:
        if k in parts.failed:
            raise AudioDecodeError(str(first_item[k]), parts.failed[k])


def _embed_part(
    model: AudioTextModel,
    chunk_items: list,
    chunk_keys: list[str],
    path: Path,
    kind: str,
    batch_size: int,
    num_workers: int,
    on_error: str,
) -> None:
    failed_keys: list[str] = []
    reasons: list[str] = []
    if kind == "audio":
        enc = encode_audio(
            model,
            chunk_items,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=False,
            on_error=on_error,
        )
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
            model, [str(t) for t in chunk_items], batch_size=batch_size, progress=False
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


PART_ARRAYS = ("keys", "embeddings", "failed_keys", "reasons")


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
    with _locked_file(cache / "lock"):
        yield


@contextlib.contextmanager
def _locked_file(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
    earlier_ids, earlier_failed = _earlier_view(out_dir, key)
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
    dim = rows[0].shape[0] if rows else _embedding_dim(model)
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


def swap_view(out_dir: Path, manifest: dict[str, Any], embeddings: np.ndarray) -> None:
    """Publish a view in one atomic step: the vectors go to a new file named by a hash of the
    ids and the vectors (``embeddings-<hash>.npy``, never modified once written), then
    ``manifest.json``, which names that file, replaces the old manifest with ``os.replace``. A
    reader thus sees the old view or the new one, never ids paired with another view's rows.
    The vectors of the view just replaced are kept (a reader that has just read the old
    manifest can still open them); older ones are deleted (``load_store`` then re-reads the
    manifest). Runs under the folder's view lock, also for writers of other models."""
    digest = hashlib.sha256(json.dumps(manifest["ids"]).encode())
    digest.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    name = f"embeddings-{digest.hexdigest()[:16]}.npy"
    with _locked_file(out_dir / ".view.lock"):
        previous = _view_vectors_name(out_dir)
        with atomic_file(out_dir / name) as fh:
            np.save(fh, embeddings)
        write_json_atomic(out_dir / "manifest.json", {**manifest, "embeddings": name})
        for stale in [*out_dir.glob("embeddings-*.npy"), out_dir / "embeddings.npy"]:
            if stale.name not in (name, previous):
                stale.unlink(missing_ok=True)


def _view_vectors_name(out_dir: Path) -> str | None:
    """The vectors file named by the manifest on disk (``embeddings.npy`` in stores written
    before views were versioned), or None."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    name = manifest.get("embeddings", "embeddings.npy")
    return name if _is_vectors_name(name) else None


def _is_vectors_name(name: object) -> bool:
    return (
        isinstance(name, str) and re.fullmatch(r"embeddings(-[0-9a-f]{16})?\.npy", name) is not None
    )


def _earlier_view(out_dir: Path, key: str) -> tuple[list[str], list[list[str]]]:
    """Ids and failures of the view on disk if it came from the same model and kind."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except FileNotFoundError:
        return [], []
    except (OSError, ValueError) as err:  # rebuilt from the cache below: nothing is lost
        log.warning("replacing the unreadable %s (%s)", out_dir / "manifest.json", first_line(err))
        return [], []
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return [], []  # another model's vectors: not comparable, replaced
    return list(manifest.get("ids", [])), list(manifest.get("failed", []))


def load_store(
    directory: str | os.PathLike,
    model: AudioTextModel | None = None,
    items: Sequence[str | os.PathLike] | None = None,
) -> StoredEmbeddings:
    """Read the store written by ``embed_to_store``; with ``model``, refuse a store whose
    vectors came from another model or preprocessing. With ``items`` (as passed to
    ``embed_to_store``), return only those: ids and rows in their order (duplicates kept),
    and the manifest's ``ids``/``failed`` restricted to them."""
    directory = Path(directory)
    for attempt in range(VIEW_RETRIES):
        manifest, embeddings = _read_view(directory, model)
        if embeddings is not None:
            break
        time.sleep(0.01 * (attempt + 1))  # a writer replaced the view between our two reads
    else:
        raise ClaptuneError(f"the store at {directory} names vectors that are missing; rerun embed")
    ids = list(manifest["ids"])
    if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
        raise ClaptuneError(
            f"the store at {directory} is inconsistent "
            f"({embeddings.shape[0]} rows, {len(ids)} ids); rerun embed"
        )
    if items is None:
        return StoredEmbeddings(ids=ids, embeddings=embeddings, manifest=manifest)
    row_of = {item: row for row, item in enumerate(ids)}
    reason_of = {item: reason for item, reason in manifest.get("failed", [])}
    wanted = [str(item) for item in items]
    lacking = [item for item in wanted if item not in row_of and item not in reason_of]
    if lacking:
        raise ClaptuneError(
            f"the store at {directory} lacks {lacking[0]} "
            f"({len(lacking)} items in all); rerun embed"
        )
    kept = [item for item in wanted if item in row_of]
    failed = [[item, reason_of[item]] for item in wanted if item not in row_of]
    subset = {
        **manifest,
        "ids": kept,
        "failed": failed,
        "n_items": len(wanted),
        "n_embedded": len(kept),
    }
    return StoredEmbeddings(
        ids=kept, embeddings=embeddings[[row_of[i] for i in kept]], manifest=subset
    )


def _read_view(
    directory: Path, model: AudioTextModel | None
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The manifest and the vectors it names; None for vectors deleted since the manifest was
    read (a newer view replaced it: the caller reads again)."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise ClaptuneError(f"no embedding store at {directory} (manifest.json missing)")
    try:
        manifest = json.loads(manifest_path.read_text())
        kind, key = manifest["kind"], manifest["key"]
        list(manifest["ids"])
        name = manifest.get("embeddings", "embeddings.npy")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ClaptuneError(
            f"cannot read {manifest_path}: {first_line(err)}; rerun embed to rebuild it"
        ) from None
    if not _is_vectors_name(name):
        raise ClaptuneError(f"cannot read {manifest_path}: bad vectors name; rerun embed")
    if model is not None and key != store_key(model, kind):
        raise ClaptuneError(
            f"the store at {directory} was written by another model or preprocessing; embed again"
        )
    npy = directory / name
    try:
        return manifest, np.load(npy, allow_pickle=False)
    except FileNotFoundError:
        if name == "embeddings.npy":
            raise ClaptuneError(f"cannot read {npy}: missing; rerun embed") from None
        return manifest, None
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ClaptuneError(
                f"refusing to load {npy}: it holds pickled objects, which "
                "claptune never writes and will not unpickle (unpickling can "
                "run code); delete it and rerun embed"
            ) from None
        raise ClaptuneError(f"cannot read {npy}: {first_line(err)}; rerun embed") from None
    except (OSError, EOFError) as err:
        raise ClaptuneError(f"cannot read {npy}: {first_line(err)}; rerun embed") from None


__all__ = [
    "AudioEncoding",
    "StoredEmbeddings",
    "embed_to_store",
    "encode_audio",
    "encode_text",
    "item_key",
    "load_store",
    "store_key",
]
