"""``claptune train``: fine-tune a model on curated pairs against its frozen teacher.

    claptune train --model laion/clap-htsat-unfused --pairs curated.csv --replay captions.csv \\
        --loss soft --out runs/soft
    torchrun --nproc_per_node 2 --no-python claptune train ...  # data parallel, same global batch

Settings come from the TrainConfig defaults, then ``--config FILE.json``, then the flags
given. The run folder gets config.json, loss.csv, metrics.jsonl, loss.png, tensorboard/,
checkpoint/ and model/ (loadable by ``claptune.load_model``; a Hugging Face student also by
``transformers.ClapModel.from_pretrained``). A run folder that holds a checkpoint is refused
unless ``--resume`` (continue it) or ``--overwrite`` (start again) is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from claptune.cli._common import (
    add_cache_dir,
    add_fields,
    add_quiet,
    cache_dir,
    sub_parser,
)
from claptune.errors import ClaptuneError

# the TrainConfig fields ``claptune train`` sets by a flag of its own, generated from the fields
FLAGS = (
    "loss",
    "beta",
    "normalize_targets",
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "min_lr",
    "grad_clip",
    "p_curated",
    "val_fraction",
    "keep",
    "wise_alpha",
    "trainable",
    "lora_rank",
    "lora_alpha",
    "crop",
    "precision",
    "device",
    "seed",
    "save_every",
    "num_workers",
    "on_error",
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub_parser(sub, "train", __doc__)
    p.add_argument("--model", required=True, help="registered name, model folder or hub id")
    p.add_argument(
        "--pairs",
        required=True,
        help="curated pairs CSV: audio,text columns (class optional), or captioned "
        "webdataset shards (/data/{000000..000099}.tar)",
    )
    p.add_argument(
        "--replay",
        help="replay pairs CSV (e.g. the original paired corpus), "
        "or captioned webdataset shards (default: none)",
    )
    p.add_argument(
        "--shards",
        nargs="+",
        metavar="SPEC",
        help="webdataset shards holding the <shard>/<key> audio ids of the pairs (default: none)",
    )
    p.add_argument(
        "--caption-key", help="captioned shards: caption from this .json field (default: the .txt)"
    )
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument(
        "--config", type=Path, help="TrainConfig JSON; flags given override it (default: none)"
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT from its checkpoint (default: off; an OUT "
        "without a checkpoint is an error)",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the earlier run's checkpoint, logs and model in OUT and "
        "start again (default: off; an OUT holding a checkpoint is refused)",
    )
    add_quiet(p)
    from claptune.train.config import TrainConfig

    add_fields(p, TrainConfig, FLAGS)
    add_cache_dir(p)  # frozen features, for models whose heads alone train
    return p


def run(args: argparse.Namespace) -> int:
    from claptune.models import load_model
    from claptune.train import TrainConfig, fit, heads_train_on_features
    from claptune.train.data import pairs_from

    values = {}
    if args.config is not None:
        from claptune.textfiles import read_text

        try:
            values = json.loads(read_text(args.config, what="config"))
        except (OSError, json.JSONDecodeError) as err:
            raise ClaptuneError(f"cannot read config {args.config}: {err}") from None
    values.update({name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None})
    if args.quiet:
        values["progress"] = False
    from claptune.card import methods_of

    if methods := methods_of(args.pairs):  # the pairs file's curation methods, for the card
        values["extra"] = {**values.get("extra", {}), "curation": methods}
    config = TrainConfig.from_dict(values)
    # user errors in the inputs before the model loads
    pairs = pairs_from(args.pairs, args.shards, args.caption_key)
    replay = None if args.replay is None else pairs_from(args.replay, args.shards, args.caption_key)
    model = load_model(args.model)
    features = None
    if not args.no_cache and heads_train_on_features(model, config):
        from claptune.features import FeatureStore

        features = FeatureStore(
            model,
            cache_dir=cache_dir(args),
            num_workers=config.num_workers,
            progress=config.progress,
        )
    result = fit(
        model,
        pairs,
        config,
        replay=replay,
        out_dir=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        features=features,
    )
    if result.model_dir is not None:
        losses = "".join(
            f"; epoch {r['epoch']} train loss {r['train_loss']:.4f}"
            + (f", held-out {r['val_loss']:.4f}" if r["val_loss"] is not None else "")
            for r in result.history[-1:]
        )
        print(
            f"trained {result.steps} steps ({result.epochs_completed} epochs){losses}; "
            f"model saved to {result.model_dir}"
        )
    return 0
