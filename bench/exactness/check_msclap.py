"""Check claptune's native MS-CLAP against the reference outputs of ref_msclap.py.

Runs in claptune's own environment:

    python check_msclap.py /tmp/exactness/msclap-2022 [--json out.json]

Loads the msclap-written checkpoint strictly into ``MSClapModel`` and compares token ids, the
repeat-padding of a short clip, and the (L2-normalised) audio and text embeddings.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

TOL = 1e-5


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ref_dir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from transformers import AutoConfig, AutoTokenizer

    from claptune.audio import pad_window
    from claptune.models.checkpoints import read_state_dict
    from claptune.models.msclap import MSClapModel, published_config
    from claptune.models.msclap_nets import MSClapNet

    ref = np.load(args.ref_dir / "reference.npz")
    meta = json.loads((args.ref_dir / "reference.json").read_text())
    text_dir = args.ref_dir / meta["text_dir"]
    config = published_config(meta["version"])
    config.text_config = AutoConfig.from_pretrained(text_dir).to_dict()
    config.transformer_embed_dim = meta["transformer_embed_dim"]
    config.d_proj = meta["d_proj"]
    state = read_state_dict(args.ref_dir / "clap_weights.pth")
    model = MSClapModel.from_state_dict(config, state, AutoTokenizer.from_pretrained(text_dir))
    # claptune's own construction of the frozen front end (DFT kernels, mel bank), used when it
    # builds a model from scratch, against the tensors msclap/torchlibrosa built
    fresh = MSClapNet(config).state_dict()
    front = [k for k in fresh if "spectrogram_extractor" in k or "logmel_extractor" in k]
    front_end_max_abs = max(float((fresh[k] - state[k]).abs().max()) for k in front)
    with torch.no_grad():
        tokens = model.tokenize(meta["texts"])["input_ids"].numpy()
        padded = pad_window(ref["short"], model.clip_samples, model.padding)
        audio = np.concatenate([ref["audio"], padded[None]])
        audio_emb = model.audio_embeddings(torch.from_numpy(audio)).numpy()
        text_emb = model.text_embeddings(meta["texts"]).numpy()

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    result = {
        "family": f"msclap-{meta['version']}",
        "token_ids_equal": bool(np.array_equal(tokens, ref["input_ids"])),
        "short_clip_padding_max_abs": float(np.abs(padded - ref["short_padded"]).max()),
        "audio_emb_max_abs": float(np.abs(audio_emb - unit(ref["audio_emb"])).max()),
        "text_emb_max_abs": float(np.abs(text_emb - unit(ref["text_emb"])).max()),
        "front_end_init_max_abs": front_end_max_abs,
        # distinct inputs give distinct embeddings (the comparison is not of constants)
        "audio_emb_min_pairwise_dist": float(
            min(
                np.linalg.norm(audio_emb[i] - audio_emb[j])
                for i in range(len(audio_emb))
                for j in range(i)
            )
        ),
        "logit_scale_abs": float(abs(model.net.logit_scale.item() - float(ref["logit_scale"]))),
        "strict_load": True,
        "n_audio": int(audio.shape[0]),
        "n_text": len(meta["texts"]),
        "reference": {k: meta[k] for k in ("msclap", "torch") if k in meta},
    }
    result["pass"] = (
        result["token_ids_equal"]
        and result["short_clip_padding_max_abs"] == 0
        and max(result["audio_emb_max_abs"], result["text_emb_max_abs"]) <= TOL
    )
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
