"""Small random text encoders with real tokenizers, saved with ``save_pretrained``.

They stand in for the encoders the original packages fetch by name (bert-base-uncased, gpt2,
roberta-base), which cannot be downloaded here. The tokenizers are genuine WordPiece /
byte-level BPE tokenizers with tiny vocabularies; the GPT-2 one keeps GPT-2's byte order, so
"!" is id 0 as MS-CLAP 2023's pooling assumes. Used by the reference scripts (reference venv)
and by claptune's tests.
"""

from __future__ import annotations

from pathlib import Path

WORDS = [
    "a",
    "dog",
    "bark",
    "##s",
    "rain",
    "on",
    "tin",
    "roof",
    "car",
    "horn",
    "then",
    "silence",
    "bird",
    "twice",
    "the",
    "sound",
    "of",
    "this",
    "is",
    "cat",
    "siren",
    ",",
    "!",
    ".",
    "'",
]
GPT2_MERGES = [("Ġ", "a"), ("Ġ", "d"), ("o", "g"), ("Ġd", "og"), ("i", "n"), ("Ġ", "r")]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (its vocabulary's first 256 ids)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def make_tiny_text_model(kind: str, out: Path, hidden: int = 32, seed: int = 0) -> int:
    """Write a random ``kind`` ("bert", "gpt2", "roberta") model + tokenizer to ``out``;
    return its hidden size."""
    import torch

    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "bert":
        from transformers import BertConfig, BertModel, BertTokenizerFast

        vocab = list(
            dict.fromkeys(
                [
                    "[PAD]",
                    "[UNK]",
                    "[CLS]",
                    "[SEP]",
                    "[MASK]",
                    *WORDS,
                    *"abcdefghijklmnopqrstuvwxyz0123456789",
                ]
            )
        )
        (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
        BertTokenizerFast(
            vocab_file=str(out / "vocab.txt"), do_lower_case=True, model_max_length=512
        ).save_pretrained(out)
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=128,
        )
        BertModel(config).eval().save_pretrained(out)
        return hidden
    if kind in ("gpt2", "roberta"):
        byte_chars = list(bytes_to_unicode().values())
        merges = GPT2_MERGES
        vocab_list = byte_chars + ["".join(m) for m in merges]
        if kind == "roberta":
            vocab_list = ["<s>", "<pad>", "</s>", "<unk>", *vocab_list, "<mask>"]
        else:
            vocab_list = [*vocab_list, "<|endoftext|>"]
        vocab = {tok: i for i, tok in enumerate(vocab_list)}
        tokenizer = _byte_level_bpe(vocab, merges, roberta=kind == "roberta")
        if kind == "gpt2":
            from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

            GPT2TokenizerFast(
                tokenizer_object=tokenizer,
                bos_token="<|endoftext|>",
                eos_token="<|endoftext|>",
                unk_token="<|endoftext|>",
                model_max_length=1024,
            ).save_pretrained(out)
            eot = vocab["<|endoftext|>"]
            config = GPT2Config(
                vocab_size=len(vocab),
                n_positions=128,
                n_embd=hidden,
                n_layer=2,
                n_head=2,
                bos_token_id=eot,
                eos_token_id=eot,
            )
            GPT2Model(config).eval().save_pretrained(out)
            return hidden
        from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

        RobertaTokenizerFast(
            tokenizer_object=tokenizer,
            bos_token="<s>",
            eos_token="</s>",
            sep_token="</s>",
            cls_token="<s>",
            unk_token="<unk>",
            pad_token="<pad>",
            mask_token="<mask>",
            model_max_length=512,
        ).save_pretrained(out)
        # heads of 64 dims and LayerNorm eps 1e-5, as roberta-base: neither can be read off
        # the weights, and LAION-CLAP's text branch is always roberta-base
        config = RobertaConfig(
            vocab_size=len(vocab),
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=max(1, hidden // 64),
            intermediate_size=37,
            max_position_embeddings=130,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            layer_norm_eps=1e-5,
        )
        RobertaModel(config).eval().save_pretrained(out)
        return hidden
    raise ValueError(f"unknown text model kind {kind!r}")


def _byte_level_bpe(vocab: dict[str, int], merges: list[tuple[str, str]], roberta: bool):
    """A GPT-2 / RoBERTa style tokenizer object built with the tokenizers library (the same
    files load in transformers 4 and 5)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if roberta:
        tok.post_processor = processors.RobertaProcessing(
            sep=("</s>", vocab["</s>"]), cls=("<s>", vocab["<s>"])
        )
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        specials = ["<|endoftext|>"]
    tok.add_special_tokens([AddedToken(t, special=True) for t in specials])
    return tok
