"""What the curation methods share: the search options, the warning for an empty result, and
the prompt template (prompts are built by ``claptune.curation.inputs.curation_prompts``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from claptune.curation.settings import DEFAULT_SEARCH, SearchOptions
from claptune.errors import ClaptuneError

DEFAULT_TEMPLATE = "this is a sound of {}"  # the paper's DS prompt


class CurationWarning(UserWarning):
    """A curation step kept nothing (or almost nothing) at the given threshold."""


def warn_if_empty(n_kept: int, step: str, threshold: float, max_score: float) -> None:
    if n_kept == 0:
        warnings.warn(
            f"{step}: threshold {threshold:.4f} keeps nothing (highest score "
            f"{max_score:.4f}); lower it or give a quantile such as q0.99",
            CurationWarning,
            stacklevel=3,
        )


def check_ids(name: str, ids: Sequence, n_rows: int) -> list[str]:
    """The ids (paths or texts) of an embedding matrix, one per row."""
    if len(ids) != n_rows:
        raise ClaptuneError(f"{len(ids)} {name} for {n_rows} embedding rows")
    return [str(i) for i in ids]


__all__ = [
    "CurationWarning",
    "DEFAULT_SEARCH",
    "DEFAULT_TEMPLATE",
    "SearchOptions",
    "check_ids",
    "warn_if_empty",
]
