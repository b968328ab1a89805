"""Cold-start SFT data for the tool-using mode: reasoning traces written from ground truth.

ImagineAgent (arXiv 2602.11499) starts GRPO from a model fine-tuned on tool-using chains of
thought. Here a scripted *teacher* plays the model's part in :func:`~hoi_r1.ov_hoi.episode_driver.run_episode`
on each training image, so every tool response in a trace is exactly what the runtime would
return. A trace is as short as the task allows (three model turns; the tool responses are short
lines, :mod:`hoi_r1.ov_hoi.builtin`):

1. ``detect_humans`` and ``detect_objects`` in one turn (detections file backend), the latter for
   every object of interest when they fit in one call (:data:`~hoi_r1.ov_hoi.builtin.MAX_CATEGORIES`),
   else for the classes the ground truth holds;
2. the relations of up to ``max_spatial_calls`` ground-truth (human, object) pairs: one
   ``relations`` call naming the detections that stand for the pair's boxes (the best one of
   its class at IoU ≥ ``copy_iou``), and a ``spatial_relations`` call with the annotated boxes
   for a pair the detector missed (plus, with ``zoom``, a ``crop`` of the smallest object);
3. the answer: one short clause per pair (``person 2, cup 1: hold.``), then
   :func:`hoi_r1.answer_render.render_answer` of the ground truth with the detections' boxes where they
   stand for the annotated ones — the trace copies boxes from the tools, as a model reading them
   can (``copy_detections=False``, ``--annotated-boxes``, keeps the annotated boxes).

Record layout (one JSON object per line; docs/ov_hoi.md)::

    {"file_name": "images/train/x.png", "image_id": 0, "width": 112, "height": 112,
     "frame": {"kind": "absolute_resized", "original_size": [112, 112], "resized_size": [112, 112]},
     "query": {"verbs": [...], "objects": [...]},
     "messages": [{"role": "assistant", "content": "<think>…</think><tool_call>…</tool_call>"},
                  {"role": "tool", "content": "<tool_response>…</tool_response>",
                   "images": [{"tool": "crop", "arguments": {"box": [...], "scale": 2.0}}]},
                  ...,
                  {"role": "assistant", "content": "<think>…</think><answer>[…]</answer>"}]}

Assistant messages are trained; tool messages are context (their tokens are masked). ``images``
(tool messages only, optional) says how to re-create each image a tool turn showed:
:func:`~hoi_r1.ov_hoi.cold_start_records.record_images` re-runs those calls on the original
image. The prompt is not stored: build it with :func:`hoi_r1.ov_hoi.prompts.build_tool_messages`
from ``query`` and ``frame``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hoi_r1.answer_render import render_answer
from hoi_r1.boxes import box_iou
from hoi_r1.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, FRAME_KINDS, Frame, FrameKind
from hoi_r1.image_dataset import load_image
from hoi_r1.ov_hoi.builtin import MAX_CATEGORIES, default_registry, detection_names
from hoi_r1.ov_hoi.detection import (
    HUMAN_LABELS,
    Detection,
    DetectionBackend,
    DetectionsFile,
    FileDetectionBackend,
    label_key,
)
from hoi_r1.ov_hoi.episode import Episode
from hoi_r1.ov_hoi.episode_driver import run_episode
from hoi_r1.ov_hoi.protocol import CALL_CLOSE, CALL_OPEN, ToolContext, ToolRegistry
from hoi_r1.progress import progress
from hoi_r1.readers import read_annotations
from hoi_r1.readers.zero_shot import apply_zero_shot
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary


@dataclass(frozen=True)
class ColdStartConfig:
    """How traces are written.

    Args:
        frame: coordinate frame of the boxes in the text (the SFT model's).
        min_pixels: the processor's ``min_pixels`` (``absolute_resized`` frame).
        max_pixels: the processor's ``max_pixels``.
        max_spatial_calls: ``spatial_relations`` calls per trace (one per ground-truth pair).
        copy_detections: answer and relate with the detections' boxes where they match (IoU ≥
            ``copy_iou``) instead of the annotated ones.
        copy_iou: IoU a detection needs to stand for an annotated box.
        zoom: also crop the smallest annotated object (needs the images).
        min_score: detections below this score are not shown.
    """

    frame: FrameKind = "absolute_resized"
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_spatial_calls: int = 3
    zoom: bool = False
    min_score: float = 0.3
    copy_detections: bool = True
    copy_iou: float = 0.5

    def frame_for(self, sample: HOISample) -> Frame:
        return Frame.for_image(self.frame, sample.width, sample.height, self.min_pixels, self.max_pixels)


def build_record(
    sample: HOISample,
    vocab: HOIVocabulary,
    detections: DetectionsFile,
    config: ColdStartConfig = ColdStartConfig(),
    image=None,
    registry: ToolRegistry | None = None,
) -> dict:
    """The cold-start record of one image (layout in the module docstring)."""
    registry = registry or default_registry()
    frame = config.frame_for(sample)
    if sample.file_name not in detections:
        raise KeyError(f"detections file {detections.source} has no image {sample.file_name!r}")
    backend = FileDetectionBackend(detections, min_score=config.min_score)
    context = ToolContext(frame, sample.file_name, image, backend)
    teacher = cold_start_teacher(sample, vocab, frame, backend, config, image)
    episode = run_episode(teacher, [], context, max_turns=4, registry=registry)
    if episode.stop_reason != "answer":
        raise RuntimeError(f"{sample.file_name}: the cold-start teacher stopped with {episode.stop_reason!r}")
    return {
        "file_name": sample.file_name,
        "image_id": sample.image_id,
        "width": sample.width,
        "height": sample.height,
        "frame": {"kind": frame.kind, "original_size": list(frame.original_size), "resized_size": list(frame.resized_size)},
        "query": {"verbs": list(vocab.verbs), "objects": list(vocab.objects)},
        "messages": _messages(episode, registry),
    }


def _messages(episode: Episode, registry: ToolRegistry) -> list[dict]:
    out = []
    by_turn: dict[int, list] = {}
    for record in episode.calls:
        by_turn.setdefault(record.turn, []).append(record)
    model_turn = -1
    for turn in episode.turns:
        message: dict = {"role": turn.role, "content": turn.text}
        if turn.role == "assistant":
            model_turn += 1
        elif turn.images:
            visual = [r for r in by_turn.get(model_turn, []) if r.result.image is not None]
            message["images"] = [{"tool": r.call.name, "arguments": registry.check(r.call)[1]} for r in visual]
        out.append(message)
    return out


def cold_start_teacher(
    sample: HOISample, vocab: HOIVocabulary, frame: Frame, detector: DetectionBackend,
    config: ColdStartConfig = ColdStartConfig(), image=None,
):
    """The scripted model of one image: ``(messages, images) -> next model turn`` (the
    ``generate_fn`` of :func:`~hoi_r1.ov_hoi.episode_driver.run_episode`), writing the turns of the module
    docstring against ``detector`` (the one the episode's tools read)."""
    categories = _categories(sample, vocab)
    if config.copy_detections:
        shown = shown_boxes(sample, vocab, detector.detect(sample.file_name, image, frame, list(HUMAN_LABELS)),
                            detector.detect(sample.file_name, image, frame, categories), config.copy_iou)
    else:
        shown = ShownBoxes(sample, (None,) * len(sample.human_boxes), (None,) * len(sample.object_boxes))
    return _Teacher(shown, vocab, frame, categories, config.max_spatial_calls, config.zoom and image is not None)


def _categories(sample: HOISample, vocab: HOIVocabulary) -> list[str]:
    """What the trace asks ``detect_objects`` for: every object of interest when they fit in one
    call, else the ground truth's classes (all non-person classes when it holds none)."""
    names = [_name(vocab, o) for o in range(len(vocab.objects)) if o != vocab.person]
    if len(names) <= MAX_CATEGORIES:
        return names
    present = list(dict.fromkeys(_name(vocab, int(sample.object_labels[o])) for _, o, _ in sample.grouped_pairs()))
    return present or names[:MAX_CATEGORIES]


@dataclass(frozen=True)
class ShownBoxes:
    """The ground truth as the tools show it: ``sample`` with each box replaced by the detection
    that stands for it, and that detection's name (``cup 2``; ``None`` where the detector missed
    the box and the annotated box stays)."""

    sample: HOISample
    human_names: tuple[str | None, ...]
    object_names: tuple[str | None, ...]


def shown_boxes(sample: HOISample, vocab: HOIVocabulary, humans: Sequence[Detection], objects: Sequence[Detection],
                min_iou: float = 0.5) -> ShownBoxes:
    """Stand each annotated box by the detection of its class (``person`` for humans) with the
    highest IoU, if that IoU is at least ``min_iou``. ``humans`` and ``objects`` are what
    ``detect_humans`` and ``detect_objects`` returned, best first (their names follow
    :func:`~hoi_r1.ov_hoi.builtin.detection_names`).

    >>> from hoi_r1.vocab import HOIVocabulary
    >>> vocab = HOIVocabulary.open(["hold"], ["person", "cup"])
    >>> s = HOISample(0, "a.png", "a.png", 100, 100, human_boxes=[[0, 0, 20, 40]], object_boxes=[[20, 20, 30, 30]],
    ...               object_labels=[1], pairs=[[0, 0, 0, 0]])
    >>> shown = shown_boxes(s, vocab, [Detection((1, 0, 21, 40), "person", 0.9)], [Detection((60, 60, 70, 70), "cup", 0.8)])
    >>> shown.sample.human_boxes.tolist(), shown.human_names, shown.object_names
    ([[1.0, 0.0, 21.0, 40.0]], ('person 1',), (None,))
    """
    def stand_in(boxes, labels: list[str], found: Sequence[Detection], names: list[str]):
        out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        chosen: list[str | None] = [None] * len(out)
        for k, label in enumerate(labels):
            idx = [i for i, name in enumerate(names) if name.rpartition(" ")[0] == label_key(label)]
            if not idx:
                continue
            iou = box_iou(torch.from_numpy(out[k : k + 1]), torch.tensor(np.array([found[i].box for i in idx]), dtype=torch.float64))[0]
            if float(iou.max()) >= min_iou:
                best = idx[int(iou.argmax())]
                out[k], chosen[k] = found[best].box, names[best]
        return out, tuple(chosen)

    h_boxes, h_names = stand_in(sample.human_boxes, ["person"] * len(sample.human_boxes), humans,
                                detection_names(["person"] * len(humans)))
    o_boxes, o_names = stand_in(sample.object_boxes, [_name(vocab, int(o)) for o in sample.object_labels], objects,
                                detection_names([d.label for d in objects]))
    return ShownBoxes(replace(sample, human_boxes=h_boxes, object_boxes=o_boxes), h_names, o_names)


class _Teacher:
    """The scripted model: one turn per step of the module docstring."""

    def __init__(self, shown: ShownBoxes, vocab: HOIVocabulary, frame: Frame, categories: list[str],
                 max_spatial: int, zoom: bool) -> None:
        self.shown, self.sample, self.vocab, self.frame = shown, shown.sample, vocab, frame
        self.categories, self.zoom = categories, zoom
        self.groups = self.sample.grouped_pairs()[:max_spatial]
        self.people = {h: n + 1 for n, h in enumerate(dict.fromkeys(h for h, _, _ in self.sample.grouped_pairs()))}

    def __call__(self, messages: list[dict], images: list) -> str:
        step = sum(m["role"] == "assistant" for m in messages)
        if step == 0:
            return _turn("I find the people and the objects.",
                         [("detect_humans", {}), ("detect_objects", {"categories": self.categories})])
        calls = self._relation_calls() if step == 1 else []
        if calls:
            return _turn("How does each person relate to each object?", calls)
        return render_answer(self.sample, self.vocab, self.frame, reasoning=self._summary())

    def _relation_calls(self) -> list[tuple[str, dict]]:
        named, boxed = [], []
        for h, o, _ in self.groups:
            names = (self.shown.human_names[h], self.shown.object_names[o])
            if None in names:
                boxed.append(("spatial_relations", {"human_box": self._box(self.sample.human_boxes[h]),
                                                    "object_box": self._box(self.sample.object_boxes[o])}))
            else:
                named.append(list(names))
        calls = ([("relations", {"pairs": named})] if named else []) + boxed
        if self.zoom and calls:
            smallest = min(self.sample.object_boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            calls.append(("crop", {"box": self._box(smallest), "scale": 2.0}))
        return calls

    def _summary(self) -> str:
        if not self.sample.grouped_pairs():
            return "No person interacts with an object."
        parts = []
        for h, o, verbs in self.sample.grouped_pairs():
            names = ", ".join(v.replace("_", " ") for v in (self.vocab.verbs[v] for v in verbs))
            who = self.shown.human_names[h] or f"person {self.people[h]}"
            what = self.shown.object_names[o] or _name(self.vocab, int(self.sample.object_labels[o]))
            parts.append(f"{who}, {what}: {names}.")
        return " ".join(parts)

    def _box(self, box) -> list[int]:
        return self.frame.to_text([box])[0].tolist()


def _name(vocab: HOIVocabulary, obj: int) -> str:
    return vocab.objects[obj].replace("_", " ")




def _turn(thought: str, calls: list[tuple[str, dict]]) -> str:
    body = "".join(f"{CALL_OPEN}{json.dumps({'name': n, 'arguments': a})}{CALL_CLOSE}" for n, a in calls)
    return f"<think>{thought}</think>{body}"


# ===================================================================== files
def write_cold_start(
    samples: Sequence[HOISample],
    vocab: HOIVocabulary,
    detections: DetectionsFile,
    out: str | Path,
    config: ColdStartConfig = ColdStartConfig(),
) -> int:
    """Write one record per sample to the JSONL ``out``; returns the number written. Every sample
    must be in the detections file (checked first, naming the missing images)."""
    missing = [s.file_name for s in samples if s.file_name not in detections]
    if missing:
        raise KeyError(f"detections file {detections.source} lacks {len(missing)} images, e.g. {missing[:3]}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for sample in progress(samples, "cold-start"):
            image = None
            if config.zoom:
                image = load_image(sample.image_path)
            f.write(json.dumps(build_record(sample, vocab, detections, config, image)) + "\n")
    return len(samples)



def main(argv: Sequence[str] | None = None) -> int:
    """``hoi-r1 cold-start``: write tool-using reasoning traces from ground truth."""
    d = ColdStartConfig()
    parser = argparse.ArgumentParser(prog="hoi-r1 cold-start", description="Write tool-using SFT traces from ground truth.")
    parser.add_argument("--annotations", required=True, help="training annotation file")
    parser.add_argument("--detections", required=True, help="detections file (hoi-r1 detections)")
    parser.add_argument("--out", required=True, help="JSONL to write")
    parser.add_argument("--frame", choices=FRAME_KINDS, default=d.frame, help="text frame (default: %(default)s)")
    parser.add_argument("--min-pixels", type=int, default=d.min_pixels)
    parser.add_argument("--max-pixels", type=int, default=d.max_pixels)
    parser.add_argument("--max-spatial-calls", type=int, default=d.max_spatial_calls)
    parser.add_argument("--zoom", action="store_true", help="also crop the smallest object (reads the images)")
    parser.add_argument("--annotated-boxes", action="store_true",
                        help="answer with the annotated boxes, not the detections that stand for them")
    parser.add_argument("--max-images", type=int, default=None, help="only the first N images")
    parser.add_argument("--images", default=None, help="folder of the images (default: the annotation file's)")
    parser.add_argument("--categories", default=None, help="SWIG-HOI category metadata (as data.categories)")
    parser.add_argument("--on-bad-record", choices=("error", "skip"), default="error", help="as data.on_bad_record")
    parser.add_argument("--zero-shot", default=None, help="leave out the unseen classes of this zero-shot setting "
                        "(as data.zero_shot), so the traces never show them")
    args = parser.parse_args(argv)
    dataset = read_annotations(args.annotations, categories=args.categories, image_root=args.images,
                               on_bad_record=args.on_bad_record)
    if args.zero_shot:
        dataset = apply_zero_shot(dataset, args.zero_shot, "train")
    detections = DetectionsFile.read(args.detections)
    config = ColdStartConfig(frame=args.frame, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                             max_spatial_calls=args.max_spatial_calls, zoom=args.zoom,
                             copy_detections=not args.annotated_boxes)
    samples = dataset.samples[: args.max_images] if args.max_images is not None else dataset.samples
    count = write_cold_start(samples, dataset.vocab, detections, args.out, config)
    print(f"wrote {count} cold-start traces to {args.out}")
    return 0
