"""A training run folder is never overwritten silently: ``train`` into a folder holding a
checkpoint needs ``--resume`` or ``--overwrite``, ``--resume`` needs a checkpoint, and a damaged
or malicious ``checkpoint/trainer.pt`` is refused in one line without running its pickle."""

from __future__ import annotations

import csv
import json
import pathlib

import pytest
import torch

from claptune.cli import main
from claptune.errors import ClaptuneError
from claptune.train import TrainConfig, fit
from test_train import _one_thread, pairs_csv  # noqa: F401 - fixtures shared with test_train


class _TouchOnUnpickle:
    """Unpickling this creates a file: proof of whether a loader ran the pickle's code."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def _args(tiny_clap_dir, pairs_csv, out, *extra):  # noqa: F811
    return [
        "train",
        "--model",
        str(tiny_clap_dir),
        "--pairs",
        str(pairs_csv),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--num-workers",
        "0",
        "--quiet",
        "--val-fraction",
        "0",
        *extra,
    ]


def _steps(out):
    return [int(r["step"]) for r in csv.DictReader(open(out / "loss.csv"))]


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_rerun_without_flag_is_refused_and_keeps_the_run(
    tiny_clap_dir,
    pairs_csv,  # noqa: F811
    tmp_path,  # noqa: F811
    capsys,
):
    out = tmp_path / "run"
    assert main(_args(tiny_clap_dir, pairs_csv, out, "--max-steps", "2")) == 0
    before = (out / "checkpoint" / "student.safetensors").read_bytes()
    assert main(_args(tiny_clap_dir, pairs_csv, out, "--max-steps", "2")) == 2
    _one_line_error(capsys, str(out), "--resume", "--overwrite", "step 2")
    assert (out / "checkpoint" / "student.safetensors").read_bytes() == before
    assert _steps(out) == [1, 2]

    # --overwrite starts again at step 1 and leaves no trace of the earlier run's logs
    (out / "notes.txt").write_text("mine")
    assert main(_args(tiny_clap_dir, pairs_csv, out, "--max-steps", "1", "--overwrite")) == 0
    assert _steps(out) == [1]
    assert json.loads((out / "checkpoint" / "progress.json").read_text())["step"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files go

    # --resume continues from the checkpoint
    assert main(_args(tiny_clap_dir, pairs_csv, out, "--max-steps", "2", "--resume")) == 0
    assert _steps(out) == [1, 2]


def test_resume_without_checkpoint_is_refused(tiny_clap_dir, pairs_csv, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "empty"
    assert main(_args(tiny_clap_dir, pairs_csv, out, "--resume")) == 2
    _one_line_error(capsys, "nothing to resume", str(out))
    assert not (out / "checkpoint").exists()
    with pytest.raises(SystemExit):  # argparse: the two flags exclude each other
        main(_args(tiny_clap_dir, pairs_csv, out, "--resume", "--overwrite"))


def test_library_refuses_the_same_way(tiny_clap_dir, pairs_csv, tmp_path):  # noqa: F811
    from claptune import load_model

    config = TrainConfig(
        epochs=1, max_steps=1, batch_size=4, num_workers=0, progress=False, val_fraction=0.0
    )
    fit(load_model(str(tiny_clap_dir)), pairs_csv, config, out_dir=tmp_path / "lib")
    with pytest.raises(ClaptuneError, match="already holds a training run"):
        fit(load_model(str(tiny_clap_dir)), pairs_csv, config, out_dir=tmp_path / "lib")
    with pytest.raises(ClaptuneError, match="nothing to resume"):
        fit(load_model(str(tiny_clap_dir)), pairs_csv, config, out_dir=tmp_path / "x", resume=True)
    with pytest.raises(ValueError):
        fit(
            load_model(str(tiny_clap_dir)),
            pairs_csv,
            config,
            out_dir=tmp_path / "lib",
            resume=True,
            overwrite=True,
        )


@pytest.mark.parametrize("damage", ["malicious", "truncated", "wrong_contents", "progress"])
def test_damaged_checkpoint_on_resume_is_one_line(
    tiny_clap_dir,
    pairs_csv,  # noqa: F811
    tmp_path,
    capsys,  # noqa: F811
    damage,
):
    out = tmp_path / damage
    assert main(_args(tiny_clap_dir, pairs_csv, out, "--max-steps", "1")) == 0
    trainer_pt = out / "checkpoint" / "trainer.pt"
    sentinel = tmp_path / "pwned"
    named = trainer_pt
    if damage == "malicious":
        state = torch.load(trainer_pt, weights_only=True)
        torch.save({**state, "hook": _TouchOnUnpickle(sentinel)}, trainer_pt)
    elif damage == "truncated":
        trainer_pt.write_bytes(trainer_pt.read_bytes()[:200])
    elif damage == "wrong_contents":
        torch.save({"weights": torch.zeros(3)}, trainer_pt)
    else:
        named = out / "checkpoint" / "progress.json"
        named.write_text('{"step": ')
    capsys.readouterr()
    assert main(_args(tiny_clap_dir, pairs_csv, out, "--max-steps", "2", "--resume")) == 2
    _one_line_error(capsys, str(named))
    assert not sentinel.exists()
