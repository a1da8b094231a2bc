"""The HTML report of an :class:`~stageguard.evaluation.Evaluation`: one self-contained file.

Tables, then plots drawn with matplotlib (the ``report`` extra) and inlined as SVG: score distributions per
label with the rules' thresholds marked, ROC and precision-recall curves per score metric, and the rows
whose decision changed between the two versions. Nothing is fetched to view it: no scripts, no styles or
fonts from elsewhere (the SVGs' namespace declarations and metadata are stripped, inline SVG needs none).
"""

from __future__ import annotations

import html
import io
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .evaluation import Evaluation

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } caption { text-align: left; font-weight: 600; padding: .3rem 0; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; } .plot svg { max-width: 520px; height: auto; }
.muted { color: #777; }
"""
_MAX_DIFF_ROWS = 500


def _table(title: str, header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><caption>{html.escape(title)}</caption><tr>{head}</tr>{body}</table>'


def _svg(figure: Any) -> str:
    """The figure as inline SVG, without the XML prologue, namespaces or metadata (all URLs)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, no embedded glyphs
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    return f'<div class="plot">{svg}</div>'


def _numbers(values: list[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array(
        [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)], dtype=float
    )


def _thresholds(result: Evaluation, metric: str) -> list[tuple[str, float]]:
    """``(label, target)`` of every rule comparing ``metric`` with a number."""
    marks = []
    for ruleset in result.rulesets:
        for rule in ruleset.rules:
            target = rule.target_value
            if rule.metric == metric and isinstance(target, (int, float)) and not isinstance(target, bool):
                marks.append((f"{rule.operator.value} {target:g}", float(target)))
    return marks


def curves(
    positives: np.ndarray[Any, np.dtype[np.float64]], negatives: np.ndarray[Any, np.dtype[np.float64]]
) -> dict[str, np.ndarray[Any, np.dtype[np.float64]]]:
    """ROC (fpr, tpr) and precision-recall points of the score "value above a threshold means block",
    over every distinct threshold."""
    scores = np.concatenate([positives, negatives])
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # last index of each distinct score
    tp = np.cumsum(labels)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / max(len(positives), 1)]
    fpr = np.r_[0.0, fp / max(len(negatives), 1)]
    precision = tp / np.maximum(tp + fp, 1)
    return {"fpr": fpr, "tpr": tpr, "recall": tpr[1:], "precision": precision}


def _auc(x: np.ndarray[Any, np.dtype[np.float64]], y: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def _metric_plots(result: Evaluation) -> list[str]:
    # Figures without pyplot: nothing changes the caller's backend or open figures (a notebook's plots)
    from matplotlib.figure import Figure

    parts = []
    for metric in result.metric_names:
        block = _numbers(result.metric_values(metric, True))
        allow = _numbers(result.metric_values(metric, False))
        everything = _numbers(result.metric_values(metric))
        if not len(everything):
            continue  # a categorical metric: its counts are in the tables
        figure = Figure(figsize=(12, 3.2))
        axes = figure.subplots(1, 3 if len(block) and len(allow) else 1, squeeze=False)
        ax = axes[0][0]
        bins = np.linspace(min(0.0, float(everything.min())), max(1.0, float(everything.max())), 31)
        if len(block) or len(allow):
            ax.hist(allow, bins=bins, alpha=0.6, label=f"expected allow ({len(allow)})", color="#4c9f70")
            ax.hist(block, bins=bins, alpha=0.6, label=f"expected block ({len(block)})", color="#d1495b")
        else:
            ax.hist(everything, bins=bins, alpha=0.7, label=f"all rows ({len(everything)})", color="#577590")
        for label, target in _thresholds(result, metric):
            ax.axvline(target, color="black", linestyle="--", linewidth=1)
            ax.annotate(label, (target, ax.get_ylim()[1] * 0.9), fontsize=8, rotation=90, ha="right")
        ax.set_title(f"{metric}: values per label")
        ax.set_xlabel(metric)
        ax.legend(fontsize=8)
        if len(block) and len(allow):
            # rules such as "context_adherence lt 0.1" block low values: rank those rows first
            low = any(label.startswith("lt") for label, _ in _thresholds(result, metric))
            points = curves(-block, -allow) if low else curves(block, allow)
            roc, pr = axes[0][1], axes[0][2]
            roc.plot(points["fpr"], points["tpr"], color="#577590")
            roc.plot([0, 1], [0, 1], color="#bbb", linestyle=":")
            way = "below" if low else "above"
            roc.set_title(f"ROC (block {way} a threshold), AUC {_auc(points['fpr'], points['tpr']):.3f}")
            roc.set_xlabel("false positive rate")
            roc.set_ylabel("true positive rate")
            pr.plot(points["recall"], points["precision"], color="#d1495b")
            pr.set_title("precision-recall")
            pr.set_xlabel("recall")
            pr.set_ylabel("precision")
            pr.set_ylim(0, 1.02)
            for label, target in _thresholds(result, metric):  # where each rule operates
                tpr = float(np.mean(block > target)) if "gt" in label else float(np.mean(block < target))
                fpr = float(np.mean(allow > target)) if "gt" in label else float(np.mean(allow < target))
                roc.plot([fpr], [tpr], "o", color="black")
                roc.annotate(label, (fpr, tpr), fontsize=8, xytext=(4, -10), textcoords="offset points")
        figure.tight_layout()
        parts.append(f'<section class="metric"><h3>{html.escape(metric)}</h3>{_svg(figure)}</section>')
    return parts


def _diff_section(result: Evaluation) -> str:
    if result.against is None:
        return ""
    from matplotlib.figure import Figure

    diff = result.diff()
    by_cause = result.diff_by_cause()
    parts = [
        '<h2 id="diff">Version diff</h2>',
        f"<p>{len(diff)} rows decided differently by v{result.version} "
        f"than by v{result.against.version}.</p>",
    ]
    if by_cause:
        figure = Figure(figsize=(8, 0.4 * len(by_cause) + 1))
        ax = figure.subplots()
        names = list(by_cause)
        ax.barh(names, [by_cause[n]["rows"] for n in names], color="#577590", label="rows")
        ax.barh(names, [by_cause[n].get("fixed", 0) for n in names], color="#4c9f70", label="now as labelled")
        ax.invert_yaxis()
        ax.set_xlabel("rows")
        ax.legend(fontsize=8)
        parts.append(_svg(figure))
    rows = [
        [
            str(d["row"]),
            d["expected"] or "",
            d["change"],
            str(d["cause"]),
            f"{d['before']['status']} {d['before']['ruleset'] or ''}".strip(),
            f"{d['after']['status']} {d['after']['ruleset'] or ''}".strip(),
        ]
        for d in diff[:_MAX_DIFF_ROWS]
    ]
    header = ["row", "expected", "change", "cause", f"v{result.against.version}", f"v{result.version}"]
    parts.append(_table("changed rows", header, rows, "diff-rows"))
    if len(diff) > _MAX_DIFF_ROWS:
        parts.append(f'<p class="muted">the first {_MAX_DIFF_ROWS} of {len(diff)} rows</p>')
    return "\n".join(parts)


def render(result: Evaluation, title: str | None = None) -> str:
    """The report as one HTML string."""
    version = f" v{result.version}" if result.version is not None else ""
    against = f" against v{result.against.version}" if result.against is not None else ""
    title = title or f"Evaluation of stage {result.stage or '(inline rulesets)'}{version}{against}"
    tables = "\n".join(_table(*table) for table in result.tables())
    plots = "\n".join(_metric_plots(result)) or '<p class="muted">no numeric metric values</p>'
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="muted">{len(result.rows)} rows, generated {generated} by stageguard</p>
<h2 id="summary">Summary</h2>
{tables}
<h2 id="distributions">Score distributions, ROC and precision-recall curves</h2>
<div class="plots">{plots}</div>
{_diff_section(result)}
</body></html>
"""


def write_report(result: Evaluation, path: Path, *, title: str | None = None) -> Path:
    """Write :func:`render`'s HTML to ``path`` (its directory must exist)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            'the HTML report plots with matplotlib: pip install "stageguard[report]"', name="matplotlib"
        ) from None
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no such directory: {path.parent}")
    path.write_text(render(result, title), encoding="utf-8")
    return path
