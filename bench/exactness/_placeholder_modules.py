"""Import before msclap / laion_clap in the reference venv.

PyPI has no torchaudio / torchvision builds for the torch (2.13) this machine installs, and the
ones pip picks cannot load their C++ libraries. Neither reference model's forward uses them:
msclap reads files with torchaudio, laion_clap builds image/data-loader transforms and a frozen
batch-norm helper with them. Placeholder modules let that code import; any attribute that
was really used would be a placeholder class that raises when called.
"""

import importlib.machinery
import sys
import types


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchaudio/torchvision are placeholders in the reference venv")


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable


for _name in (
    "torchaudio",
    "torchaudio.transforms",
    "torchaudio.functional",
    "torchvision",
    "torchvision.ops",
    "torchvision.ops.misc",
    "torchvision.transforms",
    "torchvision.datasets",
):
    _module = _PlaceholderModule(_name)
    _module.__spec__ = importlib.machinery.ModuleSpec(_name, None)
    sys.modules[_name] = _module
    parent, _, child = _name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, _module)
