"""Data readers on tiny synthetic layouts (ESC-50, UrbanSound8K, TUT2017, class folders, CSV,
captioned corpus), the download path through file:// URLs, and the real ../shared/data."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from claptune.data import load_captioned_corpus, load_dataset
from claptune.errors import ClaptuneError
from conftest import CAPTIONED_SFX, ESC50_SUBSET, require_shared_data


def write_clip(path: Path, seconds: float = 0.1, sr: int = 16000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * sr)).astype(np.float32)
    sf.write(path, wave, sr)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# (filename, fold, target, category): targets not in file order, one class missing (target 2)
ESC_ROWS = [
    ("1-100-A-3.wav", 1, 3, "cow"),
    ("1-101-A-0.wav", 1, 0, "dog"),
    ("2-102-A-1.wav", 2, 1, "rooster"),
    ("3-103-A-3.wav", 3, 3, "cow"),
    ("3-104-B-0.wav", 3, 0, "dog"),
]


def make_esc50(root: Path, ext: str = ".flac") -> Path:
    header = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    write_csv(
        root / "meta" / "esc50.csv",
        header,
        [[f, fold, t, c, "False", "100", "A"] for f, fold, t, c in ESC_ROWS],
    )
    for i, (name, *_rest) in enumerate(ESC_ROWS):
        write_clip(root / "audio" / Path(name).with_suffix(ext), seed=i)
    return root


def test_esc50_reader_flac_for_wav_and_target_order(tmp_path):
    ds = load_dataset("esc50", root=make_esc50(tmp_path / "esc"))
    assert ds.class_names == ["dog", "rooster", "cow"]  # ordered by ESC-50 target, gaps closed
    assert [ds.class_names[y] for y in ds.labels] == [r[3] for r in ESC_ROWS]
    assert all(p.suffix == ".flac" and p.exists() for p in ds.items)
    assert ds.folds.tolist() == [r[1] for r in ESC_ROWS]


def test_esc50_parent_folder_and_folds(tmp_path):
    make_esc50(tmp_path / "ESC-50-master", ext=".wav")
    ds = load_dataset("esc50", root=tmp_path, folds=[1, 3])
    assert len(ds) == 4 and set(ds.folds.tolist()) == {1, 3}
    assert ds.class_names == ["dog", "rooster", "cow"]  # the class list survives fold selection
    with pytest.raises(ClaptuneError, match="no fold 7"):
        load_dataset("esc50", root=tmp_path, folds=[7])


def test_esc50_missing_column_and_meta(tmp_path):
    root = tmp_path / "esc"
    write_csv(root / "meta" / "esc50.csv", ["filename", "fold", "category"], [["a.wav", 1, "dog"]])
    with pytest.raises(ClaptuneError, match=r"esc50.csv has no column 'target'"):
        load_dataset("esc50", root=root)
    with pytest.raises(ClaptuneError, match=r"not found at .*empty.*--root"):
        load_dataset("esc50", root=tmp_path / "empty")


def test_esc50_download_through_file_url(tmp_path, monkeypatch):
    import claptune.data.esc50 as esc50
    from claptune.data.remote import Remote

    src = make_esc50(tmp_path / "src" / "ESC-50-master", ext=".wav")
    archive = tmp_path / "ESC-50-master.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in src.rglob("*"):
            zf.write(f, f.relative_to(src.parent).as_posix())
    monkeypatch.setenv("CLAPTUNE_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(esc50, "REMOTES", (Remote(archive.as_uri(), "ESC-50-master.zip"),))
    with pytest.raises(ClaptuneError, match="--download"):
        load_dataset("esc50")
    ds = load_dataset("esc50", download=True, progress=False)
    assert len(ds) == len(ESC_ROWS)
    assert all(p.is_relative_to(tmp_path / "cache" / "esc50") and p.exists() for p in ds.items)
    archive.unlink()  # a second call finds the unpacked copy and does not fetch again
    assert len(load_dataset("esc50", download=True, progress=False)) == len(ESC_ROWS)


def test_claptune_data_is_the_data_folder_or_the_set_itself(tmp_path, monkeypatch):
    """$CLAPTUNE_DATA means one thing to every command: the folder searched for a published
    set (as <name>/, or as the set itself) and downloaded into."""
    make_esc50(tmp_path / "data" / "esc50")
    make_esc50(tmp_path / "subset")
    for folder in (tmp_path / "data", tmp_path / "subset"):
        monkeypatch.setenv("CLAPTUNE_DATA", str(folder))
        assert len(load_dataset("esc50")) == len(ESC_ROWS), folder
    monkeypatch.setenv("CLAPTUNE_DATA", str(tmp_path / "nothing"))
    with pytest.raises(ClaptuneError, match="esc50 not found"):
        load_dataset("esc50")


def test_us8k_reader(tmp_path):
    root = tmp_path / "UrbanSound8K"
    rows = [
        ["100-0-0-0.wav", 100, 0, 1, 1, 2, 3, "dog_bark"],
        ["101-0-0-1.wav", 101, 0, 1, 1, 1, 0, "air_conditioner"],
        ["102-0-0-2.wav", 102, 0, 1, 1, 10, 3, "dog_bark"],
    ]
    write_csv(
        root / "metadata" / "UrbanSound8K.csv",
        ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"],
        rows,
    )
    for r in rows:
        write_clip(root / "audio" / f"fold{r[5]}" / r[0])
    ds = load_dataset("us8k", root=tmp_path)
    assert ds.class_names == ["air_conditioner", "dog_bark"]  # by classID
    assert ds.labels.tolist() == [1, 0, 1]
    assert ds.folds.tolist() == [2, 1, 10]
    assert all(p.exists() for p in ds.items)
    assert len(load_dataset("us8k", root=root, folds=[10])) == 1


def make_tut(root: Path) -> Path:
    dev = root / "TUT-acoustic-scenes-2017-development"
    dev_rows = [
        ("audio/a001_0_10.wav", "residential_area"),
        ("audio/b002_0_10.wav", "bus"),
        ("audio/c003_0_10.wav", "cafe/restaurant"),
        ("audio/d004_0_10.wav", "bus"),
    ]
    (dev / "evaluation_setup").mkdir(parents=True)
    (dev / "meta.txt").write_text("".join(f"{p}\t{s}\t{p[6:10]}\n" for p, s in dev_rows))
    for k in range(1, 5):
        p, s = dev_rows[k - 1]
        (dev / "evaluation_setup" / f"fold{k}_evaluate.txt").write_text(f"{p}\t{s}\n")
    for p, _ in dev_rows:
        write_clip(dev / p)
    ev = root / "TUT-acoustic-scenes-2017-evaluation"
    (ev / "evaluation_setup").mkdir(parents=True)
    (ev / "meta.txt").write_text("audio/1.wav\naudio/2.wav\n")  # no labels: use evaluate.txt
    (ev / "evaluation_setup" / "evaluate.txt").write_text("audio/1.wav\tbeach\naudio/2.wav\tbus\n")
    for name in ("1.wav", "2.wav"):
        write_clip(ev / "audio" / name)
    return root


def test_tut2017_reader(tmp_path):
    root = make_tut(tmp_path / "tut")
    ds = load_dataset("tut2017", root=root)
    assert len(ds) == 6
    assert ds.class_names == sorted(["residential_area", "bus", "cafe/restaurant", "beach"])
    assert ds.folds.tolist() == [1, 2, 3, 4, 0, 0]
    assert [ds.class_names[y] for y in ds.labels][-2:] == ["beach", "bus"]
    assert len(load_dataset("tut2017", root=root, split="development")) == 4
    assert len(load_dataset("tut2017", root=root, folds=[0])) == 2
    one = load_dataset("tut2017", root=root / "TUT-acoustic-scenes-2017-evaluation")
    assert len(one) == 2 and one.folds.tolist() == [0, 0]
    with pytest.raises(ClaptuneError, match="split"):
        load_dataset("tut2017", root=root, split="test")


def test_tut2017_dev_without_setup_is_an_error(tmp_path):
    root = make_tut(tmp_path / "tut")
    (
        root / "TUT-acoustic-scenes-2017-development" / "evaluation_setup" / "fold3_evaluate.txt"
    ).unlink()
    with pytest.raises(ClaptuneError, match="fold3_evaluate.txt"):
        load_dataset("tut2017", root=root)


def test_folder_reader(tmp_path):
    write_clip(tmp_path / "dog_bark" / "a.wav")
    write_clip(tmp_path / "dog_bark" / "sub" / "b.flac")
    write_clip(tmp_path / "siren" / "c.ogg")
    (tmp_path / "siren" / "notes.txt").write_text("not audio")
    (tmp_path / "empty_class").mkdir()
    ds = load_dataset("folder", root=tmp_path)
    assert ds.class_names == ["dog_bark", "siren"] and ds.folds is None
    assert [(p.name, ds.class_names[y]) for p, y in zip(ds.items, ds.labels, strict=True)] == [
        ("a.wav", "dog_bark"),
        ("b.flac", "dog_bark"),
        ("c.ogg", "siren"),
    ]
    with pytest.raises(ClaptuneError, match="no folds"):
        load_dataset("folder", root=tmp_path, folds=[1])


def test_class_names_that_are_one_class_are_an_error(tmp_path):
    """Case, '_', '/' and spaces do not make two classes: identical prompts would split the
    clips and the prior between them. The error names both spellings."""
    from claptune.data.dataset import check_class_names, class_key

    assert class_key("Church_Bells") == class_key("church  bells") == "church bells"
    assert class_key("cafe/restaurant") == class_key("Cafe_Restaurant")
    check_class_names(["dog", "dog_bark", "cat"])  # distinct: no error
    with pytest.raises(ClaptuneError, match="'dog' and 'Dog'.*'church_bells' and 'church bells'"):
        check_class_names(["dog", "church_bells", "Dog", "church bells"])
    with pytest.raises(ClaptuneError, match="given twice: 'rain'"):
        check_class_names(["rain", "siren", "rain"])
    write_clip(tmp_path / "Dog" / "a.wav")
    write_clip(tmp_path / "dog" / "b.wav")
    with pytest.raises(ClaptuneError, match="'Dog' and 'dog'"):
        load_dataset("folder", root=tmp_path)
    rows = [
        [str(tmp_path / "Dog" / "a.wav"), "church_bells"],
        [str(tmp_path / "dog" / "b.wav"), "church bells"],
    ]
    with pytest.raises(ClaptuneError, match="'church bells' and 'church_bells'"):
        load_dataset("csv", root=write_csv(tmp_path / "set.csv", ["path", "label"], rows))


def test_csv_reader_relative_paths_and_folds(tmp_path):
    clip = write_clip(tmp_path / "clips" / "x.wav")
    csv_path = write_csv(
        tmp_path / "lists" / "set.csv",
        ["path", "label", "fold"],
        [["../clips/x.wav", "b", 1], [str(clip), "a", 2]],
    )
    ds = load_dataset("csv", root=csv_path)
    assert ds.class_names == ["a", "b"] and ds.labels.tolist() == [1, 0]
    assert ds.items[0].resolve() == clip.resolve() and ds.folds.tolist() == [1, 2]
    other = write_csv(tmp_path / "other.csv", ["file", "class"], [["clips/x.wav", "a"]])
    assert len(load_dataset("csv", root=other, path_column="file", label_column="class")) == 1


def test_csv_reader_errors(tmp_path):
    bad = write_csv(tmp_path / "bad.csv", ["path", "category"], [["x.wav", "a"]])
    with pytest.raises(ClaptuneError, match=r"bad.csv has no column 'label'"):
        load_dataset("csv", root=bad)
    with pytest.raises(ClaptuneError, match="metadata file not found"):
        load_dataset("csv", root=tmp_path / "nope.csv")
    with pytest.raises(ClaptuneError, match="unknown dataset 'esc-51'.*did you mean 'esc50'"):
        load_dataset("esc-51", root=tmp_path)
    with pytest.raises(ClaptuneError, match="needs --root"):
        load_dataset("folder")


def _clips(folder: Path, n: int, ext: str) -> list[Path]:
    return [write_clip(folder / f"{i}{ext}", seed=i) for i in range(n)]


def test_corpus_from_a_datasets_folder_and_an_audiofolder(tmp_path, monkeypatch):
    """--corpus reads Hugging Face data through `datasets`: a save_to_disk folder (clips held
    as bytes, written once under $CLAPTUNE_DATA/corpora) and an audiofolder (clips used in
    place); a second read needs no `datasets` at all."""
    datasets = pytest.importorskip("datasets", reason="the datasets extra: claptune[datasets]")
    from claptune.audio import load_audio
    from claptune.data import hf_corpus

    monkeypatch.setenv("CLAPTUNE_DATA", str(tmp_path / "data"))
    clips = _clips(tmp_path / "src", 3, ".flac")
    table = {"audio": [str(p) for p in clips], "captions": [["a dog barks", "dog"], ["rain"], []]}
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio()).save_to_disk(
        str(saved)
    )
    for p in clips:
        p.unlink()  # the saved folder holds the bytes; nothing may read the source files
    corpus = load_captioned_corpus(saved)
    assert corpus.captions == ["a dog barks", "rain"]  # a list: its first; none: skipped
    assert all(p.is_file() and p.suffix == ".flac" for p in map(Path, corpus.audio))
    assert str(tmp_path / "data" / "corpora") in str(corpus.audio[0])
    assert load_audio(corpus.audio[0], 16000).shape == (1600,)
    assert set(corpus.sources) == {"saved"}  # a folder by its name only

    folder = tmp_path / "af"
    _clips(folder, 2, ".wav")
    (folder / "metadata.csv").write_text("file_name,text\n0.wav,wind\n1.wav,a siren\n")
    corpus = load_captioned_corpus(folder)
    assert corpus.captions == ["wind", "a siren"]
    assert [Path(p).resolve() for p in corpus.audio] == [
        (folder / "0.wav").resolve(),
        (folder / "1.wav").resolve(),
    ]

    def no_datasets(spec):
        raise AssertionError("datasets read again")

    monkeypatch.setattr(hf_corpus, "_open", no_datasets)
    assert load_captioned_corpus(saved).captions == ["a dog barks", "rain"]
    assert hf_corpus.is_hf_corpus("someone/captions") and not hf_corpus.is_hf_corpus(
        "../no/such/folder"
    )


def test_corpus_datasets_errors_are_one_line(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="the datasets extra: claptune[datasets]")
    monkeypatch.setenv("CLAPTUNE_DATA", str(tmp_path / "data"))
    clip = write_clip(tmp_path / "x.wav")
    saved = tmp_path / "nocap"
    datasets.Dataset.from_dict({"audio": [str(clip)], "label": [1]}).cast_column(
        "audio", datasets.Audio()
    ).save_to_disk(str(saved))
    with pytest.raises(ClaptuneError, match="no caption column .*columns: audio, label"):
        load_captioned_corpus(saved)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text("{not json")
    with pytest.raises(ClaptuneError, match="cannot read corpus .* as a folder"):
        load_captioned_corpus(broken)


def test_subset_keeps_classes(tmp_path):
    ds = load_dataset("esc50", root=make_esc50(tmp_path))
    sub = ds.subset([4, 0])
    assert sub.class_names == ds.class_names
    assert sub.items == [ds.items[4], ds.items[0]] and sub.labels.tolist() == [0, 2]


def test_captioned_corpus(tmp_path):
    write_clip(tmp_path / "audio" / "a.wav")
    write_csv(
        tmp_path / "manifest.csv",
        ["path", "caption", "source", "license"],
        [["audio/a.wav", "a dog barking, twice", "pkg", "CC0-1.0"]],
    )
    corpus = load_captioned_corpus(tmp_path)
    assert corpus.audio == [tmp_path / "audio" / "a.wav"]
    assert corpus.captions == ["a dog barking, twice"] and corpus.sources == ["pkg"]
    write_csv(tmp_path / "m2.csv", ["path", "text"], [["audio/a.wav", "x"]])
    with pytest.raises(ClaptuneError, match="no column 'caption'"):
        load_captioned_corpus(tmp_path / "m2.csv")


def test_real_esc50_subset():
    root = require_shared_data(ESC50_SUBSET)
    ds = load_dataset("esc50", root=root)
    assert len(ds) == 414 and len(ds.class_names) == 50
    assert all(p.exists() for p in ds.items)
    assert np.bincount(ds.labels, minlength=50).min() >= 8
    assert sorted(set(ds.folds.tolist())) == [2, 3, 4, 5]
    assert len(load_dataset("esc50", root=root, folds=[4])) == 400


def test_real_captioned_sfx():
    root = require_shared_data(CAPTIONED_SFX)
    corpus = load_captioned_corpus(root)
    assert len(corpus) == 2753 and all(c for c in corpus.captions)
    assert all(p.exists() for p in corpus.audio)


def test_the_cli_targets_are_the_readers():
    """improve's --target list (kept numpy-free for the parsers) names exactly the readers."""
    from claptune.data import DATASETS
    from claptune.improve.config import TARGETS

    assert tuple(DATASETS) == TARGETS
