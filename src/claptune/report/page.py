"""The page kit both reports are built from (``improve``'s and ``adapt``'s): the style, Markdown
and HTML tables, figures, the page shell, the configuration section, the curated pairs sorted
by class, the players and their audio previews, and the writer of the three files.

A page is self-contained: no script, font, stylesheet or media is fetched from anywhere, so it
opens offline. Figures are base64 ``data:`` URIs. Players play previews, 16 kHz mono Ogg Opus
(about 13 kB for 4 s, a tenth of 16-bit WAV): every current browser plays it (Chrome, Firefox,
Edge, Safari 17+), so a page with two clips for each of 50 classes stays near 2 MB; a
libsndfile without Opus (before 1.0.29) gets FLAC, and WAV where neither is there. Above
``max_page_bytes`` the previews go to RUN/audio/ and the page links them (``preload="none"``:
nothing loads until a player is pressed).
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from claptune.textfiles import public_text, write_text

if TYPE_CHECKING:
    from claptune.report.schema import JsonRecord

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2733;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #dde3ea}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #dde3ea;padding:.25em .6em;
font-size:.9em;text-align:left;vertical-align:top}th{background:#f3f6f9}
.big{font-size:1.15em}.muted{color:#6b7785}.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%}audio{height:2em;width:260px}pre{background:#f3f6f9;padding:1em;overflow:auto;
font-size:.8em}details{margin:.3em 0}
.note{background:#fff7e0;border-left:3px solid #e0a800;padding:.5em .8em}
img.wide{display:block;max-width:none;width:min(1500px,calc(100vw - 48px));
margin-left:calc((100% - min(1500px,calc(100vw - 48px)))/2)}
"""


@dataclass(kw_only=True)
class PlayerAssets:
    """What a page's listening section needs beyond the report: the curated pairs and the budget
    of its players."""

    # the curated rows of the split the report shows: audio, text, score, method, class
    pairs: list[dict] = field(default_factory=list)
    # the teacher's surest clips per class (surest_rows): the players of a class that got no
    # curated pair, so that every class can be heard
    surest: list[dict] = field(default_factory=list)
    audio_per_class: int = 2  # best-scored curated pairs of each class given a player
    audio_seconds: float = 4.0
    pairs_per_class: int = 5  # top-scoring curated pairs listed per class
    # above this the previews are linked files under RUN/audio/ rather than inlined: a page
    # much larger loads slowly and no longer fits a mail
    max_page_bytes: int = 20_000_000


# -- Markdown ----------------------------------------------------------------------------------
def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def md_figure(name: str, alt: str) -> list[str]:
    """A PNG written beside report.md."""
    return [f"![{alt}]({name})", ""]


def md_config(config: dict[str, Any]) -> list[str]:
    """The resolved configuration, the last section of every report, with every local path cut
    to its last component (the page may be shared; report.json keeps the paths as given)."""
    return [
        "## Resolved configuration",
        "",
        "```json",
        json.dumps(public_text(config), indent=2, default=str),
        "```",
    ]


def md_page(title: str, lines: list[str]) -> str:
    """report.md: the title, then the sections' lines."""
    return "\n".join([f"# {title}", "", *lines]) + "\n"


# -- HTML --------------------------------------------------------------------------------------
def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """Cells from ``numeric_from`` on are right-aligned; the caller escapes the cells."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i >= numeric_from else ""
            cells.append(f"<td{cls}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def html_img(figures: dict[str, bytes], name: str, alt: str, wide: bool = False) -> str:
    """The figure ``name`` inlined ("" where there is none); ``wide``: wider than the text
    column (a matrix of many classes needs the room)."""
    if name not in figures:
        return ""
    cls = ' class="wide"' if wide else ""
    return f'<img alt="{escape(alt)}"{cls} src="{data_uri(figures[name], "image/png")}">'


def html_config(config: dict[str, Any]) -> list[str]:
    """The resolved configuration, the last section of every report (local paths cut as in
    ``md_config``)."""
    dump = json.dumps(public_text(config), indent=2, default=str)
    return ["<h2>Resolved configuration</h2>", f"<pre>{escape(dump)}</pre>"]


def html_page(title: str, parts: list[str]) -> str:
    """report.html: the title, then the sections' parts, with the style inline."""
    body = "\n".join([f"<h1>{escape(title)}</h1>", *parts])
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


# -- curated pairs and players -----------------------------------------------------------------
def pairs_by_class(pairs: list[dict]) -> dict[str, list[dict]]:
    """The rows of each class, best-scored first; classes in name order."""
    by_class: dict[str, list[dict]] = defaultdict(list)
    for row in pairs:
        by_class[str(row.get("class") or "(no class)")].append(row)
    for rows in by_class.values():
        rows.sort(
            key=lambda r: (-float(r.get("score", 0.0)), str(r.get("audio")), str(r.get("text")))
        )
    return dict(sorted(by_class.items()))


def sample_players(
    by_class: dict[str, list[dict]], n: int | None, per_class: int | None = None
) -> list[dict]:
    """Up to ``per_class`` pairs of each class and ``n`` in all (None: no limit), round-robin
    over classes (best-scored first, so a small ``n`` still spreads over the classes), each
    clip at most once; returned grouped by class in class order."""
    chosen: dict[str, list[dict]] = {c: [] for c in by_class}
    seen: set[str] = set()
    total = 0
    limit = per_class if per_class is not None else max(map(len, by_class.values()), default=0)
    for _depth in range(limit):
        for cls, rows in by_class.items():
            if n is not None and total >= n:
                break
            # the best unused clip of this class: a clip chosen for another class (one clip,
            # two captions) does not cost this class its turn
            row = next((r for r in rows if r["audio"] not in seen), None)
            if row is not None:
                chosen[cls].append(row)
                seen.add(row["audio"])
                total += 1
    return [row for rows in chosen.values() for row in rows]


SUREST = "teacher's surest (no curated pair)"  # the method column of a fallback player


def surest_rows(
    items: list, scores: np.ndarray, class_names: list[str], per_class: int, clips=None
) -> list[dict]:
    """For each class, the ``per_class`` clips the teacher is surest of (highest cosine among
    the clips it classifies into the class, else among all ``clips``), as player rows: what
    report.html plays for a class that got no curated pair. ``scores`` (N, C): the teacher's
    class scores of ``items``; ``clips``: the indices to choose from (default all). Reads no
    label."""
    scores = np.asarray(scores)
    pool = np.arange(len(items)) if clips is None else np.asarray(clips)
    if per_class <= 0 or len(pool) == 0:
        return []
    predicted = scores[pool].argmax(axis=1)
    rows = []
    for c, name in enumerate(class_names):
        mine = pool[predicted == c]
        candidates = mine if len(mine) else pool
        order = candidates[np.argsort(-scores[candidates, c], kind="stable")][:per_class]
        rows += [
            {
                "audio": str(items[i]),
                "class": name,
                "score": float(scores[i, c]),
                "text": f"(the teacher's {'top' if len(mine) else 'closest'} clip for {name})",
                "method": SUREST,
            }
            for i in order
        ]
    return rows


def inline_players(rows: list[dict], seconds: float) -> list[tuple[dict, Preview]]:
    """Each row with its preview inlined (what ``write_pages`` does below the size limit)."""
    return list(zip(rows, previews([str(r["audio"]) for r in rows], seconds)[0], strict=True))


def players_table(players: list[tuple[dict, Preview]]) -> str:
    """A table of players: each pair row with the source of its preview."""
    rows = []
    for row, source in players:
        if source.src is not None:
            player = f'<audio controls preload="none" src="{escape(source.src)}"></audio>'
        else:
            player = f'<span class="muted">no preview: {escape(str(source.error))}</span>'
        rows.append(
            (
                escape(str(row.get("class") or "")),
                player,
                escape(str(row["text"])),
                f"{float(row.get('score', 0.0)):.3f}",
                escape(str(row.get("method", ""))),
                f'<span class="muted">{escape(Path(str(row["audio"])).name)}</span>',
            )
        )
    header = ["class", "listen", "caption", "score", "method", "file"]
    return html_table(header, rows, numeric_from=3)


def pairs_table(rows: list[dict], method: bool = True) -> str:
    """The listed (not played) pairs of a class: caption, score, method, file."""
    cells = []
    for r in rows:
        kind = (escape(str(r.get("method", ""))),) if method else ()
        name = escape(Path(str(r["audio"])).name)
        cells.append((escape(str(r["text"])), f"{float(r.get('score', 0.0)):.3f}", *kind, name))
    return html_table(["caption", "score", *(["method"] if method else []), "file"], cells)


def write_pages(
    out_dir: str | Path,
    report: JsonRecord,
    figures: dict[str, bytes],
    markdown: str,
    html: Callable[[list[tuple[dict, Preview]]], str],
    heard: list[dict],
    assets: PlayerAssets,
) -> dict[str, Path]:
    """Write report.json, report.md with its PNG figures, and report.html, whose players are
    ``heard`` (inlined, or linked files when the page would pass ``assets.max_page_bytes``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "report.json"}
    written["json"].write_text(report.to_json())
    for name, png in figures.items():
        (out / name).write_bytes(png)
        written[name] = out / name
    written["md"] = out / "report.md"
    write_text(written["md"], markdown)
    # the page without its players: the figures in base64 and a margin for text and tables
    page = sum(base64_size(len(png)) for png in figures.values()) + 500_000
    paths = [str(r["audio"]) for r in heard]
    sources, linked = previews(paths, assets.audio_seconds, out, assets.max_page_bytes, page)
    if linked:
        written["audio"] = out / AUDIO_DIR
    written["html"] = out / "report.html"
    write_text(written["html"], html(list(zip(heard, sources, strict=True))))
    return written


# -- audio previews ----------------------------------------------------------------------------
PREVIEW_RATE = 16_000  # one of Opus's own rates (8, 12, 16, 24, 48 kHz): no resampling there

# (soundfile format, subtype, MIME type, file extension), best first
_ENCODINGS = (
    ("OGG", "OPUS", "audio/ogg", ".ogg"),  # Opus in Ogg
    ("FLAC", "PCM_16", "audio/flac", ".flac"),
    ("WAV", "PCM_16", "audio/wav", ".wav"),
)


def preview_encoding() -> tuple[str, str, str, str]:
    """The (format, subtype, MIME, extension) previews are written in: the first this
    libsndfile can write."""
    for fmt, subtype, mime, ext in _ENCODINGS:
        if subtype in sf.available_subtypes(fmt):
            return fmt, subtype, mime, ext
    return _ENCODINGS[-1]


def preview_audio(
    path: str | Path, seconds: float = 4.0, sample_rate: int = PREVIEW_RATE
) -> tuple[bytes, str, str]:
    """(bytes, MIME type, extension): the first ``seconds`` of a clip, mono, at
    ``sample_rate``, compressed (``preview_encoding``)."""
    # a file or a webdataset shard member; only its first ``seconds`` are played
    wave = _first_seconds(path, seconds, sample_rate)  # bounded memory on hour-long files
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:  # resampling can overshoot full scale slightly; avoid clipping noise
        wave = wave / peak
    fmt, subtype, mime, ext = preview_encoding()
    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format=fmt, subtype=subtype)
    return buf.getvalue(), mime, ext


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def base64_size(n_bytes: int) -> int:
    return 4 * ((n_bytes + 2) // 3)


@dataclass
class Preview:
    """The player source of one clip: a data URI, a path relative to the page, or why none."""

    src: str | None = None
    error: str | None = None


AUDIO_DIR = "audio"  # beside report.html, when the previews are linked rather than inlined


def previews(
    paths: list[str],
    seconds: float,
    out_dir: str | Path | None = None,
    max_page_bytes: int | None = None,
    page_bytes: int = 0,
) -> tuple[list[Preview], bool]:
    """(one ``Preview`` per path, whether they were linked). The previews are inlined when the
    page (``page_bytes`` without them) stays within ``max_page_bytes`` or when there is no
    ``out_dir`` to write files into; otherwise each is written to ``out_dir/audio/`` and linked.
    A clip that cannot be decoded gets its reason instead, so a preview never sinks the report."""
    encoded: list[bytes | None] = []
    out: list[Preview] = []
    _, _, mime, ext = preview_encoding()
    for path in paths:
        try:
            encoded.append(preview_audio(path, seconds)[0])
            out.append(Preview())
        except Exception as err:  # noqa: BLE001 - any decode failure is reported, not raised
            encoded.append(None)
            out.append(Preview(error=str(err)))
    inline_size = page_bytes + sum(base64_size(len(w)) for w in encoded if w is not None)
    link = out_dir is not None and max_page_bytes is not None and inline_size > max_page_bytes
    folder = Path(out_dir) / AUDIO_DIR if link else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("[0-9][0-9][0-9][0-9]_*.*"):  # a previous report's previews
            old.unlink()
    for k, (path, clip, preview) in enumerate(zip(paths, encoded, out, strict=True)):
        if clip is None:
            continue
        if folder is None:
            preview.src = data_uri(clip, mime)
        else:
            # numbered so that two clips with one file name never collide; the stem keeps the
            # folder readable; odd characters go so the relative URL needs no escaping
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(path)).stem)[:60]
            name = f"{k:04d}_{stem}{ext}"
            (folder / name).write_bytes(clip)
            preview.src = f"{AUDIO_DIR}/{name}"
    return out, link


def _first_seconds(path: str | Path, seconds: float, sample_rate: int) -> np.ndarray:
    """The first ``seconds`` of a clip, decoded block by block: only those are read."""
    from claptune.audio import stream_audio
    from claptune.data.shards import is_member_ref, load_clip

    n = int(seconds * sample_rate)
    if is_member_ref(str(path)):
        return load_clip(path, sample_rate)[:n]
    blocks, have = [], 0
    for block in stream_audio(path, sample_rate):
        blocks.append(block)
        have += len(block)
        if have >= n:
            break
    return np.concatenate(blocks)[:n] if blocks else np.zeros(0, np.float32)


def md_code_to_html(text: str) -> str:
    """``text`` escaped for HTML, its `code` spans as <code> elements."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


__all__ = [
    "AUDIO_DIR",
    "CSS",
    "PREVIEW_RATE",
    "SUREST",
    "PlayerAssets",
    "Preview",
    "base64_size",
    "data_uri",
    "html_config",
    "html_img",
    "html_page",
    "html_table",
    "inline_players",
    "md_code_to_html",
    "md_config",
    "md_figure",
    "md_page",
    "md_table",
    "pairs_by_class",
    "pairs_table",
    "players_table",
    "preview_audio",
    "preview_encoding",
    "previews",
    "sample_players",
    "surest_rows",
    "write_pages",
]
