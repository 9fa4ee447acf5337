"""Short audio previews embedded in the HTML report as base64 ``data:`` URIs.

16 kHz mono 16-bit WAV plays in every browser with no codec question; a few seconds of it
is about 100 kB, so a sample of a dozen or two clips keeps the page small enough to mail.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import soundfile as sf

PREVIEW_RATE = 16_000


def preview_wav(path: str | Path, seconds: float = 4.0, sample_rate: int = PREVIEW_RATE) -> bytes:
    """The first ``seconds`` of a clip as mono 16-bit WAV bytes at ``sample_rate``."""
    from claptune.data.shards import load_clip

    wave = load_clip(path, sample_rate)  # a file or a webdataset shard member[: int(seconds * sample_rate)]
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:  # resampling can overshoot full scale slightly; avoid clipping noise
        wave = wave / peak
    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


__all__ = ["preview_wav", "data_uri", "PREVIEW_RATE"]
