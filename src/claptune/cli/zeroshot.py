"""`claptune zeroshot`: zero-shot classification accuracy of a model on a labelled data set.

    claptune zeroshot --model M --target esc50 --root ../shared/data/esc50-subset --out runs/zs
    claptune zeroshot --model M --target us8k --download --folds 1,2 --template default --out DIR
    claptune zeroshot --model M --target folder --root my_clips/ --template "a {} sound" --out DIR

The prompts default to improve's 8-template ensemble, so a model's accuracy here is the
"before" number that `claptune improve` reports for the same clips. Clip embeddings are kept
under --cache-dir and reused by later runs of the same model (other templates, say).

Targets: esc50, us8k, tut2017 (development + evaluation; --split), folder (a folder of class
folders), csv (a CSV of path,label). Prints overall and per-class accuracy and writes
DIR/zeroshot.json (accuracy, n_clips, per_class, config, failed, per-clip predictions) and
DIR/confusion.png.

Clips without labels, a class list, and a label for each clip:

    claptune zeroshot --model M --audio my_clips/ --classes classes.txt --out DIR
    claptune zeroshot --model M --audio my_clips/ --classes classes.txt --transductive --out DIR

writes DIR/predictions.csv (path,label,confidence,runner_up,runner_up_confidence) and
DIR/zeroshot.json (the clips' count, the predicted count per class, the configuration).
--transductive [METHOD] refines the scores over all the clips together without a label
(claptune.evaluate.transductive; default method: claptune = label propagation on the kNN audio
graph, then Sinkhorn balancing); on a labelled --target it also writes predictions.csv and
reports the transductive accuracy beside the plain one. A finished run's DIR is replaced only
with --overwrite (as improve and adapt do).

A model saved by improve or adapt carries a class head (audio prototypes of its classes,
claptune.evaluate.prototypes): when it holds every class asked for, the plain predictions are
scored with it, as improve measured them; --no-class-head scores with the prompts alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from claptune.cli._common import (
    add_cache_dir,
    add_device,
    add_num_workers,
    add_on_error,
    add_overwrite,
    add_quiet,
    add_template,
    alias,
    cache_dir,
    model_device,
    sub_parser,
)
from claptune.errors import ClaptuneError, printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub_parser(sub, "zeroshot", __doc__)
    p.add_argument("--model", required=True, help="registered name, model folder or hub id")
    p.add_argument(
        "--target",  # required unless --audio, checked in run() so that --dataset counts too
        help="esc50, us8k, tut2017, folder (class folders) or csv (path,label) "
        "(required unless --audio)",
    )
    p.add_argument(
        "--audio",
        nargs="+",
        default=None,
        help="unlabeled clips instead of --target: files, folders or .txt lists (default: none)",
    )
    p.add_argument(
        "--classes",
        default=None,
        help="with --audio: a file with one class name per line, or a,b,c (default: none)",
    )
    p.add_argument(
        "--transductive",
        nargs="?",
        const="claptune",
        default="none",
        metavar="METHOD",
        help="refine the scores over all clips together, without labels: claptune (the "
        "default when the flag is given alone), sinkhorn, label_propagation, gaussian_em, "
        "entropy or none (default: none)",
    )
    p.add_argument(
        "--no-class-head",
        dest="class_head",
        action="store_false",
        help="score with the prompts alone, not the class head a model saved by improve or "
        "adapt carries (default: the head scores the plain predictions when it holds every "
        "class asked for; --transductive always starts from the prompts alone)",
    )
    alias(p, "--dataset", dest="target")
    p.add_argument(
        "--root",
        default=None,
        help="local copy of the data set (folder; a .csv file for --target csv) (default: none)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch a published data set if it is missing (into --root, else into "
        "$CLAPTUNE_DATA, default ~/.cache/claptune/data)",
    )
    p.add_argument(
        "--folds", default=None, help="comma-separated folds to evaluate, e.g. 1,2 (default: all)"
    )
    p.add_argument(
        "--split",
        default=None,
        choices=["all", "development", "evaluation"],
        help="TUT2017 only: which set(s) (default: all)",
    )
    add_template(p)
    alias(p, "--templates", dest="templates", nargs="+")
    p.add_argument("--batch-size", type=int, default=32, help="audio windows per forward")
    add_num_workers(p)
    add_on_error(p, "leave it out and list it")
    add_cache_dir(p)
    alias(p, "--cache", dest="cache_dir", type=Path)
    add_device(p)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_quiet(p)
    add_overwrite(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Check the flags, then hold ``--out`` (a finished run there needs ``--overwrite``) and
    label the clips or score the data set."""
    from claptune.evaluate.transductive import TRANSDUCTIONS
    from claptune.runfolder import hold_run_folder

    if args.batch_size < 1 or args.num_workers < 0:
        raise ClaptuneError("--batch-size must be >= 1 and --num-workers >= 0")
    if args.transductive not in TRANSDUCTIONS:
        raise ClaptuneError(
            f"unknown --transductive {args.transductive!r}; choose from {', '.join(TRANSDUCTIONS)}"
        )
    unlabeled = args.audio is not None or args.classes is not None
    if unlabeled:
        if args.audio is None or args.classes is None:
            raise ClaptuneError("--audio and --classes go together (clips without labels)")
        if args.target is not None:
            raise ClaptuneError(
                "give either --target (a labelled set) or --audio (clips), not both"
            )
    elif args.target is None:
        raise ClaptuneError("--target is required (esc50, us8k, tut2017, folder or csv)")
    with hold_run_folder(args.out, "zeroshot", overwrite=args.overwrite):
        return run_unlabeled(args) if unlabeled else run_labelled(args)


def run_labelled(args: argparse.Namespace) -> int:
    """--target: accuracy, per-class and per-fold scores and a confusion matrix."""
    from claptune.data import load_dataset
    from claptune.evaluate.zeroshot import evaluate_zeroshot, resolve_templates

    folds = parse_folds(args.folds)
    templates = resolve_templates(args.templates or ["ensemble"])  # improve's default
    extra = {"split": args.split} if args.split else {}
    if extra and args.target != "tut2017":
        raise ClaptuneError("--split applies to --target tut2017 only")
    dataset = load_dataset(
        args.target, root=args.root, download=args.download, folds=folds, **extra
    )
    # torch and the model come after the cheap checks, so a typo fails in a blink
    from claptune.evaluate.plots import plot_confusion
    from claptune.models import load_model

    model = load_model(args.model, **model_device(args.device))
    cache = cache_dir(args)
    if cache is not None:  # one store per model: another model never shares its view
        from claptune.embed import store_key

        cache = cache / "embeddings" / "zeroshot" / store_key(model, "audio")
    result = evaluate_zeroshot(
        model,
        dataset,
        templates=templates,
        on_error=args.on_error,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        progress=not args.quiet,
        cache_dir=cache,
        class_head=args.class_head,
    )
    config = {
        "model": args.model,
        "model_identity": model.identity(),
        "target": args.target,
        "root": str(Path(args.root).expanduser().resolve()) if args.root else None,
        "download": args.download,
        "folds": folds,
        "split": args.split,
        "templates": list(templates),
        "n_items": len(dataset),
        "batch_size": args.batch_size,
        "on_error": args.on_error,
        "cache": str(cache) if cache else None,
        "class_head": head_record(model, result.class_head),
    }
    report = result_to_json(result, dataset, config)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.transductive != "none":
        from claptune.evaluate.metrics import accuracy

        probs, _ = transductive_probs(model, result.audio_emb, result.class_names, templates, args)
        transductive = probs.argmax(axis=1)
        report.transductive = {
            "method": args.transductive,
            "accuracy": accuracy(transductive, result.labels),
        }
        from claptune.evaluate.transductive import write_predictions

        write_predictions(
            args.out / "predictions.csv",
            [str(dataset.items[i]) for i in result.kept.tolist()],
            probs,
            result.class_names,
        )
        print(
            f"transductive ({args.transductive}): accuracy "
            f"{report.transductive['accuracy']:.1%} (plain: {result.accuracy:.1%}); "
            f"wrote {args.out / 'predictions.csv'}"
        )
    _write_json(args.out / "zeroshot.json", report.to_dict())
    title = (
        f"{args.model} on {args.target}: accuracy {result.accuracy:.1%} ({result.n_clips} clips)"
    )
    plot_confusion(result.confusion, result.class_names, args.out / "confusion.png", title=title)
    print(format_table(result, report.per_fold))
    line = head_line(model, result.class_head, result.class_names, args)
    if line:
        print(line)
    for item, reason in result.failed:
        print(f"skipped {printable(item)}: {reason}", file=sys.stderr)
    print(f"wrote {args.out / 'zeroshot.json'} and {args.out / 'confusion.png'}")
    return 0


def transductive_probs(model, audio_emb, class_names, templates, args, head: bool = False):
    """((N, C) class probabilities of ``audio_emb`` by ``args.transductive``, the classes the
    model's class head moved). ``none``: the plain zero-shot softmax, through the class head
    when ``head`` (``with_class_head``); a transduction starts from the prompts alone, as it was
    measured. ``model``'s own logit scale."""
    from claptune.evaluate.transductive import transduce
    from claptune.evaluate.zeroshot import prompt_embeddings, with_class_head

    prompts = prompt_embeddings(model, class_names, templates)
    used: list[str] = []
    if head and args.transductive == "none":
        mean = prompts.mean(axis=1)
        moved, used = with_class_head(model, mean, class_names)
        if used:
            prompts = moved[:, None, :]  # one row per class
    scale = float(model.logit_scale.detach())
    return transduce(audio_emb, prompts, scale, args.transductive), used


def head_record(model, used: list[str]) -> dict | None:
    """zeroshot.json's record of the class head used (None when none was)."""
    if not used:
        return None
    head = model.class_head
    return {"classes": len(used), "weight": head.weight, "n_clips": head.n_clips}


def head_line(model, used: list[str], class_names, args) -> str | None:
    """What the console says about the model's class head: used, or why not (None: it has
    none, or --no-class-head)."""
    head = getattr(model, "class_head", None)
    if head is None or not args.class_head:
        return None
    if used:
        return (
            f"class head: the {len(used)} classes scored with the model's class head (audio "
            f"prototypes from {head.n_clips} unlabeled clips, weight {head.weight:g}; on those "
            "clips themselves this is not a held-out score; --no-class-head scores with the "
            "prompts alone)"
        )
    held = head.holds(class_names)
    if len(held) < len(class_names):
        return (
            f"class head not used: the model's head holds {len(held)} of these "
            f"{len(class_names)} classes, and a head over some of them only would draw clips "
            "to those; scored with the prompts alone"
        )
    return None  # --transductive: the labels start from the prompts, as measured


def run_unlabeled(args: argparse.Namespace) -> int:
    """--audio and --classes: a label per clip (predictions.csv), no accuracy."""
    from claptune.audio import find_audio
    from claptune.curation.inputs import class_names_from
    from claptune.evaluate.zeroshot import resolve_templates

    class_names = class_names_from(args.classes)
    if len(class_names) < 2:
        raise ClaptuneError("--classes needs at least 2 class names")
    items = [str(p) for p in find_audio(args.audio)]
    if not items:
        raise ClaptuneError(f"no audio files found in {', '.join(args.audio)}")
    templates = resolve_templates(args.templates or ["ensemble"])
    from claptune.evaluate.transductive import write_predictions
    from claptune.evaluate.zeroshot import embed_items_cached
    from claptune.models import load_model

    model = load_model(args.model, **model_device(args.device))
    cache = cache_dir(args)
    if cache is not None:
        from claptune.embed import store_key

        cache = cache / "embeddings" / "zeroshot" / store_key(model, "audio")
        audio_emb, kept, failed = embed_items_cached(
            model,
            items,
            cache,
            args.batch_size,
            args.num_workers,
            not args.quiet,
            args.on_error,
        )
    else:
        from claptune.embed import encode_audio

        enc = encode_audio(
            model,
            items,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            progress=not args.quiet,
            on_error=args.on_error,
        )
        audio_emb, kept, failed = enc.embeddings, enc.kept, enc.failed
    if len(kept) == 0:
        raise ClaptuneError(f"none of the {len(items)} clips could be read")
    kept_items = [items[i] for i in kept.tolist()]
    probs, held = transductive_probs(
        model, audio_emb, class_names, templates, args, head=args.class_head
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_predictions(args.out / "predictions.csv", kept_items, probs, class_names)
    import numpy as np

    counts = np.bincount(probs.argmax(axis=1), minlength=len(class_names))
    _write_json(
        args.out / "zeroshot.json",
        {
            "n_clips": len(kept_items),
            "class_names": class_names,
            "predicted_counts": dict(zip(class_names, counts.tolist(), strict=True)),
            "config": {
                "model": args.model,
                "model_identity": model.identity(),
                "audio": [printable(a) for a in args.audio],
                "templates": list(templates),
                "transductive": args.transductive,
                "on_error": args.on_error,
                "class_head": head_record(model, held),
            },
            "failed": [{"path": printable(i), "reason": r} for i, r in failed],
        },
    )
    for item, reason in failed:
        print(f"skipped {printable(item)}: {reason}", file=sys.stderr)
    line = head_line(model, held, class_names, args) if args.transductive == "none" else None
    if line:
        print(line)
    how = "no" if args.transductive == "none" else args.transductive
    print(
        f"{len(kept_items)} clips labelled ({how} transduction); wrote {args.out / 'predictions.csv'}"
    )
    return 0


def parse_folds(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    try:
        folds = [int(f) for f in spec.replace(" ", "").split(",") if f]
    except ValueError:
        raise ClaptuneError(
            f"--folds {spec!r}: expected comma-separated integers, e.g. 1,2"
        ) from None
    if not folds:
        raise ClaptuneError("--folds is empty")
    return folds


def result_to_json(result, dataset, config: dict):
    """The typed contents of zeroshot.json (``claptune.report.records.ZeroShotRecord``)."""
    from claptune.report.records import ZeroShotRecord

    names = result.class_names
    return ZeroShotRecord(
        accuracy=result.accuracy,
        n_clips=result.n_clips,
        n_correct=int(result.confusion.trace()),
        per_class=result.per_class,
        per_class_n={
            c: int(n) for c, n in zip(names, result.confusion.sum(axis=1), strict=True) if n > 0
        },
        per_fold=per_fold_accuracy(result, dataset),
        class_names=names,
        confusion=result.confusion.tolist(),
        config=config,
        failed=[{"path": item, "reason": reason} for item, reason in result.failed],
        predictions=[
            {"path": str(dataset.items[i]), "label": names[y], "predicted": names[p]}
            for i, y, p in zip(
                result.kept.tolist(),
                result.labels.tolist(),
                result.predictions.tolist(),
                strict=True,
            )
        ],
    )


def per_fold_accuracy(result, dataset) -> dict[str, float] | None:
    """Accuracy within each fold (None for a data set without folds)."""
    if dataset.folds is None:
        return None
    from claptune.evaluate.metrics import accuracy

    folds = dataset.folds[result.kept]
    return {
        str(f): accuracy(result.predictions[folds == f], result.labels[folds == f])
        for f in sorted(set(folds.tolist()))
    }


def format_table(result, per_fold: dict[str, float] | None = None) -> str:
    """Per-class accuracy, worst first, then the overall line (and one per fold)."""
    width = max(len(c) for c in result.class_names)
    support = dict(zip(result.class_names, result.confusion.sum(axis=1).tolist(), strict=True))
    lines = [f"{'class':<{width}}  accuracy  clips"]
    for name, acc in sorted(result.per_class.items(), key=lambda kv: (kv[1], kv[0])):
        lines.append(f"{name:<{width}}  {acc:8.1%}  {support[name]:5d}")
    lines.append("-" * (width + 17))
    overall = "n/a" if math.isnan(result.accuracy) else f"{result.accuracy:.1%}"
    lines.append(f"{'overall':<{width}}  {overall:>8}  {result.n_clips:5d}")
    if per_fold and len(per_fold) > 1:
        lines.append("per fold: " + ", ".join(f"{f}: {a:.1%}" for f, a in per_fold.items()))
    if result.failed:
        lines.append(f"({len(result.failed)} clips skipped, listed in zeroshot.json)")
    return "\n".join(lines)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
