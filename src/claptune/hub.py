"""The Hugging Face Hub: published weights in, claptune's model folders out.

``hub_download(repo_id, filename, revision=None)`` is ``huggingface_hub.hf_hub_download``
with claptune's one-line errors: it uses the Hugging Face cache (``HF_HOME`` /
``HF_HUB_CACHE``), honours ``HF_HUB_OFFLINE=1`` (no network at all, the cached copy or a clear
error) and ``HF_ENDPOINT``, and pins a ``revision`` (a branch, tag or commit hash) where one is
given. The published MS-CLAP and LAION-CLAP files are fetched through it.

``push_folder(folder, repo_id, private=False, revision=None)`` uploads a model folder that
claptune wrote (with its model card, ``claptune.card``) through ``HfApi.create_repo`` and
one ``HfApi.create_commit``; the run configs beside the model are published with their local
absolute paths cut to their last part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from claptune.errors import ClaptuneError

logger = logging.getLogger(__name__)


def hub_download(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """The local path of ``filename`` in the Hub repository ``repo_id`` at ``revision``.

    Served from the Hugging Face cache when present; downloaded into it otherwise (unless
    ``HF_HUB_OFFLINE`` is set). Every failure is a ``ClaptuneError`` of one line.
    """
    import huggingface_hub
    from huggingface_hub import errors

    where = f"{repo_id}/{filename}" + (f" at revision {revision}" if revision else "")
    logger.debug("fetching %s from the Hugging Face Hub (or its cache)", where)
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision))
    except errors.RevisionNotFoundError:
        raise ClaptuneError(f"revision {revision!r} does not exist in {repo_id}") from None
    except errors.RepositoryNotFoundError:
        raise ClaptuneError(
            f"Hugging Face repository {repo_id} not found (or private: log in with `hf auth login`)"
        ) from None
    except errors.LocalEntryNotFoundError:
        # offline mode, or no connection and no cached copy (caught before its base class
        # EntryNotFoundError, which also means "not in the repository")
        raise ClaptuneError(
            f"{where} is not in the Hugging Face cache ({_cache_dir()}) and cannot be "
            f"downloaded{' (HF_HUB_OFFLINE is set)' if _offline() else ''}; run once with "
            f"network, or `hf download {repo_id} {filename}`, or pass the local file path as "
            "the model"
        ) from None
    except errors.EntryNotFoundError:
        raise ClaptuneError(
            f"{repo_id} has no file {filename}" + (f" at revision {revision}" if revision else "")
        ) from None
    except network_errors() as err:
        raise ClaptuneError(f"cannot download {where} ({_reason(err)})") from None


def network_errors() -> tuple[type[BaseException], ...]:
    """What a failed request raises: ``OSError`` (sockets, urllib), ``http.client``'s errors,
    the Hub's HTTP errors and those of whichever HTTP client ``huggingface_hub`` uses
    (``httpx``, ``httpx2``, ``requests``: a refused connection is not an ``OSError`` there)."""
    import http.client
    import importlib

    found: list[type[BaseException]] = [OSError, http.client.HTTPException]
    for module, name in (
        ("huggingface_hub.errors", "HfHubHTTPError"),
        ("httpx", "HTTPError"),
        ("httpx2", "HTTPError"),
        ("requests", "RequestException"),
    ):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _reason(err: BaseException, token: str | None = None) -> str:
    """The first line of ``err``, naming its kind, with every access token blanked out."""
    import os
    import re

    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    for secret in (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"hf_[A-Za-z0-9]{6,}", "hf_***", text)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


@dataclass(frozen=True)
class PushResult:
    """Where a pushed folder landed."""

    repo_url: str
    commit_url: str
    revision: str


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> PushResult:
    """Upload a claptune model folder to the Hub repository ``repo_id`` (created if absent).

    ``revision`` is a branch (created from the default branch if missing; default the
    repository's default branch). The folder must hold a model claptune saved; a folder
    without a model card gets one first (``claptune.card.ensure_model_card``). Checkpoints
    and hidden files are not uploaded.
    """
    from huggingface_hub import HfApi, errors

    from claptune.card import ensure_model_card
    from claptune.models.base import MODEL_MARKER

    folder = Path(folder)
    if not folder.is_dir():
        raise ClaptuneError(f"{folder} is not a folder")
    if not (folder / MODEL_MARKER).is_file() and not (folder / "config.json").is_file():
        raise ClaptuneError(
            f"{folder} is not a model folder (no {MODEL_MARKER} or "
            "config.json); push the model/ folder of a run"
        )
    ensure_model_card(folder)
    api = HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        logger.info(
            "uploading %s to %s%s", folder, repo_id, f" (branch {revision})" if revision else ""
        )
        commit = api.create_commit(
            repo_id=repo_id,
            operations=_uploads(folder),
            revision=revision,
            repo_type="model",
            commit_message=commit_message or f"Upload {folder.name} with claptune",
        )
    except errors.HFValidationError as err:
        raise ClaptuneError(f"invalid repository id or revision: {err}") from None
    except network_errors() as err:
        raise ClaptuneError(f"cannot push {folder} to {repo_id} ({_reason(err, token)})") from None
    return PushResult(
        repo_url=str(repo), commit_url=str(commit.commit_url), revision=revision or "main"
    )


def _uploads(folder: Path) -> list:
    """One ``CommitOperationAdd`` per file of ``folder`` to publish: not checkpoints, hidden
    files or partial downloads; the run configs saved beside a model (``*_config.json``) with
    every absolute local path cut to ``<local>/<its last part>``, so that no home folder or
    cache location of the machine it was made on is published."""
    from huggingface_hub import CommitOperationAdd

    ops = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if (
            not path.is_file()
            or rel.startswith("checkpoint/")
            or any(part.startswith(".") for part in rel.split("/"))
            or rel.endswith(".part")
        ):
            continue
        content: str | bytes = str(path)
        if path.name.endswith("_config.json") and path.name != "processor_config.json":
            content = _without_local_paths(path) or content
        ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=content))
    return ops


def _without_local_paths(path: Path) -> bytes | None:
    """The JSON of ``path`` with absolute paths cut (None: not JSON, published as it is)."""
    import json
    import posixpath

    def cut(value):
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, str) and (value.startswith(("/", "~")) or value[1:3] == ":\\"):
            return f"<local>/{posixpath.basename(value.rstrip('/').replace(chr(92), '/'))}"
        return value

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (json.dumps(cut(data), indent=2) + "\n").encode()


__all__ = ["hub_download", "push_folder", "PushResult"]
