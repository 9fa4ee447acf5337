"""Short audio previews for the HTML report: inlined as base64 ``data:`` URIs, or written as
files beside the page when inlining them would make it too large.

Previews are 16 kHz mono Ogg Opus (about 13 kB for 4 s, a tenth of 16-bit WAV): every current
browser plays it (Chrome, Firefox, Edge, Safari 17+), so a page with two clips for each of 50
classes stays near 2 MB. A libsndfile without Opus (before 1.0.29) gets FLAC, and WAV where
neither is there. Above ``max_page_bytes`` the previews go to RUN/audio/ and the page links
them (``preload="none"``: nothing loads until a player is pressed).
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

PREVIEW_RATE = 16_000  # one of Opus's own rates (8, 12, 16, 24, 48 kHz): no resampling there

# (soundfile format, subtype, MIME type, file extension), best first
_ENCODINGS = (
    ("OGG", "OPUS", "audio/ogg", ".ogg"),  # Opus in Ogg
    ("FLAC", "PCM_16", "audio/flac", ".flac"),
    ("WAV", "PCM_16", "audio/wav", ".wav"),
)


def preview_encoding() -> tuple[str, str, str, str]:
    """The (format, subtype, MIME, extension) previews are written in: the first this
    libsndfile can write."""
    for fmt, subtype, mime, ext in _ENCODINGS:
        if subtype in sf.available_subtypes(fmt):
            return fmt, subtype, mime, ext
    return _ENCODINGS[-1]


def preview_audio(
    path: str | Path, seconds: float = 4.0, sample_rate: int = PREVIEW_RATE
) -> tuple[bytes, str, str]:
    """(bytes, MIME type, extension): the first ``seconds`` of a clip, mono, at
    ``sample_rate``, compressed (``preview_encoding``)."""
    # a file or a webdataset shard member; only its first ``seconds`` are played
    wave = _first_seconds(path, seconds, sample_rate)  # bounded memory on hour-long files
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:  # resampling can overshoot full scale slightly; avoid clipping noise
        wave = wave / peak
    fmt, subtype, mime, ext = preview_encoding()
    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format=fmt, subtype=subtype)
    return buf.getvalue(), mime, ext


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def base64_size(n_bytes: int) -> int:
    return 4 * ((n_bytes + 2) // 3)


@dataclass
class Preview:
    """The player source of one clip: a data URI, a path relative to the page, or why none."""

    src: str | None = None
    error: str | None = None


AUDIO_DIR = "audio"  # beside report.html, when the previews are linked rather than inlined


def previews(
    paths: list[str],
    seconds: float,
    out_dir: str | Path | None = None,
    max_page_bytes: int | None = None,
    page_bytes: int = 0,
) -> tuple[list[Preview], bool]:
    """(one ``Preview`` per path, whether they were linked). The previews are inlined when the
    page (``page_bytes`` without them) stays within ``max_page_bytes`` or when there is no
    ``out_dir`` to write files into; otherwise each is written to ``out_dir/audio/`` and linked.
    A clip that cannot be decoded gets its reason instead, so a preview never sinks the report."""
    encoded: list[bytes | None] = []
    out: list[Preview] = []
    _, _, mime, ext = preview_encoding()
    for path in paths:
        try:
            encoded.append(preview_audio(path, seconds)[0])
            out.append(Preview())
        except Exception as err:  # noqa: BLE001 - any decode failure is reported, not raised
            encoded.append(None)
            out.append(Preview(error=str(err)))
    inline_size = page_bytes + sum(base64_size(len(w)) for w in encoded if w is not None)
    link = out_dir is not None and max_page_bytes is not None and inline_size > max_page_bytes
    folder = Path(out_dir) / AUDIO_DIR if link else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("[0-9][0-9][0-9][0-9]_*.*"):  # a previous report's previews
            old.unlink()
    for k, (path, clip, preview) in enumerate(zip(paths, encoded, out, strict=True)):
        if clip is None:
            continue
        if folder is None:
            preview.src = data_uri(clip, mime)
        else:
            # numbered so that two clips with one file name never collide; the stem keeps the
            # folder readable; odd characters go so the relative URL needs no escaping
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(path)).stem)[:60]
            name = f"{k:04d}_{stem}{ext}"
            (folder / name).write_bytes(clip)
            preview.src = f"{AUDIO_DIR}/{name}"
    return out, link


__all__ = [
    "AUDIO_DIR",
    "Preview",
    "preview_audio",
    "preview_encoding",
    "previews",
    "data_uri",
    "base64_size",
    "PREVIEW_RATE",
]


def _first_seconds(path: str | Path, seconds: float, sample_rate: int) -> np.ndarray:
    """The first ``seconds`` of a clip, decoded block by block: only those are read."""
    from claptune.audio import stream_audio
    from claptune.data.shards import is_member_ref, load_clip

    n = int(seconds * sample_rate)
    if is_member_ref(str(path)):
        return load_clip(path, sample_rate)[:n]
    blocks, have = [], 0
    for block in stream_audio(path, sample_rate):
        blocks.append(block)
        have += len(block)
        if have >= n:
            break
    return np.concatenate(blocks)[:n] if blocks else np.zeros(0, np.float32)
