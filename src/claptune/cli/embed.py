"""`claptune embed`: embed audio files or captions into a resumable on-disk store.

    claptune embed --model M --audio PATH... --out DIR
    claptune embed --model M --text captions.txt --out DIR
    claptune embed --model M --text corpus.csv --text-column caption --out DIR

PATH is a file, a folder (searched recursively for audio) or a .txt list of paths, or
webdataset shards: a pattern or URL such as /data/{000000..000099}.tar or
s3://bucket/{000000..000999}.tar, streamed, item ids <shard>/<key> (docs/shards.md).
--store-format shards writes the store as shards of (id, embedding) that curate streams. Run it
again after an interruption and it computes only what is missing. Under
``torchrun --nproc-per-node N $(which claptune) embed ...`` the ranks share the work.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from claptune.cli._common import (
    add_device,
    add_num_workers,
    add_on_error,
    add_quiet,
    model_device,
    sub_parser,
)
from claptune.errors import ClaptuneError, printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub_parser(sub, "embed", __doc__)
    p.add_argument("--model", required=True, help="registered name, model folder or hub id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--audio",
        nargs="+",
        metavar="PATH",
        help="audio files, folders (recursive) or .txt lists of paths (required, or --text)",
    )
    what.add_argument(
        "--text",
        metavar="FILE",
        help=".txt with one caption per line, or .csv (see --text-column) (required, or --audio)",
    )
    p.add_argument("--text-column", default="caption", help="caption column of a .csv")
    p.add_argument("--out", required=True, type=Path, help="store folder")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows (audio) or captions per forward (default: 32 windows, 256 captions)",
    )
    add_num_workers(p)
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="items per atomically written part (default: 256 clips, 4096 captions)",
    )
    add_on_error(p, "list it in the manifest")
    p.add_argument(
        "--store-format",
        choices=["npz", "shards"],
        default="npz",
        help="one embeddings.npy (npz) or webdataset shards of (id, embedding)",
    )
    add_device(p)
    add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from claptune.audio import find_audio
    from claptune.data.shards import is_shard_spec
    from claptune.embed import StoreRequest, load_store, write_store
    from claptune.models import load_model

    options = {
        "store_format": args.store_format,
        "chunk_size": args.chunk_size,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "progress": not args.quiet,
        "on_error": args.on_error,
    }
    if args.audio and any(is_shard_spec(a) for a in args.audio):
        # webdataset shards, streamed, into either store layout
        if not all(is_shard_spec(a) for a in args.audio):
            raise ClaptuneError("--audio: give either webdataset shards or audio files, not both")
        model = load_model(args.model, **model_device(args.device))
        return _summary(write_store(model, args.out, StoreRequest(shards=args.audio, **options)))
    if args.audio:
        kind, items = "audio", [str(p) for p in find_audio(args.audio)]
        if not items:
            raise ClaptuneError(f"no audio files found in {' '.join(args.audio)}")
    else:
        from claptune.data.captioned import read_captions

        kind, items = "text", read_captions(Path(args.text), args.text_column)
    model = load_model(args.model, **model_device(args.device))
    out = write_store(model, args.out, StoreRequest(items=items, kind=kind, **options))
    if args.store_format == "shards":
        return _summary(out)
    if int(os.environ.get("RANK", "0")) == 0:  # one report, not one per torchrun rank
        store = load_store(out, items=items)  # this run's items; the view may hold more
        print(
            f"embedded {len(store.ids)} of {len(items)} {kind} items "
            f"({store.embeddings.shape[1]}-d) into {out}"
        )
        for item, reason in store.manifest["failed"]:
            print(f"  skipped {printable(item)}: {reason}")
    return 0


def _summary(out: Path) -> int:
    """The one-line report of a store in either layout (rank 0 only)."""
    import json

    if int(os.environ.get("RANK", "0")) == 0:
        manifest = json.loads((out / "manifest.json").read_text())
        print(
            f"embedded {manifest['n_embedded']} of {manifest['n_items']} {manifest['kind']} "
            f"items ({manifest['dim']}-d) into {out}"
        )
        for item, reason in manifest["failed"]:
            print(f"  skipped {printable(item)}: {reason}")
    return 0
