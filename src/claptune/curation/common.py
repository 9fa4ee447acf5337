"""What the curation methods share: the search options, the warning for an empty result, and
the prompt template (prompts are built by ``claptune.curation.inputs.curation_prompts``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from claptune.curation.search import DEFAULT_BLOCK_SIZE
from claptune.errors import ClaptuneError

DEFAULT_TEMPLATE = "this is a sound of {}"  # the paper's DS prompt


class CurationWarning(UserWarning):
    """A curation step kept nothing (or almost nothing) at the given threshold."""


@dataclass(frozen=True)
class SearchOptions:
    """How the similarity searches run; the same for every method."""

    block_size: int = DEFAULT_BLOCK_SIZE  # rows per tile side; memory ~ 4 * block_size**2 bytes
    device: str | torch.device | None = None  # torch device of the tiles (None = CPU)
    distributed: bool = False  # under torchrun: each rank a slice of the queries

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")

    def kwargs(self) -> dict:
        return {
            "block_size": self.block_size,
            "device": self.device,
            "distributed": self.distributed,
        }


DEFAULT_SEARCH = SearchOptions()  # frozen, so safe as a shared default argument


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
