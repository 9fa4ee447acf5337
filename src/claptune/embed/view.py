"""The plain store's view, published and read: ``manifest.json`` naming one vectors file.

    OUT/manifest.json          the view: kind, model identity, ids, failures, vectors file
    OUT/embeddings-<hash>.npy  (N, D) float32, rows in the order of manifest["ids"]

A view changes in one atomic step (``swap_view``): a reader polling the store while it is
rewritten sees the old view or the new one, never ids paired with other items' vectors.
``load_store`` reads it back, all of it or exactly one run's items, and refuses vectors of
another model or a file holding pickled objects (never unpickled). The writer that builds the
view from its parts is ``claptune.embed.plain``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from claptune.atomic import atomic_file, write_json_atomic
from claptune.embed.store import StoredEmbeddings, locked_file, store_key
from claptune.errors import ClaptuneError, first_line

if TYPE_CHECKING:  # models call into the embed package; it only needs their methods
    from claptune.models.base import AudioTextModel

VIEW_RETRIES = 20  # reads of a view whose vectors a newer view deleted meanwhile

log = logging.getLogger(__name__)


def swap_view(out_dir: Path, manifest: dict[str, Any], embeddings: np.ndarray) -> None:
    """Publish a view in one atomic step: the vectors go to a new file named by a hash of the
    ids and the vectors (``embeddings-<hash>.npy``, never modified once written), then
    ``manifest.json``, which names that file, replaces the old manifest with ``os.replace``. A
    reader thus sees the old view or the new one, never ids paired with another view's rows.
    The vectors of the view just replaced are kept (a reader that has just read the old
    manifest can still open them); older ones are deleted (``load_store`` then re-reads the
    manifest). Runs under the folder's view lock, also for writers of other models."""
    digest = hashlib.sha256(json.dumps(manifest["ids"]).encode())
    digest.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    name = f"embeddings-{digest.hexdigest()[:16]}.npy"
    with locked_file(out_dir / ".view.lock"):
        previous = _view_vectors_name(out_dir)
        with atomic_file(out_dir / name) as fh:
            np.save(fh, embeddings)
        write_json_atomic(out_dir / "manifest.json", {**manifest, "embeddings": name})
        for stale in [*out_dir.glob("embeddings-*.npy"), out_dir / "embeddings.npy"]:
            if stale.name not in (name, previous):
                stale.unlink(missing_ok=True)


def _view_vectors_name(out_dir: Path) -> str | None:
    """The vectors file named by the manifest on disk (``embeddings.npy`` in stores written
    before views were versioned), or None."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    name = manifest.get("embeddings", "embeddings.npy")
    return name if _is_vectors_name(name) else None


def _is_vectors_name(name: object) -> bool:
    return (
        isinstance(name, str) and re.fullmatch(r"embeddings(-[0-9a-f]{16})?\.npy", name) is not None
    )


def earlier_view(out_dir: Path, key: str) -> tuple[list[str], list[list[str]]]:
    """Ids and failures of the view on disk if it came from the same model and kind (store
    key ``key``); none if it did not, or if it cannot be read (a writer rebuilds it)."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except FileNotFoundError:
        return [], []
    except (OSError, ValueError) as err:  # the writer rebuilds it from its cache: nothing lost
        log.warning("replacing the unreadable %s (%s)", out_dir / "manifest.json", first_line(err))
        return [], []
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return [], []  # another model's vectors: not comparable, replaced
    return list(manifest.get("ids", [])), list(manifest.get("failed", []))


def load_store(
    directory: str | os.PathLike,
    model: AudioTextModel | None = None,
    items: Sequence[str | os.PathLike] | None = None,
) -> StoredEmbeddings:
    """Read the store written by ``write_store`` in the "npz" layout; with ``model``, refuse a
    store whose vectors came from another model or preprocessing. With ``items`` (as in the
    ``StoreRequest``), return only those: ids and rows in their order (duplicates kept),
    and the manifest's ``ids``/``failed`` restricted to them."""
    directory = Path(directory)
    for attempt in range(VIEW_RETRIES):
        manifest, embeddings = _read_view(directory, model)
        if embeddings is not None:
            break
        time.sleep(0.01 * (attempt + 1))  # a writer replaced the view between our two reads
    else:
        raise ClaptuneError(f"the store at {directory} names vectors that are missing; rerun embed")
    ids = list(manifest["ids"])
    if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
        raise ClaptuneError(
            f"the store at {directory} is inconsistent "
            f"({embeddings.shape[0]} rows, {len(ids)} ids); rerun embed"
        )
    if items is None:
        return StoredEmbeddings(ids=ids, embeddings=embeddings, manifest=manifest)
    row_of = {item: row for row, item in enumerate(ids)}
    reason_of = {item: reason for item, reason in manifest.get("failed", [])}
    wanted = [str(item) for item in items]
    lacking = [item for item in wanted if item not in row_of and item not in reason_of]
    if lacking:
        raise ClaptuneError(
            f"the store at {directory} lacks {lacking[0]} "
            f"({len(lacking)} items in all); rerun embed"
        )
    kept = [item for item in wanted if item in row_of]
    failed = [[item, reason_of[item]] for item in wanted if item not in row_of]
    subset = {
        **manifest,
        "ids": kept,
        "failed": failed,
        "n_items": len(wanted),
        "n_embedded": len(kept),
    }
    return StoredEmbeddings(
        ids=kept, embeddings=embeddings[[row_of[i] for i in kept]], manifest=subset
    )


def _read_view(
    directory: Path, model: AudioTextModel | None
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The manifest and the vectors it names; None for vectors deleted since the manifest was
    read (a newer view replaced it: the caller reads again)."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise ClaptuneError(f"no embedding store at {directory} (manifest.json missing)")
    try:
        manifest = json.loads(manifest_path.read_text())
        kind, key = manifest["kind"], manifest["key"]
        list(manifest["ids"])
        name = manifest.get("embeddings", "embeddings.npy")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ClaptuneError(
            f"cannot read {manifest_path}: {first_line(err)}; rerun embed to rebuild it"
        ) from None
    if not _is_vectors_name(name):
        raise ClaptuneError(f"cannot read {manifest_path}: bad vectors name; rerun embed")
    if model is not None and key != store_key(model, kind):
        raise ClaptuneError(
            f"the store at {directory} was written by another model or preprocessing; embed again"
        )
    npy = directory / name
    try:
        return manifest, np.load(npy, allow_pickle=False)
    except FileNotFoundError:
        if name == "embeddings.npy":
            raise ClaptuneError(f"cannot read {npy}: missing; rerun embed") from None
        return manifest, None
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ClaptuneError(
                f"refusing to load {npy}: it holds pickled objects, which "
                "claptune never writes and will not unpickle (unpickling can "
                "run code); delete it and rerun embed"
            ) from None
        raise ClaptuneError(f"cannot read {npy}: {first_line(err)}; rerun embed") from None
    except (OSError, EOFError) as err:
        raise ClaptuneError(f"cannot read {npy}: {first_line(err)}; rerun embed") from None


__all__ = ["VIEW_RETRIES", "earlier_view", "load_store", "swap_view"]
