"""The one way to write an embedding store: ``write_store(model, out_dir, request)``.

``request`` (a ``StoreRequest``, ``claptune.embed.store``) says what to embed and how; its
``store_format`` picks the layout: ``"npz"`` (``claptune.embed.plain``, read back by
``load_store``) or ``"shards"`` (``claptune.embed.shards``, read back by ``ShardedStore``).
``claptune embed`` calls it; ``embed_to_store``, ``embed_shards_to_store`` and
``embed_to_sharded_store`` are shorthands that build the request.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claptune.embed.plain import write_plain
from claptune.embed.shards import write_sharded
from claptune.embed.store import StoreRequest

if TYPE_CHECKING:  # models call into the embed package; it only needs their methods
    from claptune.models.base import AudioTextModel


def write_store(model: AudioTextModel, out_dir: str | os.PathLike, request: StoreRequest) -> Path:
    """Embed what ``request`` names into the store at ``out_dir`` (created if need be), in its
    layout; return ``out_dir`` as a ``Path``.

    Only what the store lacks is computed: a rerun after an interruption, or with more items,
    embeds only the missing ones, ``request.chunk_size`` items per atomically written part or
    unit. Under ``torchrun`` every rank makes the same call and the ranks share the work; rank
    0 writes the manifest once all are done.
    """
    out_dir = Path(out_dir)
    if request.store_format == "shards":
        return write_sharded(model, out_dir, request)
    return write_plain(model, out_dir, request)


def embed_to_store(
    model: AudioTextModel,
    items: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    kind: str = "audio",
    **options: Any,
) -> Path:
    """``write_store`` of audio paths or captions in the "npz" layout; ``options`` are the
    other fields of ``StoreRequest`` (``chunk_size``, ``batch_size``, ``num_workers``,
    ``progress``, ``on_error``)."""
    request = StoreRequest(items=items, kind=kind, store_format="npz", **options)
    return write_store(model, out_dir, request)


def embed_shards_to_store(
    model: AudioTextModel,
    specs: str | Sequence[str],
    out_dir: str | os.PathLike,
    store_format: str = "npz",
    **options: Any,
) -> Path:
    """``write_store`` of the audio of webdataset shards ``specs`` (patterns or URLs), item ids
    ``<shard>/<key>``; ``options`` as for ``embed_to_store``."""
    request = StoreRequest(shards=specs, store_format=store_format, **options)
    return write_store(model, out_dir, request)


def embed_to_sharded_store(
    model: AudioTextModel,
    items: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    kind: str = "audio",
    **options: Any,
) -> Path:
    """``write_store`` of audio paths or captions in the "shards" layout; ``options`` as for
    ``embed_to_store``."""
    request = StoreRequest(items=items, kind=kind, store_format="shards", **options)
    return write_store(model, out_dir, request)


__all__ = ["embed_shards_to_store", "embed_to_sharded_store", "embed_to_store", "write_store"]
