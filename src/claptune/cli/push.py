"""`claptune push`: upload a model folder claptune wrote to the Hugging Face Hub.

    claptune push RUN/model --repo-id USER/NAME [--private] [--revision BRANCH]

The repository is created if it does not exist (``--private`` applies then); ``--revision``
uploads to a branch (created if missing). The folder's model card (README.md) goes with it;
a folder without one gets a card first. Log in with ``hf auth login`` or set ``HF_TOKEN``;
``HF_ENDPOINT`` points at another Hub.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from claptune.cli._common import sub_parser


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub_parser(sub, "push", __doc__)
    p.add_argument("folder", type=Path, help="a model folder claptune saved, e.g. RUN/model")
    p.add_argument("--repo-id", required=True, help="Hub repository, USER/NAME or ORG/NAME")
    p.add_argument(
        "--private",
        action="store_true",
        help="create the repository private (default: public; an existing "
        "repository keeps its visibility)",
    )
    p.add_argument(
        "--revision",
        default=None,
        help="branch to upload to, created if missing (default: the repository's default branch)",
    )
    p.add_argument(
        "--commit-message",
        default=None,
        help="commit message (default: 'Upload FOLDER with claptune')",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from claptune.hub import push_folder

    result = push_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
    )
    print(
        f"pushed {args.folder} to {result.repo_url} (branch {result.revision}): {result.commit_url}"
    )
    return 0
