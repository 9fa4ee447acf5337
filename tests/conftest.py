"""Shared fixtures: a tiny random Hugging Face CLAP saved with save_pretrained, tiny signals,
and the real data in ../shared/data (tests needing it skip with a reason when it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ESC50_SUBSET = SHARED_DATA / "esc50-subset"
CAPTIONED_SFX = SHARED_DATA / "captioned-sfx"


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path_factory):
    """Sub-commands cache by default under $CLAPTUNE_CACHE: each test gets its own, empty one,
    never the user's ~/.cache/claptune."""
    monkeypatch.setenv("CLAPTUNE_CACHE", str(tmp_path_factory.mktemp("claptune-cache")))


def require_shared_data(path: Path = SHARED_DATA) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (only CI and dev machines have ../shared/data)")
    return path


def tiny_clap_config():
    """A ClapConfig small enough for CPU tests; 1 s of 48 kHz audio at hop 480 -> spec_size 128."""
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    text = ClapTextConfig(
        vocab_size=50265,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=80,
        projection_dim=16,
    )
    audio = ClapAudioConfig(
        spec_size=128,
        window_size=4,
        num_mel_bins=64,
        patch_size=4,
        patch_stride=(4, 4),
        hidden_size=32,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        patch_embeds_hidden_size=16,
        enable_fusion=False,
        projection_dim=16,
    )
    return ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory) -> Path:
    """A save_pretrained folder of a tiny random ClapModel plus a matching ClapProcessor."""
    import torch
    from transformers import ClapModel

    out = tmp_path_factory.mktemp("tiny_clap")
    torch.manual_seed(0)
    model = ClapModel(tiny_clap_config()).eval()
    model.save_pretrained(out)
    _save_tiny_processor(out)
    return out


def _save_tiny_processor(out: Path) -> None:
    """A ClapProcessor whose tokenizer is built offline (no hub) and whose feature extractor
    matches the tiny config (64 mel bins, 1 s at 48 kHz)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import ClapFeatureExtractor, ClapProcessor, RobertaTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz0123456789.,'!? ", start=len(vocab)):
        vocab[ch] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=64,
    )
    fe = ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=48000,
        hop_length=480,
        max_length_s=1,
        fft_window_size=1024,
        truncation="rand_trunc",
        padding="repeatpad",
    )
    ClapProcessor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(out)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_tone(
    path: Path,
    freq: float,
    seconds: float = 1.0,
    rate: int = 16000,
    noise: float = 0.0,
    seed: int = 0,
) -> Path:
    """A sine tone (plus seeded noise) written as WAV; the parent folders are created."""
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), rate)
    return path


def write_tiny_corpus(corpus: Path) -> Path:
    """A 12-clip captioned corpus of tones (manifest.csv + audio/), 3 of whose captions name
    the tiny tasks' classes."""
    lines = ["path,caption,source,license"]
    captions = ["a dog barking", "rain falling", "a siren wailing", "a bell ringing"]
    for i in range(12):
        rel = f"audio/{i}.wav"
        write_tone(corpus / rel, 250 + 150 * i, seconds=0.5 + 0.1 * i, seed=10 + i)
        lines.append(f"{rel},{captions[i % 4]} {i},test,CC0-1.0")
    (corpus / "manifest.csv").write_text("\n".join(lines) + "\n")
    return corpus
