"""The curation methods on synthetic embeddings with planted structure, checked against direct
computations on the full similarity matrices; the pairs table, its CSV and the summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from claptune.curation import (
    CaptionSet,
    CurationInputs,
    CurationSettings,
    CurationWarning,
    Pairs,
    Threshold,
    audio_to_audio,
    augmented_domain_specific,
    curate,
    curation_prompts,
    domain_specific,
    domain_unspecific,
    ds_captions,
    pseudo_label,
    read_pairs,
    summarize,
    write_pairs,
)
from claptune.errors import ClaptuneError


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def noisy(rng, centre: np.ndarray, n: int, noise: float) -> np.ndarray:
    return unit(centre[None, :] + noise * rng.standard_normal((n, centre.shape[0])))


@pytest.fixture
def world(rng):
    """3 class directions; corpus captions near classes 0/1 or far from all; unpaired clips near
    class directions or random; target clips near classes 0 and 2."""
    d = 32
    classes = unit(rng.standard_normal((3, d)))
    captions = np.concatenate(
        [
            noisy(rng, classes[0], 4, 0.1),
            noisy(rng, classes[1], 3, 0.1),
            unit(rng.standard_normal((5, d))),
        ]
    )
    clips = np.concatenate(
        [
            noisy(rng, classes[0], 3, 0.15),
            noisy(rng, classes[2], 2, 0.15),
            unit(rng.standard_normal((6, d))),
        ]
    )
    target = np.concatenate([noisy(rng, classes[0], 5, 0.1), noisy(rng, classes[2], 5, 0.1)])
    return {
        "class_names": ["dog", "rain", "chirping_birds"],
        "prompt_emb": classes,
        "captions": [f"caption {i}" for i in range(len(captions))],
        "caption_emb": captions,
        "corpus_audio": [f"corpus/{i}.wav" for i in range(len(captions))],
        "clip_ids": [f"clips/{i}.wav" for i in range(len(clips))],
        "clip_emb": clips,
        "target_ids": [f"target/{i}.wav" for i in range(len(target))],
        "target_emb": target,
    }


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.float64)[:, None, :] * b.astype(np.float64)[None, :, :]).sum(-1)


def test_curation_prompts():
    assert curation_prompts(["dog", "chirping_birds"]) == [
        "this is a sound of dog",
        "this is a sound of chirping birds",
    ]
    # the zero-shot prompt builder's cleaning: the same prompt through curate and improve
    assert curation_prompts(["cafe/restaurant"]) == ["this is a sound of cafe or restaurant"]
    with pytest.raises(ClaptuneError):
        curation_prompts(["dog"], "no placeholder")


def test_threshold_parse_and_resolve():
    assert Threshold.parse("0.7").resolve(np.zeros(3)) == pytest.approx(0.7)
    assert Threshold.parse(0.7) == Threshold(value=0.7)
    scores = np.arange(10.0)
    assert Threshold.parse("q0.9").resolve(scores) == 8.0  # an observed score, 1 of 10 above
    assert Threshold.parse("q1").resolve(scores) == 9.0
    assert str(Threshold.parse("q0.99")) == "q0.99"
    for bad in ["q1.5", "qq", "abc", "q"]:
        with pytest.raises(ValueError):
            Threshold.parse(bad)


def test_du_threshold_and_topk_match_full_matrix(world):
    s = cos(world["clip_emb"], world["caption_emb"])
    pairs = domain_unspecific(
        world["clip_ids"], world["clip_emb"], world["captions"], world["caption_emb"], threshold=0.5
    )
    rows, cols = np.nonzero(s >= 0.5)
    expected = {
        (world["clip_ids"][i], world["captions"][j]) for i, j in zip(rows, cols, strict=True)
    }
    assert set(zip(pairs.audio, pairs.text, strict=True)) == expected and len(pairs) == len(
        expected
    )
    assert set(pairs.method) == {"du"} and set(pairs.classes) == {""}
    assert pairs.meta["distribution"]["exact"]

    top = domain_unspecific(
        world["clip_ids"], world["clip_emb"], world["captions"], world["caption_emb"], top_k=2
    )
    assert len(top) == 2 * len(world["clip_ids"])
    for i, clip in enumerate(world["clip_ids"]):
        got = [t for a, t in zip(top.audio, top.text, strict=True) if a == clip]
        assert got == [world["captions"][j] for j in np.argsort(-s[i], kind="stable")[:2]]


def test_du_quantile_threshold_keeps_the_top_share(world):
    pairs = domain_unspecific(
        world["clip_ids"],
        world["clip_emb"],
        world["captions"],
        world["caption_emb"],
        threshold="q0.9",
    )
    n_all = len(world["clip_ids"]) * len(world["captions"])
    assert len(pairs) == n_all - int(np.floor(0.9 * (n_all - 1)))  # ties have prob. zero here
    assert pairs.meta["threshold"] == "q0.9"


def test_ds_keeps_captions_with_their_original_audio(world):
    ds = domain_specific(
        world["corpus_audio"],
        world["captions"],
        world["caption_emb"],
        world["class_names"],
        world["prompt_emb"],
        threshold=0.8,
    )
    best = cos(world["caption_emb"], world["prompt_emb"])
    kept = np.flatnonzero(best.max(1) >= 0.8)
    assert kept.tolist() == list(range(7))  # the planted captions, none of the random ones
    assert ds.audio == [world["corpus_audio"][i] for i in kept]
    assert ds.text == [world["captions"][i] for i in kept]
    assert ds.classes == ["dog"] * 4 + ["rain"] * 3
    np.testing.assert_array_equal(ds.score, best.max(1)[kept])


def test_ads_pairs_clips_with_ds_captions(world):
    ds = domain_specific(
        world["corpus_audio"],
        world["captions"],
        world["caption_emb"],
        world["class_names"],
        world["prompt_emb"],
        threshold=0.8,
    )
    captions = ds_captions(ds, world["captions"], world["caption_emb"])
    assert captions.texts == ds.text and len(captions) == 7
    pairs = augmented_domain_specific(world["clip_ids"], world["clip_emb"], captions, threshold=0.6)
    s = cos(world["clip_emb"], captions.text_emb)
    assert len(pairs) == int((s >= 0.6).sum()) > 0
    assert set(pairs.audio) <= set(world["clip_ids"][:3])  # only the dog-like clips match
    assert set(pairs.classes) == {"dog"}
    assert set(pairs.method) == {"ads"}


def test_a2a_keeps_target_like_clips_and_pairs_best_caption(world):
    captions = CaptionSet(
        world["captions"][:7], world["caption_emb"][:7], ["dog"] * 4 + ["rain"] * 3
    )
    pairs = audio_to_audio(
        world["clip_ids"], world["clip_emb"], world["target_emb"], captions, threshold=0.55
    )
    near = cos(world["clip_emb"], world["target_emb"]).max(1)
    kept = np.flatnonzero(near >= 0.55)
    assert kept.tolist() == [0, 1, 2, 3, 4]  # dog-like and bird-like clips, not random ones
    best = cos(world["clip_emb"][kept], captions.text_emb)
    assert pairs.audio == [world["clip_ids"][i] for i in kept]
    assert pairs.text == [captions.texts[j] for j in best.argmax(1)]
    np.testing.assert_array_equal(pairs.score, best.max(1))
    assert pairs.meta["clips_kept"] == 5
    two = audio_to_audio(
        world["clip_ids"],
        world["clip_emb"],
        world["target_emb"],
        captions,
        threshold=0.55,
        top_k=2,
        text_threshold=0.5,
    )
    assert len(two) == int((best >= 0.5).sum(1).clip(max=2).sum())


def test_pseudo_confidence_margin_and_cap(world):
    prompts = curation_prompts(world["class_names"])
    pairs = pseudo_label(
        world["target_ids"],
        world["target_emb"],
        world["class_names"],
        world["prompt_emb"],
        logit_scale=10.0,
        prompts=prompts,
        threshold=0.0,
        max_per_class=0,
    )
    s = cos(world["target_emb"], world["prompt_emb"])
    prob = np.exp(10 * s) / np.exp(10 * s).sum(1, keepdims=True)
    assert pairs.audio == world["target_ids"]
    assert pairs.classes == ["dog"] * 5 + ["chirping_birds"] * 5
    assert pairs.text[0] == "this is a sound of dog"
    np.testing.assert_allclose(pairs.score, prob.max(1), rtol=1e-12)

    capped = pseudo_label(
        world["target_ids"],
        world["target_emb"],
        world["class_names"],
        world["prompt_emb"],
        logit_scale=10.0,
        threshold=0.0,
        max_per_class=2,
    )
    assert capped.counts("class") == {"chirping_birds": 2, "dog": 2}
    for cls in ("dog", "chirping_birds"):
        rows = [i for i, c in enumerate(pairs.classes) if c == cls]
        best2 = sorted(rows, key=lambda i: -pairs.score[i])[:2]
        assert sorted(capped.audio[j] for j in range(4) if capped.classes[j] == cls) == sorted(
            world["target_ids"][i] for i in best2
        )

    margin = pseudo_label(
        world["target_ids"],
        world["target_emb"],
        world["class_names"],
        world["prompt_emb"],
        logit_scale=10.0,
        criterion="margin",
        threshold="q0.5",
        max_per_class=0,
    )
    top2 = np.sort(s, 1)[:, -2:]
    m = top2[:, 1] - top2[:, 0]
    kept = m >= np.quantile(m, 0.5, method="lower")
    assert margin.audio == [t for t, k in zip(world["target_ids"], kept, strict=True) if k]
    np.testing.assert_allclose(margin.score, m[kept], rtol=1e-12)


def test_knn_smooth_and_balance():
    from claptune.curation.pseudo import balance, knn_smooth

    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    emb = unit(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    smoothed = knn_smooth(probs, emb, k=1, weight=0.5)
    # nearest other clip: 0 <-> 1, 2 -> 1 (closer than 0)
    np.testing.assert_allclose(smoothed, 0.5 * probs + 0.5 * probs[[1, 0, 1]])
    np.testing.assert_array_equal(knn_smooth(probs, emb, k=1, weight=0.0), probs)

    rng = np.random.default_rng(0)
    skewed = rng.dirichlet(np.ones(4), size=40) * np.array([8.0, 1.0, 1.0, 1.0])
    skewed /= skewed.sum(1, keepdims=True)
    q = balance(skewed)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(q.sum(0), 10.0, rtol=1e-6)  # 40 clips, 4 equal shares
    assert (skewed.argmax(1) == 0).sum() > 20 > (q.argmax(1) == 0).sum()
    uniform = np.full((6, 3), 1 / 3)
    np.testing.assert_allclose(balance(uniform), uniform)


def test_pseudo_refined_undoes_a_class_the_prompts_over_predict(rng):
    """Two well-separated groups of clips; the prompts lean to class a, so plain pseudo-labels
    call almost everything a. Balancing the classes over the unlabeled clips recovers b."""
    a, b = unit(rng.standard_normal(16)), unit(rng.standard_normal(16))
    clips = np.concatenate([noisy(rng, a, 6, 0.3), noisy(rng, b, 6, 0.3)]).astype(np.float32)
    other = unit(rng.standard_normal(16))
    # prompt a also leans to b's clips more than prompt b (half an unrelated direction) does
    prompt_emb = unit(np.stack([a + 1.2 * b, b + other])).astype(np.float32)
    ids = [f"c{i}" for i in range(12)]
    truth = ["a"] * 6 + ["b"] * 6
    plain = pseudo_label(ids, clips, ["a", "b"], prompt_emb, 20.0, threshold=0.0, max_per_class=0)
    assert plain.classes.count("a") >= 10  # most of b's clips are called a
    refined = pseudo_label(
        ids,
        clips,
        ["a", "b"],
        prompt_emb,
        20.0,
        threshold=0.0,
        max_per_class=0,
        refine="knn_balance",
        knn=2,
    )
    assert refined.classes == truth
    assert set(refined.method) == {"pseudo_refined"} and refined.meta["refine"] == "knn_balance"
    assert np.all(refined.score <= 1.0) and np.all(refined.score > 0.5)
    with pytest.raises(ValueError, match="refine"):
        pseudo_label(ids, clips, ["a", "b"], prompt_emb, 20.0, refine="cluster")


def test_curate_pseudo_refined_scores_with_the_class_embeddings(world):
    """pseudo_refined through curate(): its own threshold, pseudo's cap, and the classifier
    given as class_emb (not the single prompts) deciding the labels."""
    prompts = curation_prompts(world["class_names"])
    inputs = CurationInputs(
        target_ids=world["target_ids"],
        target_emb=world["target_emb"],
        class_names=world["class_names"],
        prompts=prompts,
        prompt_emb=world["prompt_emb"],
        logit_scale=10.0,
    )
    # knn only: the world's target has no "rain" clips, so a balanced split would be wrong
    settings = CurationSettings(
        pseudo_refined_threshold=0.0, pseudo_max_per_class=0, pseudo_refined_mode="knn"
    )
    pairs = curate(["pseudo_refined"], inputs, settings)
    assert pairs.classes == ["dog"] * 5 + ["chirping_birds"] * 5
    assert pairs.text[0] == prompts[0]
    swapped = CurationInputs(**{**inputs.__dict__, "class_emb": world["prompt_emb"][::-1].copy()})
    flipped = curate(["pseudo_refined"], swapped, settings)
    assert flipped.classes == ["chirping_birds"] * 5 + ["dog"] * 5
    with pytest.raises(ClaptuneError, match="pseudo_refined_mode"):
        CurationSettings(pseudo_refined_mode="none")


def test_threshold_that_keeps_nothing_warns(world):
    with pytest.warns(CurationWarning, match="keeps nothing"):
        pairs = domain_specific(
            world["corpus_audio"],
            world["captions"],
            world["caption_emb"],
            world["class_names"],
            world["prompt_emb"],
            threshold=1.01,
        )
    assert len(pairs) == 0
    with pytest.raises(ClaptuneError, match="DS kept no captions"):
        ds_captions(pairs, world["captions"], world["caption_emb"])


def test_bad_inputs(world):
    with pytest.raises(ClaptuneError, match="dimensions differ"):
        domain_unspecific(world["clip_ids"], world["clip_emb"], ["a"], unit(np.ones((1, 5))))
    with pytest.raises(ClaptuneError, match="embedding rows"):
        domain_unspecific(
            world["clip_ids"][:-1], world["clip_emb"], world["captions"], world["caption_emb"]
        )
    with pytest.raises(ClaptuneError, match="empty"):
        domain_specific(
            [], [], np.zeros((0, 32), np.float32), world["class_names"], world["prompt_emb"]
        )
    with pytest.raises(ValueError, match="criterion"):
        pseudo_label(
            world["target_ids"],
            world["target_emb"],
            world["class_names"],
            world["prompt_emb"],
            10.0,
            criterion="entropy",
        )


def test_pairs_csv_round_trip_dedup_and_empty(tmp_path):
    pairs = Pairs.concat(
        [
            Pairs.build(
                ["a.wav", "b.wav", "a.wav"],
                ["x, with comma", "y", "x, with comma"],
                np.array([0.5, 0.25, 0.75]),
                "du",
                meta={"method": "du"},
            ),
            Pairs.build(["b.wav"], ["y"], np.array([0.125]), "ds", ["dog"], {"method": "ds"}),
        ]
    )
    unique = pairs.dedup()
    assert unique.audio == ["b.wav", "a.wav"] and unique.score.tolist() == [0.25, 0.75]
    assert unique.meta["duplicates_removed"] == 2
    back = read_pairs(write_pairs(unique, tmp_path / "pairs.csv"))
    assert (back.audio, back.text, back.method, back.classes) == (
        unique.audio,
        unique.text,
        unique.method,
        unique.classes,
    )
    np.testing.assert_array_equal(back.score, unique.score)
    # a file repeating (audio, text) rows reads back merged (first row kept), with a warning
    with pytest.warns(UserWarning, match="2 duplicated rows"):
        merged = read_pairs(write_pairs(pairs, tmp_path / "repeated.csv"))
    assert merged.audio == ["a.wav", "b.wav"] and merged.score.tolist() == [0.5, 0.25]
    header = (tmp_path / "pairs.csv").read_text().splitlines()[0]
    assert header == "audio,text,score,method,class"
    with pytest.raises(ClaptuneError, match="no pairs"):
        write_pairs(Pairs.empty(), tmp_path / "empty.csv")
    assert not (tmp_path / "empty.csv").exists()


def test_summarize_writes_json_and_png(tmp_path, world):
    ds = domain_specific(
        world["corpus_audio"],
        world["captions"],
        world["caption_emb"],
        world["class_names"],
        world["prompt_emb"],
        threshold=0.8,
    )
    du = domain_unspecific(
        world["clip_ids"], world["clip_emb"], world["captions"], world["caption_emb"], top_k=1
    )
    summary = summarize(Pairs.concat([ds, du]), tmp_path)
    assert summary["per_method"] == {"du": 11, "ds": 7}
    assert summary["per_class"] == {"dog": 4, "rain": 3}
    assert summary["without_class"] == 11
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["meta"]["ds"]["threshold_value"] == pytest.approx(0.8)
    assert (tmp_path / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_crossfit_propagation_never_reads_a_clips_own_scores():
    """crossfit_lp_balance: a clip's refined row comes from the other folds' zero-shot scores;
    changing the clip's own scores leaves it unchanged (before the balancing step)."""
    from claptune.curation.pseudo import crossfit_propagation

    rng = np.random.default_rng(0)
    audio = rng.normal(size=(30, 8))
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    probs = rng.dirichlet(np.ones(4), size=30)
    base = crossfit_propagation(probs, audio)
    np.testing.assert_allclose(base.sum(axis=1), 1.0)
    for i in (0, 7, 29):
        changed = probs.copy()
        changed[i] = np.eye(4)[(np.argmax(probs[i]) + 1) % 4]
        np.testing.assert_allclose(crossfit_propagation(changed, audio)[i], base[i], atol=1e-12)
    assert np.array_equal(crossfit_propagation(probs, audio), base)  # deterministic


def test_method_meta_is_typed_and_writes_only_what_was_set():
    """A method's record has declared fields; it lists and writes only those the method set,
    in its order (summary.json stays as it was), and refuses a misspelt one."""
    from claptune.curation.pairs import MethodMeta, meta_json

    meta = MethodMeta(method="ds", threshold="q0.8", prior=None)
    assert meta.to_dict() == {"method": "ds", "threshold": "q0.8", "prior": None}
    assert list(meta) == ["method", "threshold", "prior"] and meta.threshold == "q0.8"
    assert meta.get("top_k") is None and "top_k" not in meta
    meta.top_k = 3
    assert list(meta)[-1] == "top_k" and meta["top_k"] == 3
    with pytest.raises(KeyError, match="no field 'thresold'"):
        meta["thresold"] = 0.5
    assert meta_json({"ds": meta, "duplicates_removed": 2}) == {
        "ds": {"method": "ds", "threshold": "q0.8", "prior": None, "top_k": 3},
        "duplicates_removed": 2,
    }
