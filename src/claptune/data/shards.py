"""Webdataset tar shards as an audio source: patterns, streamed samples, ids, random access.

Large audio-text sets ship as webdataset shards (LAION-Audio-630K, WavCaps, AudioSet mirrors):
``/data/{000000..000999}.tar``, each sample a few tar members sharing a key, e.g.
``abc.flac`` + ``abc.json`` (or ``abc.txt``). This module reads them with the ``webdataset``
library, streamed: a shard is read member by member, samples are decoded in memory, nothing is
unpacked to disk, and memory does not grow with the number of shards.

- ``expand_shards(specs)``: brace patterns (``{000000..000099}``), local paths and any URL that
  webdataset opens (``file:``, ``pipe:``, ``http(s)://``, and every fsspec scheme such as
  ``s3://`` or ``gs://`` where the matching fsspec back-end is installed) -> a list of shard URLs.
- ``iter_samples(urls, rank=, world_size=)``: the samples of this rank's shards (and of this
  DataLoader worker's), in shard order then tar order. Shard ``i`` belongs to rank
  ``i % world_size``: deterministic, so the union over ranks is the single-process set.
- Item ids are ``<shard>/<key>`` where ``<shard>`` is the shard's file name without its
  ``.tar`` suffix (``000042/abc`` for ``s3://bucket/laion/000042.tar``). The name, not the full
  URL, is the stable part: a store embedded from a local copy resumes from a mirror in another
  bucket. Two shards of one set with the same file name are refused.
- Captions: the sample's ``.txt``, or with ``caption_key`` the named field of its ``.json``
  (dotted for nested fields: ``meta.caption``).
- ``ShardIndex`` gives random access for training: it scans the tar headers of the shards once
  (the standard library's ``tarfile``) and maps each id to its audio member's byte range, which
  ``load_member`` reads with one ranged read (fsspec for URLs, a seek for local files).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from claptune.errors import AudioDecodeError, ClaptuneError

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# Audio members in order of preference when a sample holds several.
AUDIO_EXTS = ("flac", "wav", "mp3", "ogg", "oga", "opus", "aif", "aiff")
_MEMBER_MARK = "#member="  # see ShardMember.ref


def is_shard_spec(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names webdataset shards (a .tar/.tar.gz/.tgz path, URL or pattern)."""
    text = str(spec).strip()
    if text.startswith("pipe:"):
        text = text.split()[-1] if text.split() else text
    return text.lower().endswith(SHARD_SUFFIXES)


def expand_shards(specs: str | Sequence[str]) -> list[str]:
    """Shard URLs of ``specs`` (brace patterns expanded), in order, duplicates dropped.

    Refuses two different URLs whose shard names (see ``shard_name``) coincide, since the
    item ids would collide.
    """
    from webdataset.shardlists import expand_urls

    if isinstance(specs, str | os.PathLike):
        specs = [specs]
    urls: list[str] = []
    for spec in specs:
        expanded = expand_urls(str(spec))
        if not expanded:
            raise ClaptuneError(f"no shards in {spec!r}")
        urls.extend(expanded)
    urls = list(dict.fromkeys(urls))
    seen: dict[str, str] = {}
    for url in urls:
        name = shard_name(url)
        if name in seen:
            raise ClaptuneError(
                f"shards {seen[name]} and {url} have the same name {name!r}; "
                "item ids (shard/key) would collide: rename one set"
            )
        seen[name] = url
    return urls


def shard_name(url: str) -> str:
    """The shard's file name without its tar suffix: the first part of its items' ids."""
    text = url.strip()
    if text.startswith("pipe:"):
        text = text.split()[-1]
    base = text.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    for suffix in sorted(SHARD_SUFFIXES, key=len, reverse=True):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


@dataclass
class ShardSample:
    """One sample of a shard: its id, its audio member (bytes, undecoded) and caption."""

    id: str  # "<shard name>/<key>"
    url: str  # the shard it came from
    audio: bytes | None  # the audio member's bytes (None when the sample has none)
    audio_ext: str | None  # "flac", "wav", ...
    caption: str | None  # from .txt, or the .json field named by caption_key


def iter_samples(
    urls: Sequence[str],
    caption_key: str | None = None,
    rank: int = 0,
    world_size: int = 1,
    split_workers: bool = True,
) -> Iterator[ShardSample]:
    """Stream the samples of shards ``urls[rank::world_size]``.

    Inside a DataLoader worker the rank's shards are further split by worker
    (``webdataset.split_by_worker``) when ``split_workers``. A shard that cannot be opened or
    read raises ``ClaptuneError`` naming it.
    """
    import webdataset as wds

    mine = list(urls)[rank::world_size]
    if not mine:
        return
    stages: list[Any] = [wds.SimpleShardList(mine)]
    if split_workers:
        stages.append(wds.split_by_worker)
    stages.append(wds.tarfile_to_samples(handler=_shard_error))
    for raw in wds.DataPipeline(*stages):
        yield _to_sample(raw, caption_key)


class ShardSamples(torch.utils.data.IterableDataset):
    """(id, waveform at ``sample_rate``) of the samples of shards, for a DataLoader.

    Shards are split across ranks (``rank``/``world_size``, by default from
    ``torch.distributed`` when it is initialised), then across the loader's workers, so every
    sample is read by exactly one worker of one rank. Samples whose audio does not decode are
    skipped.
    """

    def __init__(
        self,
        urls: Sequence[str],
        sample_rate: int,
        caption_key: str | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        dist = torch.distributed
        on = dist.is_available() and dist.is_initialized()
        self.urls, self.sample_rate, self.caption_key = list(urls), sample_rate, caption_key
        self.rank = rank if rank is not None else (dist.get_rank() if on else 0)
        self.world_size = (
            world_size if world_size is not None else (dist.get_world_size() if on else 1)
        )

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for sample in iter_samples(
            self.urls, self.caption_key, self.rank, self.world_size, split_workers=True
        ):
            try:
                yield sample.id, decode_sample(sample, self.sample_rate)
            except AudioDecodeError:
                continue


def _shard_error(exn: Exception) -> bool:
    raise ClaptuneError(f"cannot read shard: {exn}") from None


def _to_sample(raw: dict[str, Any], caption_key: str | None) -> ShardSample:
    url = raw.get("__url__", "")
    key = raw["__key__"]
    ext = next((e for e in AUDIO_EXTS if e in raw), None)
    if ext is None:  # members like "x.audio.flac" keep their full extension as the dict key
        ext = next(
            (k for k in raw if not k.startswith("__") and k.rsplit(".", 1)[-1] in AUDIO_EXTS), None
        )
    return ShardSample(
        id=f"{shard_name(url)}/{key}",
        url=url,
        audio=None if ext is None else raw[ext],
        audio_ext=ext,
        caption=_caption(raw, caption_key, url, key),
    )


def _caption(raw: dict[str, Any], caption_key: str | None, url: str, key: str) -> str | None:
    if caption_key is None:
        txt = raw.get("txt")
        return None if txt is None else txt.decode("utf-8").strip()
    if "json" not in raw:
        return None
    try:
        value: Any = json.loads(raw["json"])
    except ValueError as err:
        raise ClaptuneError(f"{url}: sample {key}: .json is not valid JSON ({err})") from None
    for part in caption_key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, list):  # several captions: the first (datasets like WavCaps)
        value = value[0] if value else None
    return None if value is None else str(value).strip()


def decode_audio_bytes(data: bytes, name: str, sample_rate: int) -> np.ndarray:
    """Decode an in-memory audio member to a float32 mono waveform at ``sample_rate``.

    The same rules as ``claptune.audio.load_audio`` for files: mono by averaging channels,
    soxr resampling, ``AudioDecodeError(name, reason)`` for empty, unreadable or non-finite
    audio.
    """
    import soundfile as sf

    from claptune.audio import resample

    if not data:
        raise AudioDecodeError(name, "empty audio member")
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioDecodeError(name, f"not readable audio ({err})") from None
    if wave.shape[0] == 0:
        raise AudioDecodeError(name, "no audio samples")
    if not np.isfinite(wave).all():
        raise AudioDecodeError(name, "non-finite samples")
    mono = wave.mean(axis=1, dtype=np.float32) if wave.shape[1] > 1 else wave[:, 0]
    return resample(mono, rate, sample_rate)


def decode_sample(sample: ShardSample, sample_rate: int) -> np.ndarray:
    """The sample's audio as a waveform; ``AudioDecodeError`` when it has no audio member."""
    if sample.audio is None:
        raise AudioDecodeError(sample.id, "no audio member (" + ", ".join(AUDIO_EXTS) + ")")
    return decode_audio_bytes(sample.audio, sample.id, sample_rate)


# -- random access (training) ---------------------------------------------------------------------
@dataclass(frozen=True)
class ShardMember:
    """Where one sample's audio lies: a byte range of a shard."""

    url: str
    offset: int  # of the member's data in the (uncompressed) tar
    size: int
    ext: str

    def ref(self) -> str:
        """A string that stands for this member wherever claptune takes an audio path."""
        return f"{self.url}{_MEMBER_MARK}{self.offset}+{self.size}.{self.ext}"

    @staticmethod
    def parse(ref: str) -> ShardMember | None:
        url, mark, rest = ref.rpartition(_MEMBER_MARK)
        if not mark:
            return None
        span, _, ext = rest.partition(".")
        offset, _, size = span.partition("+")
        return ShardMember(url, int(offset), int(size), ext)


def is_member_ref(ref: str | os.PathLike) -> bool:
    return _MEMBER_MARK in str(ref)


class ShardIndex:
    """Id -> audio member of every sample of some shards, from one pass over their tar headers
    (local shards: a seek from header to header; URLs: one streamed read).

    Holds one small record per sample (not the audio). Compressed shards (.tar.gz) cannot be
    read at an offset and are refused.
    """

    def __init__(self, specs: str | Sequence[str], caption_key: str | None = None):
        self.urls = expand_shards(specs)
        self.members: dict[str, ShardMember] = {}
        self.captions: dict[str, str] = {}
        for url in self.urls:
            if not url.lower().endswith(".tar"):
                raise ClaptuneError(f"{url}: random access needs uncompressed .tar shards")
            self._scan(url, caption_key)

    def _scan(self, url: str, caption_key: str | None) -> None:
        name = shard_name(url)
        texts: dict[str, dict[str, Any]] = {}
        try:
            # a local file is seekable: tarfile then skips the audio instead of reading it
            mode = "r|" if "://" in url else "r:"
            with _open(url) as fh, tarfile.open(fileobj=fh, mode=mode) as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    key, ext = _split_member(info.name)
                    sid = f"{name}/{key}"
                    if ext in AUDIO_EXTS and (
                        sid not in self.members
                        or AUDIO_EXTS.index(ext) < AUDIO_EXTS.index(self.members[sid].ext)
                    ):
                        self.members[sid] = ShardMember(url, info.offset_data, info.size, ext)
                    elif ext in ("txt", "json"):
                        member = tar.extractfile(info)
                        texts.setdefault(sid, {})[ext] = member.read() if member else b""
        except (OSError, tarfile.TarError) as err:
            raise ClaptuneError(f"cannot read shard {url}: {err}") from None
        for sid, raw in texts.items():
            caption = _caption(raw, caption_key, url, sid)
            if caption:
                self.captions[sid] = caption

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, sid: str) -> bool:
        return sid in self.members

    def ref(self, sid: str) -> str:
        if sid not in self.members:
            raise ClaptuneError(
                f"no audio for item {sid!r} in the shards "
                f"({len(self.urls)} shards, first {self.urls[0]})"
            )
        return self.members[sid].ref()


def _split_member(name: str) -> tuple[str, str]:
    """(key, last extension): webdataset's rule, the key is the path up to the first dot of
    the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    key = f"{folder}/{stem}" if folder else stem
    return key, ext.lower().rsplit(".", 1)[-1] if ext else ""


def _open(url: str):
    if url.startswith("file:"):
        url = url[len("file:") :]
    if "://" in url:
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url, "rb")  # noqa: SIM115 (closed by the caller's with)


def load_member(ref: str, sample_rate: int) -> np.ndarray:
    """Decode the audio member that ``ref`` (``ShardMember.ref()``) points at."""
    member = ShardMember.parse(ref)
    if member is None:
        raise ValueError(f"not a shard member reference: {ref!r}")
    try:
        with _open(member.url) as fh:
            fh.seek(member.offset)
            data = fh.read(member.size)
    except OSError as err:
        raise AudioDecodeError(ref, f"cannot read shard ({err})") from None
    if len(data) != member.size:
        raise AudioDecodeError(ref, "shard shorter than its index (changed since indexed?)")
    return decode_audio_bytes(data, ref, sample_rate)


def load_clip(ref: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """``load_audio`` for files, ``load_member`` for shard member references."""
    if is_member_ref(ref):
        return load_member(str(ref), sample_rate)
    from claptune.audio import load_audio

    return load_audio(ref, sample_rate)


def captioned_pairs(
    specs: str | Sequence[str], caption_key: str | None = None
) -> tuple[list[str], list[str], list[str]]:
    """(ids, audio references, captions) of every captioned sample with audio in the shards."""
    index = ShardIndex(specs, caption_key)
    ids = [sid for sid in index.members if sid in index.captions]
    if not ids:
        raise ClaptuneError(
            f"no captioned audio samples in {specs}"
            + ("" if caption_key else " (captions from .txt; see caption_key)")
        )
    return ids, [index.ref(s) for s in ids], [index.captions[s] for s in ids]


def write_audio_shards(
    pattern: str,
    samples: Iterable[tuple[str, np.ndarray, int, str | None]],
    per_shard: int,
    fmt: str = "FLAC",
) -> list[str]:
    """Write ``(key, waveform, sample_rate, caption)`` samples as webdataset shards.

    ``pattern`` is a local path with a printf field for the shard number
    (``out/%06d.tar``); each sample becomes ``<key>.flac`` (or ``.wav`` with ``fmt="WAV"``)
    plus ``<key>.txt`` when it has a caption. Returns the shard paths written. Useful to turn
    a folder of clips into shards, and for tests and benchmarks.
    """
    import soundfile as sf
    import webdataset as wds

    ext = fmt.lower()
    written: list[str] = []
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0) as sink:
        for key, wave, rate, caption in samples:
            buf = io.BytesIO()
            sf.write(buf, np.asarray(wave, dtype=np.float32), rate, format=fmt)
            sample: dict[str, Any] = {"__key__": key, ext: buf.getvalue()}
            if caption is not None:
                sample["txt"] = caption
            sink.write(sample)
            if sink.fname and (not written or written[-1] != sink.fname):
                written.append(sink.fname)
    return written
