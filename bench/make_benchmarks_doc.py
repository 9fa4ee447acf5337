"""Write docs/benchmarks.md from the recorded results in bench/results/.

    python bench/make_benchmarks_doc.py [--check]

One section per benchmark, in pipeline order. Each section is the benchmark's own Markdown
(bench/results/<name>.md, written by its script beside <name>.json) with its headings moved
one level down under the section's title, followed by the hand-written reading of the numbers
kept in bench/notes/<name>.md where there is one. Rerun this after a benchmark writes new
results; ``--check`` exits 1 when docs/benchmarks.md is out of date (tests/test_docs.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
NOTES = ROOT / "bench" / "notes"
OUT = ROOT / "docs" / "benchmarks.md"

# (anchor name, section title, results file relative to bench/results, script that writes it)
SECTIONS = [
    (
        "default_model",
        "Default model: zero-shot accuracy of the shipped heads",
        "default_model.md",
        "bench/default_model.py",
    ),
    (
        "zeroshot",
        "Zero-shot evaluation and its repeatability",
        "zeroshot.md",
        "bench/bench_zeroshot.py",
    ),
    ("ablation", "improve: curation methods and losses compared", "ablation.md", "claptune ablate"),
    ("skewed", "improve on skewed targets", "skewed.md", "bench/bench_skewed.py"),
    (
        "skewed_default",
        "improve's default on skewed targets: 10 fresh class orders per ratio",
        "skewed_default.md",
        "bench/bench_skewed_default.py",
    ),
    (
        "skewed8",
        "improve's default at 8:1 beside balanced controls, and the guard",
        "skewed8.md",
        "bench/bench_skewed_default.py --ratios 8 --controls",
    ),
    ("levers", "Training and curation levers at 8:1", "levers.md", "bench/bench_levers.py"),
    (
        "levers_fresh",
        "Levers on fresh 8:1 orders",
        "levers_fresh.md",
        "bench/bench_levers.py --orders 9500 ... 9507",
    ),
    (
        "levers_confirm",
        "Two levers on ten more 8:1 orders, the full protocol",
        "levers_confirm.md",
        "bench/bench_levers.py --orders 9600 ... 9609 --seeds 3 --name levers_confirm",
    ),
    (
        "levers_confirm2",
        "keep=best_val on ten further 8:1 orders, and the default over 30",
        "levers_confirm2.md",
        "bench/bench_levers.py --orders 9700 ... 9709 --seeds 3 --name levers_confirm2",
    ),
    (
        "class_head_dev",
        "The class head's weight on development orders",
        "class_head_dev.md",
        "bench/bench_class_head_weights.py --name class_head_dev",
    ),
    (
        "class_head_fresh",
        "The class head's weight on fresh orders",
        "class_head_fresh.md",
        "bench/bench_class_head_weights.py --orders 9500 ... 9507 --name class_head_fresh",
    ),
    (
        "class_head",
        "The class head at 8:1",
        "class_head.md",
        "bench/bench_class_head.py --orders 9800 ... 9809 --seeds 3",
    ),
    (
        "class_head_20",
        "The class head on twenty earlier 8:1 orders, and the default over 40",
        "class_head_20.md",
        "bench/bench_class_head.py --orders 9600 ... 9709 --seeds 3 --name class_head_20",
    ),
    (
        "guard_confirm",
        "The guard on 16 later targets",
        "guard_confirm.md",
        "bench/bench_skewed_default.py --name guard_confirm",
    ),
    (
        "ci_coverage",
        "Two-stage intervals: coverage, and the skewed benchmarks rechecked",
        "ci_coverage.md",
        "bench/bench_ci_coverage.py",
    ),
    (
        "ci_recheck_skewed_default",
        "Intervals rechecked: 40 skewed targets",
        "ci_recheck_skewed_default.md",
        "bench/bench_ci_recheck.py --name skewed_default",
    ),
    (
        "ci_recheck_skewed8",
        "Intervals rechecked: 8:1 targets and their controls",
        "ci_recheck_skewed8.md",
        "bench/bench_ci_recheck.py --name skewed8",
    ),
    (
        "ci_recheck_guard_confirm",
        "Intervals rechecked: the 16 later targets",
        "ci_recheck_guard_confirm.md",
        "bench/bench_ci_recheck.py --name guard_confirm",
    ),
    (
        "plain_guard",
        "A label-free guard for single clips: tried, not used",
        "plain_guard.md",
        "bench/bench_plain_guard.py",
    ),
    (
        "transduction",
        "Transductive inference without training",
        "transduction.md",
        "bench/bench_transduction.py",
    ),
    (
        "adapt_labels",
        "adapt's labels against the label-free peers",
        "adapt_labels.md",
        "bench/bench_adapt_labels.py",
    ),
    (
        "guard",
        "Label-free pipelines side by side, and the guard",
        "guard.md",
        "bench/bench_guard.py",
    ),
    (
        "threshold",
        "How many pseudo-labels to keep",
        "threshold.md",
        "bench/bench_threshold.py",
    ),
    (
        "selection",
        "Choosing a configuration without labels",
        "selection.md",
        "bench/bench_selection.py",
    ),
    ("priors", "Class shares without labels", "priors.md", "bench/bench_priors.py"),
    (
        "wise",
        "The transfer check and the weight-space ensemble",
        "wise.md",
        "bench/bench_wise.py",
    ),
    ("embed", "Embedding throughput", "embed.md", "bench/bench_embed.py"),
    (
        "fast_encode",
        "Frozen encoders at the hardware's limit: the default model",
        "fast_encode-default.md",
        "bench/bench_fast_encode.py --part default",
    ),
    (
        "fast_encode_hf",
        "encode_audio against the batched transformers loop, realistic size",
        "fast_encode-hf.md",
        "bench/bench_fast_encode.py --part hf",
    ),
    (
        "fast_encode_chunks",
        "Windows per forward on CPU",
        "fast_encode-chunks-default.md",
        "bench/bench_fast_encode.py --part chunks",
    ),
    (
        "fast_encode_chunks_hf",
        "Windows per forward on CPU, realistic-size HF model",
        "fast_encode-chunks-hf.md",
        "bench/bench_fast_encode.py --part chunks --model hf",
    ),
    (
        "shards_scaling",
        "Webdataset shards: 2 processes against 1",
        "shards-scaling.md",
        "bench/bench_shards.py --part scaling",
    ),
    ("long_audio", "Long recordings: peak memory", "long_audio.md", "bench/bench_long_audio.py"),
    (
        "long_adapt",
        "adapt with a long recording: peak memory",
        "long_adapt.md",
        "bench/bench_long_adapt.py",
    ),
    ("curation", "Curation search at scale", "curation.md", "bench/bench_curation.py"),
    ("train", "Training throughput and data parallelism", "train.md", "bench/bench_train.py"),
    (
        "exactness",
        "Exactness of the MS-CLAP and LAION-CLAP backends",
        "exactness.md",
        "bench/exactness/run_exactness.py",
    ),
    ("cli", "Command-line start-up", "cli.md", "bench/bench_cli.py"),
    ("walks", "The composition layer: climbs back into it", "walks.md", "bench/walks.py"),
]

HEADER = """# Benchmarks

Every number in claptune's documentation comes from a script in `bench/` that writes
`bench/results/<name>.json` (the data) and `<name>.md` (its table). This page is generated
from those files by `python bench/make_benchmarks_doc.py`; do not edit it by hand (the
reading of each benchmark lives in `bench/notes/<name>.md`). Unless a section says otherwise,
the machine is a shared 2-core x86_64 CPU without a GPU, so absolute times are noisy and the
ratios measured side by side are the point.

"""


def demote(markdown: str, title: str) -> str:
    """The benchmark's Markdown under a level-2 section: a heading on its first line is dropped
    (the section title replaces it) and the other headings keep their depth below it."""
    lines = markdown.strip("\n").splitlines()
    top = 1
    if lines and (first := re.match(r"^(#{1,6}) ", lines[0])):
        top = len(first.group(1))
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    out = []
    in_code = False
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"^(#{1,6}) (.*)$", line)
        if heading:
            line = "#" * min(6, max(3, len(heading.group(1)) - top + 2)) + " " + heading.group(2)
        out.append(line)
    return "\n".join(out)


def render() -> str:
    parts = [HEADER.rstrip("\n"), "", "Contents:", ""]
    present = [s for s in SECTIONS if (RESULTS / s[2]).is_file()]
    for _name, title, _, _ in present:
        parts.append(f"- [{title}](#{slug(title)})")
    for name, title, results, script in present:
        body = demote((RESULTS / results).read_text(encoding="utf-8"), title)
        parts += [
            "",
            f"## {title}",
            "",
            f"Written by `{script}` "
            f"(data: [bench/results/{Path(results).with_suffix('.json').name}]"
            f"(../bench/results/{Path(results).with_suffix('.json').name})).",
            "",
            body,
        ]
        note = NOTES / f"{name}.md"
        if note.is_file():
            parts += ["", demote(note.read_text(encoding="utf-8"), title)]
    return "\n".join(parts).rstrip("\n") + "\n"


def slug(title: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", title.lower())
    return text.replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if docs/benchmarks.md differs from what would be written",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.is_file() else ""
        if current != text:
            print(f"{OUT} is out of date: run python bench/make_benchmarks_doc.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
