"""Transductive inference (claptune.evaluate.transductive): each method against a brute-force or
closed-form oracle on small random inputs, determinism, and label-freeness."""

from __future__ import annotations

import numpy as np
import pytest

from claptune.evaluate import transductive as T


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clustered(n_per_class=20, n_classes=4, dim=16, noise=1.0, seed=0):
    """Clips in tight clusters around class centres, and prompts that point near (not at)
    the centres, with one class's prompt pulled towards another's: a zero-shot classifier that
    is often wrong, on data whose structure says the truth."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(n_classes, dim)))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    audio = _unit(centres[labels] + noise * rng.normal(size=(len(labels), dim)) / np.sqrt(dim))
    prompts = _unit(centres + 0.9 * rng.normal(size=(n_classes, dim)) / np.sqrt(dim))
    prompts[1] = _unit(prompts[1] + 0.8 * prompts[0])
    templates = _unit(prompts[:, None, :] + 0.2 * rng.normal(size=(n_classes, 3, dim)))
    return audio, templates, labels


def test_knn_indices_matches_brute_force():
    rng = np.random.default_rng(1)
    x = _unit(rng.normal(size=(30, 8)))
    idx, sim = T.knn_indices(x, 4)
    full = x @ x.T
    for i in range(30):
        order = [j for j in np.argsort(-full[i], kind="stable") if j != i][:4]
        assert idx[i].tolist() == order
        np.testing.assert_allclose(sim[i], full[i, order])


def test_knn_graph_is_symmetric_and_nonnegative():
    rng = np.random.default_rng(2)
    w = T.knn_graph(_unit(rng.normal(size=(25, 6))), 3).toarray()
    np.testing.assert_allclose(w, w.T)
    assert (w >= 0).all() and (np.diag(w) == 0).all()


def test_label_propagation_reaches_the_closed_form():
    rng = np.random.default_rng(3)
    x = _unit(rng.normal(size=(40, 8)))
    y = T.softmax(rng.normal(size=(40, 5)))
    alpha = 0.7
    w = T.knn_graph(x, 4).toarray()
    d = w.sum(axis=1)
    s = w / np.sqrt(np.outer(d, d))
    closed = (1 - alpha) * np.linalg.solve(np.eye(40) - alpha * s, y)
    closed /= closed.sum(axis=1, keepdims=True)
    got = T.label_propagation(y, x, k=4, alpha=alpha, iterations=200)
    np.testing.assert_allclose(got, closed, atol=1e-8)
    np.testing.assert_allclose(T.label_propagation(y, x, alpha=0.0), y)


def test_sinkhorn_hits_the_class_shares():
    rng = np.random.default_rng(4)
    p = T.softmax(3 * rng.normal(size=(60, 6)))
    q = T.sinkhorn_probs(p)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    np.testing.assert_allclose(q.sum(axis=0), np.full(6, 10.0), rtol=1e-6)


def test_entropy_weights_favour_the_sure_template():
    # template 0 of each class is the class centre (sure), template 1 is noise
    rng = np.random.default_rng(5)
    centres = _unit(rng.normal(size=(3, 12)))
    noise = _unit(rng.normal(size=(3, 12)))
    prompts = np.stack([centres, noise], axis=1)  # (C, T, D)
    audio = centres[[0, 1, 2, 0]]
    w = T.entropy_prompt_weights(audio, prompts, logit_scale=20.0)
    assert w.shape == (4, 2)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert (w[:, 0] > w[:, 1]).all()
    # equal weights give the plain ensemble's cosines
    scores = T.entropy_weighted_scores(audio, prompts[:, :1], 20.0)
    np.testing.assert_allclose(scores, audio @ centres.T, atol=1e-12)


def test_every_method_beats_zero_shot_on_clustered_clips():
    audio, templates, labels = _clustered()
    base = np.mean(T.transduce(audio, templates, 10.0, "none").argmax(1) == labels)
    assert base < 0.9  # the fixture is hard for the zero-shot classifier
    for method in ("sinkhorn", "label_propagation", "gaussian_em", "claptune"):
        acc = np.mean(T.transduce(audio, templates, 10.0, method).argmax(1) == labels)
        assert acc > base, method


@pytest.mark.parametrize("method", T.TRANSDUCTIONS)
def test_transduce_is_deterministic_and_a_distribution(method):
    audio, templates, _ = _clustered(seed=7)
    a = T.transduce(audio, templates, 10.0, method)
    b = T.transduce(audio.copy(), templates.copy(), 10.0, method)
    assert np.array_equal(a, b)
    assert a.shape == (len(audio), len(templates))
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    assert np.isfinite(a).all()


def test_clip_order_does_not_change_a_clips_label():
    audio, templates, _ = _clustered(seed=8)
    perm = np.random.default_rng(0).permutation(len(audio))
    for method in T.TRANSDUCTIONS:
        a = T.transduce(audio, templates, 10.0, method).argmax(1)
        b = T.transduce(audio[perm], templates, 10.0, method).argmax(1)
        assert np.array_equal(a[perm], b), method


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown transduction"):
        T.TransductionConfig(method="magic")


def test_predictions_table():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0]])
    rows = T.predictions_table(probs, ["a", "b", "c"])
    assert (rows[0].label, rows[0].runner_up) == ("b", "c")
    assert rows[0].confidence == pytest.approx(0.7)
    assert (rows[1].label, rows[1].runner_up) == ("a", "b")  # ties: lower index first


def test_guard_keeps_the_student_only_on_a_lead_beyond_chance():
    from claptune.evaluate.label_free import guard_keeps, guard_signals, min_discordant, sign_test

    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == pytest.approx(1 / 32)
    assert sign_test(8, 10) == pytest.approx(56 / 1024)  # P(X >= 8), X ~ Bin(10, 1/2)
    n = 40
    teacher_plain = np.zeros(n, int)
    teacher_trans = np.zeros(n, int)
    student_plain = np.zeros(n, int)
    # on a tie the teacher (+ transduction) is kept, though the student is fully consistent
    tie = guard_signals(teacher_plain, teacher_trans, student_plain, student_plain.copy())
    assert tie["discordant"] == 0 and not guard_keeps(tie) and tie["keep_student"] is False
    assert type(tie["n_clips"]) is int and type(tie["discordant"]) is int
    assert guard_keeps({"keep_student": 1.0}) and not guard_keeps({"keep_student": 0.0})  # old
    assert tie["decidable"] is False  # no clip could show a lead: it says it could not decide
    assert min_discordant(0.05) == 5 and sign_test(5, 5) < 0.05 < sign_test(4, 4)
    # the teacher's transduction corrects 12 of its clips, the student's none: 12 discordant
    # clips all for the student, p = 2^-12, so the student is kept
    teacher_trans[:12] = 1
    lead = guard_signals(teacher_plain, teacher_trans, student_plain, student_plain.copy())
    assert lead["discordant"] == 12 and lead["p_value"] == pytest.approx(2.0**-12)
    assert guard_keeps(lead) and lead["decidable"] is True and lead["keep_student"] is True
    # a lead of 3 clips to 1 could be chance (p = 5/16): the teacher is kept
    teacher_trans[:] = 0
    teacher_trans[:3] = 1
    student_trans = student_plain.copy()
    student_trans[20] = 1
    small = guard_signals(teacher_plain, teacher_trans, student_plain, student_trans)
    assert small["consistency_student"] > small["consistency_teacher"]
    assert small["p_value"] == pytest.approx(5 / 16) and not guard_keeps(small)
