"""The README as a front page and the docs: the two commands, the Python example (run on a tiny
model), the docs index and layout complete, docs/benchmarks.md in step with bench/results/,
and no issue-tracker language in what users read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = (
    "bash scripts/setup.sh && CLAPTUNE_DATA=../shared/data/esc50-subset .venv/bin/claptune demo "
    "--out runs/demo",
    "bash scripts/setup.sh && .venv/bin/python -m pytest -q",
)


def test_readme_front_page_commands_and_length():
    lines = README.splitlines()
    assert len(lines) <= 200
    assert all(command in lines for command in COMMANDS)
    assert COMMANDS[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_links_every_doc_and_lays_out_every_module():
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{doc.name})" in README, doc.name
    layout = README.split("## Layout", 1)[1]
    src = ROOT / "src" / "claptune"
    for path in src.iterdir():
        if path.name.startswith("__pycache__"):
            continue
        assert re.search(rf"\b{re.escape(path.name)}", layout), path.name
        if path.is_dir() and path.name != "cli":  # cli/: one module per sub-command
            for module in path.glob("*.py"):
                if module.name != "__init__.py":
                    assert module.name in layout, f"{path.name}/{module.name}"


def test_no_issue_tracker_language_in_user_docs():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pattern = re.compile(r"\bissues?\b|target (is )?met|\bmissed\b", re.IGNORECASE)
    found = [
        f"{p.name}: {m.group(0)}"
        for p in pages
        for m in pattern.finditer(p.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_benchmarks_doc_is_generated_from_the_results():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_benchmarks_doc.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def _tone(path: Path, freq: float, seconds: float = 1.0, seed: int = 0) -> None:
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * 16000)) / 16000
    noise = np.random.default_rng(seed).standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * noise).astype(np.float32), 16000)


def test_readme_python_example_runs(tiny_clap_dir, tmp_path, monkeypatch, capsys):
    """The README's example as written, on a tiny model and a tiny folder task: only the line
    naming the model and the data changes."""
    code = re.search(r"```python\n(.*?)```", README, re.DOTALL).group(1)
    assert len(code.strip().splitlines()) <= 12
    target, corpus = tmp_path / "target", tmp_path / "corpus"
    for c, (name, freq) in enumerate([("dog_bark", 300), ("rain", 900), ("siren", 2000)]):
        for i in range(4):
            _tone(target / name / f"{i}.wav", freq * (1 + 0.05 * i), seed=10 * c + i)
    lines = ["path,caption,source,license"]
    for i in range(8):
        _tone(corpus / f"audio/{i}.wav", 250 + 150 * i, seconds=0.5, seed=50 + i)
        lines.append(f"audio/{i}.wav,{['a dog barking', 'rain falling'][i % 2]} {i},test,CC0-1.0")
    (corpus / "manifest.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("CLAPTUNE_CORPUS", str(corpus))
    monkeypatch.chdir(tmp_path)
    names = 'MODEL, TARGET, ROOT = "default", "esc50", "../shared/data/esc50-subset"'
    assert names in code
    code = code.replace(
        names, f"MODEL, TARGET, ROOT = {str(tiny_clap_dir)!r}, 'folder', {str(target)!r}"
    )
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2].startswith("test part: ") and float(printed[-1]) >= 0
    assert (tmp_path / "runs" / "api" / "report.html").is_file()


@pytest.mark.parametrize("page", ["architecture.md", "benchmarks.md"])
def test_new_pages_exist(page):
    assert (ROOT / "docs" / page).stat().st_size > 0


def _vocabulary_table() -> list[tuple[str, str, str, list[str]]]:
    """(flag, meaning, default, commands) of the README's vocabulary table."""
    lines = README.splitlines()
    start = lines.index("| flag | meaning | default | commands |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        flag, meaning, default, commands = (c.strip() for c in line.strip("|").split("|"))
        rows.append((flag.strip("`"), meaning, default, commands))
    return rows


def _help(command: str) -> str:
    import contextlib
    import io

    from claptune.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([command, "--help"])
    return out.getvalue()


def _option_help(text: str, flag: str) -> str | None:
    """The help of ``flag`` in a --help text (its lines up to the next option), or None."""
    import re

    found = re.search(rf"^  {re.escape(flag)}\b(.*?)(?=^  -|\Z)", text, re.S | re.M)
    return " ".join(found.group(1).split()) if found else None


def test_readme_vocabulary_table_is_what_every_help_says():
    """Each flag of the README's table is in exactly the commands it lists, and its help there
    shows the listed default."""
    from claptune.cli import COMMANDS

    helps = {name: _help(name) for name in COMMANDS}
    table = _vocabulary_table()
    assert {row[0] for row in table} >= {"--target", "--template", "--device", "--quiet"}
    for flag, _meaning, default, listed in table:
        names = set(COMMANDS) if listed == "all" else {c.strip() for c in listed.split(",")}
        having = {name for name, text in helps.items() if _option_help(text, flag) is not None}
        assert having == names, (flag, sorted(having ^ names))
        # "`$X`; curate: none; pretrain: required": one default, and the commands that differ
        first, *others = (part.strip() for part in default.split(";"))
        exceptions = dict(part.split(": ", 1) for part in others)
        for name in names:
            text = _option_help(helps[name], flag)
            shown = exceptions.get(name, first).strip("`")
            if shown == "off":
                assert "(default: off)" in text, (flag, name)
            elif shown == "required":
                assert "(required)" in text, (flag, name, text)
            elif shown:
                assert f"default: {shown}" in text, (flag, name, text)
