"""LAION-CLAP native checkpoints (``630k-audioset-best.pt``, ``music_speech_audioset_...pt``).

The original ``laion_clap`` package is not needed: a native checkpoint's state dict is renamed
into ``transformers.ClapModel`` (the renaming of transformers'
``convert_clap_original_pytorch_to_hf.py``: qkv split into query/key/value, ``sequential`` /
``_projection`` indices to named layers) and wrapped in claptune's Hugging Face backend
(``HFClapModel``), whose preprocessing is already deterministic (exact windows, repeat-padding,
``is_longer`` always False). Unlike the transformers script, which loads with ``strict=False``,
every tensor is accounted for: each renamed key must exist in ``ClapModel`` with the same shape,
every ``ClapModel`` weight must be provided, and the only tensors left behind are those
listed in ``UNUSED_AT_INFERENCE`` (the STFT/mel kernels the feature path recomputes, the
AudioSet classification head, and the ``audio_transform`` / ``text_transform`` MLPs that only
the training loss uses).

The architecture (HTSAT-tiny or -base, fused or not, RoBERTa size) is read off the tensor
shapes, so every published checkpoint loads without naming its variant:

    load_model("laion-clap-630k-audioset-best")      # cached or downloaded, checksummed
    load_model("path/to/630k-audioset-best.pt")      # a local copy
    LaionClapModel.from_checkpoint(path, tokenizer="roberta-base")

A fine-tuned student is saved by ``HFClapModel.save`` as a ``save_pretrained`` folder, which
``load_model`` reads back with the Hugging Face backend.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from claptune.errors import ClaptuneError
from claptune.models.checkpoints import (
    load_strict,
    peek_keys,
    read_state_dict,
)
from claptune.models.hf_clap import HFClapModel

# Ordered: applied one after the other to every key, as transformers' conversion does.
RENAMES = {
    "text_branch": "text_model",
    "audio_branch": "audio_model.audio_encoder",
    "attn": "attention.self",
    "self.proj": "output.dense",
    "attention.self_mask": "attn_mask",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "bn0": "batch_norm",
}

# Native tensors with no place in ClapModel, and why that is harmless for embeddings.
UNUSED_AT_INFERENCE = (
    "audio_branch.spectrogram_extractor.*",  # STFT kernels: the log-mel is computed by HFClapModel
    "audio_branch.logmel_extractor.*",  # the Slaney mel bank, likewise
    "audio_branch.head.*",
    "audio_branch.tscam_conv.*",  # AudioSet classification head
    "audio_transform.*",
    "text_transform.*",  # MLPs used only inside the training loss
    "audio_branch.layers.*.blocks.*.attn_mask",  # shifted-window masks, recomputed
    "text_branch.embeddings.position_ids",  # stored by transformers < 4.31, recomputed
)
# ClapModel buffers it computes itself.
DERIVED_IN_CLAPMODEL = (
    "text_model.embeddings.position_ids",
    "text_model.embeddings.token_type_ids",
)

SAMPLE_RATE = 48000
CLIP_SECONDS = 10
TEXT_LEN = 77  # CLAP_Module.tokenizer: padding to 77, truncation at 77

# The files laion_clap's load_ckpt downloads, in the Hub repository lukewys/laion_clap
# (fetched with hf_hub_download: the HF cache, HF_HUB_OFFLINE, revision pinning).
HUB_REPO = "lukewys/laion_clap"
RELEASES: dict[str, dict[str, Any]] = {
    "630k-best": {"filename": "630k-best.pt"},
    "630k-audioset-best": {"filename": "630k-audioset-best.pt"},
    "630k-fusion-best": {"filename": "630k-fusion-best.pt"},
    "630k-audioset-fusion-best": {"filename": "630k-audioset-fusion-best.pt"},
    "music-audioset": {"filename": "music_audioset_epoch_15_esc_90.14.pt"},
    "music-speech": {"filename": "music_speech_epoch_15_esc_89.25.pt"},
    "music-speech-audioset": {"filename": "music_speech_audioset_epoch_15_esc_89.98.pt"},
}


def rename_key(key: str) -> str:
    for old, new in RENAMES.items():
        if old in key:
            key = key.replace(old, new)
    if m := re.match(r".*sequential\.(\d+)\.", key):
        n = m.group(1)
        key = key.replace(f"sequential.{n}.", f"layers.{int(n) // 3}.linear.")
    elif m := re.match(r".*_projection\.(\d+)\.", key):
        n = int(m.group(1))
        key = key.replace(f"_projection.{n}.", f"_projection.linear{1 if n == 0 else 2}.")
    return key


def _unused(key: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(key, p) for p in UNUSED_AT_INFERENCE)


def convert_state_dict(native: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A native LAION-CLAP state dict renamed for ``transformers.ClapModel`` (unused tensors
    of ``UNUSED_AT_INFERENCE`` dropped)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in native.items():
        if _unused(key):
            continue
        new = rename_key(key)
        if new.endswith(("qkv.weight", "qkv.bias")):
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[new.replace("qkv", name)] = part
        else:
            out[new] = value
    return out


def is_laion_state_dict(keys: list[str]) -> bool:
    return any(k.startswith("audio_branch.") for k in keys) and any(
        k.startswith("text_branch.") for k in keys
    )


def config_from_state_dict(native: dict[str, torch.Tensor]):
    """The ``ClapConfig`` of a native checkpoint, read off its tensor shapes."""
    from transformers import ClapConfig

    def shape(key: str) -> tuple[int, ...]:
        if key not in native:
            raise ClaptuneError(f"not a LAION-CLAP HTSAT + RoBERTa checkpoint: no {key}")
        return tuple(native[key].shape)

    layers = sorted(
        {int(m.group(1)) for k in native if (m := re.match(r"audio_branch\.layers\.(\d+)\.", k))}
    )
    depths = [
        len(
            {
                m.group(1)
                for k in native
                if (m := re.match(rf"audio_branch\.layers\.{i}\.blocks\.(\d+)\.", k))
            }
        )
        for i in layers
    ]
    tables = [
        shape(f"audio_branch.layers.{i}.blocks.0.attn.relative_position_bias_table") for i in layers
    ]
    window = (int(round(tables[0][0] ** 0.5)) + 1) // 2
    patch = shape("audio_branch.patch_embed.proj.weight")  # (embed, in_ch, p, p)
    proj_a = shape("audio_projection.0.weight")  # (joint, hidden)
    text_layers = len(
        {m.group(1) for k in native if (m := re.match(r"text_branch\.encoder\.layer\.(\d+)\.", k))}
    )
    vocab, text_hidden = shape("text_branch.embeddings.word_embeddings.weight")
    audio = {
        "patch_embeds_hidden_size": patch[0],
        "patch_size": patch[2],
        "patch_stride": [patch[2], patch[3]],
        "depths": depths,
        "num_attention_heads": [t[1] for t in tables],
        "window_size": window,
        "hidden_size": proj_a[1],
        "projection_dim": proj_a[0],
        "num_mel_bins": shape("audio_branch.bn0.weight")[0],
        "spec_size": 256,
        "enable_fusion": any(".fusion_model." in k for k in native),
        "fusion_type": "aff_2d" if any(".fusion_model." in k for k in native) else None,
        "num_classes": shape("audio_branch.head.weight")[0]
        if "audio_branch.head.weight" in native
        else 527,
    }
    text = {
        "vocab_size": vocab,
        "hidden_size": text_hidden,
        "num_hidden_layers": text_layers,
        # roberta-base's, not recorded in the weights: 64-dim heads, LayerNorm eps 1e-5
        "num_attention_heads": max(1, text_hidden // 64),
        "layer_norm_eps": 1e-5,
        "intermediate_size": shape("text_branch.encoder.layer.0.intermediate.dense.weight")[0],
        "max_position_embeddings": shape("text_branch.embeddings.position_embeddings.weight")[0],
        "type_vocab_size": shape("text_branch.embeddings.token_type_embeddings.weight")[0],
        "projection_dim": shape("text_projection.0.weight")[0],
    }
    return ClapConfig(audio_config=audio, text_config=text, projection_dim=proj_a[0])


def laion_processor(tokenizer, enable_fusion: bool):
    """A ``ClapProcessor`` with LAION-CLAP's audio settings and 77-token captions."""
    from transformers import ClapFeatureExtractor, ClapProcessor

    fe = ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=SAMPLE_RATE,
        hop_length=480,
        max_length_s=CLIP_SECONDS,
        fft_window_size=1024,
        padding="repeatpad",
        frequency_min=50,
        frequency_max=14000,
        truncation="fusion" if enable_fusion else "rand_trunc",
    )
    tokenizer.model_max_length = TEXT_LEN
    return ClapProcessor(feature_extractor=fe, tokenizer=tokenizer)


class LaionClapModel(HFClapModel):
    """LAION-CLAP native checkpoints, converted on load into the Hugging Face backend."""

    backend = "hf_clap"  # what it saves is a save_pretrained folder; hf_clap reads it back

    @classmethod
    def from_state_dict(
        cls,
        native: dict[str, torch.Tensor],
        tokenizer,
        what: str = "LAION-CLAP checkpoint",
        source: str | None = None,
    ) -> HFClapModel:
        from transformers import ClapModel

        config = config_from_state_dict(native)
        model = ClapModel(config)
        load_strict(model, convert_state_dict(native), what=what, derivable=DERIVED_IN_CLAPMODEL)
        processor = laion_processor(tokenizer, config.audio_config.enable_fusion)
        return HFClapModel(model.eval(), processor, source=source).eval()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        tokenizer: Any = "roberta-base",
        device: str | torch.device | None = None,
    ) -> HFClapModel:
        """A native ``.pt`` checkpoint; ``tokenizer`` is a transformers tokenizer or a name /
        folder (default roberta-base, from the Hugging Face cache or hub)."""
        from claptune.models.msclap import _tokenizer

        native = read_state_dict(path)
        model = cls.from_state_dict(
            native, _tokenizer(tokenizer), what=f"LAION-CLAP checkpoint {path}", source=str(path)
        )
        return model.to(device) if device is not None else model

    @classmethod
    def from_source(
        cls,
        source: str,
        device: str | torch.device | None = None,
        weights: str | Path | None = None,
        tokenizer: Any = "roberta-base",
        revision: str | None = None,
        **kwargs: Any,
    ) -> HFClapModel:
        """``source`` is a release name of ``RELEASES``; weights from ``weights``, else from the
        Hugging Face cache or Hub (``revision`` of lukewys/laion_clap; default main)."""
        if source not in RELEASES:
            raise ClaptuneError(
                f"unknown LAION-CLAP release {source!r}: use one of {list(RELEASES)}"
            )
        release = RELEASES[source]
        if weights is None:
            from claptune.hub import hub_download

            weights = hub_download(HUB_REPO, release["filename"], revision=revision)
        return cls.from_checkpoint(weights, tokenizer=tokenizer, device=device)

    @classmethod
    def recognizes(cls, directory: Path) -> bool:
        """A native checkpoint file (a folder is the Hugging Face backend's business)."""
        keys = peek_keys(directory) if Path(directory).is_file() else None
        return bool(keys) and is_laion_state_dict(keys)

    @classmethod
    def load(
        cls, directory: str | Path, device: str | torch.device | None = None, **kwargs: Any
    ) -> HFClapModel:
        path = Path(directory)
        if path.is_file():
            return cls.from_checkpoint(path, device=device, **kwargs)
        return HFClapModel.load(path, device=device)
