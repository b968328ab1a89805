"""Cold-start SFT data for the tool-using mode: reasoning traces written from ground truth.

ImagineAgent (arXiv 2602.11499) starts GRPO from a model fine-tuned on tool-using chains of
thought. Here a scripted *teacher* plays the model's part in :func:`~hoi_r1.tools.episode.run_episode`
on each training image, so every tool response in a trace is exactly what the runtime would
return:

1. ``detect_humans`` (detections file backend);
2. ``detect_objects`` with the object classes the ground truth holds (all non-person classes when
   it holds none);
3. ``spatial_relations`` on up to ``max_spatial_calls`` ground-truth (human, object) pairs, in
   the text frame (plus, with ``zoom``, a ``crop`` of the smallest object);
4. the answer: reasoning that restates the measured relations, then the ground-truth answer of
   :func:`hoi_r1.answer.render_answer`.

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
:func:`record_images` re-runs those calls on the original image. The prompt is not stored: build
it with :func:`hoi_r1.tools.prompts.build_tool_messages` from ``query`` and ``frame``.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hoi_r1.answer import render_answer
from hoi_r1.frames import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, FRAME_KINDS, Frame, FrameKind
from hoi_r1.image_dataset import load_image
from hoi_r1.sample import HOISample
from hoi_r1.tools.builtin import default_registry
from hoi_r1.tools.detection import DetectionsFile, FileDetectionBackend
from hoi_r1.tools.episode import Episode, run_episode
from hoi_r1.tools.protocol import (
    CALL_CLOSE,
    CALL_OPEN,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    ToolCall,
    ToolContext,
    ToolRegistry,
    run_tool_call,
)
from hoi_r1.vocab import HOIVocabulary

_BLOCK = re.compile(re.escape(RESPONSE_OPEN) + r"(.*?)" + re.escape(RESPONSE_CLOSE), re.S)


@dataclass(frozen=True)
class ColdStartConfig:
    """How traces are written.

    Args:
        frame: coordinate frame of the boxes in the text (the SFT model's).
        min_pixels: the processor's ``min_pixels`` (``absolute_resized`` frame).
        max_pixels: the processor's ``max_pixels``.
        max_spatial_calls: ``spatial_relations`` calls per trace (one per ground-truth pair).
        zoom: also crop the smallest annotated object (needs the images).
        min_score: detections below this score are not shown.
    """

    frame: FrameKind = "absolute_resized"
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_spatial_calls: int = 3
    zoom: bool = False
    min_score: float = 0.3

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
    context = ToolContext(frame, sample.file_name, image, FileDetectionBackend(detections, min_score=config.min_score))
    teacher = _Teacher(sample, vocab, frame, config.max_spatial_calls, config.zoom and image is not None)
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


class _Teacher:
    """The scripted model: one turn per step of the module docstring."""

    def __init__(self, sample: HOISample, vocab: HOIVocabulary, frame: Frame, max_spatial: int, zoom: bool) -> None:
        self.sample, self.vocab, self.frame, self.zoom = sample, vocab, frame, zoom
        self.groups = sample.grouped_pairs()[:max_spatial]
        self.labels = [self._name(int(sample.object_labels[o])) for _, o, _ in sample.grouped_pairs()]
        self.people = {h: n + 1 for n, h in enumerate(dict.fromkeys(h for h, _, _ in sample.grouped_pairs()))}

    def __call__(self, messages: list[dict], images: list) -> str:
        step = sum(m["role"] == "assistant" for m in messages)
        last = _text(messages[-1]) if messages else ""
        if step == 0:
            return _turn("First I find the people in the image.", [("detect_humans", {})])
        if step == 1:
            found = len(_results(last)[0].get("detections", [])) if _results(last) else 0
            classes = list(dict.fromkeys(self.labels)) or [self._name(o) for o in range(len(self.vocab.objects))
                                                           if o != self.vocab.person][:16]
            thought = f"The detector reports {_count(found, 'person', 'people')}. Next, the objects: {', '.join(classes)}."
            return _turn(thought, [("detect_objects", {"categories": classes})])
        if step == 2 and self.groups:
            calls = [("spatial_relations", {"human_box": self._box(self.sample.human_boxes[h]),
                                            "object_box": self._box(self.sample.object_boxes[o])}) for h, o, _ in self.groups]
            if self.zoom:
                smallest = min(self.sample.object_boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
                calls.append(("crop", {"box": self._box(smallest), "scale": 2.0}))
            thought = "Detections can miss or invent boxes; I check how each person relates to each object."
            return _turn(thought, calls)
        return render_answer(self.sample, self.vocab, self.frame, reasoning=self._summary(last if step == 3 else ""))

    def _summary(self, responses: str) -> str:
        if not self.sample.grouped_pairs():
            return "No person interacts with an object."
        relations = [r.get("relations") for r in _results(responses)]
        parts = []
        for k, (h, o, verbs) in enumerate(self.groups):
            rel = relations[k] if k < len(relations) and isinstance(relations[k], dict) else None
            what = (f"{rel['position']}, gap {rel['distance']}, {'in contact' if rel['contact'] else 'not touching'}, "
                    f"at height {rel['vertical_position']}") if rel else "measured"
            names = ", ".join(v.replace("_", " ") for v in (self.vocab.verbs[v] for v in verbs))
            parts.append(f"Person {self.people[h]} and the {self._name(int(self.sample.object_labels[o]))}: {what}, so {names}.")
        rest = len(self.sample.grouped_pairs()) - len(self.groups)
        if rest:
            parts.append(f"{_count(rest, 'more pair', 'more pairs')} as seen in the image.")
        return " ".join(parts)

    def _box(self, box) -> list[int]:
        return self.frame.to_text([box])[0].tolist()

    def _name(self, obj: int) -> str:
        return self.vocab.objects[obj].replace("_", " ")


def _turn(thought: str, calls: list[tuple[str, dict]]) -> str:
    body = "".join(f"{CALL_OPEN}{json.dumps({'name': n, 'arguments': a})}{CALL_CLOSE}" for n, a in calls)
    return f"<think>{thought}</think>{body}"


def _text(message: dict) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _results(text: str) -> list[dict]:
    out = []
    for body in _BLOCK.findall(text):
        try:
            value = json.loads(body)
        except json.JSONDecodeError:
            value = {}
        out.append(value if isinstance(value, dict) else {})
    return out


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


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
        for sample in samples:
            image = None
            if config.zoom:
                image = load_image(sample.image_path)
            f.write(json.dumps(build_record(sample, vocab, detections, config, image)) + "\n")
    return len(samples)


def read_cold_start(path: str | Path) -> list[dict]:
    """Read a cold-start JSONL; errors name the file, the line and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cold-start file {path} does not exist")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not valid JSON ({e})") from None
        problem = _record_problem(record)
        if problem:
            raise ValueError(f"{path}, line {n}: {problem}")
        records.append(record)
    return records


def _record_problem(record: object) -> str | None:
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    for key in ("file_name", "frame", "messages"):
        if key not in record:
            return f"the record has no {key!r}"
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("assistant", "tool") or not isinstance(m.get("content"), str):
            return f"message {k} must have role assistant or tool and a string content"
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    frame = record["frame"]
    if not isinstance(frame, dict) or frame.get("kind") not in FRAME_KINDS:
        return f"'frame' must be an object with kind in {FRAME_KINDS}"
    return None


def record_frame(record: dict) -> Frame:
    """The text frame a record was written in."""
    f = record["frame"]
    return Frame(f["kind"], tuple(f["original_size"]), tuple(f["resized_size"]))


def record_images(record: dict, image, registry: ToolRegistry | None = None) -> list:
    """The images the record's tool turns showed, re-created from the original ``image`` by
    re-running the recorded visual calls (in order)."""
    registry = registry or default_registry()
    context = ToolContext(record_frame(record), record["file_name"], image)
    out = []
    for message in record["messages"]:
        for spec in message.get("images", ()):
            result = run_tool_call(ToolCall(spec["tool"], spec["arguments"], (0, 0)), context, registry)
            if result.image is None:
                raise ValueError(f"{record['file_name']}: recorded {spec['tool']} call gave no image: {result.text}")
            out.append(result.image)
    return out


def to_chat_messages(record: dict) -> list[dict]:
    """The record's messages in the chat layout (one ``{"type": "image"}`` per recorded image)."""
    out = []
    for m in record["messages"]:
        parts: list[dict] = [{"type": "text", "text": m["content"]}]
        parts += [{"type": "image"} for _ in m.get("images", ())]
        out.append({"role": m["role"], "content": parts})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``hoi-r1 cold-start``: write tool-using reasoning traces from ground truth."""
    from hoi_r1.readers import read_annotations

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
        from hoi_r1.readers.zero_shot import apply_zero_shot

        dataset = apply_zero_shot(dataset, args.zero_shot, "train")
    detections = DetectionsFile.read(args.detections)
    config = ColdStartConfig(args.frame, args.min_pixels, args.max_pixels, args.max_spatial_calls, args.zoom)
    samples = dataset.samples[: args.max_images] if args.max_images is not None else dataset.samples
    count = write_cold_start(samples, dataset.vocab, detections, args.out, config)
    print(f"wrote {count} cold-start traces to {args.out}")
    return 0
