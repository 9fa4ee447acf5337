"""Training pairs, the held-out split, the per-epoch batch plan with replay mixing, and clips.

Every random choice derives from the run's seed and a position (epoch, step, slot), never
from hidden global state, so a run's batches and crops are the same on any number of
workers or processes and after a resume.

- An epoch is one pass over the replay pairs (over the curated pairs when there is no
  replay set): ceil(N / batch_size) steps. Each step draws its whole batch from the curated
  pairs with probability ``p_curated``, otherwise from the replay pairs; each source is read
  in a fresh per-epoch permutation and reshuffled when exhausted, never repeating a pair
  inside one batch.
- The held-out pairs are a fraction of the curated *clips* (all pairs of a held-out clip go
  together, so no clip is on both sides); their loss is the run's only model-selection and
  plateau signal. Target-task labels are never seen here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from claptune.errors import AudioDecodeError, ClaptuneError


@dataclass
class TrainPairs:
    """(clip, caption) pairs; ``classes`` (optional) feeds the multi-positive loss."""

    audio: list[str]
    text: list[str]
    classes: list[str | None] | None = None

    def __post_init__(self) -> None:
        if len(self.audio) != len(self.text):
            raise ClaptuneError(f"{len(self.audio)} clips but {len(self.text)} captions")
        if self.classes is not None and len(self.classes) != len(self.audio):
            raise ClaptuneError(f"{len(self.classes)} classes for {len(self.audio)} pairs")

    def __len__(self) -> int:
        return len(self.audio)

    def subset(self, indices: Sequence[int]) -> TrainPairs:
        return TrainPairs(
            [self.audio[i] for i in indices],
            [self.text[i] for i in indices],
            None if self.classes is None else [self.classes[i] for i in indices],
        )

    @staticmethod
    def concat(parts: Sequence[TrainPairs]) -> TrainPairs:
        with_classes = any(p.classes is not None for p in parts)
        return TrainPairs(
            [a for p in parts for a in p.audio],
            [t for p in parts for t in p.text],
            [c for p in parts for c in (p.classes or [None] * len(p))] if with_classes else None,
        )


def pairs_from(
    source, shards: str | Sequence[str] | None = None, caption_key: str | None = None
) -> TrainPairs:
    """``as_train_pairs`` that also takes webdataset shards (docs/shards.md).

    ``source`` may be captioned shards (a pattern or URL; every sample with audio and a caption
    is a pair, the caption from its ``.txt`` or the ``caption_key`` field of its ``.json``), and
    ``shards`` names the shards where the ``<shard>/<key>`` audio ids of a pairs file live (as
    ``claptune curate`` writes them for clips that came from shards). Shard audio is read by
    random access.
    """
    from claptune.data.shards import is_shard_spec

    if isinstance(source, str | Path) and is_shard_spec(str(source)):
        from claptune.data.shards import captioned_pairs

        _, refs, captions = captioned_pairs(str(source), caption_key)
        return TrainPairs(refs, captions)
    pairs = as_train_pairs(source)
    return pairs if shards is None else with_shard_audio(pairs, shards)


def with_shard_audio(pairs: TrainPairs, shards: str | Sequence[str]) -> TrainPairs:
    """``pairs`` with each ``<shard>/<key>`` audio id replaced by a reference into ``shards``;
    other audio (files) stays as it is."""
    from claptune.data.shards import ShardIndex, shard_name

    index = ShardIndex(shards)
    names = {shard_name(u) for u in index.urls}
    # an id naming one of these shards must be found there; anything else is a file path
    audio = [index.ref(a) if a in index or a.split("/", 1)[0] in names else a for a in pairs.audio]
    return TrainPairs(audio, pairs.text, pairs.classes)


def as_train_pairs(source) -> TrainPairs:
    """Accept TrainPairs, a pairs CSV path or corpus folder, (audio, text) tuples, or any
    table object with ``audio`` and ``text`` (or ``captions``) sequences and optionally
    ``classes`` (curation's Pairs, the data module's PairedCorpus)."""
    if isinstance(source, TrainPairs):
        return source
    if isinstance(source, str | Path):
        from claptune.curation.pairs import read_pairs

        pairs = read_pairs(source)  # the one pairs reader and path rule
        if not len(pairs):
            raise ClaptuneError(f"pairs file {source} has no pairs")
        source = pairs
    text = getattr(source, "text", None)
    if text is None:
        text = getattr(source, "captions", None)
    if hasattr(source, "audio") and text is not None:
        classes = getattr(source, "classes", None)
        return TrainPairs(
            [str(a) for a in source.audio],
            [str(t) for t in text],
            None if classes is None else [c if c else None for c in classes],
        )
    pairs = list(source)
    if not all(len(p) in (2, 3) for p in pairs):
        raise ClaptuneError("pairs must be (audio, text) or (audio, text, class) tuples")
    classes = [p[2] if len(p) == 3 else None for p in pairs]
    return TrainPairs(
        [str(p[0]) for p in pairs],
        [str(p[1]) for p in pairs],
        classes if any(c is not None for c in classes) else None,
    )


def split_holdout(pairs: TrainPairs, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) pair indices; held-out = all pairs of a ``fraction`` of the clips.

    Returns no held-out pairs when fewer than two would result (a batch needs two).
    """
    clips = sorted(set(pairs.audio))
    n_held = int(round(fraction * len(clips)))
    rng = np.random.default_rng([seed, 1])
    held = set(rng.permutation(clips)[:n_held].tolist()) if n_held else set()
    val = [i for i, a in enumerate(pairs.audio) if a in held]
    if len(val) < 2 or len(val) == len(pairs):
        return list(range(len(pairs))), []
    return [i for i, a in enumerate(pairs.audio) if a not in held], val


class _Cycler:
    """Reads rows in a random order, reshuffling when exhausted, no repeat inside a batch."""

    def __init__(self, rows: np.ndarray, rng: np.random.Generator):
        self.rows, self.rng = rows, rng
        self.order = rng.permutation(rows)
        self.pos = 0

    def take(self, size: int) -> np.ndarray:
        size = min(size, len(self.rows))
        out = self.order[self.pos : self.pos + size].tolist()
        self.pos += len(out)
        if len(out) < size:
            taken = set(out)
            order = self.rng.permutation(self.rows).tolist()
            # rows already in this batch go last in the new pass so the batch stays distinct
            self.order = np.array(
                [r for r in order if r not in taken] + [r for r in order if r in taken]
            )
            need = size - len(out)
            out += self.order[:need].tolist()
            self.pos = need
        return np.asarray(out, dtype=np.int64)


def epoch_plan(
    curated_rows: np.ndarray,
    replay_rows: np.ndarray,
    batch_size: int,
    p_curated: float,
    seed: int,
    epoch: int,
) -> list[np.ndarray]:
    """The batches (arrays of table rows) of one epoch; a pure function of its arguments."""
    rng = np.random.default_rng([seed, 0, epoch])
    if len(replay_rows) == 0:
        main = _Cycler(curated_rows, rng)
        return [main.take(batch_size) for _ in range(math.ceil(len(curated_rows) / batch_size))]
    replay = _Cycler(replay_rows, rng)
    curated = _Cycler(curated_rows, rng) if len(curated_rows) else None
    plan = []
    for _ in range(math.ceil(len(replay_rows) / batch_size)):
        use_curated = curated is not None and rng.random() < p_curated
        plan.append((curated if use_curated else replay).take(batch_size))
    return plan


def crop_rng(seed: int, step: int, slot: int) -> np.random.Generator:
    """The generator of the random crop of batch position ``slot`` at global ``step``."""
    return np.random.default_rng([seed, 2, step, slot])


class ClipDataset(torch.utils.data.Dataset):
    """Decodes and crops clips; indexed by (path index, step, slot) keys.

    ``step`` < 0 asks for the deterministic first window; otherwise the window start comes
    from ``crop_rng(seed, step, slot)``.
    """

    def __init__(
        self, paths: Sequence[str], sample_rate: int, clip_samples: int, crop: str, seed: int
    ):
        self.paths, self.sample_rate, self.clip_samples = list(paths), sample_rate, clip_samples
        self.crop, self.seed = crop, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, int]) -> torch.Tensor:
        from claptune.audio import fixed_window, random_window
        from claptune.data.shards import load_clip

        index, step, slot = key
        wave = load_clip(self.paths[index], self.sample_rate)  # a file or a shard member
        if self.crop == "fixed" or step < 0:
            window = fixed_window(wave, self.clip_samples)
        else:
            window = random_window(wave, self.clip_samples, crop_rng(self.seed, step, slot))
        return torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))


def clip_loader(
    dataset: ClipDataset, batches: list[list[tuple[int, int, int]]], num_workers: int, seed: int
) -> Iterator[torch.Tensor]:
    """Batches of stacked windows (B, clip_samples) in the order of ``batches``.

    The loader gets its own generator: otherwise creating it draws from the global torch RNG
    (the workers' base seed), shifting the dropout masks of the steps that follow and breaking
    bit-exact resumption. A clip that cannot be decoded raises its ``AudioDecodeError`` here,
    whole: a worker hands it back as a value, since the DataLoader would re-raise it as a
    RuntimeError holding a traceback.
    """
    loader = torch.utils.data.DataLoader(
        _ErrorsAsValues(dataset),
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_stack_or_error,
        generator=torch.Generator().manual_seed(seed),
    )
    for batch in loader:
        if isinstance(batch, AudioDecodeError):
            raise batch
        yield batch


class _ErrorsAsValues(torch.utils.data.Dataset):
    def __init__(self, dataset: ClipDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        try:
            return self.dataset[key]
        except AudioDecodeError as err:
            return err


def _stack_or_error(items: list) -> torch.Tensor | AudioDecodeError:
    errors = [x for x in items if isinstance(x, AudioDecodeError)]
    return errors[0] if errors else torch.stack(items)


def unreadable_clips(paths: Sequence[str], num_workers: int = 2) -> list[tuple[str, str]]:
    """(path, reason) of each clip in ``paths`` that fails ``claptune.audio.probe_audio``
    (missing, empty, not audio, truncated WAV/OGG), in the order of ``paths``.

    Reads headers only, in ``num_workers`` threads, so a run can refuse or leave out bad clips
    before training starts rather than fail halfway through an epoch.
    """
    from concurrent.futures import ThreadPoolExecutor

    from claptune.audio import probe_audio
    from claptune.data.shards import is_member_ref

    def reason(path: str) -> str | None:
        if is_member_ref(path):  # a shard member: its shard's index located it already
            return None
        try:
            probe_audio(path)
        except AudioDecodeError as err:
            return err.reason
        return None

    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        reasons = list(pool.map(reason, paths))
    return [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]


def undecodable_clips(
    paths: Sequence[str], sample_rate: int, num_workers: int = 2
) -> list[tuple[str, str]]:
    """(path, reason) of each clip in ``paths`` that does not decode whole: what the header
    check of ``unreadable_clips`` cannot see (a FLAC cut mid-stream, NaN samples). Streamed
    block by block (``claptune.audio.stream_audio``), so memory stays bounded on long files."""
    from concurrent.futures import ThreadPoolExecutor

    from claptune.audio import stream_audio
    from claptune.data.shards import is_member_ref, load_member

    def reason(path: str) -> str | None:
        try:
            if is_member_ref(path):
                load_member(path, sample_rate)
            else:
                for _ in stream_audio(path, sample_rate):
                    pass
        except AudioDecodeError as err:
            return err.reason
        return None

    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        reasons = list(pool.map(reason, paths))
    return [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
