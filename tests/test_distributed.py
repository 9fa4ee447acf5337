"""Two CPU processes (gloo, DistributedDataParallel) each embedding half of a batch give the
loss and the parameter gradients of one process on the whole batch, for every loss; and the
trainer itself, run in two processes, follows the single-process trajectory."""

from __future__ import annotations

import csv
import os
import socket

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from claptune.distributed import DistEnv
from claptune.losses import positive_mask
from claptune.train.loop import batch_loss

BATCH, WORLD = 8, 2
LOSSES = ("hard", "soft", "multipos")


def _start(worker, *args) -> None:
    """Run ``worker(rank, *args)`` in WORLD processes.

    forkserver: plain fork from this (multi-threaded, after other tests) process can deadlock
    the children, and spawn re-imports torch in each of them; the fork server is a clean
    process that imports torch and claptune once and forks the workers from there.
    """
    mp.set_forkserver_preload(["torch", "claptune.train", "claptune.models.hf_clap"])
    mp.start_processes(worker, args=args, nprocs=WORLD, join=True, start_method="forkserver")


class _ToyStudent(nn.Module):
    """Two linear towers and a learnt scale: enough to check the gradient bookkeeping."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.audio = nn.Linear(10, 6)
        self.text = nn.Linear(7, 6)
        self.log_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, audio, text):
        return (
            F.normalize(self.audio(audio), dim=1),
            F.normalize(self.text(text), dim=1),
            self.log_scale.exp(),
        )


def _batch():
    g = torch.Generator().manual_seed(1)
    audio, text = torch.randn(BATCH, 10, generator=g), torch.randn(BATCH, 7, generator=g)
    teacher_audio = F.normalize(torch.randn(BATCH, 6, generator=g), dim=1)
    teacher_text = F.normalize(torch.randn(BATCH, 6, generator=g), dim=1)
    positives = positive_mask(["a", "b", "a", "c", "d", "b", "e", "f"])
    return (
        audio,
        text,
        dict(teacher_audio=teacher_audio, teacher_text=teacher_text, positives=positives),
    )


def _loss_and_grads(module, params, audio, text, extra, loss, env):
    out = module(audio, text)
    value = batch_loss(loss, *out, env, **extra)
    value.backward()
    grads = {n: p.grad.detach().clone() for n, p in params}
    for _, p in params:
        p.grad = None
    return value.detach(), grads


def _worker(rank: int, init_file: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    env = DistEnv(rank, WORLD, rank)
    student = _ToyStudent()
    ddp = nn.parallel.DistributedDataParallel(student)
    audio, text, extra = _batch()
    local = env.local_slice(BATCH)
    out = {}
    for loss in LOSSES:
        out[loss] = _loss_and_grads(
            ddp, list(student.named_parameters()), audio[local], text[local], extra, loss, env
        )
        # the published code's multi-device loss: each device's half batch on its own
        if loss == "soft":
            local_extra = dict(
                teacher_audio=extra["teacher_audio"][local],
                teacher_text=extra["teacher_text"][local],
            )
            out["soft_local"] = _loss_and_grads(
                ddp,
                list(student.named_parameters()),
                audio[local],
                text[local],
                local_extra,
                loss,
                DistEnv(),
            )
    if rank == 0:
        torch.save(out, results)
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    _start(_worker, str(tmp / "init"), str(tmp / "out.pt"))
    return torch.load(tmp / "out.pt")


@pytest.mark.parametrize("loss", LOSSES)
def test_two_processes_equal_one_process_on_whole_batch(two_process_results, loss):
    student = _ToyStudent()
    audio, text, extra = _batch()
    value, grads = _loss_and_grads(
        student, list(student.named_parameters()), audio, text, extra, loss, DistEnv()
    )
    ddp_value, ddp_grads = two_process_results[loss]
    assert abs(float(ddp_value) - float(value)) < 1e-5
    for name, grad in grads.items():
        torch.testing.assert_close(ddp_grads[name], grad, atol=1e-5, rtol=0)


def test_without_gather_the_loss_only_covers_local_halves(two_process_results):
    # the check above can fail: the per-device loss (no gather) gives other gradients
    student = _ToyStudent()
    audio, text, extra = _batch()
    _, grads = _loss_and_grads(
        student, list(student.named_parameters()), audio, text, extra, "soft", DistEnv()
    )
    _, local_grads = two_process_results["soft_local"]
    assert max(float((local_grads[n] - g).abs().max()) for n, g in grads.items()) > 1e-3


def test_local_slice_partitions_the_batch():
    slices = [DistEnv(r, 4, r).local_slice(12) for r in range(4)]
    assert [list(range(12))[s] for s in slices] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


# -- the trainer end to end -------------------------------------------------------------------
def _fit_worker(rank: int, port: int, model_dir: str, pairs: str, out: str) -> None:
    from claptune import load_model
    from claptune.train import fit

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    fit(load_model(model_dir), pairs, _fit_config(), out_dir=out)
    dist.destroy_process_group()


def _fit_config():
    from claptune.train import TrainConfig

    # frozen encoders (no dropout) and random crops: the waveform path, with the teacher
    # embedding each process's windows every step and the results gathered
    return TrainConfig(
        loss="soft",
        trainable="projections",
        crop="random",
        batch_size=4,
        max_steps=2,
        lr=1e-3,
        val_fraction=0.0,
        num_workers=0,
        progress=False,
        device="cpu",
    )


def test_fit_in_two_processes_matches_one(tiny_clap_dir, tmp_path):
    from claptune import load_model
    from claptune.train import fit

    rng = np.random.default_rng(0)
    with (tmp_path / "pairs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["audio", "text"])
        for i in range(8):
            n = int(16000 * rng.uniform(0.5, 2.0))  # some longer than the 1 s window
            wave = 0.3 * np.sin(2 * np.pi * 200 * 1.4**i * np.arange(n) / 16000)
            sf.write(tmp_path / f"c{i}.wav", wave.astype(np.float32), 16000)
            writer.writerow([f"c{i}.wav", f"tone {chr(97 + i)}"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _start(
        _fit_worker, port, str(tiny_clap_dir), str(tmp_path / "pairs.csv"), str(tmp_path / "two")
    )
    torch.manual_seed(0)
    one = fit(
        load_model(str(tiny_clap_dir)),
        tmp_path / "pairs.csv",
        _fit_config(),
        out_dir=tmp_path / "one",
    )

    def losses(run):
        return [float(r["loss"]) for r in csv.DictReader(open(tmp_path / run / "loss.csv"))]

    assert len(losses("one")) == 2
    np.testing.assert_allclose(losses("two"), losses("one"), atol=1e-5, rtol=0)
    two = load_model(str(tmp_path / "two" / "model")).state_dict()
    for name, value in one.model.state_dict().items():
        torch.testing.assert_close(two[name], value, atol=1e-5, rtol=0)
