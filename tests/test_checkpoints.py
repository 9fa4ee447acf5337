"""Safe reading and strict loading of checkpoint files (claptune.models.checkpoints)."""

from __future__ import annotations

import argparse
import pathlib

import pytest
import torch
from torch import nn

from claptune.errors import ClaptuneError
from claptune.models.checkpoints import (
    CheckpointMismatchError,
    UnsafeCheckpointError,
    load_strict,
    peek_keys,
    read_state_dict,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


class _TouchOnUnpickle:
    """Unpickling this creates a file: proof of whether a loader ran the pickle's code."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def test_reads_nested_state_dict_and_strips_ddp_prefix(tmp_path):
    sd = _net().state_dict()
    path = tmp_path / "ck.pth"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    loaded = read_state_dict(path)
    assert sorted(loaded) == sorted(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert sorted(peek_keys(path)) == sorted(sd)


def test_reads_safetensors(tmp_path):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in _net().state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    loaded = read_state_dict(tmp_path / "w.safetensors")
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_refuses_pickle_that_needs_code_and_never_runs_it(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _net().state_dict(), "hook": _TouchOnUnpickle(sentinel)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load .*arbitrary code"):
        read_state_dict(path)
    assert not sentinel.exists()
    assert peek_keys(path) is None


def test_refusal_names_the_needed_object_and_a_conversion_path(tmp_path):
    path = tmp_path / "args.pth"
    torch.save({"state_dict": _net().state_dict(), "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert "argparse.Namespace" in message and "safetensors" in message
    assert "\n" not in message


def test_truncated_and_missing_files_are_user_errors(tmp_path):
    path = tmp_path / "ck.pth"
    torch.save(_net().state_dict(), path)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ClaptuneError, match="truncated"):
        read_state_dict(cut)
    with pytest.raises(ClaptuneError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_strict_load_reports_renamed_key_as_missing_and_unexpected():
    sd = _net().state_dict()
    sd["2.weight_renamed"] = sd.pop("2.weight")
    target = _net()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_strict(target, sd, what="test checkpoint")
    assert err.value.missing == ["2.weight"]
    assert err.value.unexpected == ["2.weight_renamed"]
    assert "missing: 2.weight" in str(err.value) and "unexpected: 2.weight_renamed" in str(
        err.value
    )
    # nothing was half-loaded
    assert all(torch.equal(target.state_dict()[k], before[k]) for k in before)


def test_strict_load_reports_shape_mismatch():
    sd = _net().state_dict()
    sd["0.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch: 0.bias \(5,\) vs \(4,\)"):
        load_strict(_net(), sd)


def test_strict_load_drops_only_declared_derivable_buffers():
    source = _net()
    with torch.no_grad():
        source[0].weight.add_(1.0)
    sd = dict(source.state_dict())
    sd["0.position_ids"] = torch.arange(3)
    target = _net()
    report = load_strict(target, sd, derivable=["*.position_ids"])
    assert report.ignored == ["0.position_ids"]
    assert torch.equal(target[0].weight, source[0].weight)
    with pytest.raises(CheckpointMismatchError, match="unexpected: 0.position_ids"):
        load_strict(_net(), sd)


def test_load_model_on_an_unsafe_file_reports_the_refusal(tmp_path):
    from claptune.models import load_model

    sentinel = tmp_path / "pwned"
    path = tmp_path / "CLAP_weights_2022.pth"
    torch.save({"model": _net().state_dict(), "hook": _TouchOnUnpickle(sentinel)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        load_model(path)
    assert not sentinel.exists()


def test_corrupt_safetensors_is_a_user_error(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"not safetensors at all")
    with pytest.raises(ClaptuneError, match="cannot read safetensors"):
        read_state_dict(path)


def test_legacy_non_zip_checkpoints_are_read_and_peeked(tmp_path):
    sd = _net().state_dict()
    path = tmp_path / "old.pth"
    torch.save({"model": sd}, path, _use_new_zipfile_serialization=False)
    assert sorted(peek_keys(path)) == sorted(sd)
    assert all(torch.equal(read_state_dict(path)[k], sd[k]) for k in sd)
