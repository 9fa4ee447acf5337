"""Label-free signals: what can be said of a model's predictions on clips without their labels.

Beside ``claptune.evaluate.metrics`` (every figure that reads labels), these compare predictions
with each other only:

- ``agreement``: how often two models' (or two pipelines') classes agree on the same clips;
- ``guard_signals``: the label-free guard's view of a student against teacher + transduction on
  clips held out of curation, and its decision (``GUARD_ALPHA``, ``guard_keeps``).

``claptune.improve`` records them for every run (``Workspace.agreement``, ``Workspace.guard``);
no choice made with them reads a target label.
"""

from __future__ import annotations

import numpy as np

# the guard keeps a student only when it is more consistent than the teacher on the guard clips
# beyond what chance explains: a one-sided sign test over the clips where exactly one of the two
# is consistent, at this level. A tie, or a lead that a few clips could reverse, keeps the
# model the user started from (teacher + transduction)
GUARD_ALPHA = 0.05


def agreement(pred: np.ndarray, reference: np.ndarray) -> float:
    """Share of clips whose class in ``pred`` equals the one in ``reference`` (NaN for none)."""
    pred, reference = np.asarray(pred).ravel(), np.asarray(reference).ravel()
    return float(np.mean(pred == reference)) if pred.size else float("nan")


def guard_signals(
    teacher_plain: np.ndarray,
    teacher_transduced: np.ndarray,
    student_plain: np.ndarray,
    student_transduced: np.ndarray,
    alpha: float = GUARD_ALPHA,
) -> dict[str, float | int | bool]:
    """The guard's signals on its clips (each argument: (N,) classes of the same clips) and its
    decision ``keep_student`` (a bool; counts are ints, shares and ``p_value`` floats).

    How much transduction has to correct a model is read as how far its plain predictions
    stand from the structure of the clips: ``consistency_student`` is the share of clips whose
    plain student class equals the student's transductive class, ``consistency_teacher`` the
    same for the teacher. The student is kept only when it is the more consistent of the two
    beyond chance: of the ``discordant`` clips (consistent under exactly one model), the
    student's share is tested against one half by a one-sided sign test, and ``p_value`` must
    be below ``alpha``; otherwise (a tie or a small lead included) teacher + transduction is
    what a user gets.
    ``agreement_*``: each model's plain class against the teacher's transductive class, recorded
    beside it (bench/bench_guard.py measures both).
    """
    out: dict[str, float | int | bool] = {
        "n_clips": len(teacher_plain),
        "consistency_student": agreement(student_plain, student_transduced),
        "consistency_teacher": agreement(teacher_plain, teacher_transduced),
        "agreement_student": agreement(student_plain, teacher_transduced),
        "agreement_teacher": agreement(teacher_plain, teacher_transduced),
        "transductive_agreement": agreement(student_transduced, teacher_transduced),
    }
    tp, tt, sp, st = (
        np.asarray(x).ravel()
        for x in (teacher_plain, teacher_transduced, student_plain, student_transduced)
    )
    student_only = (sp == st) & (tp != tt)
    teacher_only = (tp == tt) & (sp != st)
    wins, discordant = int(student_only.sum()), int(student_only.sum() + teacher_only.sum())
    out["discordant"] = discordant
    out["p_value"] = sign_test(wins, discordant)
    # with fewer discordant clips than this, not even a clean sweep reaches alpha: the guard
    # cannot keep the student, whatever the student is worth (a larger guard slice can)
    out["decidable"] = bool(discordant >= min_discordant(alpha))
    out["keep_student"] = bool(out["p_value"] < alpha)
    return out


def min_discordant(alpha: float = GUARD_ALPHA) -> int:
    """The fewest discordant clips on which a clean sweep passes ``sign_test`` at ``alpha``
    (5 at 0.05: 2^-5 = 0.031)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    n = 1
    while sign_test(n, n) >= alpha:
        n += 1
    return n


def sign_test(wins: int, n: int) -> float:
    """One-sided sign test: P(X >= wins) for X ~ Binomial(n, 1/2); 1.0 when n is 0."""
    if n == 0:
        return 1.0
    from scipy.stats import binom

    return float(binom.sf(wins - 1, n, 0.5))


def guard_keeps(guard: dict[str, float | int | bool]) -> bool:
    """Whether the guard's record (``guard_signals``) keeps the student; without a decision
    (no guard clips) the student is kept. Records of earlier versions hold 1.0 / 0.0."""
    return bool(guard.get("keep_student", True) >= 0.5)


__all__ = [
    "GUARD_ALPHA",
    "agreement",
    "guard_keeps",
    "guard_signals",
    "min_discordant",
    "sign_test",
]
