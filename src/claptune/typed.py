"""Typed settings from plain mappings: the one place where unknown keys are rejected.

Every settings dataclass of claptune (``ImproveConfig``, ``TrainConfig``, ``CurationSettings``,
the pretraining recipe, the model configs) is built from JSON through ``from_mapping``: a key
that is not a field fails with one line naming it (and the field it was probably meant to be);
a field whose default is itself a settings dataclass (``ImproveConfig.train``,
``ImproveConfig.curation``, ``CurationSettings.search``) takes a mapping of overrides of that
default, so a saved config and a hand-written one with three keys are read the same way.

A nested field's ``metadata["what"]`` names its keys in errors ("training override"). Each
field may carry ``metadata={"help": ...}`` (and ``"flag"``, ``"choices"``): the CLI
generates its flags from them (``claptune.cli._common.add_fields``), so a setting's name, type,
default and help live in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from claptune.errors import ClaptuneError, did_you_mean

T = TypeVar("T")


def cli(help: str, flag: str | None = None, **more: Any) -> dict[str, Any]:
    """A field's CLI metadata: its help, its flag when not ``--<field-name>``, and ``choices``,
    ``nargs``, ``metavar``, ``negate`` (a ``--no-...`` flag), ``default_text`` (how the default
    reads), ``what`` (its keys' name in errors)."""
    return {"help": help, **({"flag": flag} if flag else {}), **more}


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (calling its factory), or ``dataclasses.MISSING``."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def from_mapping(cls: type[T], values: Mapping[str, Any], what: str) -> T:
    """``cls(**values)``, rejecting keys that are not fields of ``cls`` (``what`` names them in
    the error: "unknown training settings: bta; did you mean 'beta'?"). A mapping given for a
    field whose default is a dataclass overrides that default's fields, recursively."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ClaptuneError(
            f"unknown {what}: {', '.join(map(str, unknown))}"
            + did_you_mean(str(unknown[0]), fields)
        )
    kwargs = dict(values)
    for name, value in values.items():
        default = field_default(fields[name])
        if isinstance(value, Mapping) and dataclasses.is_dataclass(default):
            label = fields[name].metadata.get("what", f"{what} {name}")
            kwargs[name] = override(default, value, label)
        else:
            _check_scalar(fields[name], value, what)
    return cls(**kwargs)


_SCALARS = {"int", "float", "bool", "str", "None"}


def _check_scalar(f: dataclasses.Field, value: Any, what: str) -> None:
    """A value given for a field annotated with plain scalars (``float``, ``int | None``,
    ``str | float``) has one of those types (an int is a float; a bool is neither): a typo
    such as ``lr=abc`` is a one-line error here, not a comparison failing deep inside."""
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    parts = {p.strip() for p in annotation.split("|")}
    if not parts or not parts <= _SCALARS:
        return
    if value is None:
        ok = "None" in parts
    elif isinstance(value, bool):
        ok = "bool" in parts
    elif isinstance(value, int):
        ok = bool({"int", "float"} & parts)
    elif isinstance(value, float):
        ok = "float" in parts
    elif isinstance(value, str):
        ok = "str" in parts
    else:
        ok = False
    if not ok:
        wanted = " or ".join(sorted(p if p != "None" else "none" for p in parts))
        raise ClaptuneError(f"{what} {f.name}: expected {wanted}, got {value!r}")


def override(base: T, values: Mapping[str, Any], what: str) -> T:
    """A copy of the dataclass ``base`` with the fields in ``values`` replaced (checked as by
    ``from_mapping``)."""
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    return from_mapping(type(base), {**current, **values}, what)


def changed_fields(value: Any, base: Any) -> dict[str, Any]:
    """The fields of dataclass ``value`` that differ from ``base``'s (nested dataclasses by
    their own changed fields): what a user set, for a compact record."""
    out = {}
    for f in dataclasses.fields(value):
        mine, theirs = getattr(value, f.name), getattr(base, f.name)
        if dataclasses.is_dataclass(mine) and dataclasses.is_dataclass(theirs):
            sub = changed_fields(mine, theirs)
            if sub:
                out[f.name] = sub
        elif mine != theirs:
            out[f.name] = mine
    return out


__all__ = ["changed_fields", "cli", "field_default", "from_mapping", "override"]
