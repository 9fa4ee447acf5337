"""The model registry: ``load_model(spec)`` and ``list_models()``.

A spec is a registered name (``claptune models`` lists them), a local directory (written by
claptune, or a backend's native format such as a ``save_pretrained`` folder), or a Hugging
Face hub id. Backends are adapter classes imported lazily by their dotted path, never chosen
by sniffing a model name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from claptune.errors import ClaptuneError, did_you_mean

if TYPE_CHECKING:  # the interface imports torch: listing models (`claptune models`) must not
    from claptune.models.base import AudioTextModel

# backend name -> "module:Class"; the class implements AudioTextModel
BACKENDS: dict[str, str] = {
    "hf_clap": "claptune.models.hf_clap:HFClapModel",
    "default": "claptune.models.default:DefaultModel",
    "msclap": "claptune.models.msclap:MSClapModel",
    "laion_clap": "claptune.models.laion_clap:LaionClapModel",
}


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    backend: str
    source: str  # what the backend's from_source() takes: a hub id, a packaged file, ...
    description: str


_REGISTRY: dict[str, RegisteredModel] = {}


def register_model(name: str, backend: str, source: str, description: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    _REGISTRY[name] = RegisteredModel(name, backend, source, description)


register_model(
    "default",
    "default",
    "packaged",
    "aisfx audio + MiniLM text encoders with heads trained on captioned-sfx (shipped; offline)",
)
register_model(
    "laion/clap-htsat-unfused",
    "hf_clap",
    "laion/clap-htsat-unfused",
    "LAION-CLAP HTSAT-tiny, unfused (Hugging Face hub; downloads)",
)
register_model(
    "laion/clap-htsat-fused",
    "hf_clap",
    "laion/clap-htsat-fused",
    "LAION-CLAP HTSAT-tiny, fused (Hugging Face hub; downloads)",
)
register_model(
    "laion/larger_clap_general",
    "hf_clap",
    "laion/larger_clap_general",
    "LAION-CLAP HTSAT-base, general audio (Hugging Face hub; downloads)",
)
register_model(
    "laion/larger_clap_music_and_speech",
    "hf_clap",
    "laion/larger_clap_music_and_speech",
    "LAION-CLAP HTSAT-base, music and speech (Hugging Face hub; downloads)",
)
register_model(
    "msclap-2022",
    "msclap",
    "2022",
    "MS-CLAP 2022, the paper's base model: CNN14 + BERT, 44.1 kHz, 5 s (downloads "
    "CLAP_weights_2022.pth)",
)
register_model(
    "msclap-2023",
    "msclap",
    "2023",
    "MS-CLAP 2023: HTSAT + GPT-2, 44.1 kHz, 7 s (downloads CLAP_weights_2023.pth)",
)
for _release, _about in {
    "630k-best": "HTSAT-tiny, unfused, LAION-630k",
    "630k-audioset-best": "HTSAT-tiny, unfused, LAION-630k + AudioSet",
    "630k-fusion-best": "HTSAT-tiny, fused, LAION-630k",
    "630k-audioset-fusion-best": "HTSAT-tiny, fused, LAION-630k + AudioSet",
    "music-speech-audioset": "HTSAT-base, unfused, music + speech + AudioSet",
    "music-audioset": "HTSAT-base, unfused, music + AudioSet",
    "music-speech": "HTSAT-base, unfused, music + speech",
}.items():
    register_model(
        f"laion-clap-{_release}",
        "laion_clap",
        _release,
        f"LAION-CLAP native checkpoint: {_about}, RoBERTa (downloads the .pt)",
    )
del _release, _about


def backend_class(backend: str) -> type[AudioTextModel]:
    try:
        module_name, class_name = BACKENDS[backend].split(":")
    except KeyError:
        raise ClaptuneError(
            f"unknown model backend {backend!r}; known: {', '.join(BACKENDS)}"
        ) from None
    return getattr(importlib.import_module(module_name), class_name)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def registered_models() -> list[RegisteredModel]:
    return [_REGISTRY[n] for n in list_models()]


# Backends whose registered sources live on the Hugging Face Hub, so a revision applies.
HUB_BACKENDS = ("hf_clap", "msclap", "laion_clap")


def split_revision(spec: str) -> tuple[str, str | None]:
    """``"msclap-2022@v1"`` -> ``("msclap-2022", "v1")``: a Hub revision (branch, tag or commit)
    pinned on a registered name or hub id. A spec naming an existing path is never split."""
    name, sep, revision = spec.rpartition("@")
    if not sep or not name or not revision or Path(spec).expanduser().exists():
        return spec, None
    return name, revision


def _with_class_head(model: AudioTextModel, path: Path) -> AudioTextModel:
    """``model`` with the class head saved beside it (``claptune.models.class_head``) as its
    ``class_head`` attribute, which ``claptune zeroshot`` applies when it holds every class asked for."""
    from claptune.models.class_head import HEAD_FILE, ClassHead

    try:
        head = ClassHead.load(path)
    except Exception as err:  # a damaged file: name it, not a deserialiser's traceback
        raise ClaptuneError(
            f"{path / HEAD_FILE} cannot be read ({type(err).__name__}: {err}); remove it to "
            "load the model without its class head"
        ) from None
    if head is not None:
        model.class_head = head
    return model


def load_model(spec: str | Path, revision: str | None = None, **kwargs) -> AudioTextModel:
    """Load a model from a registered name, a local directory or a Hugging Face hub id.

    ``revision`` (or a ``@revision`` suffix on the spec) pins the Hub revision of a registered
    Hub model or hub id; published weights come through the Hugging Face cache
    (``HF_HUB_OFFLINE=1`` uses it without network).
    """
    spec_str = str(spec)
    if not isinstance(spec, Path):
        spec_str, pinned = split_revision(spec_str)
        if pinned and revision and pinned != revision:
            raise ClaptuneError(
                f"model {spec!r} pins revision {pinned!r} but revision {revision!r} was also given"
            )
        revision = revision or pinned
    if spec_str in _REGISTRY:
        entry = _REGISTRY[spec_str]
        if revision is not None:
            if entry.backend not in HUB_BACKENDS:
                raise ClaptuneError(
                    f"model {spec_str!r} is not on the Hugging Face Hub; a revision does not apply"
                )
            kwargs["revision"] = revision
        return backend_class(entry.backend).from_source(entry.source, **kwargs)
    path = Path(spec_str).expanduser()
    if revision is not None and path.exists():
        raise ClaptuneError(f"{path} is a local path; a revision applies to Hub models only")
    if path.is_dir():
        from claptune.models.base import MODEL_MARKER

        marker = path / MODEL_MARKER
        from claptune.models.checkpoints import read_json  # torch: only once a model loads

        if marker.is_file():
            saved = read_json(marker)
            backend = saved.get("backend") if isinstance(saved, dict) else None
            if backend not in BACKENDS:
                raise ClaptuneError(
                    f"{marker} names no known backend ({backend!r}); known: {', '.join(BACKENDS)}"
                )
            return _with_class_head(backend_class(backend).load(path, **kwargs), path)
        for backend in BACKENDS:
            cls = backend_class(backend)
            if cls.recognizes(path):
                return _with_class_head(cls.load(path, **kwargs), path)
        for config in sorted(path.glob("*.json")):
            read_json(config)  # a damaged config hides the format: name it, not the folder
        raise ClaptuneError(f"model directory {path} is not in a format claptune knows")
    if path.exists():
        for backend in BACKENDS:
            cls = backend_class(backend)
            if cls.recognizes(path):
                return cls.load(path, **kwargs)
        raise ClaptuneError(f"model file {path} is not in a format claptune knows")
    if spec_str.count("/") == 1 and not spec_str.startswith((".", "/", "~")):
        if revision is not None:
            kwargs["revision"] = revision
        try:
            return backend_class("hf_clap").from_source(spec_str, **kwargs)
        except ClaptuneError as err:  # a typo of a registered hub id: say which one
            hint = did_you_mean(spec_str, _REGISTRY)
            if not hint:
                raise
            raise ClaptuneError(f"{err}{hint}") from None
    raise ClaptuneError(
        f"unknown model {spec_str!r}: not a registered name (see `claptune models`), a local "
        f"directory or a Hugging Face hub id{did_you_mean(spec_str, _REGISTRY)}"
    )


def __getattr__(name: str):
    if name == "AudioTextModel":  # imported on first use, with torch
        from claptune.models.base import AudioTextModel

        return AudioTextModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AudioTextModel",
    "BACKENDS",
    "load_model",
    "split_revision",
    "list_models",
    "register_model",
    "registered_models",
    "backend_class",
]
