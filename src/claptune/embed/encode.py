"""Batched, deterministic embedding of audio and text: the model's inference, no files written.

``encode_audio`` works with any ``AudioTextModel``: background threads decode and resample
files (libsndfile and soxr run in C and release the GIL, so threads overlap with the model
without the start-up and pickling costs of worker processes), each clip is cut into windows
(``claptune.audio.windows``), windows from several clips are batched through
``model.audio_embeddings`` under ``torch.inference_mode()`` in eval mode, and a clip's vector is
the mean of its L2-normalised window embeddings, renormalised. A clip's vector depends only on
the clip, never on what else shares its batch. ``encode_text`` embeds captions in batches;
``encode_samples`` the audio of webdataset samples (``claptune.data.shards``), decoded in
memory. The store's writers (``claptune.embed.plain``, ``claptune.embed.shards``) call these.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from claptune.audio import stream_audio, stream_windows, windows
from claptune.errors import AudioDecodeError

if TYPE_CHECKING:  # models call into this module (``encode_audio``); it only needs their methods
    from claptune.data.shards import ShardSample
    from claptune.models.base import AudioItem, AudioTextModel

ON_ERROR = ("raise", "skip")

T = TypeVar("T")


@dataclass
class AudioEncoding:
    """Result of ``encode_audio``: vectors of the clips that decoded, and the failures."""

    embeddings: np.ndarray  # (N_kept, D) float32, L2-normalised
    kept: np.ndarray  # (N_kept,) int64 indices into the items
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)


class EncodingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``encode_audio``: ``partial`` holds the clips finished before it (every
    window of them embedded), so that a caller such as the embedding store keeps them."""

    def __init__(self, partial: AudioEncoding):
        super().__init__()
        self.partial = partial


# -- in-memory encoding ------------------------------------------------------------------------
def encode_audio(
    model: AudioTextModel,
    items: Sequence[AudioItem],
    batch_size: int = 32,
    num_workers: int = 2,
    progress: bool = True,
    on_error: str = "raise",
    precision: str = "float32",
    on_clip: Callable[[], None] | None = None,
) -> AudioEncoding:
    """Embed files or 1-D waveforms (at ``model.sample_rate``) into (N_kept, D) float32.

    ``batch_size`` counts windows handed to the model per call (a model may run them in
    smaller chunks of its own, measured per device: the default model 16 windows on CPU);
    ``num_workers`` decoding threads (0 decodes in the calling thread). ``on_error="raise"``
    raises ``AudioDecodeError`` at the first bad clip; ``"skip"`` leaves it out of
    ``embeddings``/``kept`` and lists it in ``failed``. ``precision``: ``"float32"`` (exact, the
    default), or on a GPU ``"tf32"`` (TF32 matmuls and convolutions) or ``"bf16"`` (bfloat16
    autocast): faster, vectors about 1e-3 (tf32) to 1e-2 (bf16) away, so never mixed into a
    store; the output is float32 either way. ``on_clip`` is called as each clip is read (a
    caller's own progress bar). Ctrl-C raises ``EncodingInterrupted`` holding the clips finished
    so far.
    """
    check_encode_args(batch_size, num_workers, on_error)
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
        current = -1  # the clip being read: never finished while its windows still come
        try:
            # A few clips per thread keep the threads busy; long files come as lazy window streams
            # (see _window_decoder), so what is held ahead stays small whatever the files' lengths.
            for index, result in _prefetch(decode, items, num_workers, lookahead=4 * num_workers):
                current = index
                bar.update(1)
                if on_clip is not None:
                    on_clip()
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
        except KeyboardInterrupt:
            done = sorted(set(sums) - set(pending_owner) - {current})
            raise EncodingInterrupted(_encoding(model, sums, done, failed)) from None
        if pending_windows:
            run_batch(len(pending_windows))

    return _encoding(model, sums, sorted(sums), failed)


def _encoding(
    model: AudioTextModel,
    sums: dict[int, torch.Tensor],
    done: list[int],
    failed: list[tuple[str, str]],
) -> AudioEncoding:
    """The ``AudioEncoding`` of the clips ``done``: each the renormalised mean of its windows."""
    kept = np.array(done, dtype=np.int64)
    if len(kept) == 0:
        return AudioEncoding(np.zeros((0, embedding_dim(model)), np.float32), kept, failed)
    # Mean of unit vectors, renormalised: the sum has the same direction as the mean.
    stacked = torch.stack([sums[i] for i in kept.tolist()]).double()
    embeddings = torch.nn.functional.normalize(stacked, dim=-1).float().cpu().numpy()
    return AudioEncoding(embeddings, kept, list(failed))


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
        return np.zeros((0, embedding_dim(model)), np.float32)
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


def check_encode_args(batch_size: int, num_workers: int, on_error: str) -> None:
    """Raise ``ValueError`` for a ``batch_size`` or ``num_workers`` out of range or an unknown
    ``on_error``; the store checks its requests with it too."""
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


def embedding_dim(model: AudioTextModel) -> int:
    """D, asked of the model (one caption embedded): the width of an empty result."""
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


# -- webdataset samples ---------------------------------------------------------------------------
def encode_samples(
    model: AudioTextModel,
    samples: list[ShardSample],
    batch_size: int,
    num_workers: int,
    on_error: str,
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """(ids embedded, their (N, D) float32 vectors, (id, reason) failures) of a chunk of
    webdataset samples, decoded in memory by ``num_workers`` threads. A sample that does not
    decode raises ``AudioDecodeError`` (``on_error="raise"``) or is listed as failed."""
    from claptune.data.shards import decode_sample

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


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` consecutive items (the last one shorter), read lazily."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = [
    "EncodingInterrupted",
    "AudioEncoding",
    "ON_ERROR",
    "PRECISIONS",
    "STREAM_SAMPLES",
    "check_encode_args",
    "chunked",
    "embedding_dim",
    "encode_audio",
    "encode_samples",
    "encode_text",
]
