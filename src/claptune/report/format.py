"""Number formatting shared by the Markdown and HTML reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from claptune.report.schema import Report
    from claptune.stats import Spread


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def spread(s: Spread | None, digits: int = 1, scale: float = 100.0) -> str:
    """'mean ± std' of a claptune.stats.Spread; percent by default."""
    if s is None or s.mean is None:
        return "n/a"
    return s.format(scale=scale, digits=digits)


def pct_std(mean: float | None, std: float | None, digits: int = 1) -> str:
    """'mean ± std' in percent of one figure and its spread (a missing std counts as 0)."""
    if mean is None:
        return "n/a"
    return f"{100 * mean:.{digits}f} ± {100 * (std or 0.0):.{digits}f}"


def pvalue(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


def headline_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(figure, before, after, change) rows of the summary table, all in percent."""
    before, after, gain = report.before, report.after, report.gain
    rows = [(
        f"accuracy, test parts ({report.n_runs} runs)",
        spread(before.accuracy_spread), spread(after.accuracy_spread),
        spread(gain.accuracy_spread),
    )]
    if before.accuracy_all_spread is not None:
        rows.append((
            "accuracy, all clips", spread(before.accuracy_all_spread),
            spread(after.accuracy_all_spread), spread(gain.accuracy_all_spread),
        ))
    return rows


def paired_test_lines(report: Report) -> list[str]:
    lines = []
    mc = report.paired_test.mcnemar
    if mc is not None:
        lines.append(
            f"McNemar (test parts of all runs pooled, {mc.n} paired outcomes): "
            f"{mc.only_after} clips fixed, {mc.only_before} broken; "
            f"exact p = {pvalue(mc.p_exact)}, mid-p = {pvalue(mc.p_midp)}"
        )
    bs = report.paired_test.bootstrap
    if bs is not None:
        lines.append(
            f"Paired bootstrap over clips ({bs.n_units} clips, {bs.n_resamples} resamples): "
            f"gain {pct(bs.difference)} points, {int(bs.confidence * 100)} % CI "
            f"[{pct(bs.ci_low)}, {pct(bs.ci_high)}], p = {pvalue(bs.p_value)}"
        )
    return lines
