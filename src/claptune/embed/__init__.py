"""Embedding: batched, deterministic inference, and the resumable on-disk store.

    encode.py   encode_audio, encode_text, encode_samples: the model's inference, in memory
    store.py    StoreRequest, StoredEmbeddings, store_key, item_key: what every layout shares
    write.py    write_store(model, out_dir, request): the one writer, dispatching on layout
    plain.py    the "npz" layout written: parts in a cache, concurrent writers, resumable
    view.py     the "npz" layout's view, swapped atomically; load_store reads it back
    shards.py   the "shards" layout: webdataset shards of (id, embedding); ShardedStore

Example::

    from claptune.embed import StoreRequest, load_store, write_store

    out = write_store(model, "runs/emb", StoreRequest(items=paths, kind="audio"))
    store = load_store(out, model=model, items=paths)  # .ids .embeddings .manifest
"""

from claptune.embed.encode import AudioEncoding, encode_audio, encode_samples, encode_text
from claptune.embed.shards import ShardedStore, is_sharded_store
from claptune.embed.store import (
    STORE_FORMATS,
    StoredEmbeddings,
    StoreRequest,
    item_key,
    store_key,
)
from claptune.embed.view import load_store, swap_view
from claptune.embed.write import (
    embed_shards_to_store,
    embed_to_sharded_store,
    embed_to_store,
    write_store,
)

__all__ = [
    "STORE_FORMATS",
    "AudioEncoding",
    "ShardedStore",
    "StoreRequest",
    "StoredEmbeddings",
    "embed_shards_to_store",
    "embed_to_sharded_store",
    "embed_to_store",
    "encode_audio",
    "encode_samples",
    "encode_text",
    "is_sharded_store",
    "item_key",
    "load_store",
    "store_key",
    "swap_view",
    "write_store",
]
