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
images are then named in one error. ``hois`` entries are checked all at once (type sets and
numpy over the flat lists); at the first problem the per-entry reader takes over, so every
message names the first bad entry as before.

The result JSON holds ``mAP_full``, ``mAP_rare``, ``mAP_non_rare``, ``mean_max_recall`` (plus
zero-shot, Known-Object and SWIG-HOI keys when asked), ``per_class_ap`` (ordered by class id,
``null`` for classes outside the averages), as fractions in [0, 1]; the table printed on
stdout shows percentages.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections import Counter
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from hoi_r1.metric import hoi_mean_average_precision, targets_from_sample
from hoi_r1.metric_protocols import PROTOCOL_NAMES
from hoi_r1.readers.records import MissingImage, RecordProblem, image_size
from hoi_r1.vocab import HOIVocabulary

logger = logging.getLogger(__name__)
OnBadPrediction = Literal["error", "skip"]
FRAME_KINDS = ("absolute_original", "absolute_resized", "normalized_1000")
MAX_WARNINGS = 20


class BadPredictionError(ValueError):
    """A predictions-file entry that cannot be evaluated (the message names file and entry)."""


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
    """
    from hoi_r1.readers import read_annotations

    if frame not in FRAME_KINDS:
        raise ValueError(f"frame must be one of {FRAME_KINDS}, found {frame!r}")
    vocab = HOIVocabulary.from_json(vocabulary) if vocabulary else None
    # image sizes are read later, and only for completions in a frame that needs them
    dataset = read_annotations(annotations, vocab=vocab, categories=categories, split=split, read_image_sizes=False)
    vocab = dataset.vocab
    reader = _PredictionReader(Path(predictions), vocab, frame, on_bad_prediction)
    by_image = reader.read({s.file_name: s for s in dataset.samples})
    preds, targets = [], []
    for s in dataset.samples:
        targets.append(targets_from_sample(s))
        preds.append(by_image.get(s.image_id, _empty_preds(s.image_id)))
    result = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, zero_shot=zero_shot,
                                        known_object=known_object, per_class=True, triplet_nms=triplet_nms)
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
    args = parser.parse_args(argv)
    zero_shot: str | list[int] | None = args.zero_shot
    if zero_shot and all(part.strip().isdigit() for part in zero_shot.split(",")):
        zero_shot = [int(part) for part in zero_shot.split(",")]
    try:
        result = evaluate_files(
            args.annotations, args.predictions, protocol=args.protocol, categories=args.categories,
            vocabulary=args.vocabulary, split=args.split, zero_shot=zero_shot, known_object=args.known_object,
            triplet_nms=args.triplet_nms, frame=args.frame, on_bad_prediction=args.on_bad_prediction,
        )
    except (OSError, ValueError, KeyError) as e:
        parser.exit(2, f"hoi-r1 eval: error: {e}\n")
    print(format_table(result))
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
    return "\n".join(lines)


# --------------------------------------------------------------------------- predictions
class _PredictionReader:
    """Reads the predictions file into metric-input dicts keyed by image id."""

    def __init__(self, path: Path, vocab: HOIVocabulary, frame: str, on_bad: OnBadPrediction) -> None:
        if on_bad not in ("error", "skip"):
            raise ValueError(f"on_bad_prediction must be 'error' or 'skip', found {on_bad!r}")
        self.path, self.vocab, self.frame, self.on_bad = path, vocab, frame, on_bad
        self.vectorise = True  # False: the per-entry reader only (benchmarks compare the two)
        self.skipped: Counter = Counter()
        self.answer_problems: Counter = Counter()

    def read(self, samples: dict) -> dict[int, dict]:
        try:
            entries = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"predictions file {self.path} does not exist") from None
        except json.JSONDecodeError as e:
            raise BadPredictionError(f"{self.path}: not valid JSON: {e}") from None
        if not isinstance(entries, list):
            raise BadPredictionError(
                f"{self.path}: expected a JSON list of per-image entries, found {type(entries).__name__}"
            )
        fast = self._vectorised_hois(entries) if self.vectorise else None
        out: dict[int, dict] = {}
        completions: list[tuple[str, Any]] = []
        seen: set[int] = set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
                self._bad(i, "entry_without_file_name", "not an object with a string 'file_name'")
                continue
            sample = samples.get(entry["file_name"])
            if sample is None:
                self._bad(i, "unknown_file", f"file_name {entry['file_name']!r} is not in the annotations")
                continue
            if sample.image_id in seen:
                self._bad(i, "duplicate_file", f"file_name {entry['file_name']!r} appears twice")
                continue
            seen.add(sample.image_id)
            if isinstance(entry.get("completion"), str):
                completions.append((entry["completion"], sample))
            elif isinstance(entry.get("hois"), list):
                if fast is not None:
                    out[sample.image_id] = {"image_id": sample.image_id, **fast[i]}
                else:
                    out[sample.image_id] = self._from_hois(i, entry["hois"], sample.image_id)
            else:
                self._bad(i, "entry_without_hois", "needs a 'hois' list or a 'completion' string")
        sizes = self._image_sizes([s for _, s in completions])
        for text, sample in completions:
            out[sample.image_id] = self._from_completion(text, sample, sizes.get(sample.image_id))
        return out

    def _image_sizes(self, samples: list) -> dict[int, tuple[int, int]]:
        """Original sizes of the images whose completions need them: only a text frame other
        than ``absolute_original`` does, and only for records without ``width`` / ``height``.
        Missing or unreadable image files are all named in one error."""
        if self.frame == "absolute_original":
            return {}
        sizes, missing = {}, []
        for s in samples:
            if s.width > 0 and s.height > 0:
                sizes[s.image_id] = (s.width, s.height)
                continue
            try:
                sizes[s.image_id] = image_size(Path(s.image_path), check_images=False)
            except (MissingImage, RecordProblem):
                missing.append(s.image_path)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise BadPredictionError(
                f"{self.path}: --frame {self.frame} needs the original size of every image with a "
                f"'completion' to convert its boxes to original pixels, and the annotation file has no "
                f"width/height for them; {len(missing)} image file(s) missing or unreadable: {shown}"
            )
        return sizes

    def _from_completion(self, text: str, sample, size: tuple[int, int] | None) -> dict:
        from hoi_r1.answer import parse_answer, to_metric_preds
        from hoi_r1.frames import Frame

        width, height = size if size is not None else (sample.width, sample.height)
        if self.frame == "absolute_original" and not (width > 0 and height > 0):
            # size unknown (not read): text units are original pixels whatever the size
            frame = Frame(self.frame, (1, 1), (1, 1))
        else:
            frame = Frame.for_image(self.frame, width, height)
        parsed = parse_answer(text, self.vocab, frame)
        self.answer_problems.update(parsed.problem_counts())
        return to_metric_preds(parsed, self.vocab, sample.image_id)

    def _vectorised_hois(self, entries: list) -> dict[int, dict] | None:
        """The ``hois`` of every entry checked and converted at once, as the metric's columns by
        entry index; ``None`` as soon as anything is off (a missing key, a wrong type, a
        non-finite number, an unknown name, a pair that is no class), and then the per-entry
        reader (:meth:`_from_hois`) runs instead and reports the first bad entry in its own
        words. The checks are type sets over flat lists (``set(map(type, ...))``) and numpy, not
        one Python call per value."""
        chosen = [(i, e["hois"]) for i, e in enumerate(entries) if isinstance(e, dict)
                  and not isinstance(e.get("completion"), str) and isinstance(e.get("hois"), list)]
        index, hois_of = [i for i, _ in chosen], [h for _, h in chosen]
        flat = list(chain.from_iterable(hois_of))
        if flat and set(map(type, flat)) != {dict}:
            return None
        try:
            human, obj_box = list(map(itemgetter("human_box"), flat)), list(map(itemgetter("object_box"), flat))
            objects, verbs = list(map(itemgetter("object"), flat)), list(map(itemgetter("verb"), flat))
            scores = list(map(itemgetter("score"), flat))
        except KeyError:
            return None
        boxes = human + obj_box
        if flat and (set(map(type, boxes)) != {list} or set(map(len, boxes)) != {4}):
            return None
        coords = list(chain.from_iterable(boxes))
        if flat and (not set(map(type, coords)) <= {int, float} or not set(map(type, scores)) <= {int, float}):
            return None
        if flat and (set(map(type, objects)) != {str} or set(map(type, verbs)) != {str}):
            return None
        try:
            xyxy = np.array(coords, dtype=np.float64).reshape(2, -1, 4)
            score = np.array(scores, dtype=np.float64)
        except OverflowError:
            return None
        if not (np.isfinite(xyxy).all() and np.isfinite(score).all()):
            return None
        obj_ids, verb_ids = _ids(objects, self.vocab.object_id), _ids(verbs, self.vocab.verb_id)
        if obj_ids is None or verb_ids is None:
            return None
        table = np.full((len(self.vocab.verbs), len(self.vocab.objects)), -1, dtype=np.int64)
        for k, (v, o) in enumerate(self.vocab.interactions):
            table[v, o] = k
        classes = table[verb_ids, obj_ids]
        if (classes < 0).any():
            return None
        out: dict[int, dict] = {}
        stops = np.cumsum([len(h) for h in hois_of], dtype=np.int64)
        for i, stop, n in zip(index, stops.tolist(), map(len, hois_of)):
            sl = slice(stop - n, stop)
            out[i] = {"human_boxes": torch.from_numpy(xyxy[0, sl]), "object_boxes": torch.from_numpy(xyxy[1, sl]),
                      "object_labels": torch.from_numpy(obj_ids[sl]), "hoi": torch.from_numpy(classes[sl]),
                      "scores": torch.from_numpy(score[sl])}
        return out

    def _from_hois(self, i: int, hois: list, image_id: int) -> dict:
        rows = []
        for j, hoi in enumerate(hois):
            row = self._read_hoi(i, j, hoi)
            if row is not None:
                rows.append(row)
        humans, objects, labels, classes, scores = zip(*rows) if rows else ((), (), (), (), ())
        return {"image_id": image_id,
                "human_boxes": torch.tensor(humans, dtype=torch.float64).reshape(-1, 4),
                "object_boxes": torch.tensor(objects, dtype=torch.float64).reshape(-1, 4),
                "object_labels": torch.tensor(labels, dtype=torch.long),
                "hoi": torch.tensor(classes, dtype=torch.long),
                "scores": torch.tensor(scores, dtype=torch.float64)}

    def _read_hoi(self, i: int, j: int, hoi: Any) -> tuple | None:
        where = f"hois[{j}]"
        if not isinstance(hoi, dict):
            return self._bad(i, "bad_hoi", f"{where} is not an object")
        boxes = [_box(hoi.get(k)) for k in ("human_box", "object_box")]
        if boxes[0] is None or boxes[1] is None:
            return self._bad(i, "bad_box", f"{where}: human_box and object_box must be 4 finite numbers")
        score = hoi.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            return self._bad(i, "bad_score", f"{where}: score must be a finite number, found {score!r}")
        obj = self.vocab.object_id(hoi["object"]) if isinstance(hoi.get("object"), str) else None
        if obj is None:
            return self._bad(i, "unknown_object", f"{where}: unknown object {hoi.get('object')!r}")
        verb = self.vocab.verb_id(hoi["verb"]) if isinstance(hoi.get("verb"), str) else None
        if verb is None:
            return self._bad(i, "unknown_verb", f"{where}: unknown verb {hoi.get('verb')!r}")
        cls = self.vocab.interaction_id(verb, obj)
        if cls is None:
            return self._bad(i, "invalid_pair", f"{where}: ({hoi['verb']!r}, {hoi['object']!r}) is not a class")
        return boxes[0], boxes[1], obj, cls, float(score)

    def _bad(self, i: int, code: str, problem: str) -> None:
        message = f"{self.path}: entry {i}: {problem}"
        if self.on_bad == "error":
            raise BadPredictionError(message)
        self.skipped[code] += 1
        if sum(self.skipped.values()) <= MAX_WARNINGS:
            logger.warning("skipped: %s", message)
        return None


def _ids(names: list, lookup: Any) -> np.ndarray | None:
    """``(N,)`` ids of ``names`` by ``lookup`` (one call per distinct name), or ``None`` if one
    is unknown."""
    memo = {name: lookup(name) for name in set(names)}
    if any(v is None for v in memo.values()):
        return None
    return np.fromiter(map(memo.__getitem__, names), dtype=np.int64, count=len(names))


def _box(value: Any) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]


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
