"""`claptune models`: list the registered models."""

from __future__ import annotations

import argparse

from claptune.cli._common import sub_parser


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return sub_parser(sub, "models", __doc__)


def run(args: argparse.Namespace) -> int:
    from claptune.models import registered_models

    for entry in registered_models():
        print(f"{entry.name:40s} {entry.backend:10s} {entry.description}")
    return 0
