"""The on-disk cache of frozen caption features: the text half of ``claptune.features``.

``FeatureStore.text(captions)`` used to run the frozen text encoder over every caption on
every run (on the ESC-50 demo with its 2,753-clip corpus, 5.3 s of a 21.9 s warm rerun of
``improve``). With a ``cache_dir`` the features of captions already seen are read from here
and only new captions are encoded:

    cache_dir/features/text-<key>/part-<pid>-<hash>.npz   digests (N, 32) uint8, features (N, F)

``<key>`` hashes the backend and the frozen text encoder's output on fixed probe captions
(one longer than any tokenizer's limit, so a change of truncation shows), rounded as the audio
key is: retrained heads share the folder, another text encoder gets its own. A caption is keyed
by the sha256 of its text. Parts are written to a temporary file, flushed to disk and moved into
place, so a killed run leaves whole parts; a part that cannot be read is skipped with a warning
(its captions are encoded again).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from claptune.models.base import AudioTextModel

log = logging.getLogger(__name__)

TEXT_CACHE_FORMAT = 1  # bump when the parts or the key change
PROBE_CAPTIONS = (
    "a dog barks twice in a quiet room",
    "rain on a tin roof",
    " ".join(["footsteps on gravel, then a door slams and a car drives away"] * 60),
)


def caption_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def frozen_text_key(model: AudioTextModel) -> str:
    """Hash of the backend and the frozen text features of ``PROBE_CAPTIONS``."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        feats = model.text_features(list(PROBE_CAPTIONS)).float().cpu().numpy()
    model.train(was_training)
    digest = hashlib.sha256(f"{TEXT_CACHE_FORMAT}|{model.backend}|{feats.shape}".encode())
    # rounded: the key must not depend on the last bits of a float reduction order
    digest.update(np.round(feats.astype(np.float64), 4).tobytes())
    return digest.hexdigest()[:16]


class CaptionFeatureCache:
    """Caption features of one frozen text encoder, on disk under ``root/text-<key>``."""

    def __init__(self, model: AudioTextModel, root: str | Path):
        self.directory = Path(root) / f"text-{frozen_text_key(model)}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._features: dict[bytes, torch.Tensor] = {}
        for part in sorted(self.directory.glob("part-*.npz")):
            self._read(part)

    def lookup(self, texts: Iterable[str]) -> dict[str, torch.Tensor]:
        """The cached features of those of ``texts`` that are here."""
        found = {}
        for text in texts:
            feat = self._features.get(caption_digest(text))
            if feat is not None:
                found[text] = feat
        return found

    def add(self, texts: Sequence[str], features: torch.Tensor) -> None:
        """Write one part with the (N, F) ``features`` of ``texts``."""
        if not len(texts):
            return
        digests = [caption_digest(t) for t in texts]
        features = features.detach().float().cpu().contiguous()
        self._features.update(zip(digests, features, strict=True))
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".part-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    digests=np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32),
                    features=features.numpy(),
                )
                fh.flush()
                os.fsync(fh.fileno())
            name = f"part-{os.getpid()}-{hashlib.sha1(tmp.encode()).hexdigest()[:12]}.npz"
            os.replace(tmp, self.directory / name)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _read(self, part: Path) -> None:
        try:
            with np.load(part, allow_pickle=False) as data:
                digests, feats = data["digests"], data["features"]
            if digests.ndim != 2 or digests.shape[1] != 32 or len(digests) != len(feats):
                raise ValueError("digests and features do not match")
        except Exception as err:  # noqa: BLE001 - any unreadable part is skipped, never trusted
            log.warning("%s: unreadable caption-feature part skipped (%s)", part, err)
            return
        feats = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        self._features.update(zip((bytes(d) for d in digests), feats, strict=True))


__all__ = ["CaptionFeatureCache", "caption_digest", "frozen_text_key"]
