"""The reports of ``improve`` and ``adapt``: report.json, report.md (+ PNG figures) and a
self-contained report.html.

- ``schema.py``: the typed report.json, ``Report`` and ``AdaptReport`` on one ``BaseReport``;
- ``format.py``: their figures as strings (Markdown, HTML and the CLI summaries share them);
- ``page.py``: the page kit both are built from (style, tables, players, audio previews, the
  writer of the three files);
- ``improve.py`` / ``adapt.py``: each report's sections, ``write_report`` / ``write_adapt_report``;
- ``plots.py``: the figures; ``precision.py``: pseudo-label precision, scored after a run.
"""

from __future__ import annotations

from claptune.report.adapt import (
    AdaptAssets,
    adapt_figures,
    render_adapt_html,
    render_adapt_markdown,
    write_adapt_report,
)
from claptune.report.improve import (
    ReportAssets,
    audio_sample,
    render_html,
    render_markdown,
    write_report,
)
from claptune.report.page import SUREST, PlayerAssets, surest_rows
from claptune.report.precision import ClassPrecision, PseudoPrecision, pseudo_label_precision
from claptune.report.schema import (
    AdaptReport,
    Agreement,
    BaseReport,
    ClassPriors,
    ClassRow,
    CurationCounts,
    EvalScores,
    Forgetting,
    Gain,
    Histogram,
    LabelledEval,
    ModelInfo,
    ModelRun,
    PairedTest,
    PipelineRow,
    Report,
    RunRecord,
    RunsSummary,
    Side,
    SplitPrior,
    TargetInfo,
    Transductive,
    Transfer,
    TransferScores,
    TransferSpreads,
)

__all__ = [
    "SUREST",
    "AdaptAssets",
    "AdaptReport",
    "Agreement",
    "BaseReport",
    "ClassPrecision",
    "ClassPriors",
    "ClassRow",
    "CurationCounts",
    "EvalScores",
    "Forgetting",
    "Gain",
    "Histogram",
    "LabelledEval",
    "ModelInfo",
    "ModelRun",
    "PairedTest",
    "PipelineRow",
    "PlayerAssets",
    "PseudoPrecision",
    "Report",
    "ReportAssets",
    "RunRecord",
    "RunsSummary",
    "Side",
    "SplitPrior",
    "TargetInfo",
    "Transductive",
    "Transfer",
    "TransferScores",
    "TransferSpreads",
    "adapt_figures",
    "audio_sample",
    "pseudo_label_precision",
    "render_adapt_html",
    "render_adapt_markdown",
    "render_html",
    "render_markdown",
    "surest_rows",
    "write_adapt_report",
    "write_report",
]
