"""Audio input: decode, downmix, resample, and cut deterministic fixed-length windows.

Every model in claptune sees audio the same way: a file is decoded with libsndfile (through
``soundfile``; libsndfile >= 1.1 reads WAV, FLAC, OGG/Vorbis/Opus and MP3 itself, so no second
decoder is needed), its channels are averaged to mono, and it is resampled to the model's rate
with soxr at high quality. Decoding problems raise ``AudioDecodeError(path, reason)``.

A model looks at ``clip_samples`` samples at a time:
- ``windows`` covers a whole clip deterministically (inference);
- ``fixed_window`` is its first window (a deterministic stand-in for one crop, e.g. for cached
  teacher embeddings);
- ``random_window`` draws one crop from an explicit generator (training).
Clips shorter than a window are padded with ``pad_window`` ("repeatpad" by default, as
LAION-CLAP and the Hugging Face CLAP feature extractor do).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from claptune.errors import AudioDecodeError, ClaptuneError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
PADDING_MODES = ("repeatpad", "repeat", "pad")

# libsndfile clamps a truncated WAV to the bytes present and reports the mismatch only in its
# log, and it reads an OGG stream cut mid-page up to the cut; these log lines reveal both.
_TRUNCATION_MARKERS = ("(should be", "lacks an end-of-stream")
# An MP3's frame count comes from its Xing header; allow a few codec frames of decoder slack
# before calling a short read a truncation.
_MP3_SLACK_FRAMES = 4 * 1152


# Frames decoded per read when streaming: 2**16 frames is 8 s at 8 kHz, 1.5 s at 44.1 kHz;
# large enough that the per-call overhead vanishes, small enough to hold many files in flight.
BLOCK_FRAMES = 1 << 16


def stream_audio(
    path: str | os.PathLike, sample_rate: int, block_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Decode ``path`` block by block (``block_frames`` file frames, default ``BLOCK_FRAMES``):
    float32 mono 1-D blocks at ``sample_rate`` Hz.

    Memory stays at a few blocks whatever the file's length. The blocks joined are exactly
    ``load_audio(path, sample_rate)``: averaging channels is per frame, and soxr's
    ``ResampleStream`` gives the same samples as its one-shot ``resample`` with the same quality
    (checked bit for bit in the tests). Raises ``AudioDecodeError`` like ``load_audio``; a
    problem found mid-file (non-finite samples, a short read) is raised after the blocks
    before it were yielded.
    """
    block_frames = BLOCK_FRAMES if block_frames is None else block_frames
    if block_frames < 1:
        raise ValueError("block_frames must be >= 1")
    path = Path(path)
    info = probe_audio(path)  # missing, empty, not audio, or a header promising too much
    try:
        handle = sf.SoundFile(_sf_name(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioDecodeError(path, f"not a readable audio file ({_sf_reason(err)})") from None
    stream = None
    if handle.samplerate != sample_rate:
        stream = soxr.ResampleStream(
            handle.samplerate, sample_rate, 1, dtype="float32", quality="HQ"
        )
    n_read = 0
    with handle:
        while True:
            try:
                data = handle.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as err:
                raise AudioDecodeError(
                    path, f"not a readable audio file ({_sf_reason(err)})"
                ) from None
            # only an empty read marks the end: a decoder may return a short block mid-file
            last = data.shape[0] == 0
            if last:
                if n_read < info.frames - _MP3_SLACK_FRAMES:
                    raise AudioDecodeError(path, "truncated file")
                if n_read == 0:
                    raise AudioDecodeError(path, "no audio samples")
            n_read += data.shape[0]
            if not np.isfinite(data).all():
                raise AudioDecodeError(path, "non-finite samples")
            # Averaging before resampling is exact (both are linear) and resamples one channel.
            wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            if stream is not None:
                wave = stream.resample_chunk(np.ascontiguousarray(wave), last=last)
            if wave.shape[0]:
                yield np.ascontiguousarray(wave, dtype=np.float32)
            if last:
                return


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to a float32 mono 1-D waveform at ``sample_rate`` Hz.

    Raises ``AudioDecodeError`` if the file is missing, empty, truncated, not audio, or holds
    no or non-finite samples. For a long file, ``stream_audio`` and ``stream_windows`` give
    the same samples and windows in bounded memory.
    """
    return np.concatenate(list(stream_audio(path, sample_rate)))


def probe_audio(path: str | os.PathLike):
    """Check what can be checked of ``path`` without decoding it; its ``soundfile`` info.

    Reads the header only, so it is cheap enough to run over every clip of a training set
    before training starts. Raises ``AudioDecodeError`` if the file is missing, empty, not
    audio, or a WAV/OGG whose header promises more than the file holds.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file")
    try:
        info = sf.info(_sf_name(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioDecodeError(path, f"not a readable audio file ({_sf_reason(err)})") from None
    if any(marker in info.extra_info for marker in _TRUNCATION_MARKERS):
        raise AudioDecodeError(path, "truncated file")
    return info


def _sf_reason(err: Exception) -> object:
    """libsndfile's own words, without soundfile's "Error opening b'<path>'" prefix."""
    return getattr(err, "error_string", None) or err


def _sf_name(path: Path) -> str | bytes:
    """The name to hand libsndfile: the file system's own bytes on POSIX.

    soundfile encodes a str name strictly, so a name that is not valid UTF-8 (which Python
    holds with surrogate escapes) would raise UnicodeEncodeError instead of being opened.
    """
    return str(path) if os.name == "nt" else os.fsencode(path)


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a 1-D waveform with soxr's high-quality filter; float32 out."""
    wave = np.asarray(wave, dtype=np.float32)
    if from_rate == to_rate:
        return np.ascontiguousarray(wave)
    return soxr.resample(wave, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def pad_window(wave: np.ndarray, clip_samples: int, padding: str = "repeatpad") -> np.ndarray:
    """Fill a clip no longer than one window up to exactly ``clip_samples`` samples.

    ``repeatpad``: repeat the clip a whole number of times, then zero-pad the rest (LAION-CLAP and
    ``transformers.ClapFeatureExtractor``); ``repeat``: repeat and cut; ``pad``: zero-pad.
    """
    n = wave.shape[0]
    if n == 0:
        raise ValueError("cannot pad an empty waveform")
    if n > clip_samples:
        raise ValueError(f"waveform of {n} samples is longer than the window ({clip_samples})")
    if padding == "repeatpad":
        wave = np.tile(wave, clip_samples // n)
    elif padding == "repeat":
        wave = np.tile(wave, clip_samples // n + 1)[:clip_samples]
    elif padding != "pad":
        raise ValueError(f"unknown padding {padding!r}: use one of {PADDING_MODES}")
    out = np.zeros(clip_samples, dtype=np.float32)
    out[: wave.shape[0]] = wave
    return out


def windows(wave: np.ndarray, clip_samples: int, padding: str = "repeatpad") -> np.ndarray:
    """Cut a clip into windows covering all of it: (n_windows, clip_samples) float32.

    A clip of at most one window gives one padded window. A longer clip gives
    ceil(len / clip_samples) consecutive non-overlapping windows, the last one aligned to the end
    of the clip (so it overlaps its neighbour instead of being padded): every window is real
    audio, and the result depends only on the clip.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {wave.shape}")
    n = wave.shape[0]
    if n <= clip_samples:
        return pad_window(wave, clip_samples, padding)[None]
    n_windows = -(-n // clip_samples)
    starts = [i * clip_samples for i in range(n_windows - 1)] + [n - clip_samples]
    return np.stack([wave[s : s + clip_samples] for s in starts])


def stream_windows(
    blocks: Iterable[np.ndarray], clip_samples: int, padding: str = "repeatpad"
) -> Iterator[np.ndarray]:
    """``windows`` of the waveform that ``blocks`` (1-D pieces, in order) join into, yielded as
    (k, clip_samples) float32 arrays as soon as they are known, in bounded memory.

    Window i (not the last) is final once more than (i + 1) * clip_samples samples were seen;
    the last window, aligned to the end, needs the end. So at most two windows plus one block
    are held, and the concatenated output equals ``windows(np.concatenate(blocks), ...)``.
    """
    buf = np.zeros(0, dtype=np.float32)
    base = 0  # position of buf[0] in the whole waveform
    emitted = 0  # windows yielded so far
    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
        seen = base + buf.shape[0]
        ready = max(0, (seen - 1) // clip_samples - emitted)  # windows with a sample after them
        if ready:
            start = emitted * clip_samples - base
            yield buf[start : start + ready * clip_samples].reshape(ready, clip_samples).copy()
            emitted += ready
            # keep the last emitted window: the end-aligned last window may overlap it
            keep_from = (emitted - 1) * clip_samples
            buf, base = buf[keep_from - base :], keep_from
    seen = base + buf.shape[0]
    if seen == 0:
        raise ValueError("cannot window an empty waveform")
    if seen <= clip_samples:
        yield pad_window(buf, clip_samples, padding)[None]
    else:
        yield buf[-clip_samples:][None].copy()


def fixed_window(wave: np.ndarray, clip_samples: int, padding: str = "repeatpad") -> np.ndarray:
    """The first window of ``windows(wave, clip_samples)``: (clip_samples,), deterministic."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.shape[0] <= clip_samples:
        return pad_window(wave, clip_samples, padding)
    return wave[:clip_samples].copy()


def random_window(
    wave: np.ndarray, clip_samples: int, rng: np.random.Generator, padding: str = "repeatpad"
) -> np.ndarray:
    """One window at a start drawn uniformly from ``rng``; a short clip is padded instead."""
    wave = np.asarray(wave, dtype=np.float32)
    n = wave.shape[0]
    if n <= clip_samples:
        return pad_window(wave, clip_samples, padding)
    start = int(rng.integers(0, n - clip_samples + 1))
    return wave[start : start + clip_samples].copy()


def find_audio(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (searched recursively, sorted, hidden files skipped) and ``.txt``
    lists into audio paths.

    A ``.txt`` list holds one path per line; relative lines are relative to the list's folder,
    blank lines and lines starting with ``#`` are ignored. Files named directly are kept even
    without an audio extension (decoding decides); a missing path is a ``ClaptuneError``.
    """
    found: list[Path] = []
    for entry in paths:
        path = Path(entry).expanduser()
        if path.is_dir():
            # Hidden files are skipped: "._x.wav" is macOS metadata, not audio.
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in AUDIO_EXTENSIONS
                    and p.is_file()
                    and not p.name.startswith(".")
                )
            )
        elif path.suffix.lower() == ".txt" and path.is_file():
            found.extend(_read_list(path))
        elif path.exists():
            found.append(path)
        else:
            raise ClaptuneError(f"audio path not found: {path}")
    return found


def _read_list(list_file: Path) -> list[Path]:
    from claptune.textfiles import read_names

    def resolve(line: str) -> Path:
        p = Path(line).expanduser()
        return p if p.is_absolute() else list_file.parent / p

    lines = read_names(list_file, lambda ln: resolve(ln).exists(), what="audio list")
    return [resolve(ln) for ln in lines]


__all__ = [
    "AUDIO_EXTENSIONS",
    "BLOCK_FRAMES",
    "PADDING_MODES",
    "find_audio",
    "fixed_window",
    "load_audio",
    "pad_window",
    "probe_audio",
    "random_window",
    "resample",
    "stream_audio",
    "stream_windows",
    "windows",
]
