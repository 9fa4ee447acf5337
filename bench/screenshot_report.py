"""Open a 50-class report.html in headless Chromium and keep screenshots of it.

    python bench/screenshot_report.py                       # ESC-50 subset from ../shared/data
    python bench/screenshot_report.py --max-page-mb 100     # force the previews inline

What it checks: that the page has no horizontal scroll at the window width (the document's
scroll width against the viewport's, measured by the browser), that a page with every ESC-50 class (players for each, the top-confusion table,
the after-minus-before matrix, pseudo-label precision per class and the prior figure) renders in
a real browser, that the browser can load its first and last player (inline or linked), and
what the page weighs. The report is a rendering fixture: the clips, class names
and labels are the real ESC-50 subset's, but the predictions, pairs and class-share estimates
come from a seeded random generator (no model runs), so the script takes seconds. Without the
shared data it falls back to generated tones and class names.

Writes OUT/report.html (+ OUT/audio/ when the previews are linked), OUT/screenshot.png (the
whole page), OUT/screenshot_<k>.png (the page cut into 2000-pixel-high tiles, for viewing) and
bench/results/screenshot_report.json/.md. Skips with a message (exit 0) when no chromium is
installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TILE = 2000  # pixel height of one viewing tile


def clips(root: Path, out: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """(items, labels, class names): the ESC-50 subset at ``root``, else 50 generated tones."""
    if (root / "meta" / "esc50.csv").is_file():
        from claptune.data import load_dataset

        ds = load_dataset("esc50", root, progress=False)
        return [str(p) for p in ds.items], ds.labels, ds.class_names
    import soundfile as sf

    print(f"no ESC-50 subset at {root}: generated tones instead", file=sys.stderr)
    names = [f"generated sound class {i:02d}" for i in range(50)]
    folder = out / "tones"
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(16_000 * 4) / 16_000
    items, labels = [], []
    for c in range(50):
        for k in range(3):
            path = folder / f"tone_{c:02d}_{k}.wav"
            sf.write(
                path,
                (0.2 * np.sin(2 * np.pi * (100 + 20 * c + 5 * k) * t)).astype(np.float32),
                16_000,
            )
            items.append(str(path))
            labels.append(c)
    return items, np.asarray(labels), names


def fixture(items: list[str], labels: np.ndarray, names: list[str], seed: int):
    """A Report and its assets for these clips, with seeded random predictions and pairs."""
    from claptune.report import ReportAssets
    from claptune.report.precision import pseudo_label_precision
    from claptune.report.schema import (
        ClassPriors,
        CurationCounts,
        Gain,
        ModelInfo,
        Report,
        Side,
        SplitPrior,
        TargetInfo,
    )
    from claptune.stats import mean_spread

    rng = np.random.default_rng(seed)
    n = len(names)
    neighbour = rng.permutation(n)  # each class's most likely confusion

    def predict(p_right: float) -> np.ndarray:
        right = rng.random(len(labels)) < p_right
        near = rng.random(len(labels)) < 0.6
        wrong = np.where(near, neighbour[labels], rng.integers(0, n, len(labels)))
        return np.where(right, labels, wrong)

    def confusion(pred: np.ndarray) -> np.ndarray:
        cm = np.zeros((n, n), dtype=np.int64)
        np.add.at(cm, (labels, pred), 1)
        return cm

    before, after = confusion(predict(0.55)), confusion(predict(0.7))

    def side(cm: np.ndarray) -> Side:
        per_class = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
        acc = float(np.trace(cm) / cm.sum())
        return Side(
            accuracy=acc,
            accuracy_spread=mean_spread([acc]),
            per_class={c: float(v) for c, v in zip(names, per_class, strict=True)},
        )

    pairs = []
    for i in rng.permutation(len(items)):
        cls = names[labels[i]] if rng.random() < 0.8 else names[rng.integers(n)]
        pairs.append(
            {
                "audio": items[i],
                "text": f"the sound of {cls}",
                "class": cls,
                "score": float(rng.uniform(0.2, 0.9)),
                "method": "pseudo_refined",
            }
        )
    true = np.bincount(labels, minlength=n) / len(labels)
    estimated = true * rng.uniform(0.6, 1.4, n)
    estimated /= estimated.sum()
    b, a = side(before), side(after)
    report = Report(
        claptune_version="fixture",
        model=ModelInfo(spec="rendering fixture (random predictions)"),
        target=TargetInfo(name="esc50-subset", n_clips=len(items), n_classes=n, class_names=names),
        splits=[{"index": 0}],
        n_runs=1,
        seeds=[seed],
        before=b,
        after=a,
        gain=Gain(
            accuracy=a.accuracy - b.accuracy, accuracy_spread=mean_spread([a.accuracy - b.accuracy])
        ),
        curation=CurationCounts(pairs={"pseudo_refined": mean_spread([len(pairs)])}),
        priors=ClassPriors(
            method="em",
            splits=[
                SplitPrior(
                    split=0,
                    estimated=dict(zip(names, estimated.tolist(), strict=True)),
                    true=dict(zip(names, true.tolist(), strict=True)),
                )
            ],
        ),
        pseudo_precision=pseudo_label_precision(pairs, items, labels, names),
    )
    assets = ReportAssets(
        class_names=names, confusion_before=before, confusion_after=after, pairs=pairs
    )
    return report, assets


def screenshot(chromium: str, page: Path, png: Path, width: int, height: int) -> None:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


_PROBE = """<!DOCTYPE html><html><body><audio id="a" preload="auto" src="{src}"></audio>
<div id="r">pending</div><script>const a = document.getElementById("a");
const say = (t) => {{ document.getElementById("r").textContent = t; }};
a.addEventListener("loadedmetadata", () => say("duration=" + a.duration));
a.addEventListener("error", () => say("error " + (a.error && a.error.code)));</script>
</body></html>"""


def audio_duration(chromium: str, out_dir: Path, src: str) -> float | None:
    """Seconds the browser reads from one player's source, as the page refers to it (a data
    URI, or a path relative to the page); None when it cannot load it."""
    probe = out_dir / "_probe.html"
    probe.write_text(_PROBE.format(src=src))
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    probe.unlink()
    found = re.search(r'<div id="r">duration=([0-9.]+)', dom)
    return float(found.group(1)) if found else None


_OVERFLOW = """<script>window.addEventListener("load", () => {{
const root = document.documentElement;
document.body.insertAdjacentHTML("beforeend",
  "<div id=overflow>" + (root.scrollWidth - root.clientWidth) + "</div>"); }});</script>"""


def horizontal_overflow(chromium: str, page: Path, width: int) -> int | None:
    """Pixels the page is wider than a ``width``-pixel window's viewport (0: no horizontal
    scroll bar), as Chromium lays it out; None when it could not tell."""
    probe = page.with_name("_overflow.html")
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _OVERFLOW + "</body>"),
        encoding="utf-8",
    )
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--window-size={width},2000",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    probe.unlink()
    found = re.search(r'<div id="overflow">(-?[0-9]+)', dom)
    return int(found.group(1)) if found else None


def tiles(png: Path) -> list[Path]:
    """The screenshot cut into TILE-high pieces, blank ones (past the page's end) dropped."""
    from PIL import Image

    image = Image.open(png).convert("RGB")
    out = []
    for k, top in enumerate(range(0, image.height, TILE)):
        piece = image.crop((0, top, image.width, min(top + TILE, image.height)))
        if np.asarray(piece).min() >= 250:  # all white: the page ended above
            break
        path = png.with_name(f"{png.stem}_{k}.png")
        piece.save(path)
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "data" / "esc50-subset")
    p.add_argument("--out", type=Path, default=Path("/tmp/claptune_screenshot"))
    p.add_argument(
        "--max-page-mb",
        type=float,
        default=20.0,
        help="inline the previews up to this page size (20)",
    )
    p.add_argument("--width", type=int, default=1280, help="window width in pixels (1280)")
    p.add_argument(
        "--height",
        type=int,
        default=24000,
        help="window height in pixels: the screenshot's, so the whole page (24000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the fixture's predictions (0)")
    args = p.parse_args(argv)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("skip: no chromium on PATH (Debian: apt-get install chromium)")
        return 0
    from claptune.report import write_report

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    items, labels, names = clips(args.root, args.out)
    report, assets = fixture(items, labels, names, args.seed)
    assets.max_page_bytes = int(args.max_page_mb * 1e6)
    t0 = time.perf_counter()
    written = write_report(args.out, report, assets)
    render_s = time.perf_counter() - t0
    html = written["html"].read_text(encoding="utf-8")
    png = args.out / "screenshot.png"
    t0 = time.perf_counter()
    screenshot(chromium, written["html"], png, args.width, args.height)
    shot_s = time.perf_counter() - t0
    pieces = tiles(png)
    sources = re.findall(r'<audio controls preload="none" src="([^"]+)"', html)
    durations = [audio_duration(chromium, args.out, src) for src in sources[:1] + sources[-1:]]
    overflow = {w: horizontal_overflow(chromium, written["html"], w) for w in (args.width, 1024)}
    audio = written.get("audio")
    result = {
        "classes": len(names),
        "players": html.count("<audio controls"),
        "classes_with_players": len(set(re.findall(r"<tr><td>([^<]*)</td><td><audio ", html))),
        "page_mb": round(len(html.encode()) / 1e6, 2),
        "audio_linked": audio is not None,
        "audio_dir_mb": round(sum(f.stat().st_size for f in audio.iterdir()) / 1e6, 2)
        if audio
        else 0.0,
        "max_page_mb": args.max_page_mb,
        # page width beyond the viewport, in pixels, per window width (0: no horizontal scroll)
        "horizontal_overflow_px": overflow,
        # what Chromium reads from the first and the last player (None: it could not load it)
        "player_seconds_in_browser": durations,
        "write_report_s": round(render_s, 2),
        "screenshot_s": round(shot_s, 2),
        "screenshot": str(png),
        "tiles": [str(t) for t in pieces],
        "chromium": subprocess.run(
            [chromium, "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "data": str(args.root) if (args.root / "meta").is_dir() else "generated tones",
        "command": "python bench/screenshot_report.py " + " ".join(argv or sys.argv[1:]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "screenshot_report.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# report.html in headless Chromium",
        "",
        f"`{result['command'].strip()}`",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in result.items() if k not in ("tiles", "command")]
    (RESULTS / "screenshot_report.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
