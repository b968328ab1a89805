"""The pictures of ``hoi-r1 eval --plots DIR``: four PNGs of one evaluation.

* ``ap_per_class.png`` — AP of every class against its number of training pairs (log scale;
  test pairs when no ``--train-annotations`` is given), rare and non-rare classes coloured,
  with their mAPs as lines;
* ``pr_curves.png`` — precision-recall curves of the five best and the five worst classes
  (among classes with test ground truth);
* ``breakdown.png`` — mAP and recall per bin of human-object distance and of object area
  (:mod:`hoi_r1.eval_breakdown`), with the ground-truth pairs of each bin;
* ``max_recall.png`` — the classes' maximum recalls, sorted, rare and non-rare as two curves,
  with the mean max recall of each group.

matplotlib is the optional ``plots`` extra (``pip install -e .[plots]``): this module imports it
at its top and ``hoi-r1 eval`` imports this module only when ``--plots`` is given, so the
command itself never pays for it. Figures are drawn with matplotlib's object API on the Agg
canvas (no ``pyplot``, no global backend switch).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from hoi_r1.pr_curves import PRCurves
from hoi_r1.vocab import HOIVocabulary

RARE, NON_RARE = "#d62728", "#1f77b4"
PLOT_NAMES = ("ap_per_class.png", "pr_curves.png", "breakdown.png", "max_recall.png")


def write_plots(
    out_dir: str | Path,
    result: Mapping[str, Any],
    curves: PRCurves,
    breakdown: Mapping[str, Sequence[Mapping[str, Any]]],
    vocab: HOIVocabulary,
    train_counts: Mapping[int, int] | None = None,
) -> list[Path]:
    """Write the four PNGs into ``out_dir`` (created); returns their paths.

    Args:
        out_dir: folder for the pictures.
        result: an :func:`hoi_r1.file_evaluation.evaluate_files` result (``per_class_ap``, ``mAP_*``,
            ``protocol``).
        curves: the evaluation's :func:`hoi_r1.pr_curves.precision_recall_curves`.
        breakdown: the evaluation's :func:`hoi_r1.eval_breakdown.breakdown`.
        vocab: the vocabulary (class names, rare classes).
        train_counts: training pairs per class id (``None``: the test pairs are plotted).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ap = np.array([math.nan if v is None else v for v in result["per_class_ap"]], dtype=np.float64)
    rare = np.zeros(vocab.num_classes, dtype=bool)
    rare[list(vocab.rare)] = True
    title = f"{result['protocol']}: mAP {_pct(result['mAP_full'])}"
    figures = {
        "ap_per_class.png": _ap_per_class(ap, rare, curves, train_counts, result, title),
        "pr_curves.png": _pr_curves(ap, curves, vocab, title),
        "breakdown.png": _breakdown(breakdown, title),
        "max_recall.png": _max_recall(ap, rare, curves, title),
    }
    paths = []
    for name, figure in figures.items():
        FigureCanvasAgg(figure)
        figure.savefig(out / name, dpi=110)
        paths.append(out / name)
    return paths


def _ap_per_class(ap: np.ndarray, rare: np.ndarray, curves: PRCurves, train_counts: Mapping[int, int] | None,
                  result: Mapping[str, Any], title: str) -> Figure:
    if train_counts is not None:
        counts = np.array([train_counts.get(c, 0) for c in range(len(ap))], dtype=np.float64)
        xlabel = "training pairs of the class"
    else:
        counts = curves.npos.numpy().astype(np.float64)
        xlabel = "test pairs of the class (no --train-annotations given)"
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    shown = ~np.isnan(ap)
    x = np.maximum(counts, 0.8)  # a class without pairs sits at the left edge of the log axis
    for mask, colour, name, key in ((shown & ~rare, NON_RARE, "non-rare", "mAP_non_rare"),
                                    (shown & rare, RARE, "rare", "mAP_rare")):
        ax.scatter(x[mask], 100 * ap[mask], s=12, alpha=0.6, color=colour, label=f"{name} ({mask.sum()} classes)")
        if result.get(key) is not None:
            ax.axhline(100 * result[key], color=colour, linestyle="--", linewidth=1,
                       label=f"mAP {name} {_pct(result[key])}")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else ""))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"AP per class — {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _pr_curves(ap: np.ndarray, curves: PRCurves, vocab: HOIVocabulary, title: str, k: int = 5) -> Figure:
    ranked = [c for c in np.argsort(-np.nan_to_num(ap, nan=-1.0), kind="stable")
              if not np.isnan(ap[c]) and curves.npos[c] > 0]
    k = min(k, (len(ranked) + 1) // 2)  # best and worst never share a class
    groups = (("best", ranked[:k]), ("worst", ranked[len(ranked) - min(k, len(ranked) - k):][::-1]))
    fig = Figure(figsize=(12, 5), layout="constrained")
    for i, (name, classes) in enumerate(groups):
        ax = fig.add_subplot(1, 2, i + 1)
        for c in classes:
            recall, precision = curves.recall[c].numpy(), curves.precision[c].numpy()
            label = f"{vocab.interaction_name(int(c))}: AP {_pct(ap[c])}, {int(curves.npos[c])} GT"
            if len(recall):
                ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="post", label=label)
            else:
                ax.plot([], [], label=label + " (no detection)")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"the {len(classes)} {name} class{'es' if len(classes) != 1 else ''}")
        ax.grid(True, alpha=0.3)
        if classes:
            ax.legend(loc="lower left" if name == "best" else "upper right", fontsize=8)
    fig.suptitle(f"Precision-recall curves — {title}")
    return fig


def _breakdown(breakdown: Mapping[str, Sequence[Mapping[str, Any]]], title: str) -> Figure:
    names = {"distance": "human-object distance (centre to centre, in human-box sizes)",
             "area": "object box area (pixels)"}
    fig = Figure(figsize=(12, 5), layout="constrained")
    for i, (kind, rows) in enumerate(breakdown.items()):
        ax = fig.add_subplot(1, len(breakdown), i + 1)
        x = np.arange(len(rows))
        values = {key: [100 * r[key] if r[key] is not None else 0.0 for r in rows] for key in ("mAP", "recall")}
        ax.bar(x - 0.2, values["mAP"], width=0.4, label="mAP", color=NON_RARE)
        ax.bar(x + 0.2, values["recall"], width=0.4, label="recall", color="#2ca02c")
        ax.set_xticks(x, [f"{r['bin']}\n{r['num_gt_pairs']:,} GT pairs" for r in rows])
        ax.set_ylim(0, 118)
        ax.set_xlabel(names.get(kind, kind))
        ax.set_ylabel("%")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper center", ncols=2, fontsize=8)
    fig.suptitle(f"mAP and recall by pair geometry — {title}")
    return fig


def _max_recall(ap: np.ndarray, rare: np.ndarray, curves: PRCurves, title: str) -> Figure:
    counted = ~np.isnan(ap)
    recall = 100 * curves.max_recall.numpy()
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    low = 100.0
    for mask, colour, name in ((counted & ~rare, NON_RARE, "non-rare"), (counted & rare, RARE, "rare")):
        if not mask.any():
            continue
        values = np.sort(recall[mask])
        low = min(low, float(values[0]))
        share = 100 * np.arange(1, len(values) + 1) / len(values)
        ax.step(share, values, where="post", color=colour, label=f"{name} classes ({mask.sum()})")
        ax.axhline(values.mean(), color=colour, linestyle="--", linewidth=1,
                   label=f"{name}: mean max recall {values.mean():.2f}")
    ax.set_xlim(0, 100)
    ax.set_ylim(max(0.0, low - 0.1 * (100.5 - low) - 0.5), 100.5)
    ax.set_xlabel("share of the classes (%), by max recall")
    ax.set_ylabel("max recall (%)")
    ax.set_title(f"Max recall per class — {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _pct(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"
