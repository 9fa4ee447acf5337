"""Write fixed long-tailed variants of an ESC-50-layout target, for the skewed-target benchmark.

    python bench/make_skewed.py --root ../shared/data/esc50-subset --out runs/skewed \
        --ratios 1 10 40 --orders 0 1 2

Each variant is a folder in ESC-50's own layout (``meta/esc50.csv`` with the original rows of
the clips it keeps, ``audio/`` holding symbolic links to the original files), so that
``claptune improve --target esc50 --root VARIANT`` reads it like the real data set. Class sizes
follow a long tail: the class at rank k (0 = head) keeps ``max(1, round(n_head * r ** (-k /
(C - 1))))`` clips, so the head class holds ``r`` times the clips of the tail class (the
exponential profile of the long-tailed CIFAR/ImageNet benchmarks). Which class gets which rank
is drawn with the order seed (``--orders``): every order is another skewed task over the same
clips. The clips a class keeps are drawn with the same seed. A class holding fewer clips than
its quota keeps all it has, and every class keeps at least one, so on a subset with few clips a
class the realised ratio is below the nominal one: ``variants.json`` records both, and the
class sizes of every variant.

``--controls`` (default on) adds, for every skewed variant, a class-balanced control with the
same number of clips (every class the same count, the remainder spread over classes drawn with
the order seed): the comparison that says what the skew itself costs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np


def class_quota(n_classes: int, n_head: int, ratio: float) -> np.ndarray:
    """(C,) clips per rank: n_head at rank 0 down to n_head / ratio at rank C-1, at least 1."""
    if ratio < 1:
        raise ValueError(f"imbalance ratio must be >= 1, got {ratio}")
    k = np.arange(n_classes)
    sizes = n_head * ratio ** (-k / max(n_classes - 1, 1))
    return np.maximum(1, np.round(sizes)).astype(int)


def read_meta(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (root / "meta" / "esc50.csv").open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def by_class(rows: list[dict[str, str]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        out[r["category"]].append(i)
    return dict(sorted(out.items()))


def skewed_rows(rows, ratio: float, order_seed: int, n_head: int | None = None) -> list[int]:
    """Row indices kept by the variant of ``ratio`` and class order ``order_seed``."""
    classes = by_class(rows)
    names = list(classes)
    rng = np.random.default_rng(order_seed)
    ranked = [names[i] for i in rng.permutation(len(names))]
    head = n_head or min(len(v) for v in classes.values())
    quota = class_quota(len(names), head, ratio)
    keep: list[int] = []
    for name, q in zip(ranked, quota, strict=True):
        members = classes[name]
        keep.extend(rng.permutation(members)[: min(q, len(members))].tolist())
    return sorted(keep)


def balanced_rows(rows, total: int, seed: int) -> list[int]:
    """``total`` rows spread as evenly as the classes allow (remainder to seeded classes)."""
    classes = by_class(rows)
    names = list(classes)
    rng = np.random.default_rng(seed)
    base, extra = divmod(total, len(names))
    bonus = set(rng.permutation(len(names))[:extra].tolist())
    keep: list[int] = []
    for i, name in enumerate(names):
        members = classes[name]
        keep.extend(rng.permutation(members)[: min(base + (i in bonus), len(members))].tolist())
    return sorted(keep)


def write_variant(root: Path, out: Path, fields: list[str], rows, keep: list[int]) -> dict:
    (out / "meta").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    with (out / "meta" / "esc50.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for i in keep:
            writer.writerow(rows[i])
    for i in keep:
        name = rows[i]["filename"]
        src = (root / "audio" / name).resolve()
        if not src.exists():  # a FLAC copy of a set whose metadata names .wav
            src = next(
                (
                    src.with_suffix(e)
                    for e in (".flac", ".wav", ".ogg")
                    if src.with_suffix(e).exists()
                ),
                src,
            )
        link = out / "audio" / src.name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(src, link)
    counts: dict[str, int] = defaultdict(int)
    for i in keep:
        counts[rows[i]["category"]] += 1
    sizes = sorted(counts.values(), reverse=True)
    return {
        "path": str(out),
        "n_clips": len(keep),
        "n_classes": len(counts),
        "realised_ratio": sizes[0] / sizes[-1],
        "class_sizes": dict(sorted(counts.items())),
        "head": sizes[0],
        "tail": sizes[-1],
        "gini": _gini(np.array(sizes, float)),
        "entropy_ratio": _entropy_ratio(sizes),
    }


def _gini(x: np.ndarray) -> float:
    x = np.sort(x)
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def _entropy_ratio(sizes: list[int]) -> float:
    p = np.array(sizes, float) / sum(sizes)
    return float(-(p * np.log(p)).sum() / math.log(len(p)))


def make_variants(
    root: Path, out: Path, ratios, orders, controls: bool = True, n_head: int | None = None
) -> list[dict]:
    fields, rows = read_meta(root)
    variants = []
    for ratio in ratios:
        for order in orders:
            name = f"r{ratio:g}-o{order}"
            info = write_variant(
                root, out / name, fields, rows, skewed_rows(rows, ratio, order, n_head)
            )
            variants.append(
                {"name": name, "kind": "skewed", "ratio": ratio, "order": order, **info}
            )
            if controls and ratio != 1:
                cname = f"r{ratio:g}-o{order}-control"
                cinfo = write_variant(
                    root, out / cname, fields, rows, balanced_rows(rows, info["n_clips"], order)
                )
                variants.append(
                    {
                        "name": cname,
                        "kind": "control",
                        "ratio": 1,
                        "control_of": name,
                        "order": order,
                        **cinfo,
                    }
                )
    (out / "variants.json").write_text(json.dumps(variants, indent=2))
    return variants


def named_variant(root: Path, out: Path, name: str) -> dict:
    """Write the one skewed variant ``name`` (``r<ratio>-o<order>``, no control) under ``out``."""
    ratio, order = name[1:].split("-o")
    (variant,) = make_variants(Path(root), out, [float(ratio)], [int(order)], controls=False)
    return variant


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--root", type=Path, required=True, help="ESC-50 layout (meta/esc50.csv)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ratios", type=float, nargs="+", default=[1, 10, 40])
    ap.add_argument("--orders", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--n-head",
        type=int,
        default=None,
        help="clips of the head class (default: the smallest class's count)",
    )
    ap.add_argument("--no-controls", dest="controls", action="store_false")
    args = ap.parse_args(argv)
    variants = make_variants(
        args.root, args.out, args.ratios, args.orders, args.controls, args.n_head
    )
    for v in variants:
        print(
            f"{v['name']:>18}: {v['n_clips']:4d} clips, head {v['head']}, tail {v['tail']}, "
            f"realised ratio {v['realised_ratio']:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
