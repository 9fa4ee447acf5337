"""Bad input through the CLI: one line naming the culprit, exit code 2, no traceback; and
``--on-error skip`` lists the bad clips in zeroshot.json instead of stopping."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from claptune.cli import main
from test_data import write_clip, write_csv


def make_bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    truncated = write_clip(folder / "truncated.wav", seconds=0.5)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is not audio at all\n" * 20)
    return {
        "missing": folder / "missing.wav",
        "empty": folder / "empty.wav",
        "truncated": truncated,
        "non-audio": folder / "text.wav",
    }


def zeroshot(model: Path, csv_path: Path, out: Path, *extra: str) -> list[str]:
    return [
        "zeroshot",
        "--model",
        str(model),
        "--dataset",
        "csv",
        "--root",
        str(csv_path),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "non-audio"])
def test_bad_audio_stops_with_one_line(kind, tiny_clap_dir, tmp_path, capsys):
    bad = make_bad_files(tmp_path / "clips")[kind]
    good = write_clip(tmp_path / "clips" / "good.wav")
    csv_path = write_csv(tmp_path / "set.csv", ["path", "label"], [[good, "a"], [bad, "b"]])
    assert main(zeroshot(tiny_clap_dir, csv_path, tmp_path / "out")) == 2
    line = one_line_error(capsys)
    assert str(bad) in line and line.startswith("claptune zeroshot: error:")
    assert not (tmp_path / "out" / "zeroshot.json").exists()


def test_on_error_skip_lists_bad_clips(tiny_clap_dir, tmp_path, capsys):
    bad = make_bad_files(tmp_path / "clips")
    good = [write_clip(tmp_path / "clips" / f"good{i}.wav", seed=i) for i in range(2)]
    rows = [[good[0], "a"], *[[p, "b"] for p in bad.values()], [good[1], "b"]]
    csv_path = write_csv(tmp_path / "set.csv", ["path", "label"], rows)
    out = tmp_path / "out"
    assert main(zeroshot(tiny_clap_dir, csv_path, out, "--on-error", "skip")) == 0
    report = json.loads((out / "zeroshot.json").read_text())
    assert report["n_clips"] == 2
    assert sorted(f["path"] for f in report["failed"]) == sorted(str(p) for p in bad.values())
    reasons = {Path(f["path"]).name: f["reason"] for f in report["failed"]}
    assert "not found" in reasons["missing.wav"] and "empty" in reasons["empty.wav"]
    assert "truncated" in reasons["truncated.wav"]
    assert [p["path"] for p in report["predictions"]] == [str(g) for g in good]
    assert "4 clips skipped" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv_tail, culprit",
    [
        (["--dataset", "esc-51", "--root", "."], "esc-51"),
        (["--dataset", "csv", "--root", "{no_label}"], "'label'"),
        (["--dataset", "esc50", "--root", "{tmp}"], "meta/esc50.csv"),
        (["--dataset", "csv", "--root", "{ok}", "--folds", "1,x"], "--folds"),
        (["--dataset", "csv", "--root", "{ok}", "--templates", "no placeholder"], "no placeholder"),
        (["--dataset", "csv", "--root", "{ok}", "--split", "evaluation"], "--split"),
    ],
)
def test_user_errors_before_any_model(argv_tail, culprit, tmp_path, capsys):
    no_label = write_csv(tmp_path / "nolabel.csv", ["path", "class"], [["x.wav", "a"]])
    ok = write_csv(tmp_path / "ok.csv", ["path", "label"], [["x.wav", "a"]])
    tail = [a.format(no_label=no_label, tmp=tmp_path, ok=ok) for a in argv_tail]
    argv = ["zeroshot", "--model", "no-such-model", "--out", str(tmp_path / "o"), *tail]
    assert main(argv) == 2
    assert culprit in one_line_error(capsys)


def test_unknown_model_name(tmp_path, capsys):
    clip = write_clip(tmp_path / "x.wav")
    ok = write_csv(tmp_path / "ok.csv", ["path", "label"], [[clip, "a"]])
    argv = [
        "zeroshot",
        "--model",
        "no-such-model",
        "--dataset",
        "csv",
        "--root",
        str(ok),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    assert "no-such-model" in one_line_error(capsys)


def test_console_script_error_has_no_traceback(tmp_path):
    script = shutil.which("claptune", path=os.path.dirname(sys.executable)) or shutil.which(
        "claptune"
    )
    assert script, "the claptune console script is not installed"
    clip = write_clip(tmp_path / "x.wav")
    csv_path = write_csv(tmp_path / "set.csv", ["file", "label"], [[clip, "a"]])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [script, *zeroshot(Path("no-such-model"), csv_path, tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"claptune zeroshot: error: {csv_path} has no column 'path'; columns: file, label"
    ]
