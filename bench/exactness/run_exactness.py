"""Exactness of claptune's MS-CLAP and LAION-CLAP backends against the original packages.

    python bench/exactness/run_exactness.py [--venv DIR] [--work DIR] [--only msclap-2022 ...]

1. Creates a separate virtual environment (default: a new temporary folder; reused if --venv
   names an existing one) and installs the originals there from PyPI: ``torch==2.13.*`` first
   (from the local wheel folder), then ``msclap`` and ``laion-clap`` (pip resolves their old
   numpy / transformers pins inside that venv) and pillow (laion_clap imports it).
2. In that venv, ``ref_msclap.py`` / ``ref_laion.py`` build small random models with the
   original code and parameter names, save their state dicts in the published layouts and
   their outputs on fixed inputs (see those scripts for what is small and what is replaced).
3. In claptune's environment (this interpreter), ``check_msclap.py`` / ``check_laion.py`` load
   those state dicts strictly and compare; tolerance 1e-5 on L2-normalised embeddings.
4. Writes bench/results/exactness.md and exactness.json (only when all cases ran). Nothing
   large is committed: the reference files stay in --work.

Takes about 5 minutes of CPU on two cores once the venv exists; creating it takes about 6 more
(downloads from PyPI).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"

CASES = {
    "msclap-2022": ("ref_msclap.py", ["--version", "2022"], "check_msclap.py"),
    "msclap-2023": ("ref_msclap.py", ["--version", "2023"], "check_msclap.py"),
    "laion-htsat-tiny": ("ref_laion.py", ["--amodel", "HTSAT-tiny"], "check_laion.py"),
    "laion-htsat-tiny-fused": (
        "ref_laion.py",
        ["--amodel", "HTSAT-tiny", "--fusion"],
        "check_laion.py",
    ),
    "laion-htsat-base": ("ref_laion.py", ["--amodel", "HTSAT-base"], "check_laion.py"),
}


def make_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.*"], check=True)
    subprocess.run([*pip, "msclap", "laion-clap", "pillow"], check=True)
    return python


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--venv", type=Path, default=None, help="reference venv (created if absent)")
    ap.add_argument("--work", type=Path, default=None, help="where reference files go")
    ap.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    args = ap.parse_args(argv)
    venv = args.venv or Path(tempfile.mkdtemp(prefix="claptune-ref-")) / "venv"
    work = args.work or Path(tempfile.mkdtemp(prefix="claptune-exactness-"))
    ref_python = make_venv(venv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    results = []
    for name in args.only:
        ref_script, ref_args, check_script = CASES[name]
        out = work / name
        subprocess.run(
            [str(ref_python), str(HERE / ref_script), *ref_args, "--out", str(out)],
            check=True,
            cwd=HERE,
            env=env,
        )
        check = subprocess.run(
            [sys.executable, str(HERE / check_script), str(out), "--json", str(out / "check.json")],
            cwd=HERE,
            env=env,
        )
        result = json.loads((out / "check.json").read_text())
        result["case"] = name
        results.append(result)
        print(f"{name}: {'PASS' if check.returncode == 0 else 'FAIL'}")

    versions = subprocess.run(
        [str(ref_python), "-m", "pip", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pins = {
        p["name"]: p["version"]
        for p in json.loads(versions)
        if p["name"].lower()
        in (
            "msclap",
            "laion-clap",
            "laion_clap",
            "transformers",
            "numpy",
            "torch",
            "torchlibrosa",
            "librosa",
        )
    }
    if set(args.only) == set(CASES):  # a partial run must not overwrite the full table
        write_results(results, pins)
    return 0 if all(r["pass"] for r in results) else 1


def write_results(results: list[dict], pins: dict[str, str]) -> None:
    import torch
    import transformers

    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "reference_venv": pins,
        "claptune_env": {"torch": torch.__version__, "transformers": transformers.__version__},
        "tolerance": 1e-5,
        "results": results,
    }
    (RESULTS / "exactness.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = [
        "# Exactness against the original packages",
        "",
        "`python bench/exactness/run_exactness.py` (separate venv with the originals; small random",
        "models with the original parameter names; strict loading into claptune; L2-normalised",
        "embeddings compared, tolerance 1e-5).",
        "",
        f"Reference venv: {', '.join(f'{k} {v}' for k, v in sorted(pins.items()))}. "
        f"claptune env: torch {torch.__version__}, transformers {transformers.__version__}.",
        "",
        "| case | strict load | token ids equal | audio emb max abs diff | text emb max abs diff "
        "| min distance between audio embs | pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['case']} | {'yes' if r['strict_load'] else 'no'} | "
            f"{'yes' if r['token_ids_equal'] else 'no'} | {r['audio_emb_max_abs']:.2e} | "
            f"{r['text_emb_max_abs']:.2e} | {r['audio_emb_min_pairwise_dist']:.3f} | "
            f"{'PASS' if r['pass'] else 'FAIL'} |"
        )
    lines += [
        "",
        "The last column shows that distinct inputs give distinct embeddings, i.e. the comparison",
        "is not of constants. A random CNN14 maps different clips to nearby vectors (0.001 apart",
        "for msclap-2022), so its difference is to be read against that: it comes from",
        "claptune folding CNN14's BatchNorm into its convolutions at inference",
        "(claptune.models.fold); with the fold switched off (fold.ENABLED = False) the same",
        "check gave 3.0e-08 (an earlier run of this table, before the fold: 0.00e+00).",
        "The fused window attention of claptune's HTSAT (hf_clap) moves the LAION and",
        "MS-CLAP 2023 rows by about 1e-7.",
        "LAION differences (~1e-6) come from the log-mel front end: claptune computes it with",
        "torch.stft, laion_clap with torchlibrosa's DFT convolution (fused: librosa, see",
        "ref_laion.py). Checked once by hand for laion-htsat-tiny: feeding the log-mel built",
        "from the checkpoint's own torchlibrosa kernels into the converted model gives 3.7e-08.",
    ]
    (RESULTS / "exactness.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
