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

from claptune.errors import ClaptuneError, first_line

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


# -- sizes, checked before anything is allocated --------------------------------------------------
MAX_MODEL_BYTES_ENV = "CLAPTUNE_MAX_MODEL_BYTES"  # overrides the machine's memory as the limit
_HIDDEN = ("hidden_size", "d_model", "n_embd", "embed_dim")


def estimate_parameters(config: Mapping[str, Any]) -> int:
    """An estimate of the parameter count of a model config (a dict, nested sub-configs
    included) from its transformer stacks: layers x (4 h^2 + 2 h x intermediate) plus the
    vocabulary's embeddings (within 2 % of the count for CLAP configs, tested). Cheap, so an
    absurd config is refused before it is built; the count on the meta device decides the
    rest."""
    total = 0
    for sub in _dicts(config):
        if any(isinstance(v, Mapping) and _first_int(v, _HIDDEN) for v in sub.values()):
            continue  # a composite config: its towers are counted (ClapConfig mirrors one)
        hidden = _first_int(sub, _HIDDEN)
        layers = _first_int(sub, ("num_hidden_layers", "n_layer", "num_layers"))
        if hidden and layers:
            inner = _first_int(sub, ("intermediate_size", "n_inner")) or 4 * hidden
            total += layers * (4 * hidden * hidden + 2 * hidden * inner)
        vocab = _first_int(sub, ("vocab_size",))
        if hidden and vocab:
            total += vocab * hidden
    return total


def check_model_size(n_parameters: int, what: str, bytes_per_parameter: int = 4) -> None:
    """Refuse a model of more bytes than this machine has memory (or ``$CLAPTUNE_MAX_MODEL_BYTES``)
    in one line, before any tensor is made."""
    limit, where = _memory_limit()
    size = n_parameters * bytes_per_parameter
    if size > limit:
        raise ClaptuneError(
            f"{what} describes a model of {n_parameters / 1e9:.3g} billion parameters "
            f"({size / 2**30:.3g} GiB), more than {where} ({limit / 2**30:.3g} GiB); refused "
            "before building it (a damaged or mistaken config?)"
        )


def check_config_size(config: Mapping[str, Any], what: str) -> None:
    """``check_model_size`` of ``estimate_parameters(config)``."""
    check_model_size(estimate_parameters(config), what)


def module_parameters(module: nn.Module) -> int:
    """Parameters and buffers of ``module`` (built on the meta device: nothing allocated)."""
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))


def _memory_limit() -> tuple[int, str]:
    import os

    env = os.environ.get(MAX_MODEL_BYTES_ENV)
    if env:
        try:
            return int(float(env)), f"${MAX_MODEL_BYTES_ENV}"
        except ValueError:
            raise ClaptuneError(
                f"${MAX_MODEL_BYTES_ENV} must be a number of bytes, not {env!r}"
            ) from None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"
    except (ValueError, OSError, AttributeError):  # no sysconf: no limit known
        return 2**62, "any machine's memory"


def _dicts(config: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(config, Mapping):
        yield config
        for value in config.values():
            yield from _dicts(value)


def _first_int(config: Mapping[str, Any], names: tuple[str, ...]) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


# -- tokenizers ------------------------------------------------------------------------------------
PROBE_CAPTIONS = ("a dog barking", "rain on a window")


def check_tokenizer(tokenizer: Any, what: str) -> None:
    """Refuse a tokenizer that cannot tell two captions apart: a model folder without its
    tokenizer files gets an empty vocabulary from transformers, every caption the same ids,
    and so every caption the same embedding, silently."""
    try:
        ids = [list(tokenizer(text)["input_ids"]) for text in PROBE_CAPTIONS]
    except Exception as err:  # noqa: BLE001 - whatever the tokenizer library raises
        raise ClaptuneError(f"{what} cannot tokenise text: {first_line(err)}") from None
    if ids[0] == ids[1]:
        raise ClaptuneError(
            f"{what} cannot tokenise text: different captions give the same tokens (its "
            "tokenizer files, e.g. tokenizer.json or vocab.json + merges.txt, are missing?); "
            "copy them from the model it came from"
        )
