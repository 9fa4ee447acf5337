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
    argv = [
        "embed",
        "--model",
        str(tiny_clap_dir),
        "--audio",
        str(undecodable_names),
        "--out",
        str(out),
        "--no-progress",
        "--on-error",
        "skip",
    ]
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
    script = shutil.which("claptune", path=os.path.dirname(sys.executable)) or shutil.which(
        "claptune"
    )
    assert script, "the claptune console script is not installed"
    root = tmp_path / "classes"
    shutil.copytree(undecodable_names, root / "a")
    shutil.copytree(os.fsencode(undecodable_names), os.fsencode(root) + b"/cl\xffass")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "HF_HUB_OFFLINE": "1"}
    argv = [
        script,
        "zeroshot",
        "--model",
        str(tiny_clap_dir),
        "--dataset",
        "folder",
        "--root",
        str(root),
        "--out",
        str(tmp_path / "zs"),
        "--no-progress",
    ]
    proc = subprocess.run(
        [*argv, "--on-error", "skip"], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cl\\xffass" in proc.stdout  # the class folder's name, printable
    assert proc.stderr.count("worse\\xff.wav") == 2  # one skipped clip per class folder
    proc = subprocess.run(
        [*argv, "--overwrite"], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "worse\\xff.wav" in lines[0], proc.stderr


# -- training pairs that cannot be read ----------------------------------------------------------
def _pairs_csv(
    folder: Path, extra_rows: list[str], header: str = "audio,text", encoding: str = "utf-8"
) -> Path:
    """Six readable clips with captions, then ``extra_rows`` (raw CSV lines)."""
    rows = [
        f"{write_clip(folder / f'c{i}.wav', seconds=0.3, seed=i).name},caption {i}"
        for i in range(6)
    ]
    path = folder / "pairs.csv"
    path.write_text("\n".join([header, *rows, *extra_rows]) + "\n", encoding=encoding)
    return path


def _train(tiny_clap_dir, pairs: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        str(tiny_clap_dir),
        "--pairs",
        str(pairs),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--loss",
        "hard",
        "--quiet",
        "--val-fraction",
        "0",
        *extra,
    ]


def _bad_clip(folder: Path, kind: str) -> str:
    if kind == "missing":
        return "gone.wav"
    if kind == "not-audio":
        (folder / "text.wav").write_text("not audio\n" * 50)
        return "text.wav"
    clip = write_clip(folder / "cut.wav", seconds=0.5)
    clip.write_bytes(clip.read_bytes()[:2000])
    return "cut.wav"


@pytest.mark.parametrize("kind", ["missing", "not-audio", "truncated"])
def test_train_unreadable_clip_one_line(kind, tiny_clap_dir, tmp_path, capsys):
    """With the default two decoding processes, the error reaches the CLI whole."""
    bad = _bad_clip(tmp_path, kind)
    pairs = _pairs_csv(tmp_path, [f"{bad},a broken pair"])
    assert main(_train(tiny_clap_dir, pairs, tmp_path / "run")) == 2
    line = one_line_error(capsys)
    assert line.startswith("claptune train: error: cannot read audio") and bad in line


def test_train_worker_error_arrives_whole(tiny_clap_dir, tmp_path):
    """A clip that breaks after the up-front check fails inside a DataLoader worker; the
    AudioDecodeError (two constructor arguments) must come back as itself."""
    from claptune.errors import AudioDecodeError
    from claptune.train.data import ClipDataset, clip_loader

    good = write_clip(tmp_path / "ok.wav")
    dataset = ClipDataset([str(good), str(tmp_path / "gone.wav")], 16000, 1600, "fixed", 0)
    with pytest.raises(AudioDecodeError) as caught:
        list(clip_loader(dataset, [[(0, -1, 0), (1, -1, 1)]], num_workers=2, seed=0))
    assert (
        caught.value.path == str(tmp_path / "gone.wav") and caught.value.reason == "file not found"
    )


def test_train_on_error_skip_drops_and_lists(tiny_clap_dir, tmp_path, capsys):
    import json

    _bad_clip(tmp_path, "not-audio")
    pairs = _pairs_csv(tmp_path, ["gone.wav,a missing clip", "text.wav,a text file"])
    out = tmp_path / "run"
    assert main(_train(tiny_clap_dir, pairs, out, "--on-error", "skip")) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    warning = [ln for ln in captured.err.splitlines() if "warning" in ln]
    assert len(warning) == 1 and "2 pairs" in warning[0] and "gone.wav" in warning[0]
    skipped = json.loads((out / "skipped_clips.json").read_text())
    assert [Path(s["path"]).name for s in skipped] == ["gone.wav", "text.wav"]
    assert (out / "model").is_dir()


@pytest.mark.parametrize(
    "row, culprit", [(",", "empty audio"), ("c1.wav,", "empty text"), (",,", "empty audio")]
)
def test_train_blank_fields_refused(row, culprit, tiny_clap_dir, tmp_path, capsys):
    pairs = _pairs_csv(tmp_path, [row])
    assert main(_train(tiny_clap_dir, pairs, tmp_path / "run")) == 2
    line = one_line_error(capsys)
    assert f"{pairs}:8:" in line and culprit in line


def test_pairs_duplicates_warned_and_merged(tmp_path):
    from claptune.curation import read_pairs

    pairs = _pairs_csv(tmp_path, ["c1.wav,caption 1", "c2.wav,caption 2", "c1.wav,caption 1"])
    with pytest.warns(UserWarning, match="3 duplicated rows") as record:
        table = read_pairs(pairs)
    assert len(record) == 1 and str(pairs) in str(record[0].message)
    assert len(table) == 6


def test_pairs_csv_with_bom(tiny_clap_dir, tmp_path):
    from claptune.curation import read_pairs

    pairs = _pairs_csv(tmp_path, [], encoding="utf-8-sig")
    assert pairs.read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(read_pairs(pairs)) == 6 and read_pairs(pairs).audio[0].endswith("c0.wav")


# -- curation never writes pairs whose audio does not exist --------------------------------------
def test_curate_ds_leaves_out_missing_corpus_clips(tiny_clap_dir, tmp_path, capsys):
    import csv

    corpus = tmp_path / "corpus"
    rows = [
        (write_clip(corpus / f"c{i}.wav", seed=i).name, f"a dog barks loudly {i}") for i in range(4)
    ]
    rows += [("gone1.wav", "a dog barks far away"), ("sub/gone2.wav", "rain on a dog")]
    write = corpus / "manifest.csv"
    with write.open("w", newline="") as fh:
        csv.writer(fh).writerows([("path", "caption"), *rows])
    out = tmp_path / "ds"
    argv = [
        "curate",
        "--method",
        "ds",
        "--model",
        str(tiny_clap_dir),
        "--corpus",
        str(corpus),
        "--classes",
        "dog,rain",
        "--threshold",
        "q0.0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warning = [ln for ln in err.splitlines() if "do not exist" in ln]
    assert len(warning) == 1 and "2 " in warning[0] and "gone1.wav" in warning[0], err
    with (out / "pairs.csv").open() as fh:
        audio = [r["audio"] for r in csv.DictReader(fh)]
    assert len(audio) == 4 and all(Path(a).is_file() for a in audio)


# -- model folders with bad contents -------------------------------------------------------------
def _edit_json(path: Path, edit) -> None:
    import json

    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _grow_tensor(path: Path, name_part: str) -> str:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    name = sorted(k for k in state if name_part in k)[0]
    state[name] = torch.zeros(*(s + 1 for s in state[name].shape))
    save_file(state, str(path), metadata={"format": "pt"})
    return name


def _hf_case(folder: Path, case: str) -> tuple[str, str]:
    """Damage a copy of the tiny HF CLAP; (the file to be named, a word of the problem)."""
    if case == "config-type":
        _edit_json(folder / "config.json", lambda c: c.update(projection_dim="sixteen"))
        return "config.json", "projection_dim"
    if case == "config-value":
        _edit_json(folder / "config.json", lambda c: c["audio_config"].update(hidden_size=-3))
        return "config.json", "negative"
    if case == "config-json":
        (folder / "config.json").write_text('{"model_type": "clap", ')
        return "config.json", "JSON"
    if case == "weights-shape":
        name = _grow_tensor(folder / "model.safetensors", "audio_projection")
        return "model.safetensors", name
    if case == "weights-truncated":
        with open(folder / "model.safetensors", "r+b") as fh:
            fh.truncate(5000)
        return "model.safetensors", "safetensors"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["config-type", "config-value", "config-json", "weights-shape", "weights-truncated"]
)
def test_damaged_hf_folder_one_line(case, tiny_clap_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_clap_dir, folder)
    culprit, problem = _hf_case(folder, case)
    clip = write_clip(tmp_path / "x.wav")
    (tmp_path / "set.csv").write_text(f"path,label\n{clip},a\n")
    argv = [
        "zeroshot",
        "--model",
        str(folder),
        "--dataset",
        "csv",
        "--root",
        str(tmp_path / "set.csv"),
        "--out",
        str(tmp_path / "zs"),
        "--no-progress",
    ]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert str(folder / culprit) in line and problem in line, line


def _default_case(folder: Path, case: str) -> tuple[str, str]:
    if case == "heads-shape":
        return "heads.safetensors", _grow_tensor(folder / "heads.safetensors", "audio_projection")
    if case == "heads-truncated":
        with open(folder / "heads.safetensors", "r+b") as fh:
            fh.truncate(3000)
        return "heads.safetensors", "safetensors"
    if case == "config-json":
        (folder / "default_model.json").write_text('{"config": {')
        return "default_model.json", "JSON"
    if case == "config-value":
        _edit_json(folder / "default_model.json", lambda c: c["config"].update(embed_dim=-5))
        return "default_model.json", "positive"
    if case == "marker-json":
        (folder / "claptune_model.json").write_text('{"backend": ')
        return "claptune_model.json", "JSON"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["heads-shape", "heads-truncated", "config-json", "config-value", "marker-json"]
)
def test_damaged_default_model_folder_one_line(case, tmp_path, capsys):
    from claptune.models.default import PACKAGED_DIR

    if not (PACKAGED_DIR / "heads.safetensors").is_file():
        pytest.skip("the packaged default-model heads are not in this checkout")
    folder = tmp_path / "default"
    shutil.copytree(PACKAGED_DIR, folder)
    culprit, problem = _default_case(folder, case)
    argv = [
        "embed",
        "--model",
        str(folder),
        "--text",
        str(tmp_path / "t.txt"),
        "--out",
        str(tmp_path / "store"),
        "--no-progress",
    ]
    (tmp_path / "t.txt").write_text("a dog barks\n")
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert str(folder / culprit) in line and problem in line, line


# -- refused archives leave nothing behind -------------------------------------------------------
@pytest.mark.parametrize("kind", ["traversal", "link", "not-archive", "damaged"])
def test_refused_archive_leaves_no_extracting_folder(kind, tmp_path):
    import io
    import tarfile
    import zipfile

    from claptune.download import extract_archive
    from claptune.errors import ClaptuneError

    archive = tmp_path / "a.tar"
    if kind == "traversal":
        archive = tmp_path / "a.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("ok.txt", "fine")
            zf.writestr("../evil.txt", "nope")
    elif kind == "link":
        with tarfile.open(archive, "w") as tf:
            info = tarfile.TarInfo("link")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
    elif kind == "not-archive":
        archive.write_text("plain text\n")
    else:
        archive = tmp_path / "a.zip"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("x.txt", "x" * 10000)
        archive.write_bytes(buf.getvalue()[:-30])
    dest = tmp_path / "data"
    with pytest.raises(ClaptuneError):
        extract_archive(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "data.extracting").exists()


def test_pairs_and_metadata_not_utf8(tmp_path, capsys):
    from claptune.curation import read_pairs
    from claptune.errors import ClaptuneError

    pairs = _pairs_csv(tmp_path, [])
    with open(pairs, "ab") as fh:
        fh.write(b"c1.wav,caf\xe9 noise\n")
    with pytest.raises(ClaptuneError, match=r"pairs.csv:8 is not UTF-8 text: byte 0xe9 at offset"):
        read_pairs(pairs)
    meta = tmp_path / "set.csv"
    meta.write_bytes(b"path,label\nx.wav,caf\xe9\n")
    argv = [
        "zeroshot",
        "--model",
        "no-such-model",
        "--dataset",
        "csv",
        "--root",
        str(meta),
        "--out",
        str(tmp_path / "zs"),
    ]
    assert main(argv) == 2
    assert "not UTF-8" in one_line_error(capsys)
