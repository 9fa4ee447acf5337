"""Convert aisfx 0.1.2's pickled checkpoint to the safetensors file claptune ships (run once).

    pip install --no-deps "aisfx==0.1.2"
    python scripts/convert_aisfx.py            # writes src/claptune/weights/aisfx/aisfx_cnn.safetensors

aisfx stores ``(state_dict, datasets)`` with ``torch.save``; the ``datasets`` dict holds NumPy
integers, so the pickle is read with ``weights_only=False``. This script is the only place that
unpickles it (a file from the aisfx wheel, not a user's file); claptune itself loads the
converted tensors with ``safetensors`` only. The tensors are written unchanged (float32 weights,
int64 BatchNorm counters), in the key order of the checkpoint; the library order of the
classifier heads is checked against ``claptune.models.aisfx_cnn.LIBRARY_CLASSES``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from claptune.models.aisfx_cnn import LIBRARY_CLASSES, WEIGHTS_FILE  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    args = parser.parse_args(argv)
    from importlib.metadata import version

    from aisfx.inference import get_path_modelWeights

    source = Path(get_path_modelWeights())
    state, datasets = torch.load(source, map_location="cpu", weights_only=False)
    order = sorted(datasets.items(), key=lambda kv: int(kv[1][0]))
    if tuple(int(n) for _, (_, n) in order) != LIBRARY_CLASSES:
        raise SystemExit(f"unexpected classifier layout in {source}: {datasets}")
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    metadata = {
        "source": f"aisfx {version('aisfx')} models/checkpoint.pth",
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "license": "CC-BY-4.0",
        "copyright": "(c) 2022 A. B. Ma and A. Lerch",
        "classifier_libraries": ",".join(name for name, _ in order),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out), metadata=metadata)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
