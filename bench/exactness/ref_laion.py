"""Reference outputs of the original ``laion_clap`` package on a small random LAION-CLAP.

Runs INSIDE the separate reference venv (laion-clap installed from PyPI; see run_exactness.sh):

    python ref_laion.py --amodel HTSAT-tiny --out /tmp/exactness/laion-htsat-tiny

The audio branch is the published HTSAT architecture (laion_clap fixes its sizes by name); the
text branch, which laion_clap downloads by name (``RobertaModel.from_pretrained('roberta-base')``
and RoBERTa/BERT/BART tokenizers at import), is a small random RoBERTa with the width its
projection expects (768) and a small byte-level BPE tokenizer, served from a local folder by
redirecting those ``from_pretrained`` calls. Writes the checkpoint in the published layout
({"state_dict": ..., with "module." prefixes and position_ids, as the released .pt files}),
the fixed inputs, the token ids and ``CLAP_Module``'s own embeddings.
"""

import argparse
import json
import sys
from pathlib import Path

import _placeholder_modules  # noqa: F401  (must precede laion_clap)
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ref_msclap import randomize_norms  # noqa: E402
from tiny_text import make_tiny_text_model  # noqa: E402

TEXTS = ["a dog barks twice", "rain on a tin roof", "a car horn, then silence!", "birds"]


def redirect_hub_downloads(text_dir: Path) -> None:
    """Point laion_clap's by-name downloads at the local tiny RoBERTa (no network here)."""
    import transformers

    for cls_name in ("RobertaModel",):
        cls = getattr(transformers, cls_name)
        original = cls.from_pretrained.__func__

        def from_local(klass, name, *args, _orig=original, **kwargs):
            return _orig(klass, str(text_dir), *args, **kwargs)

        cls.from_pretrained = classmethod(from_local)
    for cls_name in ("RobertaTokenizer", "BertTokenizer", "BartTokenizer"):
        cls = getattr(transformers, cls_name)

        def tok_local(klass, name, *args, **kwargs):
            return transformers.AutoTokenizer.from_pretrained(str(text_dir))

        cls.from_pretrained = classmethod(tok_local)


def librosa_get_mel(audio_data, audio_cfg):
    """``laion_clap.training.data.get_mel`` computed with librosa, as the comment in that function
    says it aligns ("Align to librosa": htk mel scale, no filter norm, power 2, dB without
    top_db). The original calls torchaudio, which cannot be installed next to this torch."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=audio_data.numpy(),
        sr=audio_cfg["sample_rate"],
        n_fft=audio_cfg["window_size"],
        hop_length=audio_cfg["hop_size"],
        win_length=audio_cfg["window_size"],
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=audio_cfg["mel_bins"],
        norm=None,
        htk=True,
        fmin=audio_cfg["fmin"],
        fmax=audio_cfg["fmax"],
    )
    return torch.tensor(10.0 * np.log10(np.maximum(mel, 1e-10)), dtype=torch.float32).T


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--amodel", default="HTSAT-tiny", choices=["HTSAT-tiny", "HTSAT-base"])
    ap.add_argument("--fusion", action="store_true", help="a fused checkpoint")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    text_dir = args.out / "tiny-roberta"
    make_tiny_text_model("roberta", text_dir, hidden=768)
    redirect_hub_downloads(text_dir)

    import laion_clap
    import laion_clap.hook

    laion_clap.hook.get_audio_features.__globals__["get_mel"] = librosa_get_mel

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    module = laion_clap.CLAP_Module(
        enable_fusion=args.fusion, amodel=args.amodel, tmodel="roberta", device="cpu"
    )
    model = module.model
    randomize_norms(model, gen)
    with torch.no_grad():
        model.logit_scale_a.fill_(2.7)
        model.logit_scale_t.fill_(2.2)
    model.eval()

    clip = module.model_cfg["audio_cfg"]["clip_samples"]
    sr = module.model_cfg["audio_cfg"]["sample_rate"]
    rng = np.random.default_rng(0)
    t = np.arange(clip) / sr
    audio = np.stack(
        [0.1 * rng.standard_normal(clip), 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)]
    )
    short = 0.2 * rng.standard_normal(int(sr * 3.3))
    # CLAP_Module quantises audio to int16 levels first; use values already on that grid so the
    # comparison is of the model, not of the quantisation (claptune does not quantise)
    audio = (np.round(audio * 32767) / 32767).astype(np.float32)
    short = (np.round(short * 32767) / 32767).astype(np.float32)

    with torch.no_grad():
        audio_emb = np.concatenate(
            [
                module.get_audio_embedding_from_data(audio),
                module.get_audio_embedding_from_data(short[None]),
            ]
        )
        text_emb = module.get_text_embedding(TEXTS)
        tokens = module.tokenizer(TEXTS)

    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(130)[None]
    torch.save({"epoch": 1, "state_dict": state}, args.out / "laion_weights.pt")
    np.savez(
        args.out / "reference.npz",
        audio=audio,
        short=short,
        audio_emb=audio_emb,
        text_emb=text_emb,
        input_ids=tokens["input_ids"].numpy(),
        logit_scale_a=np.float32(model.logit_scale_a.item()),
    )
    (args.out / "reference.json").write_text(
        json.dumps(
            {
                "amodel": args.amodel,
                "enable_fusion": args.fusion,
                "texts": TEXTS,
                "audio_cfg": module.model_cfg["audio_cfg"],
                "text_dir": text_dir.name,
                "laion_clap": "1.1.7",
                "torch": torch.__version__,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
