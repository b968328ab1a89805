"""Detections for the ``detect_humans`` / ``detect_objects`` tools: a precomputed file or the
policy itself prompted for grounding, plus a noisy-detections generator for the synthetic demo.

Two-stage HOI methods read boxes from an off-the-shelf detector run once over the dataset; the
OV-HOI agent calls a detector as a tool. Both backends answer the same question — "boxes of
these categories in this image" — with :class:`Detection` lists in original pixels:

* :class:`FileDetectionBackend` reads a :class:`DetectionsFile`;
* :class:`ModelGroundingBackend` prompts a model with the grounding task of
  :mod:`hoi_r1.grounding` through an injected callable (the policy, during a rollout), so this
  module imports no model code.

Detections file layout (JSON; boxes xyxy in original pixels, the program's own convention)::

    {"format": "hoi_r1.detections/1",
     "images": {"images/train/a.png": [{"bbox": [x1, y1, x2, y2], "label": "person", "score": 0.93}, ...],
                ...}}

Labels are names (any vocabulary: the file may hold categories the dataset never annotates);
they are compared ignoring case, spaces and underscores. An image present with an empty list
had no detections; an image absent from the file is an error.

:func:`noisy_detections` turns ground truth into such a file: every annotated box is missed
with probability ``miss_rate``, else kept with Gaussian jitter of ``jitter`` times its width
and height on each coordinate and a score drawn from U(0.5, 1); each image then gets
Poisson(``false_alarm_rate``) false alarms of random labels, sizes and places, scored U(0.05, 0.6).
Image ``i`` uses the random stream ``(seed, i)``. ``hoi-r1 detections`` is :func:`main`.

>>> d = DetectionsFile({"a.png": [Detection((1.0, 2.0, 30.0, 60.0), "person", 0.9)]})
>>> [x.label for x in d.for_image("a.png")]
['person']
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image

from hoi_r1.answer import rank_scores
from hoi_r1.frames import Frame
from hoi_r1.grounding import build_grounding_instruction, parse_grounding_answer
from hoi_r1.progress import progress
from hoi_r1.readers import read_annotations
from hoi_r1.readers.records import BadRecordError
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

FORMAT_TAG = "hoi_r1.detections/1"
HUMAN_LABELS = ("person", "human")
"""Category names that mean a person (``detect_humans`` asks for these)."""


@dataclass(frozen=True)
class Detection:
    """One detected box: ``box`` xyxy in original pixels, the label name and a score in [0, 1]."""

    box: tuple[float, float, float, float]
    label: str
    score: float


@dataclass(frozen=True)
class DetectionsFile:
    """Detections per image ``file_name`` (the annotation files' ``file_name``).

    Args:
        images: file name → detections of that image.
        source: where the detections came from (for error messages).
    """

    images: Mapping[str, Sequence[Detection]]
    source: str = "<memory>"

    def for_image(self, file_name: str) -> list[Detection]:
        """The detections of one image; ``KeyError`` naming the file when it is absent."""
        try:
            return list(self.images[file_name])
        except KeyError:
            raise KeyError(f"detections file {self.source} has no image {file_name!r}") from None

    def __contains__(self, file_name: str) -> bool:
        return file_name in self.images

    def __len__(self) -> int:
        return len(self.images)

    def write(self, path: str | Path) -> Path:
        """Write the JSON layout of the module docstring (scores and boxes rounded to 4 digits)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        images = {
            name: [{"bbox": [round(v, 4) for v in d.box], "label": d.label, "score": round(d.score, 4)} for d in dets]
            for name, dets in self.images.items()
        }
        path.write_text(json.dumps({"format": FORMAT_TAG, "images": images}))
        return path

    @classmethod
    def read(cls, path: str | Path) -> "DetectionsFile":
        """Read a detections file; :class:`~hoi_r1.readers.records.BadRecordError` names the file,
        the image (record index and file name), the detection index and the problem."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"detections file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise BadRecordError(path, None, f"not valid JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), dict):
            raise BadRecordError(path, None, 'expected {"format": ..., "images": {file_name: [detections]}}')
        if data.get("format", FORMAT_TAG) != FORMAT_TAG:
            raise BadRecordError(path, None, f"format {data.get('format')!r} is not {FORMAT_TAG!r}")
        images: dict[str, list[Detection]] = {}
        for index, (name, dets) in enumerate(data["images"].items()):
            if not isinstance(dets, list):
                raise BadRecordError(path, index, f"image {name!r}: detections must be a list, found {type(dets).__name__}")
            images[name] = [_read_detection(path, index, name, k, d) for k, d in enumerate(dets)]
        return cls(images, str(path))


def _read_detection(path: Path, index: int, name: str, k: int, record: object) -> Detection:
    def bad(problem: str) -> BadRecordError:
        return BadRecordError(path, index, f"image {name!r}, detection {k}: {problem}")

    if not isinstance(record, dict):
        raise bad(f"must be an object with bbox, label, score, found {type(record).__name__}")
    for key in ("bbox", "label", "score"):
        if key not in record:
            raise bad(f"has no key {key!r}")
    box, label, score = record["bbox"], record["label"], record["score"]
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise bad(f"bbox must be 4 numbers [x1, y1, x2, y2], found {box!r:.60}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x1 < x2 and y1 < y2):
        raise bad(f"bbox must have x1 < x2 and y1 < y2, found {[x1, y1, x2, y2]}")
    if not isinstance(label, str) or not label.strip():
        raise bad(f"label must be a non-empty string, found {label!r:.40}")
    if not _is_number(score) or not 0 <= float(score) <= 1:
        raise bad(f"score must be a number in [0, 1], found {score!r:.40}")
    return Detection((x1, y1, x2, y2), label, float(score))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ===================================================================== backends
class DetectionBackend(Protocol):
    """Who answers the detection tools."""

    def detect(self, file_name: str, image: Image.Image | None, frame: Frame, categories: Sequence[str]) -> list[Detection]:
        """Detections of ``categories`` (names, any vocabulary) in one image, best first."""


@dataclass(frozen=True)
class FileDetectionBackend:
    """Detections read from a :class:`DetectionsFile`.

    Args:
        detections: the file's content.
        min_score: detections scored below this are not returned.
        max_per_category: at most this many detections per category (highest scores first).
    """

    detections: DetectionsFile
    min_score: float = 0.3
    max_per_category: int = 10

    def detect(self, file_name: str, image: Image.Image | None, frame: Frame, categories: Sequence[str]) -> list[Detection]:
        wanted = {label_key(c) for c in categories}
        found = [d for d in self.detections.for_image(file_name) if label_key(d.label) in wanted and d.score >= self.min_score]
        return _best_per_category(found, self.max_per_category)


@dataclass(frozen=True)
class ModelGroundingBackend:
    """The policy model prompted with the grounding task (:mod:`hoi_r1.grounding`).

    Args:
        ground: ``(instruction, image) -> completion``: generates one answer to the grounding
            instruction for the image (the rollout engine wraps the policy into it).
        max_per_category: at most this many boxes per category (in answer order).

    Grounding answers carry no scores; boxes are scored by their rank within each category
    (HOI-R1's ``1 - 0.5 k / (n - 1)``).
    """

    ground: Callable[[str, Image.Image | None], str]
    max_per_category: int = 10

    def detect(self, file_name: str, image: Image.Image | None, frame: Frame, categories: Sequence[str]) -> list[Detection]:
        names = list(dict.fromkeys(c.strip() for c in categories if c.strip()))
        vocab = HOIVocabulary.open([], names)
        text = self.ground(build_grounding_instruction(vocab, frame), image)
        by_label: dict[str, list[np.ndarray]] = {}
        for label, box in parse_grounding_answer(text if isinstance(text, str) else "", vocab, frame):
            obj = vocab.object_id(label)
            if obj is not None and np.isfinite(box).all() and box[0] < box[2] and box[1] < box[3]:
                by_label.setdefault(vocab.objects[obj], []).append(box)
        out = []
        for label, boxes in by_label.items():
            boxes = boxes[: self.max_per_category]
            out += [Detection(tuple(float(v) for v in b), label, s) for b, s in zip(boxes, rank_scores(len(boxes)))]
        return out


def _best_per_category(found: list[Detection], limit: int) -> list[Detection]:
    found = sorted(found, key=lambda d: -d.score)
    counts: dict[str, int] = {}
    out = []
    for d in found:
        key = label_key(d.label)
        if counts.get(key, 0) < limit:
            counts[key] = counts.get(key, 0) + 1
            out.append(d)
    return out


def label_key(name: str) -> str:
    """How labels are compared: case, underscores and runs of spaces ignored.

    >>> label_key("Sports_ball "), label_key("sports  ball")
    ('sports ball', 'sports ball')
    """
    return " ".join(name.replace("_", " ").lower().split())


# ===================================================================== noisy ground truth
@dataclass(frozen=True)
class NoiseStats:
    """What :func:`noisy_detections` did: boxes kept and missed, false alarms added."""

    kept: int = 0
    missed: int = 0
    false_alarms: int = 0
    images: int = 0
    per_image_false_alarms: list[int] = field(default_factory=list)


def noisy_detections(
    samples: Sequence[HOISample],
    vocab: HOIVocabulary,
    seed: int = 0,
    miss_rate: float = 0.1,
    false_alarm_rate: float = 0.5,
    jitter: float = 0.05,
) -> tuple[DetectionsFile, NoiseStats]:
    """A detections file made from ground truth with misses, jitter and false alarms.

    Args:
        samples: annotated images; every human and object box is a candidate detection.
        vocab: names of the object labels (humans are written as ``person``).
        seed: random seed; image ``i`` uses the stream ``(seed, i)``.
        miss_rate: probability that an annotated box is missed.
        false_alarm_rate: expected false alarms per image (Poisson mean).
        jitter: standard deviation of each coordinate's noise, as a fraction of the box's width
            (x) or height (y).

    Returns:
        The detections (boxes clamped to the image, best score first) and counts.
    """
    if not 0 <= miss_rate <= 1 or false_alarm_rate < 0 or jitter < 0:
        raise ValueError(
            f"need 0 <= miss_rate <= 1, false_alarm_rate >= 0, jitter >= 0; found {miss_rate}, {false_alarm_rate}, {jitter}"
        )
    images: dict[str, list[Detection]] = {}
    kept = missed = alarms = 0
    per_image = []
    for i, sample in enumerate(progress(samples, "detections")):
        rng = np.random.default_rng([seed, i])
        truth = [("person", b) for b in sample.human_boxes]
        truth += [(vocab.objects[int(label)], b) for label, b in zip(sample.object_labels, sample.object_boxes)]
        dets = []
        for label, box in truth:
            if rng.random() < miss_rate:
                missed += 1
                continue
            dets.append(Detection(_jittered(rng, box, jitter, sample), label, float(rng.uniform(0.5, 1.0))))
            kept += 1
        count = int(rng.poisson(false_alarm_rate))
        dets += [_false_alarm(rng, vocab, sample) for _ in range(count)]
        alarms += count
        per_image.append(count)
        images[sample.file_name] = sorted(dets, key=lambda d: -d.score)
    return DetectionsFile(images, "noisy ground truth"), NoiseStats(kept, missed, alarms, len(samples), per_image)


def _jittered(rng: np.random.Generator, box: np.ndarray, jitter: float, sample: HOISample) -> tuple[float, ...]:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    noise = rng.normal(0.0, jitter, 4) * np.array([w, h, w, h])
    out = np.array([x1, y1, x2, y2]) + noise
    out = np.clip(out, 0, [sample.width, sample.height, sample.width, sample.height])
    if not (out[0] < out[2] and out[1] < out[3]):  # jitter collapsed the box: keep the truth
        out = np.array([x1, y1, x2, y2])
    return tuple(round(float(v), 2) for v in out)


def _false_alarm(rng: np.random.Generator, vocab: HOIVocabulary, sample: HOISample) -> Detection:
    label = vocab.objects[int(rng.integers(len(vocab.objects)))]
    w = float(rng.uniform(0.08, 0.35)) * sample.width
    h = float(rng.uniform(0.08, 0.45)) * sample.height
    x1 = float(rng.uniform(0, sample.width - w))
    y1 = float(rng.uniform(0, sample.height - h))
    box = tuple(round(v, 2) for v in (x1, y1, x1 + w, y1 + h))
    return Detection(box, label, float(rng.uniform(0.05, 0.6)))


def main(argv: Sequence[str] | None = None) -> int:
    """``hoi-r1 detections``: write a noisy detections file from an annotation file."""
    parser = argparse.ArgumentParser(
        prog="hoi-r1 detections", description="Write a detections file from ground truth with noise, misses and false alarms."
    )
    parser.add_argument("--annotations", required=True, help="annotation file (HICO-DET JSON, e.g. data/synthetic/train.json)")
    parser.add_argument("--out", required=True, help="detections JSON to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--miss-rate", type=float, default=0.1, help="probability a box is missed (default: %(default)s)")
    parser.add_argument("--false-alarm-rate", type=float, default=0.5, help="false alarms per image (default: %(default)s)")
    parser.add_argument("--jitter", type=float, default=0.05, help="coordinate noise, fraction of box size (default: %(default)s)")
    args = parser.parse_args(argv)
    dataset = read_annotations(args.annotations)
    try:
        detections, stats = noisy_detections(
            dataset.samples, dataset.vocab, args.seed, args.miss_rate, args.false_alarm_rate, args.jitter
        )
    except ValueError as e:
        parser.error(str(e))
    detections.write(args.out)
    print(
        f"wrote detections of {stats.images} images to {args.out}: {stats.kept} kept, {stats.missed} missed, "
        f"{stats.false_alarms} false alarms"
    )
    return 0
