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
store written by `claptune embed`, or files embedded now with --model into a resumable cache
(--cache, default OUT/embeddings). Class names come from --classes ("a,b" or a file with one
per line) or --target NAME --root PATH; prompts are --template ("this is a sound of {}").

Thresholds: a raw cosine (0.7) or a quantile of the observed scores (q0.99); "--threshold X"
sets the chosen method's, "--threshold ds=0.7 ads=q0.99" several (ds is also the DS stage of
ads and a2a). Defaults are the paper's: du 0.75, ds 0.7, ads 0.7, a2a 0.7; pseudo and
pseudo_refined (labels refined by audio neighbours and balanced classes first) q0.5.
The score distributions and how many pairs each threshold keeps are printed.

Writes OUT/pairs.csv (audio,text,score,method,class; identical pairs merged), OUT/summary.json
and OUT/scores.png. If nothing passes the thresholds it writes nothing and exits with code 2.
Under `torchrun --nproc-per-node N $(which claptune) curate ...` the ranks share the
embedding and the searches (each a slice of the queries); rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from claptune.errors import ClaptuneError

# claptune.curation.METHODS, spelled out so that `--help` does not import the library
METHOD_NAMES = ("du", "ds", "ads", "a2a", "pseudo", "pseudo_refined")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("curate", help="curate pseudo audio-text pairs (du, ds, ads, a2a, pseudo, "
                       "pseudo_refined)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True,
                   help="one or more of du, ds, ads, a2a, pseudo, pseudo_refined, "
                   "comma-separated")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--model", default=None,
                   help="teacher: registered name, model folder or hub id (needed for prompts "
                        "and for inputs that are not stores)")
    p.add_argument("--audio", nargs="+", metavar="PATH",
                   help="unpaired clips: a store, or audio files/folders/.txt lists")
    p.add_argument("--text", metavar="PATH", help="unpaired captions: a store, .txt or .csv")
    p.add_argument("--text-column", default="caption", help="caption column of a .csv (caption)")
    p.add_argument("--corpus", metavar="PATH",
                   help="paired corpus: a folder with manifest.csv, or the CSV (path, caption)")
    p.add_argument("--target-audio", nargs="+", metavar="PATH",
                   help="unlabeled target-domain clips: a store, or audio files/folders")
    p.add_argument("--classes", help="target class names: 'a,b,c' or a file with one per line")
    p.add_argument("--target", help="target data set (esc50, us8k, tut2017, folder, csv) whose "
                                    "class names (and clips, for --target-audio) to use")
    p.add_argument("--root", help="local copy of the --target data set")
    p.add_argument("--template", default="this is a sound of {}",
                   help="class prompt with {} for the name ('this is a sound of {}')")
    p.add_argument("--threshold", nargs="+", default=[], metavar="[METHOD=]T",
                   help="cosine (0.7) or quantile (q0.99), for the method or per method")
    p.add_argument("--top-k", type=int, default=None,
                   help="du: top-k captions per clip instead of a threshold; a2a: DS captions "
                        "per kept clip (1)")
    p.add_argument("--text-threshold", type=float, default=None,
                   help="a2a: keep only pairings with audio-text cosine >= this")
    p.add_argument("--criterion", choices=["confidence", "margin"], default="confidence",
                   help="pseudo, pseudo_refined: softmax confidence or top1-top2 margin")
    p.add_argument("--max-per-class", type=int, default=None,
                   help="pseudo, pseudo_refined: cap per class (default 2x the balanced share; 0 = no cap)")
    p.add_argument("--block-size", type=int, default=4096, help="search tile side (4096)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--cache", type=Path, default=None,
                   help="where inputs embedded now are stored (OUT/embeddings)")
    p.add_argument("--batch-size", type=int, default=None, help="embedding batch size")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="undecodable audio: stop (raise) or leave it out (skip)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from claptune.curation import CurationSettings, CurationWarning, SearchOptions, curate

    methods = parse_methods(args.method)
    created_group = _init_distributed()
    try:
        rank = _rank()
        settings = CurationSettings(
            **parse_thresholds(args.threshold, methods),
            **_top_k(methods, args.top_k),
            a2a_text_threshold=args.text_threshold,
            pseudo_criterion=args.criterion,
            pseudo_max_per_class=args.max_per_class,
            search=SearchOptions(args.block_size, args.device, distributed=_world_size() > 1),
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
            raise ClaptuneError(f"no pairs passed the thresholds of {', '.join(methods)}; "
                                f"nothing written to {args.out} (see the distributions above)")
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
        raise ClaptuneError(f"unknown method(s) {unknown or text!r}; choose from "
                            f"{', '.join(METHOD_NAMES)}")
    return list(dict.fromkeys(methods))


def parse_thresholds(specs: list[str], methods: list[str]) -> dict:
    """``["0.7"]`` (the one chosen method) or ``["ds=0.7", "ads=q0.99"]`` -> settings fields."""
    out: dict = {}
    for spec in specs:
        name, sep, value = spec.rpartition("=")
        if not sep:
            if len(methods) != 1:
                raise ClaptuneError(f"--threshold {spec}: several methods chosen; write "
                                    "METHOD=VALUE, e.g. ds=0.7")
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
    """Embeddings of everything the chosen methods read, from stores or embedded now."""
    from claptune.curation import CurationInputs, class_prompts
    from claptune.curation.pipeline import NEEDS
    from claptune.data import load_captioned_corpus

    needs = {w for m in methods for w in NEEDS[m]}
    model = _load_model(args)
    cache = args.cache or args.out / "embeddings"
    stores = []
    inputs = CurationInputs()
    if "audio" in needs:
        if not args.audio:
            raise ClaptuneError(f"{'/'.join(methods)} needs unpaired clips: give --audio")
        inputs.audio_ids, inputs.audio_emb, ident = _embed(args, model, args.audio, "audio",
                                                           cache / "audio")
        stores.append(("--audio", ident))
    if "text" in needs:
        if not args.text:
            raise ClaptuneError("du needs unpaired captions: give --text")
        inputs.texts, inputs.text_emb, ident = _embed(args, model, [args.text], "text",
                                                      cache / "text")
        stores.append(("--text", ident))
    if "corpus" in needs:
        if not args.corpus:
            raise ClaptuneError(f"{'/'.join(methods)} needs a paired corpus: give --corpus")
        corpus = load_captioned_corpus(args.corpus)
        inputs.corpus_audio = [str(a) for a in corpus.audio]
        inputs.corpus_captions = list(corpus.captions)
        inputs.corpus_caption_emb = _embed_texts(args, model, inputs.corpus_captions,
                                                 cache / "corpus_text")
    dataset = _target_dataset(args) if args.target else None
    if "target" in needs:
        if args.target_audio:
            inputs.target_ids, inputs.target_emb, ident = _embed(args, model, args.target_audio,
                                                                 "audio", cache / "target")
            stores.append(("--target-audio", ident))
        elif dataset is not None:
            inputs.target_ids, inputs.target_emb, _ = _embed_items(
                args, model, [str(p) for p in dataset.items], "audio", cache / "target")
        else:
            raise ClaptuneError(f"{'/'.join(methods)} needs target clips: give --target-audio "
                                "or --target/--root")
    if "prompts" in needs:
        inputs.class_names = _class_names(args, dataset)
        inputs.prompts = class_prompts(inputs.class_names, args.template)
        inputs.prompt_emb = _embed_texts(args, model, inputs.prompts, None)
        inputs.logit_scale = float(model.logit_scale.detach())
    _check_same_model(stores, model)
    return inputs


def _load_model(args: argparse.Namespace):
    if args.model is None:
        return None
    from claptune.models import load_model

    return load_model(args.model, **({"device": args.device} if args.device else {}))


def _require_model(model, what: str):
    if model is None:
        raise ClaptuneError(f"{what} needs --model (the teacher that embeds it)")
    return model


def _is_store(paths: list[str]) -> bool:
    return len(paths) == 1 and (Path(paths[0]) / "manifest.json").is_file()


def _embed(args, model, paths: list[str], kind: str, cache: Path):
    """(ids, embeddings, model identity) of a store, or of files embedded now into ``cache``."""
    from claptune.audio import find_audio
    from claptune.cli.embed import read_captions
    from claptune.embed import load_store

    if _is_store(paths):
        store = load_store(paths[0], model)
        if store.manifest["kind"] != kind:
            raise ClaptuneError(f"{paths[0]} is a {store.manifest['kind']} store, not {kind}")
        return store.ids, store.embeddings, store.manifest["identity"]
    if kind == "audio":
        items = [str(p) for p in find_audio(paths)]
        if not items:
            raise ClaptuneError(f"no audio files found in {' '.join(paths)}")
    else:
        items = read_captions(Path(paths[0]), args.text_column)
    return _embed_items(args, model, items, kind, cache)


def _embed_items(args, model, items: list[str], kind: str, cache: Path):
    from claptune.embed import embed_to_store, load_store

    model = _require_model(model, f"embedding {len(items)} {kind} items")
    embed_to_store(model, items, cache, kind=kind, batch_size=args.batch_size,
                   progress=not args.no_progress, on_error=args.on_error)
    store = load_store(cache, model, items=items)
    for item, reason in store.manifest["failed"]:
        print(f"  skipped {item}: {reason}", file=sys.stderr)
    return store.ids, store.embeddings, store.manifest["identity"]


def _embed_texts(args, model, texts: list[str], cache: Path | None) -> np.ndarray:
    """Caption embeddings aligned with ``texts`` (stored in ``cache`` when given)."""
    model = _require_model(model, "embedding captions and class prompts")
    if cache is None:
        return model.encode_text(texts, progress=False)
    return _embed_items(args, model, texts, "text", cache)[1]


def _target_dataset(args: argparse.Namespace):
    from claptune.data import load_dataset

    if not args.root:
        raise ClaptuneError("--target needs --root (the data set's local copy)")
    return load_dataset(args.target, root=args.root)


def _class_names(args: argparse.Namespace, dataset) -> list[str]:
    if args.classes:
        path = Path(args.classes)
        if path.is_file():
            names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        else:
            names = [n.strip() for n in args.classes.split(",")]
        names = [n for n in names if n]
        if not names:
            raise ClaptuneError(f"no class names in --classes {args.classes!r}")
        return names
    if dataset is not None:
        return list(dataset.class_names)
    raise ClaptuneError("class prompts need class names: give --classes or --target/--root")


def _check_same_model(stores: list[tuple[str, dict]], model) -> None:
    """Stores read without --model must all come from one model (and preprocessing)."""
    if model is not None or len(stores) < 2:
        return
    first_flag, first = stores[0]
    for flag, ident in stores[1:]:
        if ident != first:
            raise ClaptuneError(f"{flag} and {first_flag} were embedded by different models "
                                "or preprocessing; embed both with the same model")


def report(pairs) -> None:
    from claptune.curation.thresholds import format_distribution

    for method, meta in pairs.meta.items():
        if not isinstance(meta, dict) or "distribution" not in meta:
            continue
        what = {"du": "audio-text cosine", "ads": "audio-text cosine",
                "ds": "best caption-prompt cosine", "a2a": "best clip-target cosine",
                "pseudo": meta.get("criterion", ""),
                "pseudo_refined": f"refined {meta.get('criterion', '')}"}[method]
        print(format_distribution(f"{method}: {what}", meta["distribution"]))
        if "threshold_value" in meta:
            print(f"  threshold {meta['threshold']} = {meta['threshold_value']:.4f}")
        if method == "a2a":
            print(f"  {meta['clips_kept']} clips kept, each paired with its top "
                  f"{meta['top_k']} DS caption(s)")
        if method in ("pseudo", "pseudo_refined"):
            print(f"  {meta['above_threshold']} clips above the threshold, "
                  f"{meta['dropped_by_cap']} dropped by the cap of {meta['max_per_class']} "
                  "per class")
    counts = ", ".join(f"{m} {n}" for m, n in pairs.counts("method").items()) or "none"
    print(f"kept {len(pairs)} pairs ({counts}; {pairs.meta.get('duplicates_removed', 0)} "
          "duplicates merged)")


def write_outputs(pairs, out: Path) -> None:
    from claptune.curation import summarize, write_pairs

    path = write_pairs(pairs, out / "pairs.csv")
    summarize(pairs, out)
    print(f"wrote {path}, {out / 'summary.json'} and {out / 'scores.png'}")


def _init_distributed() -> bool:
    """Under torchrun, one process group for the embedding and the searches."""
    if _world_size() <= 1:
        return False
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group("gloo")
    return True


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))
