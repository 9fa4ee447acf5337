"""The Hugging Face CLAP backend against transformers' own computation (oracle tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from claptune.audio import windows
from claptune.embed import encode_audio, encode_text
from claptune.errors import ClaptuneError
from claptune.models.base import MODEL_MARKER


@pytest.fixture(scope="module")
def hf(tiny_clap_dir):
    """transformers' own model and processor, read from the same folder."""
    from transformers import ClapModel, ClapProcessor

    return ClapModel.from_pretrained(tiny_clap_dir).eval(), ClapProcessor.from_pretrained(
        tiny_clap_dir
    )


@pytest.fixture(scope="module")
def model(tiny_clap_dir):
    from claptune.models.hf_clap import HFClapModel

    return HFClapModel.load(tiny_clap_dir)


def _hf_audio(hf, clips: list[np.ndarray], **kw) -> torch.Tensor:
    """transformers' audio embeddings of clips no longer than one window, via ClapProcessor."""
    clap, processor = hf
    inputs = processor(audio=clips, sampling_rate=48000, return_tensors="pt", **kw)
    with torch.inference_mode():
        return clap.get_audio_features(**inputs).pooler_output


def test_short_and_exact_clips_match_transformers(hf, model, rng):
    # The processor pads the short clip itself ("repeatpad"): this also checks our padding.
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (5000, 17000, 48000)]
    ours = encode_audio(model, clips, progress=False).embeddings
    ref = torch.cat([_hf_audio(hf, [c]) for c in clips]).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_long_clip_is_the_renormalised_mean_of_window_embeddings(hf, model, rng):
    clip = (0.1 * rng.standard_normal(48000 * 2 + 20000)).astype(np.float32)
    starts = [0, 48000, len(clip) - 48000]  # brute force: consecutive, last one at the end
    per_window = _hf_audio(hf, [clip[s : s + 48000] for s in starts])
    ref = torch.nn.functional.normalize(per_window.mean(0), dim=0).numpy()
    np.testing.assert_allclose(
        encode_audio(model, [clip], progress=False).embeddings[0], ref, atol=1e-5
    )


def test_log_mel_matches_the_feature_extractor(hf, model, rng):
    clip = (0.1 * rng.standard_normal(48000)).astype(np.float32)
    fe = hf[1].feature_extractor
    ref = fe._np_extract_fbank_features(clip.astype(np.float64), fe.mel_filters_slaney)
    ours = model.log_mel(torch.from_numpy(clip[None]))[0, 0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3)  # dB; float32 STFT vs float64 NumPy


def test_text_matches_transformers(hf, model):
    clap, processor = hf
    texts = ["a dog barking", "rain on a tin roof, far away", "x"]
    tokens = processor(text=texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = clap.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output
    np.testing.assert_allclose(encode_text(model, texts, progress=False), ref.numpy(), atol=1e-5)


def test_feature_split_composes_to_the_embeddings(model, rng):
    w = torch.from_numpy((0.1 * rng.standard_normal((2, 48000))).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(
            model.audio_head(model.audio_features(w)), model.audio_embeddings(w)
        )
        texts = ["a cat", "a bell ringing"]
        torch.testing.assert_close(
            model.text_head(model.text_features(texts)), model.text_embeddings(texts)
        )


def test_embeddings_are_unit_float32_and_differentiable(model, rng):
    w = torch.from_numpy((0.1 * rng.standard_normal((2, 48000))).astype(np.float32))
    audio_emb = model.audio_embeddings(w)
    text_emb = model.text_embeddings(["a", "b c"])
    for emb in (audio_emb, text_emb):
        assert emb.dtype == torch.float32 and emb.shape == (2, 16)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    (audio_emb @ text_emb.T * model.logit_scale).sum().backward()
    assert model.model.audio_projection.linear1.weight.grad is not None
    model.zero_grad()


def test_logit_scale_and_projection_parameters(model):
    torch.testing.assert_close(model.logit_scale, model.model.logit_scale_a.exp())
    params = {id(p) for p in model.projection_parameters()}
    assert id(model.model.logit_scale_a) in params
    assert all(id(p) in params for p in model.model.audio_projection.parameters())
    assert not any(id(p) in params for p in model.model.audio_model.parameters())


def test_fused_checkpoint_is_deterministic_and_uses_is_longer_false(tmp_path, rng):
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    from claptune.models.hf_clap import HFClapModel
    from conftest import _save_tiny_processor, tiny_clap_config

    cfg = tiny_clap_config().to_dict()
    cfg["audio_config"]["enable_fusion"] = True
    torch.manual_seed(1)
    ClapModel(ClapConfig(**cfg)).eval().save_pretrained(tmp_path)
    _save_tiny_processor(tmp_path)
    processor = ClapProcessor.from_pretrained(tmp_path)
    fe = processor.feature_extractor
    processor.feature_extractor = ClapFeatureExtractor(**{**fe.to_dict(), "truncation": "fusion"})
    processor.save_pretrained(tmp_path)

    model = HFClapModel.load(tmp_path)
    assert model.preprocessing()["mel_scale"] == "htk"
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (9000, 48000)]
    inputs = processor(audio=clips, sampling_rate=48000, return_tensors="pt")
    assert inputs["input_features"].shape[1] == 4  # the fusion stack
    clap = ClapModel.from_pretrained(tmp_path).eval()
    with torch.inference_mode():
        ref = clap.get_audio_features(
            input_features=inputs["input_features"], is_longer=torch.zeros(2, 1, dtype=torch.bool)
        ).pooler_output
    ours = encode_audio(model, clips, progress=False).embeddings
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5)
    # Alone or in a batch, the same clip gets the same vector (the processor's coin flip gone).
    np.testing.assert_allclose(
        encode_audio(model, clips[:1], progress=False).embeddings[0], ours[0], atol=1e-6
    )


def test_save_loads_with_transformers_and_claptune(model, tmp_path, rng):
    from transformers import ClapModel

    import claptune

    out = model.save(tmp_path / "saved")
    assert json.loads((out / MODEL_MARKER).read_text()) == {"backend": "hf_clap"}
    reloaded = claptune.load_model(out)
    assert reloaded.identity() == model.identity()
    clip = [(0.1 * rng.standard_normal(30000)).astype(np.float32)]
    np.testing.assert_allclose(
        encode_audio(reloaded, clip, progress=False).embeddings,
        encode_audio(model, clip, progress=False).embeddings,
        atol=1e-6,
    )
    assert isinstance(ClapModel.from_pretrained(out), ClapModel)


def test_plain_save_pretrained_folder_is_recognized(tiny_clap_dir, tmp_path):
    import claptune
    from claptune.models.hf_clap import HFClapModel

    assert HFClapModel.recognizes(tiny_clap_dir)
    assert not HFClapModel.recognizes(tmp_path)
    assert isinstance(claptune.load_model(str(tiny_clap_dir)), HFClapModel)


@pytest.mark.parametrize(
    "removed, missing",
    [
        (("processor_config.json", "preprocessor_config.json"), "feature extractor"),
        (("tokenizer.json", "tokenizer_config.json", "vocab.json"), "tokenizer"),
    ],
)
def test_folder_without_processor_says_so(tiny_clap_dir, tmp_path, removed, missing):
    """ClapModel.save_pretrained alone leaves no processor: the error says that, not
    "no network"."""
    import shutil

    import claptune

    folder = tmp_path / "model"
    shutil.copytree(tiny_clap_dir, folder)
    for name in removed:
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(ClaptuneError, match=f"no processor \\({missing} files missing\\)"):
        claptune.load_model(str(folder))


def test_identity_tracks_weights_and_preprocessing(tiny_clap_dir):
    from claptune.models.hf_clap import HFClapModel

    a, b = HFClapModel.load(tiny_clap_dir), HFClapModel.load(tiny_clap_dir)
    assert a.identity() == b.identity()
    with torch.no_grad():
        b.model.text_projection.linear2.bias[0] += 1e-3
    assert a.identity()["weights_sha256"] != b.identity()["weights_sha256"]
    assert a.identity()["preprocessing"]["clip_samples"] == 48000


def test_unreachable_hub_id_is_a_clear_error():
    from claptune.models.hf_clap import HFClapModel

    with pytest.raises(ClaptuneError, match="cannot load CLAP model"):
        HFClapModel.from_source("claptune-tests/no-such-model")


def test_waveform_shape_is_checked(model):
    with pytest.raises(ValueError, match="48000"):
        model.audio_embeddings(torch.zeros(1, 100))
    assert windows(np.ones(100, np.float32), model.clip_samples).shape == (1, 48000)


def test_lora_trains_adapters_and_saves_merged(tiny_clap_dir, tmp_path, rng):
    import claptune
    from claptune.models.hf_clap import HFClapModel

    model = HFClapModel.load(tiny_clap_dir)
    clip = [(0.1 * rng.standard_normal(48000)).astype(np.float32)]
    before = encode_audio(model, clip, progress=False).embeddings
    model.add_lora(rank=2, alpha=4)
    np.testing.assert_allclose(
        encode_audio(model, clip, progress=False).embeddings, before, atol=1e-6
    )
    lora = model.trainable_parameters("lora")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_B" in n for n in names) and not any("query.base_layer" in n for n in names)
    assert len(lora) == len(names)  # adapters + projections, nothing else trains
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    after = encode_audio(model, clip, progress=False).embeddings
    assert np.abs(after - before).max() > 1e-3
    reloaded = claptune.load_model(model.save(tmp_path / "merged"))
    assert not any("lora_" in n for n, _ in reloaded.named_parameters())
    np.testing.assert_allclose(
        encode_audio(reloaded, clip, progress=False).embeddings, after, atol=1e-5
    )


def test_checkpoint_missing_weights_is_refused(tiny_clap_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from claptune.models.hf_clap import HFClapModel

    for f in tiny_clap_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    weights = load_file(tmp_path / "model.safetensors")
    del weights["audio_projection.linear1.weight"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ClaptuneError, match="audio_projection.linear1.weight"):
        HFClapModel.load(tmp_path)
