"""The trainer on the tiny random HF CLAP: config validation, batch plan, a short run that
lowers the loss and saves a model transformers can load, exact resume, the feature-cache fast
path, LoRA, and the CLI end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from claptune.cli import main
from claptune.errors import ClaptuneError
from claptune.losses import hard_contrastive_loss
from claptune.train import TrainConfig, TrainPairs, as_train_pairs, fit
from claptune.train.data import epoch_plan, split_holdout
from conftest import CAPTIONED_SFX, require_shared_data

WORDS = ["dog bark", "rain", "car horn", "bird song", "door knock", "engine", "wind", "siren"]


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory) -> Path:
    """12 noisy tones of different pitches and lengths (some longer than the 1 s window),
    paired with 8 captions (so some captions repeat)."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        n = int(16000 * rng.uniform(0.4, 1.6))
        t = np.arange(n) / 16000
        wave = 0.3 * np.sin(2 * np.pi * 150 * 1.5**i * t) + 0.02 * rng.standard_normal(n)
        sf.write(root / f"clip{i}.wav", wave.astype(np.float32), 16000)
        rows.append((f"clip{i}.wav", WORDS[i % 8], "animal" if i % 3 == 0 else ""))
    path = root / "pairs.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["audio", "text", "score", "class"])
        writer.writerows([a, t, 0.9, c] for a, t, c in rows)
    return path


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine two threads mostly wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(tiny_clap_dir):
    from claptune import load_model

    torch.manual_seed(0)
    return load_model(str(tiny_clap_dir))


def _config(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=4, lr=1e-3, num_workers=0, progress=False, val_fraction=0.0)
    base.update(kw)
    return TrainConfig(**base)


@torch.no_grad()
def _pairs_loss(model, pairs: TrainPairs) -> float:
    """Hard loss of all pairs in one batch, fixed windows, eval mode."""
    from claptune.audio import fixed_window, load_audio

    model.eval()
    waves = torch.stack(
        [
            torch.from_numpy(fixed_window(load_audio(a, model.sample_rate), model.clip_samples))
            for a in pairs.audio
        ]
    )
    logits = (
        model.logit_scale * model.audio_embeddings(waves) @ model.text_embeddings(pairs.text).t()
    )
    return float(hard_contrastive_loss(logits))


def fit_history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _trainable_state(model) -> dict[str, torch.Tensor]:
    """A CPU copy of every weight (fit leaves the model on its device: cuda where there is one)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
)


# -- config and data ------------------------------------------------------------------------------
def test_config_validates_and_round_trips(tmp_path):
    with pytest.raises(ClaptuneError, match="unknown training settings: bta"):
        TrainConfig.from_dict({"bta": 0.3})
    for bad in [
        dict(loss="focal"),
        dict(beta=1.2),
        dict(batch_size=1),
        dict(p_curated=2.0),
        dict(lr=1e-9, min_lr=1e-8),
        dict(trainable="heads"),
    ]:
        with pytest.raises(ClaptuneError):
            TrainConfig(**bad)
    config = TrainConfig(loss="hard", lora_targets=["query"], extra={"note": "x"})
    assert TrainConfig.load(config.save(tmp_path / "c.json")) == config
    assert config.differences(TrainConfig(loss="hard", lora_targets=["query"], epochs=3)) == []
    assert config.differences(TrainConfig(loss="soft", lora_targets=["query"])) == ["loss"]


def test_read_pairs_for_training(pairs_csv, tmp_path):
    pairs = as_train_pairs(pairs_csv)
    assert len(pairs) == 12 and pairs.text[1] == "rain"
    assert Path(pairs.audio[0]) == pairs_csv.parent / "clip0.wav"  # relative to the CSV
    assert pairs.classes[0] == "animal" and pairs.classes[1] is None
    from claptune.curation import read_pairs

    assert read_pairs(pairs_csv).audio == pairs.audio  # one reader, one path rule
    corpus_style = tmp_path / "manifest.csv"
    corpus_style.write_text("path,caption,source\na.wav,dog,x\n")
    assert as_train_pairs(corpus_style).text == ["dog"]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.wav,dog\n")
    with pytest.raises(ClaptuneError, match="lacks column"):
        as_train_pairs(bad)


def test_epoch_plan_mixes_sources_deterministically():
    curated, replay = np.arange(0, 30), np.arange(30, 130)
    plan = epoch_plan(curated, replay, 8, 0.5, seed=3, epoch=0)
    assert len(plan) == 13  # one pass over the replay set
    assert all(len(b) == 8 and len(set(b.tolist())) == 8 for b in plan)
    assert all((b < 30).all() or (b >= 30).all() for b in plan)  # one source per batch
    n_cur = sum(bool((b < 30).all()) for b in plan)
    assert 0 < n_cur < 13
    again = epoch_plan(curated, replay, 8, 0.5, seed=3, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(plan, again, strict=True))
    other = epoch_plan(curated, replay, 8, 0.5, seed=3, epoch=1)
    assert not all(np.array_equal(a, b) for a, b in zip(plan, other, strict=True))
    # over many epochs the curated share approaches p
    share = np.mean(
        [
            bool((b < 30).all())
            for e in range(40)
            for b in epoch_plan(curated, replay, 8, 0.25, 0, e)
        ]
    )
    assert abs(share - 0.25) < 0.06
    # no replay: an epoch is a pass over the curated pairs, every pair once
    plan = epoch_plan(curated, np.arange(0), 8, 0.5, 0, 0)
    assert len(plan) == 4 and set(np.concatenate(plan).tolist()) == set(range(30))


def test_holdout_keeps_clips_together():
    pairs = TrainPairs([f"c{i % 10}" for i in range(40)], [f"t{i}" for i in range(40)])
    train, val = split_holdout(pairs, 0.2, seed=0)
    assert sorted(train + val) == list(range(40)) and len(val) == 8
    assert not {pairs.audio[i] for i in train} & {pairs.audio[i] for i in val}


# -- training -------------------------------------------------------------------------------------
def test_short_run_lowers_loss_and_saves_hf_model(tiny_clap_dir, pairs_csv, tmp_path):
    from transformers import ClapModel

    from claptune import load_model

    # the tiny random model starts near chance (its embeddings are almost collapsed), so it
    # takes ~100 full-batch steps of the heads to separate 8 pairs
    model = _model(tiny_clap_dir)
    pairs = as_train_pairs(pairs_csv).subset(range(8))
    before = _pairs_loss(model, pairs)
    result = fit(
        model,
        pairs,
        _config(
            loss="hard",
            trainable="projections",
            epochs=100,
            batch_size=8,
            lr=1e-2,
            plateau_patience=1000,
        ),
        out_dir=tmp_path / "run",
    )
    after = _pairs_loss(result.model, pairs)
    assert after < before - 0.1, (before, after)
    assert result.steps == sum(1 for _ in open(tmp_path / "run" / "loss.csv")) - 1 == 100
    assert [r["epoch"] for r in result.history] == list(range(1, 101))
    for name in ["config.json", "metrics.jsonl", "loss.png", "checkpoint/student.safetensors"]:
        assert (tmp_path / "run" / name).exists(), name

    hf = ClapModel.from_pretrained(result.model_dir)
    trained = result.model.model.state_dict()
    assert all(torch.equal(v, trained[k].cpu()) for k, v in hf.state_dict().items())
    reloaded = load_model(result.model_dir)
    assert abs(_pairs_loss(reloaded, pairs) - after) < 1e-5


def test_beta_zero_soft_run_equals_hard_run(tiny_clap_dir, pairs_csv, tmp_path):
    states = []
    for i, (loss, beta) in enumerate([("hard", 0.3), ("soft", 0.0)]):
        model = _model(tiny_clap_dir)
        fit(model, pairs_csv, _config(loss=loss, beta=beta, max_steps=3), out_dir=tmp_path / str(i))
        states.append(_trainable_state(model))
    assert all(torch.allclose(states[0][k], states[1][k], atol=1e-6) for k in states[0])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_resume_after_stop_matches_straight_run(tiny_clap_dir, pairs_csv, tmp_path, device):
    """Random crops and dropout on: both come back on resume, bit for bit on the CPU. CUDA
    kernels are not bitwise deterministic (atomic adds in the backward pass), so there the
    resumed run must follow the straight one to float tolerance (fp32, no autocast)."""
    exact = device == "cpu"
    config = _config(
        loss="soft",
        crop="random",
        epochs=2,
        val_fraction=0.2,
        save_every=2,
        device=device,
        precision="fp32",
    )
    straight = _model(tiny_clap_dir)
    total = fit(straight, pairs_csv, config, out_dir=tmp_path / "straight").steps
    assert total == 6  # 9 training pairs (3 clips held out), batches of 4, 2 epochs

    first = _model(tiny_clap_dir)
    stopped = fit(
        first,
        pairs_csv,
        TrainConfig(**{**config.to_dict(), "max_steps": 4}),
        out_dir=tmp_path / "resumed",
    )
    assert stopped.steps == 4 and stopped.epochs_completed == 1  # stopped inside epoch 2
    resumed = fit(
        _model(tiny_clap_dir), pairs_csv, config, out_dir=tmp_path / "resumed", resume=True
    )
    assert resumed.steps == total
    a, b = _trainable_state(straight), _trainable_state(resumed.model)
    moved = [k for k in a if not torch.equal(a[k], _trainable_state(first)[k])]
    assert moved  # the last two steps changed the weights
    if exact:
        assert all(torch.equal(a[k], b[k]) for k in a)
    else:
        assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    rows = list(csv.DictReader(open(tmp_path / "resumed" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, total + 1))
    straight_rows = list(csv.DictReader(open(tmp_path / "straight" / "loss.csv")))
    if exact:
        assert resumed.history == fit_history(tmp_path / "straight")
        assert [r["loss"] for r in rows] == [r["loss"] for r in straight_rows]
    else:
        got = [float(r["loss"]) for r in rows]
        assert got == pytest.approx([float(r["loss"]) for r in straight_rows], abs=1e-4)

    with pytest.raises(ClaptuneError, match="settings differ"):
        fit(
            _model(tiny_clap_dir),
            pairs_csv,
            TrainConfig(**{**config.to_dict(), "lr": 1e-4}),
            out_dir=tmp_path / "resumed",
            resume=True,
        )


def test_feature_cache_fast_path_equals_full_forward(tiny_clap_dir, pairs_csv, tmp_path):
    # on the CPU: on CUDA the two paths differ by the autocast and TF32 rounding of the encoders
    config = _config(loss="soft", trainable="projections", max_steps=4, device="cpu")
    fast = _model(tiny_clap_dir)
    fit(fast, pairs_csv, config, out_dir=tmp_path / "fast")
    slow = _model(tiny_clap_dir)
    slow.supports_feature_cache = False  # forces the encoders to run every step
    fit(slow, pairs_csv, config, out_dir=tmp_path / "slow")
    a, b = _trainable_state(fast), _trainable_state(slow)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    before = _trainable_state(_model(tiny_clap_dir))
    changed = [k for k in a if not torch.equal(a[k], before[k])]
    assert changed and all("projection" in k or "logit_scale" in k for k in changed)
    assert all(p.requires_grad for p in fast.parameters())  # flags restored after fit


def test_fit_reads_a_feature_store_and_a_second_run_skips_the_encoders(
    tiny_clap_dir, pairs_csv, tmp_path
):
    from claptune.features import FeatureStore

    config = _config(loss="soft", trainable="projections", max_steps=4)
    plain = _model(tiny_clap_dir)
    fit(plain, pairs_csv, config, out_dir=tmp_path / "plain")

    stored = _model(tiny_clap_dir)
    store = FeatureStore(stored, cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    fit(stored, pairs_csv, config, out_dir=tmp_path / "stored", features=store)
    a, b = _trainable_state(plain), _trainable_state(stored)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # batched apart: rounding
    assert type(stored).audio_features is type(plain).audio_features  # nothing swapped
    assert "audio_features" not in vars(stored)

    # a new store over the same folder (the next run) neither decodes nor runs the encoder
    again = _model(tiny_clap_dir)
    store = FeatureStore(again, cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    calls = []
    again.audio_features = lambda w: calls.append(w) or type(again).audio_features(again, w)
    import claptune.features as features_module

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded a clip the store holds")

    original = features_module.load_audio
    features_module.load_audio = no_decode
    try:
        store.fixed_audio(as_train_pairs(pairs_csv).audio)
    finally:
        features_module.load_audio = original
    assert calls == []

    other = _model(tiny_clap_dir)
    with torch.no_grad():
        for p in other.model.audio_model.parameters():  # other frozen encoders
            p.add_(0.1 * torch.randn_like(p))
    with pytest.raises(ClaptuneError, match="another model"):
        fit(other, pairs_csv, config, out_dir=tmp_path / "other", features=store)


def test_train_cli_reuses_the_feature_store_across_runs(tiny_clap_dir, pairs_csv, tmp_path):
    args = [
        "train",
        "--model",
        str(tiny_clap_dir),
        "--pairs",
        str(pairs_csv),
        "--trainable",
        "projections",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--num-workers",
        "0",
        "--quiet",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    parts = sorted((tmp_path / "cache" / "features").glob("*/part-*.npz"))
    assert parts
    assert main([*args, "--out", str(tmp_path / "two")]) == 0
    assert sorted((tmp_path / "cache" / "features").glob("*/part-*.npz")) == parts


def test_lora_trains_adapters_and_saves_merged_model(tiny_clap_dir, pairs_csv, tmp_path):
    from transformers import ClapModel

    before = _trainable_state(_model(tiny_clap_dir))
    model = _model(tiny_clap_dir)
    result = fit(
        model,
        pairs_csv,
        _config(loss="hard", trainable="lora", max_steps=3, lr=1e-2),
        out_dir=tmp_path / "lora",
    )
    hf = ClapModel.from_pretrained(result.model_dir)  # plain names: adapters merged
    assert not any("lora" in k for k in hf.state_dict())
    after = hf.state_dict()
    changed = [k for k in after if not torch.equal(after[k], before["model." + k])]
    assert any("encoder" in k for k in changed)  # adapters folded into encoder weights


def test_keep_best_val_restores_lowest_held_out_loss(tiny_clap_dir, pairs_csv, tmp_path):
    from safetensors.torch import load_file

    # a large lr makes the held-out loss go up and down, so "best" is not simply "last"
    config = _config(
        loss="hard",
        trainable="projections",
        epochs=8,
        lr=0.3,
        val_fraction=0.3,
        keep="best_val",
        plateau_patience=100,
    )
    result = fit(_model(tiny_clap_dir), pairs_csv, config, out_dir=tmp_path / "best")
    val = [r["val_loss"] for r in result.history]
    best = load_file(str(tmp_path / "best" / "best_student.safetensors"))
    final = dict(result.model.named_parameters())
    assert all(torch.equal(best[k], final[k].detach().cpu()) for k in best if k in final)
    # the checkpoint holds the last step: the final model differs from it unless the last
    # epoch had the lowest held-out loss
    last = load_file(str(tmp_path / "best" / "checkpoint" / "student.safetensors"))
    same_as_last = all(torch.equal(last[k], best[k]) for k in best)
    assert same_as_last == (int(np.argmin(val)) == len(val) - 1)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("trainable", ["projections", "lora"])
def test_wise_alpha_keeps_the_weight_space_ensemble_with_the_start(
    tiny_clap_dir, pairs_csv, tmp_path, trainable, device
):
    """wise_alpha = a keeps a * fine-tuned + (1 - a) * starting weights: the same seeded run at
    alpha 1 gives the fine-tuned end point, and the ensemble lies exactly on the line between;
    weights that never trained are untouched (the checkpoint keeps the plain fine-tune, so a
    resumed run ensembles again from its own start)."""
    start = _trainable_state(_model(tiny_clap_dir))
    # CUDA runs are not bitwise repeatable (fp32 there, and a float tolerance)
    atol = 1e-6 if device == "cpu" else 1e-4
    settings = dict(trainable=trainable, device=device, precision="fp32")
    plain = fit(_model(tiny_clap_dir), pairs_csv, _config(**settings), out_dir=tmp_path / "a1")
    tuned = _trainable_state(plain.model)
    ens = fit(
        _model(tiny_clap_dir),
        pairs_csv,
        _config(**settings, wise_alpha=0.25),
        out_dir=tmp_path / "a025",
    )
    got = _trainable_state(ens.model)
    moved = [
        k for k in start if start[k].is_floating_point() and not torch.equal(start[k], tuned[k])
    ]
    assert moved, "the plain run trained nothing"
    for k in start:
        if not start[k].is_floating_point():
            continue
        want = 0.25 * tuned[k] + 0.75 * start[k]
        assert torch.allclose(got[k], want, atol=atol), k
    # the saved model is the ensemble too
    from claptune import load_model

    saved = _trainable_state(load_model(str(ens.model_dir)))
    assert all(torch.allclose(saved[k], got[k], atol=atol) for k in moved if k in saved)
    with pytest.raises(ClaptuneError, match="wise_alpha"):
        TrainConfig(wise_alpha=0.0)
    # the checkpoint keeps the plain fine-tune: resuming the finished run with another alpha
    # re-ensembles it without a step of training
    again = fit(
        _model(tiny_clap_dir),
        pairs_csv,
        _config(**settings, wise_alpha=0.5),
        out_dir=tmp_path / "a025",
        resume=True,
    )
    assert again.steps == ens.steps
    half = _trainable_state(again.model)
    assert all(torch.allclose(half[k], 0.5 * tuned[k] + 0.5 * start[k], atol=atol) for k in moved)


def test_interpolate_weights_moves_a_shared_weight_once():
    from torch import nn

    from claptune.train.loop import _float_state, interpolate_weights

    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    model[1].weight = model[0].weight  # tied: two names in the state dict, one tensor
    start = _float_state(model)
    assert start["0.weight"].device.type == "cpu"
    with torch.no_grad():
        model[0].weight.add_(1.0)
    tuned = model[0].weight.detach().clone()
    interpolate_weights(model, start, 0.25)
    want = 0.25 * tuned + 0.75 * start["0.weight"]
    assert torch.allclose(model[0].weight, want) and model[1].weight is model[0].weight


def test_generic_lora_fallback_targets_encoders_and_merges_exactly(tiny_clap_dir):
    from claptune.train.lora import default_lora_targets, has_lora, inject_lora, merge_lora

    model = _model(tiny_clap_dir).eval()
    targets = default_lora_targets(model)
    assert targets and not any("projection" in t for t in targets)
    inject_lora(model, rank=2, alpha=4)
    with torch.no_grad():  # lora_B starts at zero; make the adapters do something
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    texts = ["dog bark", "rain"]
    with torch.no_grad():
        adapted = model.text_embeddings(texts)
    names_before = set(_model(tiny_clap_dir).state_dict())
    merge_lora(model)
    assert not has_lora(model) and set(model.state_dict()) == names_before
    with torch.no_grad():
        torch.testing.assert_close(model.text_embeddings(texts), adapted, atol=1e-5, rtol=0)


def test_replay_mixing_uses_both_sources(tiny_clap_dir, pairs_csv, tmp_path):
    pairs = as_train_pairs(pairs_csv)
    replay = TrainPairs(pairs.audio[:8], [f"{t} loud" for t in pairs.text[:8]])
    result = fit(
        _model(tiny_clap_dir),
        pairs.subset(range(8, 12)),
        _config(loss="hard", trainable="projections", epochs=4),
        replay=replay,
        out_dir=tmp_path / "mix",
    )
    rows = list(csv.DictReader(open(tmp_path / "mix" / "loss.csv")))
    assert result.steps == 4 * 2  # an epoch is one pass over the 8 replay pairs
    assert {r["source"] for r in rows} == {"curated", "replay"}


def test_bf16_autocast_runs_with_float32_loss(tiny_clap_dir, pairs_csv, tmp_path):
    # CUDA runs use bf16 autocast by default; CPU autocast exercises the same code path
    result = fit(
        _model(tiny_clap_dir),
        pairs_csv,
        _config(loss="soft", precision="bf16", trainable="projections", max_steps=3),
        out_dir=tmp_path / "bf16",
    )
    losses = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "bf16" / "loss.csv"))]
    assert result.steps == 3 and all(np.isfinite(losses))
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_real_captioned_corpus_as_replay(tiny_clap_dir, tmp_path):
    corpus = as_train_pairs(require_shared_data(CAPTIONED_SFX))  # a folder reads its manifest
    assert len(corpus) > 100 and all(Path(a).is_absolute() for a in corpus.audio[:5])
    result = fit(
        _model(tiny_clap_dir),
        corpus.subset(range(8, 14)),
        _config(loss="soft", trainable="projections", max_steps=3),
        replay=corpus.subset(range(8)),
        out_dir=tmp_path / "real",
    )
    history = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "real" / "loss.csv"))]
    assert result.steps == 3 and all(np.isfinite(history))


def test_cli_train_and_resume(tiny_clap_dir, pairs_csv, tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "train",
        "--model",
        str(tiny_clap_dir),
        "--pairs",
        str(pairs_csv),
        "--out",
        str(out),
        "--loss",
        "multipos",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--num-workers",
        "0",
        "--quiet",
        "--val-fraction",
        "0",
    ]
    assert main(args + ["--max-steps", "2"]) == 0
    assert main(args + ["--resume"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["loss"] == "multipos" and saved["batch_size"] == 4
    bad = tmp_path / "bad.csv"
    bad.write_text("file,caption\nx.wav,dog\n")
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_clap_dir),
                "--pairs",
                str(bad),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "lacks column" in capsys.readouterr().err
