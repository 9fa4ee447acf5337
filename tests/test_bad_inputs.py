"""Bad inputs that once ended in tracebacks: file names that are not UTF-8, unreadable
training pairs, damaged model folders, BOM-prefixed pairs files. Each must give exit code 2
and one line on stderr naming the file and the problem (or, with ``--on-error skip``, be
skipped and listed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from claptune.cli import main
from test_data import write_clip


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -- file names that are not UTF-8 ---------------------------------------------------------------
@pytest.fixture
def undecodable_names(tmp_path) -> Path:
    """A folder holding good.wav, a readable clip named b'bad\\xff\\xfe.wav' and a file of
    text named b'worse\\xff.wav' (names made with bytes, as a non-UTF-8 file system holds
    them)."""
    if sys.platform in ("win32", "darwin"):
        pytest.skip("this file system stores names as Unicode")
    folder = tmp_path / "clips"
    good = write_clip(folder / "good.wav")
    raw = os.fsencode(folder)
    shutil.copyfile(os.fsencode(good), raw + b"/bad\xff\xfe.wav")
    with open(raw + b"/worse\xff.wav", "wb") as fh:
        fh.write(b"this is not audio\n" * 20)
    return folder


def test_embed_reads_and_skips_non_utf8_names(undecodable_names, tiny_clap_dir, tmp_path, capsys):
    from claptune.embed import load_store

    out = tmp_path / "store"
    argv = ["embed", "--model", str(tiny_clap_dir), "--audio", str(undecodable_names),
            "--out", str(out), "--no-progress", "--on-error", "skip"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "worse\\xff.wav" in printed
    store = load_store(out)
    names = sorted(os.fsencode(Path(i).name) for i in store.ids)
    assert names == [b"bad\xff\xfe.wav", b"good.wav"]  # the odd name is read, not skipped
    assert [os.fsencode(Path(i).name) for i, _ in store.manifest["failed"]] == [b"worse\xff.wav"]

    assert main([*argv[:-2], "--out", str(tmp_path / "store2")]) == 2
    line = one_line_error(capsys)
    assert "worse\\xff.wav" in line and "not a readable audio file" in line


def test_zeroshot_console_script_with_non_utf8_names(undecodable_names, tiny_clap_dir, tmp_path):
    """Through the console script with a strict UTF-8 stdout, as a terminal would have."""
    script = shutil.which("claptune", path=os.path.dirname(sys.executable)) or shutil.which("claptune")
    assert script, "the claptune console script is not installed"
    root = tmp_path / "classes"
    shutil.copytree(undecodable_names, root / "a")
    shutil.copytree(os.fsencode(undecodable_names), os.fsencode(root) + b"/cl\xffass")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "HF_HUB_OFFLINE": "1"}
    argv = [script, "zeroshot", "--model", str(tiny_clap_dir), "--dataset", "folder",
            "--root", str(root), "--out", str(tmp_path / "zs"), "--no-progress"]
    proc = subprocess.run([*argv, "--on-error", "skip"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cl\\xffass" in proc.stdout  # the class folder's name, printable
    assert proc.stderr.count("worse\\xff.wav") == 2  # one skipped clip per class folder
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "worse\\xff.wav" in lines[0], proc.stderr
