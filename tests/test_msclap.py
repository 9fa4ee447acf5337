"""Native MS-CLAP backend on tiny random configurations (claptune.models.msclap).

Exactness against the original ``msclap`` package is shown by bench/exactness (a separate
venv); these tests cover loading, saving, strictness, preprocessing and the claptune interface.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from claptune.embed import encode_audio
from claptune.models import load_model
from claptune.models.checkpoints import CheckpointMismatchError, read_state_dict
from claptune.models.msclap import MSClapModel
from claptune.models.msclap_nets import MSClapConfig, MSClapNet

SR = 44100
TINY_TEXT = Path(__file__).resolve().parents[1] / "bench" / "exactness" / "tiny_text.py"


def _tiny_text_module():
    spec = importlib.util.spec_from_file_location("tiny_text", TINY_TEXT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(text_dir: Path, text_encoder: str = "bert", **kw) -> MSClapConfig:
    from transformers import AutoConfig

    return MSClapConfig(
        audio_encoder="cnn14",
        duration=0.5,
        cnn14_channels=(4, 4, 8, 8, 8, 16),
        out_emb=16,
        classes_num=3,
        text_encoder=text_encoder,
        text_config=AutoConfig.from_pretrained(text_dir).to_dict(),
        transformer_embed_dim=32,
        text_len=24,
        d_proj=8,
        **kw,
    )


def build(text_dir: Path, seed: int = 0, **kw) -> MSClapModel:
    from transformers import AutoTokenizer

    from claptune.models.msclap import prepare_tokenizer

    config = tiny_config(text_dir, **kw)
    torch.manual_seed(seed)
    net = MSClapNet(config)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(text_dir), config)
    return MSClapModel(net, tokenizer).eval()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_bert")
    _tiny_text_module().make_tiny_text_model("bert", out)
    return out


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_gpt2")
    _tiny_text_module().make_tiny_text_model("gpt2", out)
    return out


@pytest.fixture(scope="module")
def saved_bert_model(bert_dir, tmp_path_factory) -> Path:
    return build(bert_dir).save(tmp_path_factory.mktemp("msclap_saved") / "model")


def _waves(n: int, samples: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.tensor(0.1 * rng.standard_normal((n, samples)), dtype=torch.float32)


def test_embeddings_are_normalised_and_the_feature_split_composes(bert_dir):
    model = build(bert_dir)
    assert model.clip_samples == int(0.5 * SR) and model.sample_rate == SR
    waves = _waves(3, model.clip_samples)
    with torch.no_grad():
        audio_emb = model.audio_embeddings(waves)
        text_emb = model.text_embeddings(["a dog barks", "rain on a tin roof"])
        split = model.audio_head(model.audio_features(waves))
    assert audio_emb.shape == (3, 8) and text_emb.shape == (2, 8)
    assert audio_emb.dtype == torch.float32
    torch.testing.assert_close(audio_emb.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(text_emb.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(split, audio_emb)
    assert not torch.allclose(audio_emb[0], audio_emb[1])


def test_wrong_window_length_is_rejected(bert_dir):
    model = build(bert_dir)
    with pytest.raises(ValueError, match="expected waveforms of shape"):
        model.audio_embeddings(torch.zeros(1, model.clip_samples + 1))


def test_bert_tokens_are_padded_to_text_len_with_cls_pooling(bert_dir):
    model = build(bert_dir)
    tokens = model.tokenize(["a dog", "rain on a tin roof twice"])
    assert set(tokens) == {"input_ids", "attention_mask", "token_type_ids"}
    assert tokens["input_ids"].shape == (2, 24)
    # [CLS] first, then padding after [SEP]
    assert (tokens["input_ids"][:, 0] == model.tokenizer.cls_token_id).all()
    assert tokens["attention_mask"][0].sum() < tokens["attention_mask"][1].sum()
    long_caption = " ".join(["dog"] * 100)
    assert model.tokenize([long_caption])["input_ids"].shape == (1, 24)


def test_gpt2_pools_the_last_real_token(gpt2_dir):
    model = build(gpt2_dir, text_encoder="gpt2")
    tokens = model.tokenize(["a dog", "a dog barks"])
    ids = tokens["input_ids"]
    assert model.tokenizer.pad_token_id == 0  # "!" as in MS-CLAP 2023
    eot = model.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    last = ids.ne(0).sum(-1) - 1
    assert (ids[torch.arange(2), last] == eot).all()
    with torch.no_grad():
        hidden = model.net.caption_encoder.base(**tokens).last_hidden_state
        features = model.text_features(["a dog", "a dog barks"])
    torch.testing.assert_close(features, hidden[torch.arange(2), last])


def test_save_load_round_trip_with_original_names(bert_dir, saved_bert_model):
    model = build(bert_dir)
    loaded = load_model(saved_bert_model)
    assert isinstance(loaded, MSClapModel) and not loaded.training
    waves = _waves(2, model.clip_samples, seed=1)
    texts = ["birds", "a car horn"]
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.audio_embeddings(waves), model.audio_embeddings(waves), rtol=0, atol=0
        )
        torch.testing.assert_close(
            loaded.text_embeddings(texts), model.text_embeddings(texts), rtol=0, atol=0
        )
    assert loaded.identity() == model.identity()
    keys = read_state_dict(saved_bert_model / "model.safetensors")
    assert "audio_encoder.base.spectrogram_extractor.stft.conv_real.weight" in keys
    assert "caption_encoder.base.embeddings.word_embeddings.weight" in keys
    assert "logit_scale" in keys


def test_renamed_key_gives_clear_report(bert_dir, saved_bert_model, tmp_path):
    from safetensors.torch import save_file

    state = read_state_dict(saved_bert_model / "model.safetensors")
    state["audio_encoder.projection.linear_one.weight"] = state.pop(
        "audio_encoder.projection.linear1.weight"
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in saved_bert_model.iterdir():
        if name.name != "model.safetensors":
            (broken / name.name).write_bytes(name.read_bytes())
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError) as err:
        load_model(broken)
    assert err.value.missing == ["audio_encoder.projection.linear1.weight"]
    assert err.value.unexpected == ["audio_encoder.projection.linear_one.weight"]


def test_legacy_position_ids_buffer_is_accepted(bert_dir, saved_bert_model):
    from transformers import AutoTokenizer

    state = read_state_dict(saved_bert_model / "model.safetensors")
    state["caption_encoder.base.embeddings.position_ids"] = torch.arange(128)[None]
    config = MSClapConfig.from_dict(
        json.loads((saved_bert_model / "msclap_config.json").read_text())
    )
    model = MSClapModel.from_state_dict(config, state, AutoTokenizer.from_pretrained(bert_dir))
    assert isinstance(model, MSClapModel)


def test_published_checkpoint_layout_is_recognised(bert_dir, tmp_path):
    model = build(bert_dir)
    path = tmp_path / "CLAP_weights_x.pth"
    torch.save({"model": model.net.state_dict(), "epoch": 1}, path)
    assert MSClapModel.checkpoint_version(path) == "2022"
    assert MSClapModel.recognizes(path)
    assert MSClapModel.checkpoint_version(tmp_path / "missing.pth") is None


def test_encode_audio_repeats_short_clips_and_windows_long_ones(bert_dir, tmp_path):
    from claptune.audio import pad_window, windows

    model = build(bert_dir)
    rng = np.random.default_rng(3)
    short = (0.1 * rng.standard_normal(int(0.2 * SR))).astype(np.float32)
    path = tmp_path / "short.wav"
    sf.write(path, short, SR, subtype="FLOAT")
    emb = encode_audio(model, [path], progress=False).embeddings
    with torch.no_grad():
        expected = model.audio_embeddings(
            torch.from_numpy(pad_window(short, model.clip_samples, "repeat"))[None]
        ).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-6)
    long = (0.1 * rng.standard_normal(int(0.9 * SR))).astype(np.float32)
    with torch.no_grad():
        per_window = model.audio_embeddings(torch.from_numpy(windows(long, model.clip_samples)))
    mean = per_window.mean(0)
    np.testing.assert_allclose(
        encode_audio(model, [long], progress=False).embeddings[0],
        (mean / mean.norm()).numpy(),
        atol=1e-6,
    )


def test_zeroshot_cli_runs_on_tiny_msclap(saved_bert_model, tmp_path):
    from claptune.cli import main

    rng = np.random.default_rng(4)
    root = tmp_path / "clips"
    for label in ("dog", "rain"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            sf.write(root / label / f"{i}.wav", 0.1 * rng.standard_normal(SR // 4), SR)
    out = tmp_path / "zs"
    code = main(
        [
            "zeroshot",
            "--model",
            str(saved_bert_model),
            "--dataset",
            "folder",
            "--root",
            str(root),
            "--out",
            str(out),
            "--no-progress",
            "--num-workers",
            "0",
        ]
    )
    assert code == 0
    result = json.loads((out / "zeroshot.json").read_text())
    assert result["n_clips"] == 4 and 0.0 <= result["accuracy"] <= 1.0
    assert result["config"]["model_identity"]["backend"] == "msclap"


# -- MS-CLAP 2023: HTSAT + GPT-2 ---------------------------------------------------------------
def tiny_htsat_config(gpt2_dir: Path) -> MSClapConfig:
    from transformers import AutoConfig

    htsat = {
        "spec_size": 256,
        "patch_size": 4,
        "patch_stride": [4, 4],
        "patch_embeds_hidden_size": 8,
        "depths": [1, 1],
        "num_attention_heads": [1, 2],
        "window_size": 8,
        "num_classes": 5,
        "mel_sample_rate": 32000,
        "mel_fmax": 14000.0,
    }
    return MSClapConfig(
        audio_encoder="htsat",
        duration=0.5,
        fmax=8000.0,
        out_emb=16,
        text_encoder="gpt2",
        text_config=AutoConfig.from_pretrained(gpt2_dir).to_dict(),
        transformer_embed_dim=32,
        text_len=20,
        d_proj=8,
        htsat_config=htsat,
    )


@pytest.fixture(scope="module")
def tiny_2023(gpt2_dir) -> MSClapModel:
    from transformers import AutoTokenizer

    from claptune.models.msclap import prepare_tokenizer

    config = tiny_htsat_config(gpt2_dir)
    torch.manual_seed(0)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(gpt2_dir), config)
    return MSClapModel(MSClapNet(config), tokenizer).eval()


def test_htsat_names_round_trip_through_the_published_layout(tiny_2023):
    from claptune.models.msclap_htsat import from_original_names, to_original_names

    state = tiny_2023.net.state_dict()
    original = to_original_names(state)
    prefix = "audio_encoder.base.htsat."
    assert f"{prefix}layers.0.blocks.0.attn.qkv.weight" in original
    assert f"{prefix}layers.0.blocks.0.attn.proj.weight" in original
    assert f"{prefix}layers.0.blocks.0.mlp.fc2.weight" in original
    assert f"{prefix}bn0.running_var" in original and f"{prefix}tscam_conv.weight" in original
    assert not any(".encoder." in k or "attention" in k for k in original if k.startswith(prefix))
    back = from_original_names(original)
    assert sorted(back) == sorted(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_msclap_2023_save_load_and_zeroshot(tiny_2023, tmp_path):
    from claptune.cli import main

    saved = tiny_2023.save(tmp_path / "m2023")
    assert "audio_encoder.base.htsat.layers.0.blocks.0.attn.qkv.weight" in read_state_dict(
        saved / "model.safetensors"
    )
    loaded = load_model(saved)
    waves = _waves(2, tiny_2023.clip_samples, seed=5)
    with torch.no_grad():
        emb = loaded.audio_embeddings(waves)
        torch.testing.assert_close(emb, tiny_2023.audio_embeddings(waves), rtol=0, atol=0)
        torch.testing.assert_close(
            loaded.text_embeddings(["a dog"]), tiny_2023.text_embeddings(["a dog"]), rtol=0, atol=0
        )
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    assert MSClapModel.checkpoint_version(saved / "model.safetensors") == "2023"

    rng = np.random.default_rng(6)
    root = tmp_path / "clips"
    for label in ("dog", "rain"):
        (root / label).mkdir(parents=True)
        sf.write(root / label / "0.wav", 0.1 * rng.standard_normal(SR // 4), SR)
    code = main(
        [
            "zeroshot",
            "--model",
            str(saved),
            "--dataset",
            "folder",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "zs"),
            "--no-progress",
            "--num-workers",
            "0",
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "zs" / "zeroshot.json").read_text())["n_clips"] == 2


def test_train_fits_and_saves_a_student_that_reloads(bert_dir, tmp_path):
    from claptune.train import TrainConfig, fit

    model = build(bert_dir)
    before = model.identity()["weights_sha256"]
    rng = np.random.default_rng(7)
    pairs = []
    for i, caption in enumerate(["a dog", "rain on a roof", "birds", "a car horn"]):
        path = tmp_path / f"{i}.wav"
        sf.write(path, 0.1 * rng.standard_normal(SR // 2), SR)
        pairs.append((str(path), caption))
    result = fit(
        model,
        pairs,
        TrainConfig(
            epochs=1,
            batch_size=2,
            trainable="projections",
            num_workers=0,
            progress=False,
            val_fraction=0.0,
        ),
        out_dir=tmp_path / "run",
    )
    student = load_model(result.model_dir)
    assert isinstance(student, MSClapModel)
    assert student.identity()["weights_sha256"] == model.identity()["weights_sha256"] != before


def test_lora_on_both_towers_merges_and_saves_in_the_published_layout(gpt2_dir, tmp_path):
    from transformers import AutoTokenizer

    from claptune.models.msclap import prepare_tokenizer
    from claptune.train.lora import merge_lora

    config = tiny_htsat_config(gpt2_dir)
    torch.manual_seed(1)
    model = MSClapModel(
        MSClapNet(config), prepare_tokenizer(AutoTokenizer.from_pretrained(gpt2_dir), config)
    ).eval()
    model.add_lora(rank=2)
    lora_names = {n for n, _ in model.named_parameters() if "lora_A" in n}
    assert any(n.startswith("net.audio_encoder.") for n in lora_names)
    assert any(n.startswith("net.caption_encoder.") for n in lora_names)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()  # B starts at zero: make the adapters change the output
    waves = _waves(1, model.clip_samples, seed=8)
    with torch.no_grad():
        audio_emb, text_emb = model.audio_embeddings(waves), model.text_embeddings(["a dog"])
    merge_lora(model)
    loaded = load_model(model.save(tmp_path / "lora_student"))
    with torch.no_grad():
        torch.testing.assert_close(loaded.audio_embeddings(waves), audio_emb, atol=1e-5, rtol=0)
        torch.testing.assert_close(loaded.text_embeddings(["a dog"]), text_emb, atol=1e-5, rtol=0)
