"""The evaluation report: one HTML page with its PNGs embedded, and a Markdown summary.

The HTML is self-contained (``data:image/png;base64``) so it survives being mailed or copied out
of a bucket; the Markdown links the same PNGs, written beside it under ``plots/``, and holds
every number in tables so it reads in a terminal, a pull request or a notebook.
Both are rendered from one list of sections, so they cannot disagree.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from contract import files
from contract.stats import Stats
from trainer import metrics, plots

PLOTS_DIR = "plots"
REPORT_NAME = "report"  # -> report.html and report.md


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[pd.DataFrame] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # keys of the plots dict


def build_plots(predictions: pd.DataFrame, evaluation: Mapping, *, stats: Stats | None = None,
                history: pd.DataFrame | None = None,
                gallery: tuple[Sequence[np.ndarray], pd.DataFrame] | None = None
                ) -> dict[str, bytes]:
    """All the report's pictures that the available inputs allow, as {file name: PNG bytes}."""
    out = {
        "predicted_vs_true.png": plots.predicted_vs_true(predictions),
        "error_by_band.png": plots.error_by_band(pd.DataFrame(evaluation["by_band"]),
                                                 evaluation["overall"]["mae"]),
        "bias_by_age.png": plots.bias_by_age(metrics.bias_by_age(predictions)),
    }
    if evaluation.get("by_blur_quantile"):
        out["error_vs_blur.png"] = plots.error_vs_quantile(
            pd.DataFrame(evaluation["by_blur_quantile"]), "blur")
    if stats is not None and stats.splits:
        out["age_histograms.png"] = plots.age_histograms(stats)
    if history is not None and len(history):
        out["learning_curves.png"] = plots.learning_curves(history)
    if gallery is not None and len(gallery[0]):
        out["worst_predictions.png"] = plots.worst_gallery(*gallery)
    return out


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(records: Sequence[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """Numbers as text: shares (CS@k) with 3 decimals, years with 2, counts as integers."""
    frame = pd.DataFrame(records)
    for column in frame.columns:
        digits = 3 if "cs@" in str(column) else 2
        frame[column] = [_fmt(v, digits) for v in frame[column]]
    return frame


def evaluation_sections(evaluation: Mapping, plot_names: Sequence[str]) -> list[Section]:
    """The report's content, in reading order, from metrics.evaluation_metrics' output."""
    overall = evaluation["overall"]
    cs_key = next(k for k in overall if k.startswith("cs@"))
    ratio = evaluation.get("old_to_overall_mae_ratio")
    headline = (f"MAE **{overall['mae']:.2f}** years, RMSE {overall['rmse']:.2f}, "
                f"{cs_key.upper()} **{overall[cs_key]:.3f}**, bias {overall['bias']:+.2f} "
                f"(predicted - true) over {overall['count']} faces.")
    if ratio is not None:
        headline += f" The 60+ band's MAE is {ratio:.2f}x the overall MAE."
    have = set(plot_names)
    sections = [
        Section("Overall", headline, [format_table([overall])],
                [p for p in ("predicted_vs_true.png",) if p in have]),
        Section("By age band", "Bands are on the true age; empty bands show '-'.",
                [format_table(evaluation["by_band"])],
                [p for p in ("error_by_band.png", "bias_by_age.png") if p in have]),
    ]
    for column, rows in (evaluation.get("by_column") or {}).items():
        sections.append(Section(f"By {column}", "'?' marks faces without this label.",
                                [format_table(rows)]))
    if evaluation.get("by_blur_quantile"):
        sections.append(Section(
            "By blur quantile", "Blur score is the variance of the Laplacian: Q1 holds the "
            "blurriest faces.", [format_table(evaluation["by_blur_quantile"])],
            [p for p in ("error_vs_blur.png",) if p in have]))
    extra = [p for p in ("age_histograms.png", "learning_curves.png", "worst_predictions.png")
             if p in have]
    if extra:
        sections.append(Section("Data, training and failures", "", [], extra))
    return sections


def face_sections(stats: Stats | None, evaluation: Mapping) -> list[Section]:
    """The faces found by preprocessing --face (stats.json "faces") and MAE by the detector's
    score; nothing for records that were face crops already."""
    faces = stats.faces if stats is not None else None
    if faces is None:
        return []
    counts = {"face": faces.mode, "multi_face": faces.multi_face,
              "photos without a face (rejected)": faces.no_face,
              "multi-face photos kept (largest face)": faces.multi_face_kept,
              "multi-face photos rejected": faces.multi_face_rejected}
    text = ("Records were cut from whole photos by the face detector; photos without a face "
            "and, with multi_face=reject, photos with several are dead letters.")
    tables = [format_table([counts])]
    if evaluation.get("by_face_score"):
        text += (" MAE by the detector's score (band of the record's face/score): a low score "
                 "is a doubtful face.")
        tables.append(format_table(evaluation["by_face_score"]))
    return [Section("Faces", text, tables)]


def render_markdown(title: str, info: Mapping[str, object], sections: Sequence[Section]) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in info.items()] + [""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        for t in s.tables:
            lines += [_markdown_table(t), ""]
        for name in s.images:
            lines += [f"![{name[:-4]}]({PLOTS_DIR}/{name})", ""]
    return "\n".join(lines)


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(no rows)_"
    cols = [str(c) for c in frame.columns]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.to_numpy()]
    return "\n".join(rows)


def render_html(title: str, info: Mapping[str, object], sections: Sequence[Section],
                pngs: Mapping[str, bytes]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}",
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}img{max-width:100%;margin:.5em}",
        "</style></head><body>", f"<h1>{esc(title)}</h1><ul>",
    ]
    parts += [f"<li><b>{esc(str(k))}</b>: {esc(str(v))}</li>" for k, v in info.items()]
    parts.append("</ul>")
    for s in sections:
        parts.append(f"<h2>{esc(s.title)}</h2>")
        if s.text:
            # The only markup in section text is **bold**, shared with the Markdown.
            text = esc(s.text)
            while "**" in text:
                text = text.replace("**", "<b>", 1).replace("**", "</b>", 1)
            parts.append(f"<p>{text}</p>")
        for t in s.tables:
            parts.append(t.to_html(index=False, border=0) if not t.empty else "<p>(no rows)</p>")
        for name in s.images:
            data = base64.b64encode(pngs[name]).decode("ascii")
            parts.append(f"<img alt='{esc(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(output_dir: str, *, title: str, info: Mapping[str, object],
                 sections: Sequence[Section], pngs: Mapping[str, bytes],
                 name: str = REPORT_NAME) -> dict[str, str]:
    """Writes NAME.html, NAME.md and plots/*.png under output_dir (local or gs://)."""
    missing = [n for s in sections for n in s.images if n not in pngs]
    if missing:
        raise KeyError(f"sections reference plots that were not drawn: {missing}")
    base = output_dir.rstrip("/")
    for png, data in pngs.items():
        files.write_bytes(f"{base}/{PLOTS_DIR}/{png}", data)
    paths = {"html": f"{base}/{name}.html", "markdown": f"{base}/{name}.md"}
    files.write_bytes(paths["html"], render_html(title, info, sections, pngs).encode("utf-8"))
    files.write_bytes(paths["markdown"], render_markdown(title, info, sections).encode("utf-8"))
    return paths
