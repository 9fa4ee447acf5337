"""The vendored aisfx CNN: loads from safetensors with no pickle and no aisfx package, and gives
the same features as aisfx's own network and checkpoint (where aisfx is installed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch


def _waves(n: int = 3, seconds: float = 2.3) -> torch.Tensor:
    from claptune.models.default import CLIP_SAMPLES

    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / 44100
    waves = [
        0.3 * np.sin(2 * np.pi * f * t) + rng.normal(0, 0.05, CLIP_SAMPLES)
        for f in (220.0, 1000.0, 5000.0)[:n]
    ]
    return torch.from_numpy(np.stack(waves).astype(np.float32))


def test_packaged_weights_load_without_pickle_or_aisfx(monkeypatch):
    from claptune.models.aisfx_cnn import WEIGHTS_FILE
    from claptune.models.default import AisfxAudioEncoder

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load must not be used for the default model")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setitem(sys.modules, "aisfx", None)  # any import of aisfx now fails
    encoder = AisfxAudioEncoder("max_mean_cls")
    encoder.load_packaged_weights()
    encoder.eval()
    assert WEIGHTS_FILE.is_file() and (WEIGHTS_FILE.parent / "NOTICE").is_file()
    with torch.no_grad():
        features = encoder(_waves())
    assert features.shape == (3, 1024 + 378) and torch.isfinite(features).all()
    # BatchNorm statistics came from the checkpoint, not a fresh initialisation
    assert not torch.all(encoder.net.conv_block1.bn1.running_var == 1)


def test_damaged_weights_file_is_one_line_error(tmp_path):
    from claptune.errors import ClaptuneError
    from claptune.models.aisfx_cnn import EmbeddingNet, load_aisfx_weights, make_classifiers

    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(ClaptuneError, match="w.safetensors"):
        load_aisfx_weights(EmbeddingNet(), make_classifiers(), bad)
    with pytest.raises(ClaptuneError, match="missing"):
        load_aisfx_weights(EmbeddingNet(), make_classifiers(), tmp_path / "absent.safetensors")


def test_features_equal_aisfx_package():
    pytest.importorskip("aisfx", reason="aisfx not installed: scripts/setup.sh --with-reference")
    from aisfx.inference import get_path_modelWeights, load_bestModel

    from claptune.models.default import AisfxAudioEncoder

    state, datasets = torch.load(get_path_modelWeights(), map_location="cpu", weights_only=False)
    reference = load_bestModel(state, datasets, "cpu")
    encoder = AisfxAudioEncoder("max_mean_cls")
    encoder.load_packaged_weights()
    encoder.eval()
    waves = _waves()
    from claptune.models import fold

    with torch.no_grad():
        mel = encoder.log_mel(waves)
        fast = encoder(waves)  # BatchNorm folded, channels_last: equal within float rounding
        # the vendored network as written (conv then BatchNorm, NCHW) is aisfx's, bit for bit
        fold.ENABLED, encoder.net.channels_last = False, False
        try:
            ours = encoder(waves)
            as_written = encoder.net(mel)
        finally:
            fold.ENABLED, encoder.net.channels_last = True, True
        torch.testing.assert_close(fast, ours, rtol=1e-5, atol=1e-5)
        emb = reference.get_embedding(mel)  # aisfx: (B, frames, mels) -> (B, 512), max over time
        logits = [reference.fc[i](emb) for i in range(len(datasets))]
        torch.testing.assert_close(as_written, emb, rtol=0, atol=0)
        torch.testing.assert_close(ours[:, :512], emb, rtol=0, atol=0)
        torch.testing.assert_close(ours[:, 1024:], torch.cat(logits, dim=1), rtol=0, atol=0)
        # the mean over time (the default pooling's second half) from aisfx's own blocks
        x = mel.unsqueeze(1)
        net = reference.embedding_net
        for block, pool in (
            (net.conv_block1, (2, 2)),
            (net.conv_block2, (2, 2)),
            (net.conv_block3, (2, 2)),
            (net.conv_block4, (1, 1)),
        ):
            x = block(x, pool_size=pool, pool_type="max")
        torch.testing.assert_close(ours[:, 512:1024], x.mean(dim=3).mean(dim=2), rtol=0, atol=0)


def test_mel_front_end_equals_librosa():
    librosa = pytest.importorskip("librosa", reason="librosa not installed (optional reference)")
    from claptune.models.default import N_FFT, N_MELS, SAMPLE_RATE, SPEC_MAX, AisfxAudioEncoder

    # aisfx's librosa front end (aisfx/spectrogram/spectrogram_librosa.py), on one window
    wave = _waves(1)[0].numpy().astype(np.float64)
    wave = wave / np.abs(wave).max()
    spec = librosa.feature.melspectrogram(
        y=wave,
        sr=SAMPLE_RATE,
        n_mels=N_MELS,
        norm=1.0,
        fmin=0.0,
        fmax=SAMPLE_RATE / 2,
        htk=True,
        power=2.0,
        hop_length=1024,
        win_length=N_FFT,
        n_fft=N_FFT,
        pad_mode="constant",
    )
    expected = (np.log10(spec * 10000.0 + 1) / SPEC_MAX).T
    filters = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, htk=True, norm=1.0)
    from claptune.models.default import htk_mel_filters

    np.testing.assert_allclose(htk_mel_filters(), filters, rtol=1e-5, atol=1e-8)
    with torch.no_grad():
        ours = AisfxAudioEncoder().log_mel(_waves(1))[0].numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
