"""The command line as a whole: lazy sub-commands, --version, and one vocabulary of flags.

Every sub-command's parser is built and its options read, so a new flag that breaks the
vocabulary (a second spelling of --quiet, a default not shown in --help) fails here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "scipy", "transformers", "numpy")
COMMAND_NAMES = (
    "models",
    "embed",
    "zeroshot",
    "curate",
    "train",
    "pretrain",
    "improve",
    "adapt",
    "demo",
    "ablate",
    "push",
)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from claptune.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _visible_options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: a for a in p._actions if a.help != argparse.SUPPRESS for flag in a.option_strings}


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["models"], ["--version"], ["improv"], *([c, "--help"] for c in COMMAND_NAMES)],
)
def test_help_and_models_do_not_import_torch(argv):
    """`claptune --help`, every `claptune COMMAND --help` and `claptune models` load no
    sub-command they do not run and nothing heavy: no torch, scipy, transformers or numpy
    (bench/bench_cli.py measures the time)."""
    code = (
        "import sys, contextlib, io\n"
        "from claptune.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_version_matches_the_package(capsys):
    from claptune.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    version = re.search(
        r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE
    ).group(1)
    assert capsys.readouterr().out.strip() == f"claptune {version}"


def test_command_names_here_are_the_registry():
    from claptune.cli import COMMANDS

    assert tuple(COMMANDS) == COMMAND_NAMES


def test_key_value_keys_in_help_are_the_dataclass_fields():
    """--curation and --train list CurationSettings' and TrainConfig's fields, read from the
    dataclasses themselves (their modules load without torch): exactly the dataclasses' own."""
    import argparse
    import dataclasses

    from claptune.cli._common import add_settings_flags
    from claptune.curation import CurationSettings
    from claptune.train import TrainConfig

    p = argparse.ArgumentParser()
    add_settings_flags(p)
    helps = {a.dest: a.help for a in p._actions}
    for dest, config in (("curation", CurationSettings), ("train", TrainConfig)):
        listed = helps[dest].split("keys: ")[1].split(" (default")[0].split(", ")
        assert listed == [f.name for f in dataclasses.fields(config)]


# flags of a config field with a meaning of their own: ablate's --methods takes "+"-joined
# combinations to compare, demo's --root is ESC-50's
# flags whose help a command words its own way (adapt has no splits: its seed draws the guard slice)
SPECIAL_FLAGS = {
    ("ablate", "methods"),
    ("demo", "root"),
    ("adapt", "seed"),
    ("adapt", "audio_per_class"),
}


def test_run_flags_are_generated_once_from_the_config_fields():
    """Every ImproveConfig flag of improve, ablate and adapt comes from the field's metadata:
    one help text and one default per setting, whichever command shows it."""
    import argparse
    import dataclasses

    from claptune.cli import build_parser
    from claptune.improve.config import ImproveConfig

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    fields = {f.name: f for f in dataclasses.fields(ImproveConfig)}
    seen: dict[str, str] = {}
    for command in ("improve", "ablate", "adapt", "demo"):
        for action in sub.choices[command]._actions:
            if action.dest not in fields or (command, action.dest) in SPECIAL_FLAGS:
                continue
            if "help" not in fields[action.dest].metadata:  # KEY=VALUE overrides
                assert action.dest in ("curation", "train"), (command, action.dest)
                continue
            if action.help:
                text = action.help.split(" (default")[0].split(" (required")[0]
                assert text == fields[action.dest].metadata["help"], (command, action.dest)
                seen.setdefault(action.dest, command)
    assert {"model", "seed", "corpus", "templates", "transduction", "guard_fraction"} <= set(seen)
    assert {"class_head"} <= set(seen)  # --class-head, on improve, ablate and adapt
    adapt_seed = next(a for a in sub.choices["adapt"]._actions if a.dest == "seed")
    assert "guard" in adapt_seed.help and "split i" not in adapt_seed.help


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["improv", "--help"], "did you mean 'improve'?"),
        (["improve", "--target", "esc-50", "--out", "o"], "did you mean 'esc50'?"),
        (["ablate", "--target", "US8K", "--out", "o"], "did you mean 'us8k'?"),
        (["improve", "--out", "o"], "required: --target"),
    ],
)
def test_parse_errors_are_one_line_with_a_suggestion(argv, expected, capsys):
    from claptune.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and err.startswith("claptune")
    assert "usage:" not in err


def test_unknown_model_name_suggests_a_registered_one():
    from claptune import load_model
    from claptune.errors import ClaptuneError

    with pytest.raises(ClaptuneError, match="did you mean 'laion-clap-630k-best'"):
        load_model("laion-clap-630k-bset")
    with pytest.raises(ClaptuneError) as err:
        load_model("zzzz-nothing-like-it")
    assert "did you mean" not in str(err.value)
    # a hub id one letter off a registered one (offline here: the Hub is not asked)
    with pytest.raises(ClaptuneError, match="did you mean 'laion/clap-htsat-unfused'"):
        load_model("laion/clap-htsat-unfusd")


def test_lazy_listing_matches_each_command_module():
    """The one-line helps in claptune.cli.COMMANDS are what each module registers."""
    from claptune.cli import COMMANDS, build_parser

    full = build_parser()
    action = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    registered = {a.dest: a.help for a in action._choices_actions}
    assert registered == {name: help_text for name, (_, help_text) in COMMANDS.items()}
    lazy = build_parser(["models"])  # one command built in full, the others listed
    assert "--help" in _visible_options(lazy._subparsers._group_actions[0].choices["models"])


def test_every_option_shows_its_default():
    from claptune.cli._common import HelpFormatter

    formatter = HelpFormatter("claptune")
    missing = []
    for name, p in _subcommands().items():
        for flag, action in _visible_options(p).items():
            if flag in ("-h", "--help") or flag != action.option_strings[-1]:
                continue
            text = formatter._get_help_string(action)
            if "default" not in text and "required" not in text and not action.required:
                missing.append(f"{name} {flag}")
    assert missing == []


# flag -> the sub-commands that must offer it under that one name
VOCABULARY = {
    "--quiet": (
        "embed",
        "zeroshot",
        "curate",
        "train",
        "pretrain",
        "improve",
        "adapt",
        "demo",
        "ablate",
    ),
    "--device": ("embed", "zeroshot", "curate", "train", "improve", "adapt", "demo", "ablate"),
    "--cache-dir": (
        "zeroshot",
        "curate",
        "train",
        "pretrain",
        "improve",
        "adapt",
        "demo",
        "ablate",
    ),
    "--template": ("zeroshot", "curate", "improve", "adapt", "ablate"),
    "--target": ("zeroshot", "curate", "improve", "ablate"),
}
OLD_SPELLINGS = ("--no-progress", "--dataset", "--templates", "--cache")


def test_one_vocabulary_across_sub_commands():
    commands = _subcommands()
    for flag, names in VOCABULARY.items():
        for name in names:
            assert flag in _visible_options(commands[name]), f"{name} lacks {flag}"
    for name, p in commands.items():
        shown = _visible_options(p)
        assert not set(OLD_SPELLINGS) & set(shown), name
        if "--template" in shown:
            assert shown["--template"].nargs is None and isinstance(
                shown["--template"], argparse._AppendAction
            ), f"{name} --template not repeatable"
        if "--device" in shown:
            assert "auto" in shown["--device"].help, name
    helps = {
        commands[n]._option_string_actions["--num-workers"].help.split(" (default")[0]
        for n in commands
        if "--num-workers" in commands[n]._option_string_actions
    }
    assert len(helps) == 1  # one meaning


def test_old_spellings_still_parse():
    from claptune.cli import build_parser

    argv = [
        "zeroshot",
        "--model",
        "m",
        "--dataset",
        "esc50",
        "--templates",
        "default",
        "x {}",
        "--no-progress",
        "--cache",
        "c",
        "--out",
        "o",
    ]
    args = build_parser(argv).parse_args(argv)
    assert (args.target, args.templates, args.quiet, args.cache_dir) == (
        "esc50",
        ["default", "x {}"],
        True,
        Path("c"),
    )
    argv = [
        "zeroshot",
        "--model",
        "m",
        "--target",
        "esc50",
        "--template",
        "default",
        "--template",
        "x {}",
        "--out",
        "o",
    ]
    args = build_parser(argv).parse_args(argv)
    assert (args.target, args.templates, args.quiet, args.device) == (
        "esc50",
        ["default", "x {}"],
        False,
        "auto",
    )


def test_key_value_options_list_their_keys():
    import dataclasses

    from claptune.curation import CurationSettings
    from claptune.train import TrainConfig

    commands = _subcommands()
    for name in ("improve", "adapt", "ablate"):
        options = commands[name]._option_string_actions
        for flag, config in (("--curation", CurationSettings), ("--train", TrainConfig)):
            for field in dataclasses.fields(config):
                assert field.name in options[flag].help, (name, flag, field.name)


def test_train_zeroshot_and_improve_share_defaults():
    """The same model gives the same "before" number through zeroshot and improve, and train
    fine-tunes with improve's loss."""
    from claptune.cli import build_parser
    from claptune.improve.config import ImproveConfig
    from claptune.train import TrainConfig

    assert TrainConfig().loss == ImproveConfig().loss == "hard"
    argv = ["train", "--model", "m", "--pairs", "p.csv", "--out", "o"]
    assert build_parser(argv).parse_args(argv).loss is None  # -> TrainConfig's default
    assert ImproveConfig().templates == ("ensemble",)


def _tone(path: Path, freq: float, seconds: float = 1.0, rate: int = 16000, seed: int = 0):
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * noise).astype(np.float32), rate)


def test_zeroshot_gives_improves_before_number(tiny_clap_dir, tmp_path):
    """`claptune zeroshot` with its defaults predicts every clip as improve's teacher does."""
    from claptune.cli import main
    from claptune.improve.config import ImproveConfig
    from claptune.improve.workspace import Workspace

    target, corpus = tmp_path / "target", tmp_path / "corpus"
    for c, (name, freq) in enumerate([("dog_bark", 300), ("rain", 900), ("cafe_restaurant", 2000)]):
        for i in range(3):
            _tone(target / name / f"{i}.wav", freq * (1 + 0.05 * i), seed=10 * c + i)
    lines = ["path,caption,source,license"]
    for i in range(4):
        _tone(corpus / f"audio/{i}.wav", 250 + 150 * i, seconds=0.5, seed=50 + i)
        lines.append(f"audio/{i}.wav,a tone {i},test,CC0-1.0")
    (corpus / "manifest.csv").write_text("\n".join(lines) + "\n")

    assert (
        main(
            [
                "zeroshot",
                "--model",
                str(tiny_clap_dir),
                "--target",
                "folder",
                "--root",
                str(target),
                "--num-workers",
                "0",
                "--quiet",
                "--out",
                str(tmp_path / "zs"),
            ]
        )
        == 0
    )
    zs = json.loads((tmp_path / "zs" / "zeroshot.json").read_text())
    ws = Workspace(
        ImproveConfig(
            model=str(tiny_clap_dir),
            target="folder",
            root=str(target),
            corpus=str(corpus),
            corpus_holdout=0.0,
            n_splits=1,
            n_seeds=1,
            cache_dir=None,
        ),
        tmp_path / "ws",
        progress=False,
    )
    names = zs["class_names"]
    by_path = {p["path"]: p["predicted"] for p in zs["predictions"]}
    assert [by_path[item] for item in ws.items] == [names[k] for k in ws.pred_before]
    assert zs["accuracy"] == pytest.approx(float(np.mean(ws.pred_before == ws.labels)), abs=0)


@pytest.mark.parametrize(
    "command", [["improve", "--target", "esc50"], ["curate", "--method", "ds"]]
)
def test_threshold_takes_several_values_either_way(command):
    from claptune.cli import build_parser

    argv = [*command, "--out", "o", "--threshold", "ds=0.5", "a2a=q0.2", "--threshold", "du=0.1"]
    assert build_parser(argv).parse_args(argv).threshold == ["ds=0.5", "a2a=q0.2", "du=0.1"]


def test_a_log_file_gets_a_bar_line_at_most_every_30_s():
    """tqdm reads TQDM_* once, when first imported: ``main`` imports it only after setting
    them, so a command whose stderr is a file (here a pipe) gets the 30 s throttle."""
    code = (
        "import sys\n"
        "import claptune.cli.models as models\n"
        "def run(args):\n"
        "    import tqdm\n"
        "    bar = tqdm.tqdm(total=1, file=sys.stderr)\n"
        "    print(bar.mininterval, bar.delay)\n"
        "    return 0\n"
        "models.run = run\n"
        "from claptune.cli import main\n"
        "sys.exit(main(['models']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert [float(x) for x in proc.stdout.split()] == [30.0, 30.0]
