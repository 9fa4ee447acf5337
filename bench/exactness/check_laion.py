"""Check claptune's LAION-CLAP conversion against the reference outputs of ref_laion.py.

Runs in claptune's own environment:

    python check_laion.py /tmp/exactness/laion-htsat-tiny [--json out.json]

Converts the laion_clap-written checkpoint ({"state_dict": {"module.…"}}) strictly into
``transformers.ClapModel`` and compares token ids and the audio and text embeddings of
``HFClapModel`` (its own deterministic log-mel and windowing) with ``CLAP_Module``'s.
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

    from transformers import AutoTokenizer

    from claptune.audio import pad_window
    from claptune.models.laion_clap import LaionClapModel

    ref = np.load(args.ref_dir / "reference.npz")
    meta = json.loads((args.ref_dir / "reference.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(args.ref_dir / meta["text_dir"])
    model = LaionClapModel.from_checkpoint(args.ref_dir / "laion_weights.pt", tokenizer=tokenizer)
    with torch.no_grad():
        tokens = model.processor.tokenizer(
            meta["texts"], padding="max_length", truncation=True, max_length=77, return_tensors="pt"
        )["input_ids"]
        padded = pad_window(ref["short"], model.clip_samples, model.padding)
        audio = np.concatenate([ref["audio"], padded[None]])
        audio_emb = model.audio_embeddings(torch.from_numpy(audio)).numpy()
        text_emb = model.text_embeddings(meta["texts"]).numpy()
    result = {
        "family": f"laion-clap-{meta['amodel']}{'-fused' if meta['enable_fusion'] else ''}",
        "token_ids_equal": bool(np.array_equal(tokens.numpy(), ref["input_ids"])),
        "audio_emb_max_abs": float(np.abs(audio_emb - ref["audio_emb"]).max()),
        "text_emb_max_abs": float(np.abs(text_emb - ref["text_emb"]).max()),
        "audio_emb_min_pairwise_dist": float(
            min(
                np.linalg.norm(audio_emb[i] - audio_emb[j])
                for i in range(len(audio_emb))
                for j in range(i)
            )
        ),
        "logit_scale_a_abs": float(
            abs(model.model.logit_scale_a.item() - float(ref["logit_scale_a"]))
        ),
        "strict_load": True,
        "n_audio": int(audio.shape[0]),
        "n_text": len(meta["texts"]),
        "reference": {k: meta[k] for k in ("laion_clap", "torch")},
    }
    result["pass"] = (
        result["token_ids_equal"]
        and max(result["audio_emb_max_abs"], result["text_emb_max_abs"]) <= TOL
    )
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
