"""``hoi-r1 eval``: HOI-mAP of a predictions file against an annotation file.

Annotations: any file :func:`hoi_r1.readers.read_annotations` reads (PPDM/QPIC JSON, the
official ``anno_bbox.mat``, SWIG-HOI with ``--categories``). Predictions: a JSON list with one
entry per image, either scored detections::

    {"file_name": "HICO_test2015_00000001.jpg",
     "hois": [{"human_box": [x1, y1, x2, y2], "object_box": [x1, y1, x2, y2],
               "object": "bicycle", "verb": "ride", "score": 0.87}, ...]}

(boxes in original pixels, same pixel convention as the annotation file), or an HOI-R1 answer
``{"file_name": ..., "completion": "<think>…</think><answer>[…]</answer>"}``, read with
:func:`hoi_r1.answer.parse_answer` in the ``--frame`` coordinate frame (default
``absolute_original``) and ranked as the parser scores it. Images without an entry have no
detections. Bad entries (unknown file name, unknown object or verb name, a (verb, object) pair
that is not a class, a malformed box or score) raise an error naming the entry, or with
``--on-bad-prediction skip`` are skipped, counted in ``skipped`` and logged.

No image file is opened unless a ``completion`` must be read in a frame that needs the image's
size (``absolute_resized``, ``normalized_1000``) and the annotation record has none; the missing
images are then named in one error. The predictions file is read by
:mod:`hoi_r1.prediction_reader`: a typed ``msgspec`` decode that checks types as it parses, and
whole-array checks; anything it refuses goes through the standard ``json`` parser and, at the
first problem, the per-entry reader, so every message names the first bad entry as before.
Python's cyclic garbage collector is paused while the millions of parsed objects are alive.

``--breakdown`` adds mAP and recall per bin of human-object distance and object area
(:mod:`hoi_r1.eval_breakdown`, key ``breakdown``, and a table); ``--plots DIR`` writes the PNGs of
:mod:`hoi_r1.eval_plots` (AP per class against training pairs, with ``--train-annotations``;
precision-recall curves of the best and worst classes; the breakdown; max recall per class).

The result JSON holds ``mAP_full``, ``mAP_rare``, ``mAP_non_rare``, ``mean_max_recall`` (plus
zero-shot, Known-Object and SWIG-HOI keys when asked), ``per_class_ap`` (ordered by class id,
``null`` for classes outside the averages), as fractions in [0, 1]; the table printed on
stdout shows percentages.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch

from hoi_r1.eval_breakdown import breakdown as geometry_breakdown
from hoi_r1.hoi_map import hoi_mean_average_precision, targets_from_sample
from hoi_r1.metric_protocols import PROTOCOL_NAMES
from hoi_r1.pr_curves import precision_recall_curves
from hoi_r1.prediction_reader import FRAME_KINDS, BadPredictionError, OnBadPrediction, PredictionReader
from hoi_r1.progress import progress_bar
from hoi_r1.readers import read_annotations
from hoi_r1.vocab import HOIVocabulary

__all__ = ["FRAME_KINDS", "BadPredictionError", "evaluate_files", "format_table", "main"]


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
) -> dict[str, Any]:
    """Evaluate ``predictions`` against ``annotations``; returns the JSON-ready result.

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
        bar.set_postfix_str("predictions")
        reader = PredictionReader(Path(predictions), vocab, frame, on_bad_prediction)
        by_image = reader.read({s.file_name: s for s in dataset.samples})
        preds, targets = [], []
        for s in dataset.samples:
            targets.append(targets_from_sample(s))
            preds.append(by_image.get(s.image_id, _empty_preds(s.image_id)))
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


def main(argv: list[str] | None = None) -> int:
    """``hoi-r1 eval``: print the table, write ``--output``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="hoi-r1 eval", description="HOI-mAP of a predictions file.")
    parser.add_argument("--annotations", required=True, help="test annotations (PPDM/QPIC JSON, anno_bbox.mat, SWIG)")
    parser.add_argument("--predictions", required=True, help="predictions JSON (one entry per image)")
    parser.add_argument("--protocol", default="hico_official", choices=PROTOCOL_NAMES)
    parser.add_argument("--output", help="write the result JSON here")
    parser.add_argument("--categories", help="SWIG-HOI category metadata file")
    parser.add_argument("--vocabulary", help="vocabulary.json to use")
    parser.add_argument("--split", default="test", choices=["train", "test"], help="split of anno_bbox.mat")
    parser.add_argument("--zero-shot", help="zero-shot setting name, or comma-separated unseen class ids")
    parser.add_argument("--known-object", action="store_true", help="also report the Known-Object setting")
    parser.add_argument("--triplet-nms", action="store_true", help="GEN-VLKT triplet NMS (gen_vlkt only)")
    parser.add_argument("--frame", default="absolute_original", choices=FRAME_KINDS,
                        help="coordinate frame of boxes in 'completion' texts")
    parser.add_argument("--on-bad-prediction", default="error", choices=["error", "skip"])
    parser.add_argument("--breakdown", action="store_true",
                        help="mAP and recall per bin of human-object distance and object area")
    parser.add_argument("--plots", metavar="DIR", help="write PNGs (AP per class, PR curves, breakdown, max "
                        "recall) into DIR; needs matplotlib (pip install -e .[plots])")
    parser.add_argument("--train-annotations", help="training annotations: pairs per class for the AP plot")
    args = parser.parse_args(argv)
    zero_shot: str | list[int] | None = args.zero_shot
    if zero_shot and all(part.strip().isdigit() for part in zero_shot.split(",")):
        zero_shot = [int(part) for part in zero_shot.split(",")]
    try:
        result = evaluate_files(
            args.annotations, args.predictions, protocol=args.protocol, categories=args.categories,
            vocabulary=args.vocabulary, split=args.split, zero_shot=zero_shot, known_object=args.known_object,
            triplet_nms=args.triplet_nms, frame=args.frame, on_bad_prediction=args.on_bad_prediction,
            breakdown=args.breakdown, plots=args.plots, train_annotations=args.train_annotations,
        )
    except ModuleNotFoundError as e:
        if e.name != "matplotlib":
            raise
        parser.exit(2, "hoi-r1 eval: error: --plots needs matplotlib: pip install -e '.[plots]'\n")
    except (OSError, ValueError, KeyError) as e:
        parser.exit(2, f"hoi-r1 eval: error: {e}\n")
    print(format_table(result))
    if result.get("plots"):
        print("plots written: " + ", ".join(result["plots"]))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
        print(f"result written to {args.output}")
    return 0


def format_table(result: dict[str, Any]) -> str:
    """A readable summary of an :func:`evaluate_files` result (percentages)."""
    lines = [f"HOI-mAP ({result['protocol']}): {result['num_images']} images, {result['num_gt_pairs']} "
             f"ground-truth pairs, {result['num_detections']} detections", ""]
    lines.append(f"{'':24}{'default':>10}" + (f"{'known object':>14}" if "mAP_full_known_object" in result else ""))
    for key in ("full", "rare", "non_rare", "unseen", "seen"):
        if f"mAP_{key}" in result:
            row = f"{'mAP ' + key.replace('_', '-'):24}{_pct(result[f'mAP_{key}']):>10}"
            if f"mAP_{key}_known_object" in result:
                row += f"{_pct(result[f'mAP_{key}_known_object']):>14}"
            lines.append(row)
    lines.append(f"{'mean max recall':24}{_pct(result['mean_max_recall']):>10}")
    if result.get("skipped"):
        lines.append(f"skipped: {result['skipped']}")
    if result.get("answer_problems"):
        lines.append(f"answer problems: {result['answer_problems']}")
    for kind, rows in result.get("breakdown", {}).items():
        lines += ["", f"{'by ' + kind:24}{'GT pairs':>10}{'detections':>12}{'classes':>9}{'mAP':>9}{'recall':>9}"]
        for r in rows:
            lines.append(f"{'  ' + r['bin']:24}{r['num_gt_pairs']:>10}{r['num_detections']:>12}{r['num_classes']:>9}"
                         f"{_pct(r['mAP']):>9}{_pct(r['recall']):>9}")
    return "\n".join(lines)


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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
