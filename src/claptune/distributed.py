"""Process groups under ``torchrun``, for every stage (embed, curate, train), and gathers.

``join_process_group`` joins (creating it if needed) the group that torchrun's environment
describes and says whether this call created it, so the stage that created it also destroys
it (``process_group`` does both as a context manager). ``fit`` keeps its group for the
process's lifetime (``setup_distributed``), as DistributedDataParallel expects.

Training
each process embeds its slice of the global batch; the slices are all-gathered *with*
gradients (as open_clip's ``gather_features`` with ``gather_with_grad=True`` and
``local_loss=False``) so that every process computes the loss over the whole global
batch. The backward of that gather sums, into each slice, the gradients of all processes'
(identical) losses, i.e. world_size times the true gradient, and DistributedDataParallel's
averaging divides it back: parameters get exactly the gradient of the single-process loss
on the global batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, batch_size: int) -> slice:
        """This process's contiguous share of a global batch (size divisible by world_size)."""
        per = batch_size // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)


# Ranks of embed and curate work at different speeds; a barrier must outwait the slowest one.
DEFAULT_TIMEOUT = timedelta(hours=12)


def env_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def current_env() -> DistEnv:
    """This process's place in the initialised group (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistEnv(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
        )
    return DistEnv()


def join_process_group(
    backend: str = "gloo", timeout: timedelta = DEFAULT_TIMEOUT
) -> tuple[DistEnv, bool]:
    """Join the process group torchrun describes, if any: (env, whether this call created it)."""
    if env_world_size() <= 1 or dist.is_initialized():
        return current_env(), False
    dist.init_process_group(backend=backend, timeout=timeout)
    return current_env(), True


@contextlib.contextmanager
def process_group(backend: str = "gloo", timeout: timedelta = DEFAULT_TIMEOUT) -> Iterator[DistEnv]:
    """``join_process_group`` for the duration of a block; destroys a group it created."""
    env, created = join_process_group(backend, timeout)
    try:
        yield env
    finally:
        if created:
            dist.destroy_process_group()


def setup_distributed(use_cuda: bool) -> DistEnv:
    """Join the process group of ``fit`` (nccl on GPUs), kept for the process's lifetime."""
    return join_process_group("nccl" if use_cuda else "gloo")[0]


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every process's copy of the result
    and hands each process the block of its own input (torch.distributed.nn's all_gather
    does the same but is deprecated)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.size = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size : (ctx.rank + 1) * ctx.size], None, None


def gather_with_grad(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate every process's (b, ...) tensor into (world_size * b, ...), differentiably.

    Every process must pass the same b.
    """
    if not env.enabled:
        return x
    return _GatherWithGrad.apply(x, env.rank, env.world_size)


def gather(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Like ``gather_with_grad`` for tensors that need no gradient (teacher embeddings)."""
    if not env.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(env.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def barrier(env: DistEnv) -> None:
    """Wait for every process of the group (nothing to do in one process)."""
    if env.enabled:
        dist.barrier()


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` intra-op threads (None: unchanged), then restore the count.

    Heads on cached features are small matrices: on a busy 2-core machine, two threads fight
    over the cores and one head-training step takes ~10x longer than with one thread.
    """
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
