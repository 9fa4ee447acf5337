"""Sharded search: two gloo processes, each a slice of the queries, return exactly what one
process returns on everything."""

from __future__ import annotations

import numpy as np
import torch
import torch.multiprocessing as mp

from claptune.curation import threshold_pairs, topk_pairs


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    query = rng.standard_normal((37, 12)).astype(np.float32)
    key = rng.standard_normal((29, 12)).astype(np.float32)
    key[5] = key[9]  # ties
    return (
        query / np.linalg.norm(query, axis=1, keepdims=True),
        key / np.linalg.norm(key, axis=1, keepdims=True),
    )


def worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        query, key = data()
        thr = threshold_pairs(query, key, 0.2, block_size=4, distributed=True)
        top = topk_pairs(query, key, 3, block_size=5, distributed=True)
        np.savez(
            f"{out_dir}/rank{rank}.npz",
            tq=thr.query,
            tk=thr.key,
            ts=thr.score,
            kq=top.query,
            kk=top.key,
            ks=top.score,
        )
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_equal_one_process(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    query, key = data()
    thr = threshold_pairs(query, key, 0.2)
    top = topk_pairs(query, key, 3)
    assert len(thr) > 0
    for rank in range(2):  # every rank receives the merged result
        got = np.load(tmp_path / f"rank{rank}.npz")
        for name, want in [
            ("tq", thr.query),
            ("tk", thr.key),
            ("ts", thr.score),
            ("kq", top.query),
            ("kk", top.key),
            ("ks", top.score),
        ]:
            np.testing.assert_array_equal(got[name], want)
