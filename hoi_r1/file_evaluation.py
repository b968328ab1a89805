"""Evaluate a predictions file against an annotation file: the work of ``hoi-r1 eval``.

:func:`evaluate_files` reads both files (:func:`hoi_r1.readers.read_annotations`,
:class:`hoi_r1.prediction_reader.PredictionReader`; the file formats are those of
:mod:`hoi_r1.eval_command`), runs HOI-mAP (:mod:`hoi_r1.hoi_map`), and returns the JSON-ready
result; the command around it (arguments, table) is :mod:`hoi_r1.eval_command`. Python's cyclic
garbage collector is paused while the millions of parsed objects are alive.
"""

from __future__ import annotations

import gc
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch

from hoi_r1.eval_breakdown import breakdown as geometry_breakdown
from hoi_r1.frames import FRAME_KINDS
from hoi_r1.hoi_map import hoi_mean_average_precision, targets_from_sample
from hoi_r1.pr_curves import precision_recall_curves
from hoi_r1.prediction_columns import ColumnsRead
from hoi_r1.prediction_reader import BadPredictionError, OnBadPrediction, PredictionReader
from hoi_r1.progress import progress_bar
from hoi_r1.readers import read_annotations
from hoi_r1.vocab import HOIVocabulary

__all__ = ["BadPredictionError", "evaluate_files"]


def evaluate_files(
    annotations: str | Path,
    predictions: str | Path,
    *,
    protocol: str = "hico_official",
    categories: str | Path | None = None,
    vocabulary: str | Path | None = None,
    split: Literal["train", "test"] = "test",
    zero_shot: str | Sequence[int] | None = None,
    known_object: bool = False,
    triplet_nms: bool = False,
    frame: str = "absolute_original",
    on_bad_prediction: OnBadPrediction = "error",
    breakdown: bool = False,
    plots: str | Path | None = None,
    train_annotations: str | Path | None = None,
    prefetched: ColumnsRead | None = None,
) -> dict[str, Any]:
    """Evaluate ``predictions`` against ``annotations``; returns the JSON-ready result (the
    keys of :mod:`hoi_r1.eval_command`).

    Args:
        annotations: annotation file of the test split.
        predictions: predictions JSON file (see the module docstring).
        protocol: HOI-mAP protocol (:mod:`hoi_r1.metric_protocols`).
        categories: SWIG-HOI category metadata.
        vocabulary: a ``vocabulary.json`` to use instead of the reader's default.
        split: split of ``anno_bbox.mat`` to read.
        zero_shot: zero-shot setting name or unseen class ids (adds Unseen / Seen).
        known_object: also report the Known-Object setting.
        triplet_nms: GEN-VLKT's triplet NMS (``gen_vlkt`` only).
        frame: coordinate frame of boxes inside ``completion`` texts.
        on_bad_prediction: ``error`` or ``skip`` (count and log) bad prediction entries.
        breakdown: add ``breakdown``: mAP and recall per bin of human-object distance and of
            object area (:mod:`hoi_r1.eval_breakdown`).
        plots: write the PNGs of :mod:`hoi_r1.eval_plots` into this folder (needs matplotlib,
            the ``plots`` extra; implies ``breakdown``) and list them under ``plots``.
        train_annotations: training annotations whose pairs per class the AP plot uses as its
            x axis (default: the test pairs); read like ``annotations`` (``split="train"`` for
            ``anno_bbox.mat``).
        prefetched: the typed read of ``predictions`` already started in a helper process
            (:meth:`hoi_r1.prediction_columns.ColumnsRead.start`, what ``hoi-r1 eval`` does);
            ``None``: read it in this process. Both give the same result.
    """
    if frame not in FRAME_KINDS:
        raise ValueError(f"frame must be one of {FRAME_KINDS}, found {frame!r}")
    vocab = HOIVocabulary.from_json(vocabulary) if vocabulary else None
    with _gc_paused(), progress_bar(4 if breakdown or plots else 3, "hoi-r1 eval", unit="stage") as bar:
        # image sizes are read later, and only for completions in a frame that needs them
        bar.set_postfix_str("annotations")
        dataset = read_annotations(annotations, vocab=vocab, categories=categories, split=split,
                                   read_image_sizes=False)
        vocab = dataset.vocab
        bar.update(1)
        targets = [targets_from_sample(s) for s in dataset.samples]  # before waiting for a prefetched read
        bar.set_postfix_str("predictions")
        reader = PredictionReader(Path(predictions), vocab, frame, on_bad_prediction)
        by_image = reader.read({s.file_name: s for s in dataset.samples}, prefetched)
        preds = [by_image.get(s.image_id, _empty_preds(s.image_id)) for s in dataset.samples]
        bar.update(1)
        bar.set_postfix_str("HOI-mAP")
        result = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, zero_shot=zero_shot,
                                            known_object=known_object, per_class=True, triplet_nms=triplet_nms)
        bar.update(1)
        bins = None
        if breakdown or plots:
            bar.set_postfix_str("breakdown")
            bins = geometry_breakdown(preds, targets, vocab, protocol, triplet_nms)
            bar.update(1)
    out: dict[str, Any] = {k: _json_value(v) for k, v in result.items()}
    out |= {
        "protocol": protocol,
        "annotations": str(annotations),
        "predictions": str(predictions),
        "num_images": len(dataset.samples),
        "num_images_with_predictions": len(by_image),
        "num_detections": sum(len(p["hoi"]) for p in preds),
        "num_gt_pairs": sum(len(t["hoi"]) for t in targets),
        "skipped": dict(reader.skipped),
        "answer_problems": dict(reader.answer_problems),
    }
    if bins is not None:
        out["breakdown"] = bins
    if plots:
        from hoi_r1 import eval_plots  # matplotlib: the optional ``plots`` extra, only for --plots

        train_counts = None
        if train_annotations:
            train = read_annotations(train_annotations, vocab=vocab, categories=categories, split="train",
                                     read_image_sizes=False)
            train_counts = train.pair_counts()
        curves = precision_recall_curves(preds, targets, vocab, protocol, triplet_nms)
        out["plots"] = [str(p) for p in eval_plots.write_plots(plots, out, curves, bins, vocab, train_counts)]
    return out


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector, then restore it. Reading a HICO-DET-size file
    makes millions of small objects and none of them in a cycle; with the collector on, its
    repeated passes over them cost more than the parsing itself (measured: decoding the
    965,800-prediction file took about 4x as long)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _empty_preds(image_id: int) -> dict:
    return {"image_id": image_id, "human_boxes": torch.zeros(0, 4, dtype=torch.float64),
            "object_boxes": torch.zeros(0, 4, dtype=torch.float64), "object_labels": torch.zeros(0, dtype=torch.long),
            "hoi": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0, dtype=torch.float64)}


def _json_value(value: torch.Tensor) -> Any:
    if value.ndim == 0:
        v = value.item()
        return None if math.isnan(v) else v
    return [None if math.isnan(v) else v for v in value.tolist()]


