"""The class head (claptune.evaluate.prototypes): audio prototypes fitted without labels."""

from __future__ import annotations

import numpy as np
import pytest

from claptune.evaluate.prototypes import HEAD_FILE, ClassHead, class_means, fit_class_head


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _task(seed=0, n_per=6, c=3, d=8, gap=1.5):
    """Clips in c clusters whose centres sit away from the text embeddings of their classes
    (a modality gap), so that a clip is closer to another class's text than to its own."""
    rng = np.random.default_rng(seed)
    text = _unit(rng.normal(size=(c, d)))
    offset = _unit(rng.normal(size=d)) * gap  # one shift of all audio, as the gap is
    labels = np.repeat(np.arange(c), n_per)
    audio = _unit(text[labels] + offset + 0.3 * rng.normal(size=(len(labels), d)))
    return audio, text, labels


def test_class_means_are_the_probability_weighted_means_of_the_unit_clips():
    x = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.0]])
    m = class_means(x, q)
    unit = _unit(x)
    expected = _unit(np.stack([unit[0] + 0.5 * unit[2], unit[1]]))
    np.testing.assert_allclose(m, expected)
    # a class no clip is assigned to has no prototype: a zero row, not NaN
    assert not np.any(class_means(x, np.c_[q, np.zeros(3)])[2])


def test_the_head_moves_each_class_towards_its_clips_and_only_the_classes_it_holds():
    audio, text, labels = _task()
    names = ["dog_bark", "rain", "siren"]
    head = fit_class_head(audio, text[:, None, :], 20.0, names, weight=0.5, transduction="none")
    assert head.n_clips == len(audio) and head.means.shape == text.shape
    moved = head.classifier(text, names)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 1.0, rtol=1e-6)
    # each row is the renormalised text row plus half its prototype
    np.testing.assert_allclose(moved, _unit(text + 0.5 * head.means), rtol=1e-5, atol=1e-6)
    # the prototypes sit on the audio side of the gap: every moved row is nearer its own
    # class's clips than the text row was
    centre = _unit(np.stack([audio[labels == c].mean(0) for c in range(3)]))
    assert np.all((moved * centre).sum(1) > (_unit(text) * centre).sum(1))
    # classes are matched by cleaned name, in any order; an unknown class keeps its text row
    other = ["siren", "dog bark", "thunder"]
    rows = head.classifier(text[[2, 0, 1]], other)
    np.testing.assert_allclose(rows[:2], moved[[2, 0]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows[2], _unit(text[1]), rtol=1e-6)
    assert head.holds(other) == ["siren", "dog bark"]
    # weight 0 is the prompt classifier itself
    zero = fit_class_head(audio, text[:, None, :], 20.0, names, weight=0.0, transduction="none")
    np.testing.assert_allclose(zero.classifier(text, names), _unit(text), rtol=1e-6)


def test_a_head_is_deterministic_reads_no_label_and_round_trips(tmp_path):
    audio, text, _ = _task(seed=1)
    names = ["a", "b", "c"]
    first = fit_class_head(audio, text[:, None, :], 30.0, names)
    again = fit_class_head(audio.copy(), text[:, None, :].copy(), 30.0, names)
    np.testing.assert_array_equal(first.means, again.means)
    path = first.save(tmp_path)
    assert path == tmp_path / HEAD_FILE
    loaded = ClassHead.load(tmp_path)
    assert loaded is not None
    assert (loaded.class_names, loaded.weight, loaded.n_clips, loaded.transduction) == (
        first.class_names,
        first.weight,
        first.n_clips,
        first.transduction,
    )
    np.testing.assert_array_equal(loaded.means, first.means)
    assert ClassHead.load(tmp_path / "nothing") is None


def test_a_head_refuses_what_it_cannot_be():
    audio, text, _ = _task()
    with pytest.raises(ValueError, match="at least 2 clips"):
        fit_class_head(audio[:1], text[:, None, :], 20.0, ["a", "b", "c"])
    with pytest.raises(ValueError, match="at least 0"):
        fit_class_head(audio, text[:, None, :], 20.0, ["a", "b", "c"], weight=-1.0)
    head = fit_class_head(audio, text[:, None, :], 20.0, ["a", "b", "c"])
    with pytest.raises(ValueError, match="another model"):
        head.classifier(np.ones((3, 4)), ["a", "b", "c"])


def test_improve_and_adapt_default_to_the_heads_default_weight():
    from claptune.evaluate.prototypes import DEFAULT_HEAD_WEIGHT
    from claptune.improve.config import ImproveConfig

    assert ImproveConfig().class_head == DEFAULT_HEAD_WEIGHT
