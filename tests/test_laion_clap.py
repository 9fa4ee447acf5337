"""LAION-CLAP native checkpoints converted into ClapModel (claptune.models.laion_clap).

Exactness against the original ``laion_clap`` package is shown by bench/exactness (a separate
venv). Here a tiny random ClapModel is written out in the native layout (fused qkv,
``nn.Sequential`` indices, ``audio_branch`` / ``text_branch`` names, plus the tensors the
conversion must drop), and the conversion must read it back strictly and exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from claptune.models import load_model
from claptune.models.checkpoints import CheckpointMismatchError
from claptune.models.hf_clap import HFClapModel
from claptune.models.laion_clap import LaionClapModel, config_from_state_dict

SR = 48000


def tiny_config(fused: bool = False):
    from transformers import ClapConfig

    text = dict(
        vocab_size=64,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=48,
        max_position_embeddings=80,
        projection_dim=16,
        layer_norm_eps=1e-5,
    )
    audio = dict(
        spec_size=256,
        window_size=8,
        num_mel_bins=64,
        patch_size=4,
        patch_stride=[4, 4],
        patch_embeds_hidden_size=16,
        hidden_size=32,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        projection_dim=16,
        enable_fusion=fused,
        fusion_type="aff_2d" if fused else None,
    )
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=16)


def to_native(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of the conversion: a ClapModel state dict in laion_clap's layout."""
    native: dict[str, torch.Tensor] = {}
    qkv: dict[str, list] = {}
    for key, value in hf_state.items():
        if key in ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"):
            continue
        if key.startswith("audio_model.audio_encoder."):
            key = "audio_branch." + key[len("audio_model.audio_encoder.") :]
            for hf, nat in (
                ("attention.output.dense", "attn.proj"),
                ("attention.self", "attn"),
                ("intermediate.dense", "mlp.fc1"),
                ("output.dense", "mlp.fc2"),
                ("layernorm_before", "norm1"),
                ("layernorm_after", "norm2"),
                ("batch_norm", "bn0"),
            ):
                key = key.replace(hf, nat)
            for part in ("query", "key", "value"):
                if f"attn.{part}." in key:
                    qkv.setdefault(key.replace(f"attn.{part}.", "attn.qkv."), []).append(value)
                    break
            else:
                native[key] = value
            continue
        key = key.replace("text_model.", "text_branch.")
        key = key.replace("_projection.linear1.", "_projection.0.")
        key = key.replace("_projection.linear2.", "_projection.2.")
        native[key] = value
    native.update({k: torch.cat(v) for k, v in qkv.items()})  # query, key, value order
    # tensors a real checkpoint carries that ClapModel has no place for
    native["audio_branch.spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(513, 1, 1024)
    native["audio_branch.logmel_extractor.melW"] = torch.zeros(513, 64)
    native["audio_branch.head.weight"] = torch.zeros(527, 32)
    native["audio_branch.tscam_conv.weight"] = torch.zeros(527, 32, 2, 3)
    native["audio_transform.sequential.0.weight"] = torch.zeros(16, 16)
    native["text_branch.embeddings.position_ids"] = torch.arange(80)[None]
    return {f"module.{k}": v for k, v in native.items()}


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import RobertaTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz .,!", start=len(vocab)):
        vocab[ch] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from transformers import ClapModel

    torch.manual_seed(0)
    model = ClapModel(tiny_config()).eval()
    path = tmp_path_factory.mktemp("laion") / "tiny-laion.pt"
    torch.save({"epoch": 3, "state_dict": to_native(model.state_dict())}, path)
    return model, path


def test_architecture_is_read_off_the_weights(reference):
    model, path = reference
    from claptune.models.checkpoints import read_state_dict

    config = config_from_state_dict(read_state_dict(path))
    audio, text = config.audio_config, config.text_config
    assert audio.depths == [1, 1] and audio.num_attention_heads == [2, 2]
    assert audio.window_size == 8 and audio.patch_embeds_hidden_size == 16
    assert audio.hidden_size == 32 and audio.projection_dim == 16 and not audio.enable_fusion
    assert text.hidden_size == 64 and text.num_hidden_layers == 1 and text.vocab_size == 64


def test_converted_checkpoint_reproduces_the_model(reference, tiny_tokenizer):
    model, path = reference
    converted = LaionClapModel.from_checkpoint(path, tokenizer=tiny_tokenizer)
    assert isinstance(converted, HFClapModel)
    assert converted.sample_rate == SR and converted.clip_samples == 10 * SR
    for key, value in model.state_dict().items():
        torch.testing.assert_close(converted.model.state_dict()[key], value, rtol=0, atol=0)
    with torch.no_grad():
        waves = torch.tensor(
            0.1 * np.random.default_rng(0).standard_normal((2, 10 * SR)), dtype=torch.float32
        )
        audio_emb = converted.audio_embeddings(waves)
        reference_emb = torch.nn.functional.normalize(
            model.get_audio_features(
                input_features=converted.log_mel(waves),
                is_longer=torch.zeros(2, 1, dtype=torch.bool),
            ).pooler_output,
            dim=-1,
        )
    torch.testing.assert_close(audio_emb, reference_emb)
    tokens = converted.processor.tokenizer(
        ["a dog barks", "x" * 200], padding=True, truncation=True, return_tensors="pt"
    )
    assert tokens["input_ids"].shape[1] == 77  # LAION's caption length


def test_fused_checkpoint_is_detected(tiny_tokenizer, tmp_path):
    from transformers import ClapModel

    torch.manual_seed(1)
    model = ClapModel(tiny_config(fused=True)).eval()
    path = tmp_path / "fused.pt"
    torch.save({"state_dict": to_native(model.state_dict())}, path)
    converted = LaionClapModel.from_checkpoint(path, tokenizer=tiny_tokenizer)
    assert converted.model.config.audio_config.enable_fusion
    assert converted.processor.feature_extractor.truncation == "fusion"
    with torch.no_grad():
        emb = converted.audio_embeddings(torch.zeros(1, 10 * SR))
    assert emb.shape == (1, 16)


def test_renamed_key_gives_clear_report(reference, tiny_tokenizer, tmp_path):
    _, path = reference
    state = torch.load(path, weights_only=True)["state_dict"]
    state["module.text_projection.0.weight_x"] = state.pop("module.text_projection.0.bias")
    broken = tmp_path / "broken.pt"
    torch.save({"state_dict": state}, broken)
    with pytest.raises(CheckpointMismatchError) as err:
        LaionClapModel.from_checkpoint(broken, tokenizer=tiny_tokenizer)
    assert err.value.missing == ["text_projection.linear1.bias"]
    assert err.value.unexpected == ["text_projection.linear1.weight_x"]


def test_native_file_loads_by_path_and_student_round_trips(
    reference, tiny_tokenizer, tmp_path, monkeypatch
):
    _, path = reference
    assert LaionClapModel.recognizes(path)
    converted = LaionClapModel.from_checkpoint(path, tokenizer=tiny_tokenizer)
    with torch.no_grad():
        converted.model.text_projection.linear2.bias.add_(0.5)  # a "fine-tuned" student
    saved = converted.save(tmp_path / "student")
    loaded = load_model(saved)
    assert isinstance(loaded, HFClapModel)
    assert loaded.identity() == converted.identity()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.text_embeddings(["rain"]), converted.text_embeddings(["rain"])
        )


def test_zeroshot_cli_runs_on_tiny_converted_model(reference, tiny_tokenizer, tmp_path):
    from claptune.cli import main

    _, path = reference
    saved = LaionClapModel.from_checkpoint(path, tokenizer=tiny_tokenizer).save(tmp_path / "m")
    rng = np.random.default_rng(4)
    root = tmp_path / "clips"
    for label in ("dog", "rain"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            sf.write(root / label / f"{i}.wav", 0.1 * rng.standard_normal(SR // 2), SR)
    out = tmp_path / "zs"
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
            str(out),
            "--no-progress",
            "--num-workers",
            "0",
        ]
    )
    assert code == 0
    result = json.loads((out / "zeroshot.json").read_text())
    assert result["n_clips"] == 4 and 0.0 <= result["accuracy"] <= 1.0
