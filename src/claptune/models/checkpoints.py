"""Reading untrusted checkpoint files safely and loading them strictly.

Published CLAP weights come as pickled PyTorch files (``CLAP_weights_2022.pth``,
``630k-audioset-best.pt``). Unpickling can run arbitrary code, so ``read_state_dict`` only ever
calls ``torch.load(weights_only=True)``, which restricts unpickling to tensors and plain
containers. A file that needs anything else (a pickled optimizer class, a numpy scalar, an
argparse namespace) is refused with a message that says how to convert it on a trusted machine;
it is never run. ``.safetensors`` files are read with safetensors, which cannot run code.

``load_strict`` is ``module.load_state_dict(strict=True)`` with a readable report: a checkpoint
whose names do not match the architecture exactly raises ``CheckpointMismatchError`` naming
the missing and unexpected keys (and shape mismatches), instead of leaving weights silently
random. The only keys it may drop are buffers the caller names as derivable (e.g. the
``position_ids`` that old transformers versions stored), each listed in the returned report.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from claptune.errors import ClaptuneError

# Keys under which training scripts commonly nest the weights in a checkpoint dict.
NESTED_KEYS = ("state_dict", "model", "model_state_dict")

CONVERSION_HINT = (
    "convert it once on a machine where you trust the file: "
    'python -c "import torch, safetensors.torch as st; '
    "ck = torch.load('IN', map_location='cpu', weights_only=False); "
    "sd = ck.get('state_dict', ck.get('model', ck)); "
    "st.save_file({k: v.contiguous() for k, v in sd.items()}, 'OUT.safetensors')\" "
    "and pass OUT.safetensors instead"
)


class UnsafeCheckpointError(ClaptuneError):
    """A pickled checkpoint needs arbitrary code to unpickle; it was not loaded."""


class CheckpointMismatchError(ClaptuneError):
    """A state dict's names or shapes do not match the architecture."""

    def __init__(self, what: str, missing: list[str], unexpected: list[str], mismatched: list[str]):
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 8 else ""
                )
                parts.append(f"{label}: {shown}")
        super().__init__(f"{what} does not match the architecture; " + "; ".join(parts))


@dataclass
class LoadReport:
    """What ``load_strict`` dropped on purpose (derivable buffers); everything else matched."""

    ignored: list[str] = field(default_factory=list)


def read_state_dict(
    path: str | Path, nested_keys: Iterable[str] = NESTED_KEYS
) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a pickled checkpoint, loaded without running code.

    A pickled checkpoint may be a state dict or a dict holding one under ``state_dict`` /
    ``model`` (the first of ``nested_keys`` present); a ``module.`` prefix left by
    DistributedDataParallel is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise ClaptuneError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise ClaptuneError(
                f"cannot read safetensors file {path}: {str(err).splitlines()[0]}"
            ) from None
    obj = torch_load_safely(path, hint=CONVERSION_HINT)
    if isinstance(obj, Mapping):
        for key in nested_keys:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ClaptuneError(f"checkpoint {path} holds no state dict (a dict of tensors)")
    return strip_prefix(dict(obj), "module.")


def torch_load_safely(path: str | Path, hint: str = "") -> object:
    """``torch.load(weights_only=True)`` with one-line user errors naming ``path``.

    A pickle that needs code to unpickle raises ``UnsafeCheckpointError`` (never run; ``hint``
    is appended); a truncated or non-PyTorch file raises ``ClaptuneError``.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        needs = f"it needs {found.group(1)}" if found else "it needs objects beyond tensors"
        raise UnsafeCheckpointError(
            f"refusing to load {path}: {needs} to unpickle, and unpickling can run arbitrary "
            f"code" + (f"; {hint}" if hint else "")
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ClaptuneError(
            f"cannot read checkpoint {path}: not a PyTorch checkpoint or truncated ({first})"
        ) from None


def read_json(path: str | Path) -> Any:
    """The contents of a JSON file of a model folder; a damaged one is a ``ClaptuneError``
    naming the file and the place where its JSON breaks."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ClaptuneError(f"{path} is not valid JSON ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ClaptuneError(f"cannot read {path}: {err}") from None


def safetensors_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a ``.safetensors`` file, from its header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise ClaptuneError(
            f"cannot read safetensors file {path}: {str(err).splitlines()[0]}"
        ) from None


def shape_mismatches(
    given: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> list[str]:
    """ "name (given) vs (expected)" for each name in both whose shapes differ, sorted."""
    return sorted(
        f"{k} {tuple(given[k])} vs {tuple(expected[k])}"
        for k in given
        if k in expected and tuple(given[k]) != tuple(expected[k])
    )


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key, if and only if every key has it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    what: str = "checkpoint",
    derivable: Iterable[str] = (),
) -> LoadReport:
    """Load ``state_dict`` into ``module`` requiring every name and shape to match.

    ``derivable`` are fnmatch patterns of buffers the module recomputes itself (they may be
    absent from the checkpoint, and are dropped if present and the module does not hold them).
    Raises ``CheckpointMismatchError`` naming missing, unexpected and mis-shaped keys.
    """
    patterns = list(derivable)

    def is_derivable(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, p) for p in patterns)

    own = module.state_dict()
    ignored = sorted(k for k in state_dict if k not in own and is_derivable(k))
    given = {k: v for k, v in state_dict.items() if k not in ignored}
    missing = sorted(k for k in own if k not in given and not is_derivable(k))
    unexpected = sorted(k for k in given if k not in own)
    mismatched = shape_mismatches(
        {k: v.shape for k, v in given.items()}, {k: v.shape for k, v in own.items()}
    )
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(what, missing, unexpected, mismatched)
    module.load_state_dict(given, strict=False)  # names verified above; derivable ones kept
    return LoadReport(ignored=ignored)


def fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes): equal weights, equal fingerprint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def peek_keys(path: str | Path) -> list[str] | None:
    """The state-dict names in a checkpoint file without reading its tensors (memory-mapped),
    or None if it is not a file readable that way (then ``read_state_dict`` says why)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return list(f.keys())
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files in the pre-1.6 (non-zip) format cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is simply "not this format"
        return None
    if isinstance(obj, Mapping):
        for key in NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        return None
    return list(strip_prefix({k: None for k in obj}, "module.")) if obj else []


def needs_code_to_unpickle(path: str | Path) -> bool:
    """True if ``path`` is a pickled checkpoint that ``weights_only`` loading refuses.

    Lets a backend claim such a file so that loading it reports why it is refused, rather
    than "not a format claptune knows"; it is never unpickled.
    """
    path = Path(path)
    if not path.is_file() or path.suffix == ".safetensors":
        return False
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        return True
    except Exception:  # noqa: BLE001 - unreadable for another reason: not ours to claim
        return False
    return False
