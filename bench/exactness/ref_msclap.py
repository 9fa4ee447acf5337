"""Reference outputs of the original ``msclap`` package on a small random MS-CLAP.

Runs INSIDE the separate reference venv (msclap installed from PyPI; see run_exactness.sh):

    python ref_msclap.py --version 2022 --out /tmp/exactness/msclap-2022

The audio encoder is the published architecture (msclap hard-codes CNN14's and HTSAT's sizes);
the text encoder, which msclap fetches by name (bert-base-uncased, gpt2), is a small random
BERT / GPT-2 saved to a local folder with a small tokenizer, and msclap loads it from there with
its own ``AutoModel.from_pretrained`` call. Normalisation layers get random statistics so that
eval-mode batch norm is not the identity. Writes the checkpoint in the published layout
({"model": state_dict}), the fixed inputs, msclap's token ids and embeddings.
"""

import argparse
import json
import sys
from pathlib import Path

import _placeholder_modules  # noqa: F401  (must precede msclap)
import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from tiny_text import make_tiny_text_model  # noqa: E402

TEXTS = ["a dog barks twice", "rain on a tin roof", "a car horn, then silence!", "birds"]


def randomize_norms(module: torch.nn.Module, gen: torch.Generator) -> None:
    frozen = ("spectrogram_extractor", "logmel_extractor")
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if any(f in name for f in frozen) or not t.is_floating_point():
                continue
            if "running_var" in name:
                t.mul_(torch.rand(t.shape, generator=gen) + 0.5)
            elif "running_mean" in name:
                t.add_(0.1 * torch.randn(t.shape, generator=gen))
            elif any(k in name for k in ("bn", "norm", "LayerNorm", "ln_")):
                if name.endswith("weight"):
                    t.mul_(torch.rand(t.shape, generator=gen) + 0.5)
                else:
                    t.add_(0.1 * torch.randn(t.shape, generator=gen))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", choices=["2022", "2023"], required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import msclap
    from msclap.CLAPWrapper import CLAPWrapper
    from msclap.models.clap import CLAP

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = yaml.safe_load(
        (Path(msclap.__file__).parent / "configs" / f"config_{args.version}.yml").read_text()
    )
    kind = "bert" if args.version == "2022" else "gpt2"
    # msclap picks its text pooling by substrings of the model name: keep "bert" / "gpt" in it
    text_dir = args.out / f"tiny-{kind}"
    text_hidden = make_tiny_text_model(kind, text_dir)
    d_proj = 64  # the published 1024 would only make the files bigger

    clap = CLAP(
        audioenc_name=cfg["audioenc_name"],
        sample_rate=cfg["sampling_rate"],
        window_size=cfg["window_size"],
        hop_size=cfg["hop_size"],
        mel_bins=cfg["mel_bins"],
        fmin=cfg["fmin"],
        fmax=cfg["fmax"],
        classes_num=cfg["num_classes"],
        out_emb=cfg["out_emb"],
        text_model=str(text_dir),
        transformer_embed_dim=text_hidden,
        d_proj=d_proj,
    )
    randomize_norms(clap, gen)
    with torch.no_grad():
        clap.logit_scale.fill_(2.5)
    clap.eval()

    # CLAPWrapper without its __init__ (which downloads the published weights): the wrapper's
    # own preprocessing and embedding methods run on this model.
    from transformers import AutoTokenizer

    wrapper = CLAPWrapper.__new__(CLAPWrapper)
    wrapper.args = argparse.Namespace(**{**cfg, "text_model": str(text_dir)})
    wrapper.use_cuda = False
    wrapper.clap = clap
    wrapper.tokenizer = AutoTokenizer.from_pretrained(str(text_dir))
    if kind == "gpt2":
        wrapper.tokenizer.add_special_tokens({"pad_token": "!"})
        wrapper.token_keys = ["input_ids", "attention_mask"]
    else:
        wrapper.token_keys = ["input_ids", "token_type_ids", "attention_mask"]
    import re

    wrapper.np_str_obj_array_pattern = re.compile(r"[SaUO]")
    wrapper.default_collate_err_msg_format = "default_collate: {}"

    sr, duration = cfg["sampling_rate"], cfg["duration"]
    clip = sr * duration
    rng = np.random.default_rng(0)
    t = np.arange(clip) / sr
    audio = np.stack(
        [0.1 * rng.standard_normal(clip), 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)]
    ).astype(np.float32)
    # the wrapper's pad/crop of a short clip (its file reader replaced by this array)
    short = (0.2 * rng.standard_normal(int(sr * 1.3))).astype(np.float32)
    wrapper.read_audio = lambda path, resample=False: (torch.tensor(short)[None], sr)
    short_padded = wrapper.load_audio_into_tensor("short", duration, resample=False).numpy()

    with torch.no_grad():
        tokens = wrapper.preprocess_text(TEXTS)
        text_emb = wrapper._get_text_embeddings(tokens).numpy()
        audio_in = torch.tensor(np.concatenate([audio, short_padded[None]]))[:, None, :]
        audio_emb = wrapper._get_audio_embeddings(audio_in).numpy()

    torch.save({"model": clap.state_dict()}, args.out / "clap_weights.pth")
    np.savez(
        args.out / "reference.npz",
        audio=audio,
        short=short,
        short_padded=short_padded,
        audio_emb=audio_emb,
        text_emb=text_emb,
        input_ids=tokens["input_ids"].numpy(),
        logit_scale=np.float32(clap.logit_scale.item()),
    )
    (args.out / "reference.json").write_text(
        json.dumps(
            {
                "version": args.version,
                "texts": TEXTS,
                "config": cfg,
                "d_proj": d_proj,
                "text_dir": text_dir.name,
                "transformer_embed_dim": text_hidden,
                "msclap": msclap.__version__ if hasattr(msclap, "__version__") else "installed",
                "torch": torch.__version__,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
