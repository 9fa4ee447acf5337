"""Hugging Face conventions: published weights through the HF cache (HF_HUB_OFFLINE, revision
pinning), a model card in every saved model folder, `claptune push`, and logging.

Network-free: the Hub is a local stand-in (tests/hub_standin.py) on 127.0.0.1 that records
every request, and the HF cache is a folder built here in the cache's own layout
(``models--org--name/refs/main`` + ``snapshots/<commit>/<file>``).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hub_standin import HubStandIn

SRC = Path(__file__).resolve().parents[1] / "src"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _cache_file(
    hf_home: Path,
    repo_id: str,
    filename: str,
    data: bytes | None = None,
    source: Path | None = None,
    commit: str = COMMIT,
) -> Path:
    """Place a file in a Hugging Face cache under HF_HOME, as hf_hub_download would."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    path = repo / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else source.read_bytes())
    return path


def _tiny_laion_checkpoint(path: Path) -> Path:
    from transformers import ClapModel

    from test_laion_clap import tiny_config, to_native

    torch.manual_seed(0)
    model = ClapModel(tiny_config()).eval()
    torch.save({"epoch": 1, "state_dict": to_native(model.state_dict())}, path)
    return path


def _tiny_roberta_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import RobertaTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz .,!", start=len(vocab)):
        vocab[ch] = i
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def _claptune(args: list[str], env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a fresh process (huggingface_hub reads HF_* variables at import)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_"))
    }
    env.update(PYTHONPATH=str(SRC), **env_extra)
    code = "import sys; from claptune.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- downloads through the Hugging Face cache ----------------------------------------------------


def test_offline_with_empty_cache_is_one_line_exit_2_and_no_request(tmp_path):
    (tmp_path / "captions.txt").write_text("a dog barking\n")
    with HubStandIn() as hub:
        proc = _claptune(
            ["embed", "--model", "msclap-2022", "--text", "captions.txt", "--out", "store"],
            {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": hub.url},
            tmp_path,
        )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("claptune embed: error:"), proc.stderr
    assert "microsoft/msclap/CLAP_weights_2022.pth" in lines[0]
    assert "HF_HUB_OFFLINE" in lines[0] and str(tmp_path / "hf" / "hub") in lines[0]
    assert hub.requests == []  # offline means no network attempt at all


def test_populated_cache_loads_offline_and_pins_revisions(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    from claptune.cli import main

    hf = tmp_path / "hf"
    _cache_file(
        hf,
        "lukewys/laion_clap",
        "630k-best.pt",
        source=_tiny_laion_checkpoint(tmp_path / "tiny.pt"),
    )
    tok_dir = tmp_path / "tok"
    _tiny_roberta_tokenizer().save_pretrained(tok_dir)
    from transformers import RobertaConfig

    RobertaConfig(vocab_size=64).save_pretrained(tok_dir)  # AutoTokenizer reads the config
    for f in tok_dir.iterdir():  # roberta-base's tokenizer, as the cache would hold it
        _cache_file(hf, "roberta-base", f.name, source=f)
    (tmp_path / "captions.txt").write_text("a dog barking\nrain\n")
    with HubStandIn() as hub:  # a fresh process, as a user runs it
        proc = _claptune(
            [
                "embed",
                "--model",
                "laion-clap-630k-best",
                "--text",
                "captions.txt",
                "--out",
                "store",
                "--no-progress",
            ],
            {"HF_HOME": str(hf), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": hub.url},
            tmp_path,
        )
    assert hub.requests == []
    assert proc.returncode == 0, proc.stderr
    assert "embedded 2 of 2 text items (16-d)" in proc.stdout

    # revisions, in process: the same cache, offline
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    argv = ["embed", "--text", str(tmp_path / "captions.txt"), "--no-progress"]
    assert (
        main(
            [*argv, "--model", f"laion-clap-630k-best@{COMMIT}", "--out", str(tmp_path / "pinned")]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                *argv,
                "--model",
                f"laion-clap-630k-best@{OTHER_COMMIT}",
                "--out",
                str(tmp_path / "other"),
            ]
        )
        == 2
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"revision {OTHER_COMMIT}" in lines[0], lines


def test_download_fills_the_hf_cache_then_offline_needs_no_network(tmp_path):
    weights = _tiny_laion_checkpoint(tmp_path / "tiny.pt").read_bytes()
    code = (
        "import sys; from claptune.hub import hub_download; "
        "print(hub_download('lukewys/laion_clap', '630k-best.pt', "
        "revision=sys.argv[1] if len(sys.argv) > 1 else None))"
    )
    env = {"PYTHONPATH": str(SRC), "HF_HOME": str(tmp_path / "hf")}
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_"))
    }
    with HubStandIn() as hub:
        hub.add_file("lukewys/laion_clap", "630k-best.pt", weights)
        env["HF_ENDPOINT"] = hub.url
        online = subprocess.run(
            [sys.executable, "-c", code],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        n_online = len(hub.requests)
        offline = subprocess.run(
            [sys.executable, "-c", code, hub.commit],
            env={**base, **env, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert online.returncode == 0, online.stderr
    path = Path(online.stdout.strip())
    assert path.read_bytes() == weights and f"snapshots/{hub.commit}/630k-best.pt" in str(path)
    assert n_online >= 1 and len(hub.requests) == n_online  # offline: the cache alone
    assert offline.returncode == 0, offline.stderr
    assert Path(offline.stdout.strip()) == path


def test_revision_reaches_the_backend_and_is_refused_where_meaningless(monkeypatch):
    from claptune.errors import ClaptuneError
    from claptune.models import load_model, split_revision
    from claptune.models.msclap import MSClapModel

    assert split_revision("msclap-2022@v1.0") == ("msclap-2022", "v1.0")
    assert split_revision("laion/clap-htsat-fused") == ("laion/clap-htsat-fused", None)
    seen = {}
    monkeypatch.setattr(
        MSClapModel,
        "from_source",
        classmethod(lambda cls, source, **kw: seen.update(source=source, **kw)),
    )
    load_model("msclap-2023@abc")
    assert seen == {"source": "2023", "revision": "abc"}
    load_model("msclap-2022", revision="main")
    assert seen == {"source": "2022", "revision": "main"}
    with pytest.raises(ClaptuneError, match="not on the Hugging Face Hub"):
        load_model("default@main")
    with pytest.raises(ClaptuneError, match="pins revision"):
        load_model("msclap-2022@a", revision="b")


# -- model cards ---------------------------------------------------------------------------------


def test_card_round_trips_through_modelcard_load(tmp_path):
    from huggingface_hub import ModelCard

    from claptune.card import BaseModel, CardInfo, CardResult, write_model_card

    info = CardInfo(
        made_by="claptune improve",
        base=BaseModel("microsoft/msclap", COMMIT, "mit"),
        datasets=["esc50", "captioned-sfx"],
        curation=["pseudo_refined", "ds"],
        loss="hard",
        model_name="m",
        results=[CardResult("esc50", "ESC-50", after=0.61, before=0.52)],
    )
    card = ModelCard.load(write_model_card(tmp_path, info))
    data = card.data
    assert data.base_model == "microsoft/msclap" and data.license == "mit"
    assert data.datasets == ["ashraq/esc50"]  # Hub ids only; captioned-sfx is local
    assert data.pipeline_tag == "zero-shot-audio-classification"
    assert {"claptune", "curation-pseudo_refined", "curation-ds", "loss-hard"} <= set(data.tags)
    assert data.claptune == {
        "made_by": "claptune improve",
        "curation": ["pseudo_refined", "ds"],
        "loss": "hard",
        "base_revision": COMMIT,
    }
    values = {r.metric_name: r.metric_value for r in data.eval_results}
    assert values == {"zero-shot accuracy (before)": 0.52, "zero-shot accuracy (after)": 0.61}
    assert {r.dataset_type for r in data.eval_results} == {"ashraq/esc50"}
    assert "| ESC-50 | test | accuracy | 52.0 % | 61.0 % |" in card.text


HUB_LICENSES = {"mit", "apache-2.0", "cc0-1.0", "cc-by-4.0"}  # the ids claptune writes


def test_card_is_hub_native_and_names_no_local_path(tmp_path, monkeypatch):
    """The header is what the Hub expects (library, base model, task, licence, Hub dataset
    ids, a model-index that huggingface_hub parses back) and no local path appears anywhere;
    the Hub's own validation (here its stand-in's endpoint, reached by ModelCard.validate)
    accepts it."""
    import yaml
    from huggingface_hub import ModelCard

    from claptune.card import BaseModel, CardInfo, CardResult, write_model_card

    folder = tmp_path / "deep" / "student"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "clap"}))
    corpus = tmp_path / "data" / "my-corpus"
    corpus.mkdir(parents=True)
    info = CardInfo(
        made_by="claptune improve",
        base=BaseModel("laion/clap-htsat-unfused", COMMIT, "apache-2.0"),
        datasets=["esc50", str(corpus), "someone/captions"],
        curation=["pseudo_refined"],
        loss="hard",
        model_name=f"{tmp_path}/teacher improved on esc50",
        results=[CardResult("esc50", "esc50", after=0.3, before=0.25, note=f"from {folder}")],
        details={"teacher": str(tmp_path / "teacher"), "settings": {"corpus": str(corpus)}},
    )
    path = write_model_card(folder, info)
    text = path.read_text()
    assert str(tmp_path) not in text and "/deep/" not in text
    assert "my-corpus (local)" in text and "teacher improved on esc50" in text
    header = yaml.safe_load(text.split("---", 2)[1])
    assert header["library_name"] == "transformers"
    assert header["base_model"] == "laion/clap-htsat-unfused"
    assert header["pipeline_tag"] == "zero-shot-audio-classification"
    assert header["license"] in HUB_LICENSES
    assert header["datasets"] == ["ashraq/esc50", "someone/captions"]  # Hub ids only
    (entry,) = header["model-index"]
    for result in entry["results"]:
        assert result["task"]["type"] == "zero-shot-audio-classification"
        assert result["dataset"]["type"] == "ashraq/esc50" and result["dataset"]["name"]
        assert {m["type"] for m in result["metrics"]} == {"accuracy"}
    data = ModelCard.load(path).data  # huggingface_hub parses the model-index back
    assert sorted(r.metric_value for r in data.eval_results) == [0.25, 0.3]
    from huggingface_hub import constants

    with HubStandIn() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        ModelCard.load(path).validate()
    assert hub.validated == [text]
    # a folder only claptune loads (no CLAP config.json) says so
    other = tmp_path / "msclap"
    other.mkdir()
    assert ModelCard.load(write_model_card(other, info)).data.library_name == "claptune"


def test_saved_model_from_the_hf_cache_names_its_repository_and_commit(tmp_path, monkeypatch):
    from huggingface_hub import ModelCard, constants

    from claptune.card import base_of
    from claptune.models import load_model

    hf = tmp_path / "hf"
    _cache_file(
        hf,
        "lukewys/laion_clap",
        "630k-audioset-best.pt",
        source=_tiny_laion_checkpoint(tmp_path / "tiny.pt"),
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = load_model("laion-clap-630k-audioset-best", tokenizer=_tiny_roberta_tokenizer())
    base = base_of(model)
    assert (base.repo_id, base.revision, base.license) == ("lukewys/laion_clap", COMMIT, "cc0-1.0")
    first = model.save(tmp_path / "student")
    data = ModelCard.load(first / "README.md").data
    assert data.base_model == "lukewys/laion_clap" and data.license == "cc0-1.0"
    # a fine-tune of that folder keeps the lineage through the folder's card
    again = load_model(first).save(tmp_path / "student2")
    assert ModelCard.load(again / "README.md").data.base_model == "lukewys/laion_clap"


def _pairs(tmp_path: Path, n: int = 8) -> Path:
    rng = np.random.default_rng(0)
    rows = ["audio,text,score,method,class"]
    for i in range(n):
        path = tmp_path / "clips" / f"{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, 0.1 * rng.standard_normal(48000 // 2), 48000)
        rows.append(f"{path},{'rain' if i % 2 else 'a dog'},0.5,{'ds' if i % 2 else 'pseudo'},")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "pairs.csv"


def test_train_writes_a_card_with_loss_methods_and_settings(tiny_clap_dir, tmp_path):
    from huggingface_hub import ModelCard

    from claptune.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            str(tiny_clap_dir),
            "--pairs",
            str(_pairs(tmp_path)),
            "--out",
            str(out),
            "--loss",
            "hard",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--num-workers",
            "0",
            "--quiet",
        ]
    )
    assert code == 0
    card = ModelCard.load(out / "model" / "README.md")
    assert card.data.claptune["made_by"] == "claptune train"
    assert card.data.claptune["curation"] == ["pseudo", "ds"]  # order of first appearance
    assert card.data.claptune["loss"] == "hard" and "loss-hard" in card.data.tags
    assert card.data.base_model is None  # a local folder without a card: not on the Hub
    assert str(tiny_clap_dir) not in card.text and "| epochs | 1 |" in card.text
    assert tiny_clap_dir.name in card.text  # the base folder named, not where it lay


# -- push ----------------------------------------------------------------------------------------


def test_push_uploads_the_folder_to_a_hub_stand_in(tiny_clap_dir, tmp_path):
    from huggingface_hub import ModelCard

    from claptune.models import load_model

    folder = load_model(str(tiny_clap_dir)).save(tmp_path / "model")
    (folder / "README.md").unlink()  # an older folder without a card gets one on push
    with HubStandIn() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test", "HF_HOME": str(tmp_path / "hf")}
        proc = _claptune(
            [
                "push",
                str(folder),
                "--repo-id",
                "someone/tiny-clap",
                "--private",
                "--revision",
                "exp",
            ],
            env,
            tmp_path,
        )
        again = _claptune(["push", str(folder), "--repo-id", "someone/tiny-clap"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    repo = hub.repos["someone/tiny-clap"]
    assert repo["private"] is True
    uploaded = repo["branches"]["exp"]
    local = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert uploaded == local  # every file, byte for byte, README.md included
    # a ClapModel folder: transformers loads it, so the Hub shows transformers' snippet
    assert ModelCard(uploaded["README.md"].decode()).data.library_name == "transformers"
    assert uploaded["README.md"].decode() in hub.validated  # the Hub accepted its header
    assert again.returncode == 0, again.stderr  # existing repository: exist_ok
    assert repo["branches"]["main"].keys() == local.keys()


def test_push_refuses_a_run_folder_in_one_line(tmp_path, capsys):
    from claptune.cli import main

    (tmp_path / "run").mkdir()
    assert main(["push", str(tmp_path / "run"), "--repo-id", "someone/x"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "not a model folder" in lines[0]


# -- logging -------------------------------------------------------------------------------------


def test_log_level_is_global_shown_in_help_and_quiet_leaves_no_state(capsys, tmp_path):
    import logging

    from claptune.cli import build_parser, main

    help_text = build_parser().format_help()
    assert "--log-level" in help_text and "default: info" in help_text
    seen = []
    from claptune.cli import models as models_cli

    def spy(args):
        seen.append((args.log_level, logging.getLogger("claptune").getEffectiveLevel()))
        return 0

    original = models_cli.run
    try:
        models_cli.run = spy
        for argv in (
            ["--log-level", "debug", "models"],
            ["models", "--log-level", "error"],
            ["models"],
        ):
            assert main(argv) == 0  # build_parser() picks up the spy as the command
    finally:
        models_cli.run = original
    assert [s[0] for s in seen] == ["debug", "error", "info"]
    assert [s[1] for s in seen] == [logging.DEBUG, logging.ERROR, logging.INFO]
    assert not any(
        getattr(h, "formatter", None) and "%(asctime)s" in h.formatter._fmt
        for h in logging.getLogger().handlers
    )  # nothing left behind
    before = os.environ.get("TQDM_DISABLE")
    (tmp_path / "c.txt").write_text("x\n")
    main(
        [
            "embed",
            "--model",
            "missing-model",
            "--text",
            str(tmp_path / "c.txt"),
            "--out",
            str(tmp_path / "s"),
            "--no-progress",
        ]
    )
    assert os.environ.get("TQDM_DISABLE") == before


def test_library_code_never_prints():
    """Library modules log through `logging`; only claptune.cli writes to stdout."""
    offenders = []
    for path in (SRC / "claptune").rglob("*.py"):
        if "cli" in path.relative_to(SRC / "claptune").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


def test_every_backend_save_writes_a_card(tiny_clap_dir, tmp_path):
    from huggingface_hub import ModelCard

    from claptune.models import load_model

    folder = load_model(str(tiny_clap_dir)).save(tmp_path / "m")
    data = ModelCard.load(folder / "README.md").data
    assert data.claptune["made_by"] == "claptune" and "claptune" in data.tags
    default = load_model("default").save(tmp_path / "d")
    assert ModelCard.load(default / "README.md").data.license == "cc-by-4.0"
    assert json.loads((default / "claptune_model.json").read_text())["backend"] == "default"
