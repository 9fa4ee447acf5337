"""`claptune curate`: pseudo audio-text pairs from unpaired audio, unpaired captions, a paired
corpus and a target task's class names (never its labels).

    claptune curate --method ds --model M --corpus ../shared/data/captioned-sfx \\
        --target esc50 --root ../shared/data/esc50-subset --threshold q0.9 --out runs/ds
    claptune curate --method ads,a2a --model M --corpus manifest.csv --audio clips/ \\
        --target esc50 --root ESC50 --threshold ds=0.7 ads=q0.999 a2a=0.7 --out runs/x
    claptune curate --method du --audio audio_store/ --text text_store/ --top-k 5 --out runs/du
    claptune curate --method pseudo --model M --target-audio target/ --classes "dog,rain" --out D

Inputs: --audio (unpaired clips: du, ads, a2a), --text (unpaired captions: du), --corpus (a
paired corpus manifest with path and caption columns: ds, ads, a2a), --target-audio
(unlabeled target clips: a2a, pseudo, pseudo_refined; defaults to the clips of --target). Each is an embedding
store written by `claptune embed`, or files embedded now with --model into a resumable store
under --cache-dir (CACHE/embeddings; --no-cache keeps them in memory). Class names come from
--classes ("a,b" or a file with one per line) or --target NAME --root PATH. As in improve, DS
prompts are "this is a sound of <class>" and pseudo-labels come from the zero-shot classifier of
--template (default: the 8-template ensemble).

Clips may also come as webdataset shards (--audio, --target-audio: /data/{000000..000099}.tar or
any URL webdataset opens; --corpus: captioned shards, captions from .txt or --caption-key's
.json field); clip ids are <shard>/<key> (docs/shards.md). A --audio store written with
`embed --store-format shards` (and shards given to du directly) is streamed block by block.

Thresholds: a raw cosine (0.7) or a quantile of the observed scores (q0.99); "--threshold X"
sets the chosen method's, "--threshold ds=0.7 ads=q0.99" several (ds is also the DS stage of
ads and a2a). Defaults are improve's (--preset quantile): du q0.99, ds q0.8, ads q0.99,
a2a q0.8, pseudo and pseudo_refined (labels refined by audio neighbours and balanced classes
first) q0.5; --preset paper takes the paper's raw cosines (du 0.75, ds 0.7, ads 0.7,
a2a 0.7), which suit MS-CLAP. Prompts are built as in zero-shot evaluation (dog_bark ->
"dog bark", cafe/restaurant -> "cafe or restaurant").
The score distributions and how many pairs each threshold keeps are printed.

Writes OUT/pairs.csv (audio,text,score,method,class; identical pairs merged), OUT/summary.json
and OUT/scores.png. If nothing passes the thresholds it writes nothing and exits with code 2.
Under `torchrun --nproc-per-node N $(which claptune) curate ...` the ranks share the
embedding and the searches (each a slice of the queries); rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

from claptune.cli._common import (
    add_cache_dir,
    add_device,
    add_on_error,
    add_quiet,
    add_template,
    alias,
    cache_dir,
    model_device,
    sub_parser,
)
from claptune.curation.methods import METHODS as METHOD_NAMES
from claptune.curation.methods import THRESHOLD_PRESETS
from claptune.errors import ClaptuneError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub_parser(sub, "curate", __doc__)
    p.add_argument(
        "--method",
        required=True,
        help=f"one or more of {', '.join(METHOD_NAMES)}, comma-separated",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--model",
        default=None,
        help="teacher: registered name, model folder or hub id (default: none; needed "
        "for prompts and for inputs that are not stores)",
    )
    p.add_argument(
        "--audio",
        nargs="+",
        metavar="PATH",
        help="unpaired clips: a store, or audio files/folders/.txt lists (default: none)",
    )
    p.add_argument(
        "--text", metavar="PATH", help="unpaired captions: a store, .txt or .csv (default: none)"
    )
    p.add_argument("--text-column", default="caption", help="caption column of a .csv")
    p.add_argument(
        "--caption-key",
        default=None,
        help="captioned shards: caption from this .json field (default: the .txt)",
    )
    p.add_argument(
        "--corpus",
        metavar="PATH",
        help="paired corpus: a folder with manifest.csv, the CSV (path, caption), captioned "
        "shards or a Hugging Face dataset (default: none; only ds, ads and a2a read it)",
    )
    p.add_argument(
        "--target-audio",
        nargs="+",
        metavar="PATH",
        help="unlabeled target-domain clips: a store, or audio files/folders "
        "(default: the clips of --target)",
    )
    p.add_argument(
        "--classes",
        help="target class names: 'a,b,c' or a file with one per line (default: those of --target)",
    )
    p.add_argument(
        "--target",
        help="target data set (esc50, us8k, tut2017, folder, csv) whose "
        "class names (and clips, for --target-audio) to use "
        "(default: none)",
    )
    p.add_argument("--root", help="local copy of the --target data set (default: none)")
    add_template(p)
    p.add_argument(
        "--threshold",
        action="extend",
        nargs="+",
        default=[],
        metavar="[METHOD=]T",
        help="cosine (0.7) or quantile (q0.99), for the method or per method; "
        "several after one flag or repeated "
        "(default: the --preset's)",
    )
    p.add_argument(
        "--preset",
        choices=list(THRESHOLD_PRESETS),
        default="quantile",
        help="default thresholds: quantile (of the teacher's own scores; also "
        "improve's) or paper (the paper's raw cosines, for MS-CLAP)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="du: top-k captions per clip instead of a threshold; a2a: DS captions "
        "per kept clip (default: du a threshold, a2a 1)",
    )
    p.add_argument(
        "--text-threshold",
        type=float,
        default=None,
        help="a2a: keep only pairings with audio-text cosine >= this (default: none)",
    )
    p.add_argument(
        "--criterion",
        choices=["confidence", "margin"],
        default="confidence",
        help="pseudo, pseudo_refined: softmax confidence or top1-top2 margin",
    )
    p.add_argument(
        "--max-per-class",
        type=int,
        default=None,
        help="pseudo, pseudo_refined: cap per class (default: 2x the balanced share; 0 = no cap)",
    )
    p.add_argument("--block-size", type=int, default=4096, help="search tile side")
    add_device(p)
    add_cache_dir(p)
    alias(p, "--cache", dest="cache_dir", type=Path)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="embedding batch size (default: 32 windows, 256 captions)",
    )
    add_on_error(p, "leave it out")
    add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from claptune.curation import CurationSettings, CurationWarning, SearchOptions, curate

    methods = parse_methods(args.method)
    from claptune.distributed import join_process_group

    env, created_group = join_process_group()
    try:
        rank = env.rank
        settings = CurationSettings.preset(
            args.preset,
            **parse_thresholds(args.threshold, methods),
            **_top_k(methods, args.top_k),
            a2a_text_threshold=args.text_threshold,
            pseudo_criterion=args.criterion,
            pseudo_max_per_class=args.max_per_class,
            search=SearchOptions(
                args.block_size,
                model_device(args.device)["device"],
                distributed=env.enabled,
                progress=not args.quiet and env.rank == 0,
            ),
        )
        inputs = build_inputs(args, methods)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CurationWarning)
            pairs = curate(methods, inputs, settings)
        if rank != 0:
            return 0
        report(pairs)
        for w in caught:
            if issubclass(w.category, CurationWarning):
                print(f"warning: {w.message}", file=sys.stderr)
        if len(pairs) == 0:
            raise ClaptuneError(
                f"no pairs passed the thresholds of {', '.join(methods)}; "
                f"nothing written to {args.out} (see the distributions above)"
            )
        write_outputs(pairs, args.out)
    finally:
        if created_group:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown or not methods:
        raise ClaptuneError(
            f"unknown method(s) {unknown or text!r}; choose from {', '.join(METHOD_NAMES)}"
        )
    return list(dict.fromkeys(methods))


def parse_thresholds(specs: list[str], methods: list[str]) -> dict:
    """``["0.7"]`` (the one chosen method) or ``["ds=0.7", "ads=q0.99"]`` -> settings fields."""
    out: dict = {}
    for spec in specs:
        name, sep, value = spec.rpartition("=")
        if not sep:
            if len(methods) != 1:
                raise ClaptuneError(
                    f"--threshold {spec}: several methods chosen; write METHOD=VALUE, e.g. ds=0.7"
                )
            name = methods[0]
        if name not in METHOD_NAMES:
            raise ClaptuneError(f"--threshold {spec}: unknown method {name!r}")
        out[f"{name}_threshold"] = value
    return out


def _top_k(methods: list[str], top_k: int | None) -> dict:
    if top_k is None:
        return {}
    if not {"du", "a2a"} & set(methods):
        raise ClaptuneError("--top-k applies to du and a2a only")
    return {"du_top_k": top_k if "du" in methods else None, "a2a_top_k": top_k}


def build_inputs(args: argparse.Namespace, methods: list[str]):
    """The library's one curation path (``build_curation_inputs``) with the roles named by
    the flags; the flag of a missing role is named in the error."""
    from claptune.curation.inputs import (
        EmbedOptions,
        build_curation_inputs,
        class_names_from,
        target_rows_of_dataset,
    )
    from claptune.curation.methods import NEEDS

    needs = {w for m in methods for w in NEEDS[m]}
    what = "/".join(methods)
    for role, flag, value, label in (
        ("audio", "--audio", args.audio, "unpaired clips"),
        ("text", "--text", args.text, "unpaired captions"),
        ("corpus", "--corpus", args.corpus, "a paired corpus"),
    ):
        if role in needs and not value:
            raise ClaptuneError(f"{what} needs {label}: give {flag}")
    model = _load_model(args)
    cache = cache_dir(args)
    options = EmbedOptions(
        cache=None if cache is None else cache / "embeddings",
        batch_size=args.batch_size,
        progress=not args.quiet,
        on_error=args.on_error,
        text_column=args.text_column,
        caption_key=args.caption_key,
    )
    dataset = _target_dataset(args) if args.target else None
    target = None
    if "target" in needs:
        if args.target_audio:
            target = args.target_audio
        elif dataset is not None:
            target = target_rows_of_dataset(dataset, model, options)
        else:
            raise ClaptuneError(
                f"{what} needs target clips: give --target-audio or --target/--root"
            )
    class_names = class_emb = None
    if "prompts" in needs:
        if args.classes:
            class_names = class_names_from(args.classes)
        elif dataset is not None:
            class_names = list(dataset.class_names)
        else:
            raise ClaptuneError("class prompts need class names: give --classes or --target/--root")
        if model is not None:  # pseudo-labels score with the zero-shot classifier, as improve
            from claptune.evaluate.zeroshot import resolve_templates, text_classifier

            templates = resolve_templates(args.templates or ["ensemble"])
            class_emb = text_classifier(model, class_names, templates)
    return build_curation_inputs(
        methods,
        model=model,
        audio=args.audio,
        texts=args.text,
        corpus=args.corpus,
        target=target,
        class_names=class_names,
        class_emb=class_emb,
        options=options,
    )


def _load_model(args: argparse.Namespace):
    if args.model is None:
        return None
    from claptune.models import load_model

    return load_model(args.model, **model_device(args.device))


def _target_dataset(args: argparse.Namespace):
    from claptune.data import load_dataset

    if not args.root:
        raise ClaptuneError("--target needs --root (the data set's local copy)")
    return load_dataset(args.target, root=args.root)


def report(pairs) -> None:
    from claptune.curation.thresholds import format_distribution

    for method, meta in pairs.meta.items():
        if not isinstance(meta, Mapping) or "distribution" not in meta:
            continue
        what = {
            "du": "audio-text cosine",
            "ads": "audio-text cosine",
            "ds": "best caption-prompt cosine",
            "a2a": "best clip-target cosine",
            "pseudo": meta.get("criterion", ""),
            "pseudo_refined": f"refined {meta.get('criterion', '')}",
        }[method]
        print(format_distribution(f"{method}: {what}", meta["distribution"]))
        if "threshold_value" in meta:
            print(f"  threshold {meta['threshold']} = {meta['threshold_value']:.4f}")
        if method == "a2a":
            print(
                f"  {meta['clips_kept']} clips kept, each paired with its top "
                f"{meta['top_k']} DS caption(s)"
            )
        if method in ("pseudo", "pseudo_refined"):
            print(
                f"  {meta['above_threshold']} clips above the threshold, "
                f"{meta['dropped_by_cap']} dropped by the cap of {meta['max_per_class']} "
                "per class"
            )
    counts = (
        ", ".join(f"{m} {n}" for m, n in pairs.method_counts().items() if m != "total") or "none"
    )
    print(
        f"kept {len(pairs)} pairs ({counts}; {pairs.meta.get('duplicates_removed', 0)} "
        "duplicates merged)"
    )


def write_outputs(pairs, out: Path) -> None:
    from claptune.curation import summarize, write_pairs

    path = write_pairs(pairs, out / "pairs.csv")
    summarize(pairs, out)
    print(f"wrote {path}, {out / 'summary.json'} and {out / 'scores.png'}")
