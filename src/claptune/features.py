"""The frozen-feature store: the encoders' features of every audio window and caption,
computed once and kept on disk across runs, for models that split into frozen encoders and
trainable heads (``supports_feature_cache``) fine-tuned with only their heads trainable.

``train`` (``fit(..., features=store)``), ``improve``, ``ablate`` and ``pretrain`` all read
their frozen features from one ``FeatureStore``; ``fit`` takes it as an argument, the model's
own methods are never replaced. A store serves:
- ``fixed_audio(clips)``: (N, F) features of each clip's deterministic first window (fit's
  ``crop="fixed"``, see ``claptune.audio.fixed_window``);
- ``clip_windows(clips)``: per clip, the (n_i, F) features of its windows
  (``claptune.audio.windows``, optionally at most ``max_windows`` evenly spaced ones);
- ``text(captions)``: (N, F) caption features, kept on disk too (``claptune.caption_cache``);
- ``embed_audio`` / ``embed_text``: a model's embeddings through its heads on those features.
  A clip's vector follows ``claptune.embed``: the renormalised mean of its L2-normalised
  window embeddings.

On disk (``cache_dir``), window features go into parts written atomically as they are
computed, so the next run (or a killed one, resumed) skips the encoders; a progress bar shows
the clips still to compute. The folder is keyed by what determines the features and nothing
else: the backend, the preprocessing, and the frozen encoders' output on a fixed probe signal
(so a model with retrained heads but the same encoders shares the store, and any change to
the encoders gets a new folder); each clip is keyed by path, size and mtime (as in
``claptune.embed``) and by which windows were taken; each window by a digest of its samples,
so a window shared by two views is computed once.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from claptune.atomic import atomic_file, remove_stale_temporaries, set_aside
from claptune.audio import fixed_window, load_audio, stream_audio, stream_windows, windows
from claptune.caption_cache import CaptionFeatureCache
from claptune.data.shards import is_member_ref, load_member
from claptune.embed import item_key
from claptune.errors import AudioDecodeError
from claptune.models.base import AudioTextModel

CACHE_FORMAT = 2  # bump when the on-disk parts or the window key change
WINDOWS, FIXED = "windows", "fixed"  # views: every window of a clip; its first (fit's crop)
LONG_WINDOWS = 64  # a file of more windows is decoded streamed: memory bounded on hour-long files
STREAMED = object()  # what decode returns for such a file


def _digest(window: np.ndarray) -> bytes:
    """Key of one window: a hash of every 8th sample plus the exact sum of all samples.

    Hashing every sample costs more than the rest of a head-training run; two different real
    windows that agree on every 8th sample and on their sum do not occur in practice, and
    windows that are equal (silence, repeat-padding) have equal features anyway.
    """
    window = np.asarray(window, dtype=np.float32)
    digest = hashlib.blake2b(np.ascontiguousarray(window[::8]).tobytes(), digest_size=16)
    digest.update(np.float64(window.sum(dtype=np.float64)).tobytes())
    digest.update(np.int64(window.size).tobytes())
    return digest.digest()


def frozen_feature_key(model: AudioTextModel) -> str:
    """Hash of the model's frozen audio features on a fixed probe, plus its preprocessing."""
    probe = np.random.default_rng(1234).standard_normal((2, model.clip_samples)).astype(np.float32)
    probe[1] *= np.linspace(0.0, 0.5, model.clip_samples, dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        feats = model.audio_features(torch.from_numpy(probe)).float().cpu().numpy()
    model.train(was_training)
    digest = hashlib.sha256()
    digest.update(
        f"{CACHE_FORMAT}|{model.backend}|{model.sample_rate}|{model.clip_samples}|"
        f"{getattr(model, 'padding', 'repeatpad')}|{feats.shape}".encode()
    )
    # rounded: the key must not depend on the last bits of a float reduction order
    digest.update(np.round(feats.astype(np.float64), 4).tobytes())
    return digest.hexdigest()[:16]


class FeatureStore:
    """Frozen features of one model's encoders (the teacher's, shared by its students), in
    memory and, with ``cache_dir``, on disk under ``cache_dir/features/<key>``."""

    def __init__(
        self,
        model: AudioTextModel,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        num_workers: int = 2,
        progress: bool = True,
    ):
        if not model.supports_feature_cache:
            raise ValueError(f"{type(model).__name__} has no frozen feature split")
        self.model = model
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        self._audio: dict[bytes, torch.Tensor] = {}  # window digest -> (F_audio,)
        self._text: dict[str, torch.Tensor] = {}  # caption -> (F_text,)
        self._clip_windows: dict[tuple[str, str], list[bytes]] = {}  # (clip, view) -> digests
        self._on_disk: dict[str, list[bytes]] = {}  # _disk_key -> window digests, from disk
        self._views: set[str] = {WINDOWS}  # views any clip has, here or on disk
        self._captions: CaptionFeatureCache | None = None  # caption features on disk
        self.key = frozen_feature_key(model)
        self.directory = None
        if cache_dir is not None:
            self.directory = Path(cache_dir) / "features" / self.key
            self.directory.mkdir(parents=True, exist_ok=True)
            self._read_parts()

    # -- what a run asks for --------------------------------------------------------------------
    def fixed_audio(self, items: Sequence[str | Path], on_error: str = "raise") -> torch.Tensor:
        """(N, F) features of each clip's first window, as ``fit`` crops with ``crop="fixed"``."""
        self.add_clips(items, on_error, desc="audio features (first windows)", view=FIXED)
        return torch.stack([self._audio[self._known(str(it), FIXED)[0]] for it in items])

    def clip_windows(
        self, items: Sequence[str | Path], max_windows: int | None = None, on_error: str = "raise"
    ) -> list[torch.Tensor]:
        """Per clip, the (n_i, F) features of its windows (at most ``max_windows``, spread
        evenly from the first to the last)."""
        view = WINDOWS if max_windows is None else f"w{max_windows}"
        self.add_clips(items, on_error, view=view)
        return [torch.stack([self._audio[d] for d in self._known(str(it), view)]) for it in items]

    def text(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, F) caption features."""
        texts = list(texts)
        self.add_texts(texts)
        return torch.stack([self._text[t] for t in texts])

    def holds(self, item: str | Path) -> bool:
        """Whether ``item`` decoded before and its features are here (any view): such a clip
        need not be read again, so it need not be probed either."""
        return any(self._known(str(item), view) is not None for view in sorted(self._views))

    def serves(self, model: AudioTextModel) -> bool:
        """Whether ``model``'s frozen encoders are the ones this store holds features of."""
        return model.supports_feature_cache and frozen_feature_key(model) == self.key

    # -- filling the store ------------------------------------------------------------------------
    def add_clips(
        self,
        items: Sequence[str | Path],
        on_error: str = "raise",
        desc: str = "audio features",
        view: str = WINDOWS,
    ) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Compute the window features of every clip not in the store yet.

        ``view``: ``"windows"`` (all of them), ``"w<k>"`` (at most k, evenly spaced) or
        ``"fixed"`` (the first window, padded as fit pads). Returns (indices of the clips that
        decoded, [(clip, reason)] of those that did not).
        """
        model = self.model
        cut = self._cutter(view)
        self._views.add(view)

        def decode(item):
            try:
                if view == WINDOWS and _long_file(item, model):
                    return STREAMED  # decoded below, window by window, in bounded memory
                # a file, or an audio member of a webdataset shard (improve --corpus SHARDS)
                load = load_member if is_member_ref(item) else load_audio
                return cut(load(str(item), model.sample_rate))
            except AudioDecodeError as err:
                if on_error == "raise":
                    raise
                return err

        todo = [
            item for item in dict.fromkeys(str(i) for i in items) if self._known(item, view) is None
        ]
        failed: dict[str, str] = {}
        pending: list[np.ndarray] = []
        done: list[str] = []
        bar = tqdm(total=len(todo), desc=desc, unit="clip", disable=not self.progress or not todo)
        with ThreadPoolExecutor(max(1, self.num_workers)) as pool:
            for item, wins in zip(todo, pool.map(decode, todo), strict=True):
                bar.update(1)
                if wins is STREAMED:
                    wins = self._streamed_windows(item, on_error)
                    if not isinstance(wins, AudioDecodeError):
                        self._clip_windows[(item, view)] = wins
                        done.append(item)
                        continue
                if isinstance(wins, AudioDecodeError):
                    failed[item] = wins.reason
                    continue
                keys = [_digest(w) for w in wins]
                self._clip_windows[(item, view)] = keys
                done.append(item)
                pending.extend(w for w, k in zip(wins, keys, strict=True) if k not in self._audio)
                if len(pending) >= self.batch_size:
                    self._compute_windows(pending)
                    pending = []
                if len(done) >= 256:
                    self._compute_windows(pending)
                    pending = []
                    self._write_part(done, view)
                    done = []
        self._compute_windows(pending)
        self._write_part(done, view)
        bar.close()
        kept = [i for i, it in enumerate(items) if self._known(str(it), view) is not None]
        reasons = [(str(it), failed[str(it)]) for it in items if str(it) in failed]
        return np.asarray(kept, dtype=np.int64), reasons

    def _streamed_windows(self, item: str, on_error: str) -> list[bytes] | AudioDecodeError:
        """The window digests of a long file, its features computed a batch at a time as the
        file is decoded (``stream_audio`` + ``stream_windows``: the same windows as
        ``windows(load_audio(...))``), so that a recording of hours never sits in memory."""
        keys: list[bytes] = []
        batch: list[np.ndarray] = []
        padding = getattr(self.model, "padding", "repeatpad")
        blocks = stream_audio(item, self.model.sample_rate)
        try:
            for wins in stream_windows(blocks, self.model.clip_samples, padding):
                for w in wins:
                    keys.append(_digest(w))
                    batch.append(w)
                if len(batch) >= self.batch_size:
                    self._compute_windows(batch)
                    batch = []
        except AudioDecodeError as err:
            if on_error == "raise":
                raise
            return err
        self._compute_windows(batch)
        return keys

    def _cutter(self, view: str):
        clip_samples = self.model.clip_samples
        padding = getattr(self.model, "padding", "repeatpad")
        if view == FIXED:
            # fit's ClipDataset pads with fixed_window's default; so must the store
            return lambda wave: fixed_window(wave, clip_samples)[None]
        if view == WINDOWS:
            return lambda wave: windows(wave, clip_samples, padding)
        if view.startswith("w") and view[1:].isdigit() and int(view[1:]) >= 1:
            k = int(view[1:])
            return lambda wave: _spread(windows(wave, clip_samples, padding), k)
        raise ValueError(f"unknown view {view!r}: 'windows', 'fixed' or 'w<k>'")

    def _known(self, item: str, view: str) -> list[bytes] | None:
        """The window digests of ``item`` in ``view``, from memory or from the disk parts."""
        keys = self._clip_windows.get((item, view))
        if keys is None:
            keys = self._on_disk.get(_disk_key(item, view))
            if (
                keys is None
                and view == FIXED
                and getattr(self.model, "padding", "repeatpad") == "repeatpad"
            ):
                # every windows view starts with the first window, padded alike
                for other in sorted(self._views - {FIXED}):
                    found = self._known(item, other)
                    if found is not None:
                        keys = found[:1]
                        break
            if keys is not None:
                self._clip_windows[(item, view)] = keys
        return keys

    # -- the on-disk parts --------------------------------------------------------------------
    def _write_part(self, clips: list[str], view: str) -> None:
        if self.directory is None or not clips:
            return
        digests = [d for c in clips for d in self._clip_windows[(c, view)]]
        arrays = {
            "item_keys": np.array([_disk_key(c, view) for c in clips]),
            "n_windows": np.array(
                [len(self._clip_windows[(c, view)]) for c in clips], dtype=np.int64
            ),
            "digests": np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 16),
            "features": torch.stack([self._audio[d] for d in digests]).numpy(),
        }
        name = f"part-{os.getpid()}-{os.urandom(6).hex()}.npz"
        with atomic_file(self.directory / name) as fh:  # a full disk leaves no temporary file
            np.savez(fh, **arrays)

    def _read_parts(self) -> None:
        remove_stale_temporaries(self.directory)
        for part in sorted(self.directory.glob("part-*.npz")):
            data = _read_part(part)
            if data is None:
                continue
            digests = [bytes(row) for row in data["digests"]]
            feats = torch.from_numpy(data["features"])
            self._audio.update(zip(digests, feats, strict=True))
            start = 0
            for key, n in zip(data["item_keys"].tolist(), data["n_windows"].tolist(), strict=True):
                self._on_disk[key] = digests[start : start + n]
                self._views.add(key.rpartition("#")[2] if "#" in key else WINDOWS)
                start += n

    def add_texts(self, texts: Sequence[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self._text]
        if todo and self.directory is not None:
            if self._captions is None:  # on first use: its key costs a text forward
                self._captions = CaptionFeatureCache(self.model, self.directory.parent)
            self._text.update(self._captions.lookup(todo))
            todo = [t for t in todo if t not in self._text]
        with torch.no_grad():
            for s in range(0, len(todo), 256):
                chunk = todo[s : s + 256]
                feats = self.model.text_features(chunk).float().cpu()
                self._text.update(zip(chunk, feats, strict=True))
                if self._captions is not None:
                    self._captions.add(chunk, feats)

    def _compute_windows(self, wins: list[np.ndarray]) -> None:
        new: dict[bytes, np.ndarray] = {}
        for w in wins:
            new.setdefault(_digest(w), w)
        keys = [k for k in new if k not in self._audio]
        if not keys:
            return
        was_training = self.model.training
        self.model.eval()
        # no_grad, not inference_mode: the stored tensors later enter autograd as head inputs
        with torch.no_grad():
            for s in range(0, len(keys), self.batch_size):
                chunk = keys[s : s + self.batch_size]
                batch = torch.from_numpy(np.stack([new[k] for k in chunk]))
                feats = self.model.audio_features(batch).float().cpu()
                self._audio.update(zip(chunk, feats, strict=True))
        self.model.train(was_training)

    # -- embedding through a model's heads ----------------------------------------------------------
    @torch.no_grad()
    def embed_audio(
        self, model: AudioTextModel, items: Sequence[str | Path], view: str = WINDOWS
    ) -> np.ndarray:
        """(N, D) clip embeddings of ``model``'s audio head on the stored window features of
        clips already added (``add_clips``) in ``view``."""
        keys = [self._known(str(it), view) for it in items]
        owner = torch.as_tensor(np.repeat(np.arange(len(keys)), [len(k) for k in keys]))
        feats = torch.stack([self._audio[k] for ks in keys for k in ks])
        emb = torch.cat(
            [model.audio_head(feats[s : s + 4096]).float() for s in range(0, len(feats), 4096)]
        )
        sums = torch.zeros(len(keys), emb.shape[1], dtype=torch.float64)
        sums.index_add_(0, owner, emb.double())
        return torch.nn.functional.normalize(sums, dim=-1).float().numpy()

    @torch.no_grad()
    def embed_text(self, model: AudioTextModel, texts: Sequence[str]) -> np.ndarray:
        """(N, D) caption embeddings of ``model``'s text head on the stored text features."""
        feats = self.text(texts)
        return torch.cat(
            [model.text_head(feats[s : s + 4096]).float() for s in range(0, len(feats), 4096)]
        ).numpy()


def _long_file(item: str, model: AudioTextModel) -> bool:
    """Whether ``item`` is a file of more than ``LONG_WINDOWS`` windows (from its header)."""
    if is_member_ref(item):
        return False
    try:
        info = sf.info(str(item))
    except Exception:  # noqa: BLE001 - unreadable: load_audio reports why
        return False
    seconds = info.frames / max(info.samplerate, 1)
    return seconds * model.sample_rate > LONG_WINDOWS * model.clip_samples


def _read_part(path: Path) -> dict[str, np.ndarray] | None:
    """A part's arrays, or None for a part that is damaged (truncated by a crash or a full disk,
    wrong arrays) or holds pickled objects (claptune never writes them; never unpickled): it
    is set aside as ``*.damaged`` with one warning, and its clips are computed again."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {name: npz[name] for name in ("item_keys", "n_windows", "digests", "features")}
    except ValueError as err:
        what = "holds pickled objects" if "allow_pickle" in str(err) else "unreadable"
        return set_aside(path, what, "its clips will be computed again")
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        return set_aside(
            path, f"unreadable ({type(err).__name__})", "its clips will be computed again"
        )
    keys, counts, digests, feats = (
        data[k] for k in ("item_keys", "n_windows", "digests", "features")
    )
    if not (
        keys.ndim == 1
        and keys.dtype.kind == "U"
        and counts.shape == keys.shape
        and counts.dtype.kind == "i"
        and (counts >= 0).all()
        and digests.dtype == np.uint8
        and digests.ndim == 2
        and digests.shape[1] == 16
        and int(counts.sum()) == digests.shape[0]
        and feats.dtype == np.float32
        and feats.ndim == 2
        and feats.shape[0] == digests.shape[0]
        and np.isfinite(feats).all()
    ):
        return set_aside(path, "wrong contents", "its clips will be computed again")
    return data


def _disk_key(item: str, view: str) -> str:
    # no suffix for every window: the parts written before views existed stay valid
    return item_key(item, "audio") + ("" if view == WINDOWS else f"#{view}")


def _spread(wins: np.ndarray, k: int) -> np.ndarray:
    """At most ``k`` of the windows, evenly spaced, the first and last included."""
    n = len(wins)
    return wins[np.unique(np.round(np.linspace(0, n - 1, k)).astype(int))] if n > k else wins


__all__ = ["FeatureStore", "frozen_feature_key"]
