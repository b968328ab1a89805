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
The typed decode runs in a helper process (:class:`hoi_r1.prediction_columns.ColumnsRead`),
started before this one imports torch, so that the two share the work on two cores;
``--no-helper-process`` decodes in this process, with the same result. The evaluation itself
is :func:`hoi_r1.file_evaluation.evaluate_files`.

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
import json
from pathlib import Path
from typing import Any

from hoi_r1.frames import FRAME_KINDS
from hoi_r1.metric_protocols import PROTOCOL_NAMES
from hoi_r1.prediction_columns import ColumnsRead

__all__ = ["format_table", "main"]


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
    parser.add_argument("--helper-process", action=argparse.BooleanOptionalAction, default=True,
                        help="decode the predictions file in a second process while this one imports torch "
                        "and reads the annotations (default: on; the result is the same either way)")
    args = parser.parse_args(argv)
    prefetched = ColumnsRead.start(args.predictions) if args.helper_process else None
    # imported after the helper has started, so that importing torch overlaps its decoding
    from hoi_r1.file_evaluation import evaluate_files

    zero_shot: str | list[int] | None = args.zero_shot
    if zero_shot and all(part.strip().isdigit() for part in zero_shot.split(",")):
        zero_shot = [int(part) for part in zero_shot.split(",")]
    try:
        result = evaluate_files(
            args.annotations, args.predictions, protocol=args.protocol, categories=args.categories,
            vocabulary=args.vocabulary, split=args.split, zero_shot=zero_shot, known_object=args.known_object,
            triplet_nms=args.triplet_nms, frame=args.frame, on_bad_prediction=args.on_bad_prediction,
            breakdown=args.breakdown, plots=args.plots, train_annotations=args.train_annotations,
            prefetched=prefetched,
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
