"""Microsoft CLAP (MS-CLAP 2022 and 2023) as a claptune backend, without the ``msclap`` package.

MS-CLAP 2022 is the base model of the paper claptune implements: CNN14 on 44.1 kHz log-mel
(5 s windows), BERT-base-uncased ([CLS]), 1024-d projections. MS-CLAP 2023 swaps in HTSAT
(7 s windows, mel up to 8 kHz) and GPT-2 (last token). The networks live in
``claptune.models.msclap_nets`` under the original parameter names, so the published files
load strictly:

    load_model("msclap-2022")                       # CLAP_weights_2022.pth via the HF cache
    MSClapModel.from_checkpoint("CLAP_weights_2022.pth", version="2022")
    load_model("runs/student")                      # a folder written by save()

Preprocessing is the original's minus its randomness: audio at 44.1 kHz, a clip shorter than a
window repeated and cut to length (``padding="repeat"``), a longer one embedded window by window
(``claptune.audio.windows``) instead of from one random crop; captions tokenised to exactly
``text_len`` tokens as ``CLAPWrapper.preprocess_text`` does (GPT-2 captions get
" <|endoftext|>" appended and "!" as pad), truncated when longer. Embeddings are the
projections L2-normalised, as ``CLAPWrapper.compute_similarity`` normalises them.

A saved model is a folder: ``claptune_model.json``, ``msclap_config.json``, ``model.safetensors``
(the original names, so ``msclap`` could read it back too) and the tokenizer files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from claptune.errors import ClaptuneError, first_line
from claptune.models.base import MODEL_MARKER, AudioTextModel
from claptune.models.checkpoints import (
    check_config_size,
    check_tokenizer,
    fingerprint,
    load_strict,
    needs_code_to_unpickle,
    peek_keys,
    read_json,
    read_state_dict,
)
from claptune.models.msclap_frontend import MSClapConfig
from claptune.models.msclap_nets import MSClapNet

CONFIG_FILE = "msclap_config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_LOGIT_SCALE = 100.0

# Buffers that transformers versions before 4.31 stored in the checkpoint and newer ones
# recompute; the published 2022/2023 files may carry them.
DERIVABLE = (
    "caption_encoder.base.embeddings.position_ids",
    "caption_encoder.base.h.*.attn.bias",
    "caption_encoder.base.h.*.attn.masked_bias",
    # HTSAT's shifted-window masks, which ClapAudioEncoder recomputes
    "audio_encoder.base.htsat.encoder.layers.*.blocks.*.attn_mask",
)


def published_config(version: str) -> MSClapConfig:
    """The architecture of a published MS-CLAP release (msclap's config_<version>.yml)."""
    if version == "2022":
        from transformers import BertConfig

        return MSClapConfig(
            audio_encoder="cnn14",
            duration=5.0,
            fmax=14000.0,
            out_emb=2048,
            text_encoder="bert",
            text_config=BertConfig().to_dict(),
            text_len=100,
        )
    if version == "2023":
        from transformers import GPT2Config

        from claptune.models.msclap_htsat import published_htsat_config

        return MSClapConfig(
            audio_encoder="htsat",
            duration=7.0,
            fmax=8000.0,
            out_emb=768,
            text_encoder="gpt2",
            text_config=GPT2Config().to_dict(),
            text_len=77,
            htsat_config=published_htsat_config(),
        )
    raise ClaptuneError(f"unknown MS-CLAP version {version!r}: use 2022 or 2023")


# Published files on the Hugging Face Hub (fetched with hf_hub_download: the HF cache,
# HF_HUB_OFFLINE, revision pinning) and the tokenizers they were trained with.
HUB_REPO = "microsoft/msclap"
RELEASES: dict[str, dict[str, str]] = {
    "2022": {
        "repo_id": HUB_REPO,
        "filename": "CLAP_weights_2022.pth",
        "tokenizer": "bert-base-uncased",
    },
    "2023": {"repo_id": HUB_REPO, "filename": "CLAP_weights_2023.pth", "tokenizer": "gpt2"},
}


def prepare_tokenizer(tokenizer, config: MSClapConfig):
    """Give a GPT-2 tokenizer the pad token MS-CLAP trained with ("!", id 0)."""
    if config.text_encoder == "gpt2":
        tokenizer.add_special_tokens({"pad_token": "!"})
    return tokenizer


class MSClapModel(AudioTextModel):
    """An ``MSClapNet`` and its tokenizer behind the claptune interface."""

    backend = "msclap"
    supports_feature_cache = True

    def __init__(self, net: MSClapNet, tokenizer, source: str | None = None):
        super().__init__()
        self.net = net
        self.config = net.config
        self.tokenizer = tokenizer
        self.source = source
        self.sample_rate = self.config.sample_rate
        self.clip_samples = self.config.clip_samples
        self.padding = "repeat"  # msclap repeats a short clip and cuts it to length

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_state_dict(
        cls,
        config: MSClapConfig,
        state_dict: dict[str, torch.Tensor],
        tokenizer,
        what: str = "MS-CLAP checkpoint",
        source: str | None = None,
    ) -> MSClapModel:
        net = MSClapNet(config)
        if config.audio_encoder == "htsat":
            from claptune.models.msclap_htsat import from_original_names

            state_dict = from_original_names(state_dict)
        load_strict(net, state_dict, what=what, derivable=DERIVABLE)
        return cls(net, prepare_tokenizer(tokenizer, config), source=source).eval()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        version: str = "2022",
        tokenizer=None,
        device: str | torch.device | None = None,
    ) -> MSClapModel:
        """A published ``CLAP_weights_<version>.pth`` (or any state dict of that architecture).

        ``tokenizer``: a transformers tokenizer or a name/folder; default the one the release
        was trained with, from the Hugging Face cache or hub.
        """
        config = published_config(version)
        tokenizer = _tokenizer(tokenizer or RELEASES[version]["tokenizer"])
        model = cls.from_state_dict(
            config,
            read_state_dict(path),
            tokenizer,
            what=f"MS-CLAP {version} checkpoint {path}",
            source=str(path),
        )
        return model.to(device) if device is not None else model

    @classmethod
    def from_source(
        cls,
        source: str,
        device: str | torch.device | None = None,
        weights: str | Path | None = None,
        tokenizer=None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> MSClapModel:
        """``source`` is a release ("2022", "2023"); weights come from ``weights`` if given,
        else from the Hugging Face cache or Hub (``revision``: a branch, tag or commit of
        microsoft/msclap; default main). ``tokenizer``: see ``from_checkpoint``."""
        if source not in RELEASES:
            raise ClaptuneError(f"unknown MS-CLAP release {source!r}: use one of {list(RELEASES)}")
        release = RELEASES[source]
        if weights is None:
            from claptune.hub import hub_download

            weights = hub_download(release["repo_id"], release["filename"], revision=revision)
        return cls.from_checkpoint(weights, version=source, tokenizer=tokenizer, device=device)

    @staticmethod
    def checkpoint_version(path: str | Path) -> str | None:
        """The MS-CLAP release ("2022", "2023") whose state dict ``path`` holds, else None."""
        keys = peek_keys(path)
        if not keys or not any(k.startswith("caption_encoder.base.") for k in keys):
            return None
        if any(k.startswith("audio_encoder.base.htsat.") for k in keys):
            return "2023"
        if any(k.startswith("audio_encoder.base.conv_block1.") for k in keys):
            return "2022"
        return None

    @classmethod
    def recognizes(cls, directory: Path) -> bool:
        """A folder written by ``save``, or a published ``CLAP_weights_*.pth`` file. Also a
        pickle that needs code to unpickle, so that ``load`` refuses it with the reason."""
        directory = Path(directory)
        if directory.is_file():
            return cls.checkpoint_version(directory) is not None or needs_code_to_unpickle(
                directory
            )
        return (directory / CONFIG_FILE).is_file()

    @classmethod
    def load(
        cls, directory: str | Path, device: str | torch.device | None = None, **kwargs: Any
    ) -> MSClapModel:
        """Read a folder written by ``save`` (or a published weights file)."""
        from transformers import AutoTokenizer

        directory = Path(directory)
        if directory.is_file():
            version = cls.checkpoint_version(directory)
            if version is None:
                read_state_dict(directory)  # raises why the file cannot be read
                raise ClaptuneError(f"{directory} is not an MS-CLAP checkpoint")
            return cls.from_checkpoint(directory, version=version, device=device)
        if not (directory / CONFIG_FILE).is_file():
            raise ClaptuneError(f"{directory} has no {CONFIG_FILE}")
        config = _read_config(directory / CONFIG_FILE)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
        except Exception as err:  # noqa: BLE001 - OSError, ValueError ("install sentencepiece")
            raise ClaptuneError(
                f"cannot load the tokenizer of MS-CLAP model {directory}: {first_line(err)}"
            ) from None
        check_tokenizer(tokenizer, f"MS-CLAP model {directory}")
        model = cls.from_state_dict(
            config,
            read_state_dict(directory / WEIGHTS_FILE),
            tokenizer,
            what=f"MS-CLAP model {directory}",
            source=str(directory),
        )
        return model.to(device) if device is not None else model

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        if self.config.audio_encoder == "htsat":
            from claptune.models.msclap_htsat import to_original_names

            state = to_original_names(state)  # the published layout, as for 2022
        save_file(state, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=1) + "\n")
        self.tokenizer.save_pretrained(str(directory))
        (directory / MODEL_MARKER).write_text(json.dumps({"backend": self.backend}) + "\n")
        from claptune.card import base_card

        base_card(directory, self)  # the Hub's model card; commands that know more rewrite it
        return directory

    # -- audio ---------------------------------------------------------------------------------
    @property
    def _device(self) -> torch.device:
        return self.net.logit_scale.device

    def audio_features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Audio-encoder output before projection: (B, clip_samples) -> (B, out_emb)."""
        if waveforms.ndim != 2 or waveforms.shape[1] != self.clip_samples:
            raise ValueError(
                f"expected waveforms of shape (B, {self.clip_samples}), "
                f"got {tuple(waveforms.shape)}"
            )
        return self.net.audio_encoder.base(waveforms.float().to(self._device))

    def audio_head(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.audio_encoder.projection(features), dim=-1)

    def audio_embeddings(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.audio_head(self.audio_features(waveforms))

    # -- text ----------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token tensors (B, text_len) as ``CLAPWrapper.preprocess_text`` builds them."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        keys = ["input_ids", "attention_mask"]
        if self.config.text_encoder == "gpt2":
            texts = [t + " <|endoftext|>" for t in texts]
        else:
            keys.append("token_type_ids")
        tokens = self.tokenizer(
            texts,
            max_length=self.config.text_len,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
        )
        return {k: tokens[k].to(self._device) for k in keys}

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled text-encoder output before projection: B strings -> (B, embed_dim)."""
        return self.net.caption_encoder.features(self.tokenize(texts))

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.caption_encoder.projection(features), dim=-1)

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        return self.text_head(self.text_features(texts))

    # -- training ------------------------------------------------------------------------------
    @property
    def logit_scale(self) -> torch.Tensor:
        """exp(``logit_scale``) capped at 100."""
        return self.net.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def projection_parameters(self) -> list[nn.Parameter]:
        return [
            *self.net.audio_encoder.projection.parameters(),
            *self.net.caption_encoder.projection.parameters(),
            self.net.logit_scale,
        ]

    def add_lora(
        self, rank: int = 8, alpha: int = 16, target_modules: Sequence[str] | None = None
    ) -> None:
        """LoRA adapters (peft) on both encoders: the attention query/value projections of
        BERT and HTSAT, GPT-2's fused ``c_attn``, and CNN14's ``fc1`` (its only linear layer
        besides the unused AudioSet head; its convolutions stay frozen)."""
        from peft import LoraConfig, inject_adapter_in_model

        if target_modules is None:
            audio = ["fc1"] if self.config.audio_encoder == "cnn14" else []
            text = ["query", "value"] if self.config.text_encoder == "bert" else ["c_attn"]
            target_modules = (
                audio + text + (["query", "value"] if self.config.audio_encoder == "htsat" else [])
            )
        lora = LoraConfig(r=rank, lora_alpha=alpha, target_modules=sorted(set(target_modules)))
        inject_adapter_in_model(lora, self.net)

    # -- identity ------------------------------------------------------------------------------
    def preprocessing(self) -> dict[str, Any]:
        c = self.config
        return {
            "sample_rate": c.sample_rate,
            "clip_samples": self.clip_samples,
            "padding": self.padding,
            "long_clips": "mean of windows, renormalised",
            "n_fft": c.window_size,
            "hop_length": c.hop_size,
            "n_mels": c.mel_bins,
            "f_min": c.fmin,
            "f_max": c.fmax,
            "text_len": c.text_len,
            "resampler": "soxr HQ",
            "downmix": "mean",
        }

    def identity(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "weights_sha256": fingerprint(self.net.state_dict()),
            "preprocessing": self.preprocessing(),
        }


def _read_config(path: Path) -> MSClapConfig:
    """The folder's config, checked: broken JSON, unknown keys, invalid values and absurd sizes
    are one-line ``ClaptuneError``s naming the file, raised before any tensor is made."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ClaptuneError(f"{path} is not an MS-CLAP config (a JSON object)")
    try:
        config = MSClapConfig.from_dict(data)
    except (ValueError, TypeError) as err:
        raise ClaptuneError(f"{path}: {first_line(err)}") from None
    check_config_size(config.to_dict(), str(path))
    return config


def _tokenizer(spec):
    if not isinstance(spec, (str, Path)):
        return spec
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(spec))
    except (OSError, ValueError, ImportError) as err:  # ValueError: "install sentencepiece"
        raise ClaptuneError(
            f"cannot load tokenizer {spec!r} (it comes from the Hugging Face hub "
            f"or its local cache): {str(err).splitlines()[0]}"
        ) from None


__all__ = ["MSClapModel", "MSClapConfig", "published_config", "RELEASES"]
