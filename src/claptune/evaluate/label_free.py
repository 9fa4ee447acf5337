"""Label-free signals: what can be said of a model's predictions on clips without their labels.

Beside ``claptune.evaluate.metrics`` (every figure that reads labels), these compare predictions
with each other only:

- ``agreement``: how often two models' (or two pipelines') classes agree on the same clips;
- ``guard_signals``: the label-free guard's view of a student against teacher + transduction on
  clips held out of curation, and its decision (``GUARD_MARGIN``, ``guard_keeps``).

``claptune.improve`` records them for every run (``Workspace.agreement``, ``Workspace.guard``);
no choice made with them reads a target label.
"""

from __future__ import annotations

import numpy as np

# the guard keeps a student only when it is this much more consistent than the teacher on the
# guard clips (a share of clips): ties and noise keep the model the user started from
GUARD_MARGIN = 0.0


def agreement(pred: np.ndarray, reference: np.ndarray) -> float:
    """Share of clips whose class in ``pred`` equals the one in ``reference`` (NaN for none)."""
    pred, reference = np.asarray(pred).ravel(), np.asarray(reference).ravel()
    return float(np.mean(pred == reference)) if pred.size else float("nan")


def guard_signals(
    teacher_plain: np.ndarray,
    teacher_transduced: np.ndarray,
    student_plain: np.ndarray,
    student_transduced: np.ndarray,
    margin: float = GUARD_MARGIN,
) -> dict[str, float]:
    """The guard's signals on its clips (each argument: (N,) classes of the same clips) and its
    decision ``keep_student`` (1.0 or 0.0).

    How much transduction has to correct a model is read as how far its plain predictions
    stand from the structure of the clips: ``consistency_student`` is the share of clips whose
    plain student class equals the student's transductive class, ``consistency_teacher`` the
    same for the teacher. The student is kept when it is the more consistent of the two by at
    least ``margin``; otherwise teacher + transduction is what a user gets. ``agreement_*``:
    each model's plain class against the teacher's transductive class, recorded beside it
    (bench/bench_guard.py measures both).
    """
    out = {
        "n_clips": float(len(teacher_plain)),
        "consistency_student": agreement(student_plain, student_transduced),
        "consistency_teacher": agreement(teacher_plain, teacher_transduced),
        "agreement_student": agreement(student_plain, teacher_transduced),
        "agreement_teacher": agreement(teacher_plain, teacher_transduced),
        "transductive_agreement": agreement(student_transduced, teacher_transduced),
    }
    out["keep_student"] = float(out["consistency_student"] >= out["consistency_teacher"] + margin)
    return out


def guard_keeps(guard: dict[str, float]) -> bool:
    """Whether the guard's record (``guard_signals``) keeps the student; without a decision
    (no guard clips) the student is kept."""
    return guard.get("keep_student", 1.0) >= 0.5


__all__ = ["GUARD_MARGIN", "agreement", "guard_keeps", "guard_signals"]
