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
    NUM_WORKERS_HELP,
    add_cache_dir,
    add_on_error,
    add_quiet,
    cache_dir,
    sub_parser,
)
from claptune.errors import ClaptuneError
from claptune.train.config import TRAINABLE

# flag -> TrainConfig field, for the flags that map one to one
_FIELDS = {
    "loss": "loss",
    "beta": "beta",
    "normalize_targets": "normalize_targets",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "min_lr": "min_lr",
    "grad_clip": "grad_clip",
    "p_curated": "p_curated",
    "val_fraction": "val_fraction",
    "keep": "keep",
    "wise_alpha": "wise_alpha",
    "trainable": "trainable",
    "lora_rank": "lora_rank",
    "lora_alpha": "lora_alpha",
    "crop": "crop",
    "precision": "precision",
    "device": "device",
    "seed": "seed",
    "save_every": "save_every",
    "num_workers": "num_workers",
    "on_error": "on_error",
}


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
    p.add_argument(
        "--loss",
        choices=["hard", "soft", "multipos"],
        help="contrastive loss (hard is improve's: the better one in its ablation)",
    )
    p.add_argument("--beta", type=float, help="soft-target weight of teacher similarities")
    p.add_argument(
        "--normalize-targets",
        action="store_true",
        default=None,
        help="renormalise soft target rows (the published rows are not)",
    )
    p.add_argument("--epochs", type=int, help="passes over the curated pairs")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--lr", type=float, help="AdamW learning rate")
    p.add_argument("--min-lr", type=float, help="floor of the plateau schedule")
    p.add_argument("--grad-clip", type=float, help="max grad norm; 0 disables")
    p.add_argument("--p-curated", type=float, help="probability a step uses curated pairs")
    p.add_argument(
        "--val-fraction",
        type=float,
        help="fraction of curated clips held out for the plateau/selection loss",
    )
    p.add_argument(
        "--keep",
        choices=["last", "best_val"],
        help="final model: last step or lowest held-out curated loss",
    )
    p.add_argument(
        "--wise-alpha",
        type=float,
        help="weight-space ensemble with the starting model (WiSE-FT): keep alpha x fine-tuned "
        "+ (1 - alpha) x starting weights; 1 = plain fine-tune (improve: --train wise_alpha=A)",
    )
    p.add_argument("--trainable", choices=TRAINABLE, help="which parameters train")
    p.add_argument("--lora-rank", type=int, help="rank of the LoRA adapters")
    p.add_argument("--lora-alpha", type=int, help="scale of the LoRA adapters")
    p.add_argument(
        "--crop",
        choices=["fixed", "random"],
        help="training windows: fixed (teacher cached) or random (paper)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="auto: bf16 autocast on CUDA, fp32 on CPU",
    )
    p.add_argument(
        "--device", help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ..."
    )
    p.add_argument("--seed", type=int, help="seed of batches, crops and initialisation")
    p.add_argument("--save-every", type=int, help="steps between checkpoints")
    p.add_argument("--num-workers", type=int, help=NUM_WORKERS_HELP)
    add_on_error(p, "leave its pairs out and list it in OUT/skipped_clips.json", from_config=True)
    add_cache_dir(p)  # frozen features, for models whose heads alone train
    _show_config_defaults(p)
    return p


def _show_config_defaults(p: argparse.ArgumentParser) -> None:
    """A flag left out takes the value of --config, else TrainConfig's default: say which."""
    from claptune.train.config import TrainConfig

    defaults = TrainConfig()
    for action in p._actions:
        field = _FIELDS.get(action.dest)
        if field is not None and "default" not in (action.help or ""):
            value = getattr(defaults, field)
            value = "none" if value is None else value
            action.help = f"{action.help or ''} (default: {value})".lstrip()


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
    values.update(
        {
            field: getattr(args, flag)
            for flag, field in _FIELDS.items()
            if getattr(args, flag) is not None
        }
    )
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
