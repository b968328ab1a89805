"""The grounding task: find and box every person and object, no interactions.

It mirrors what real base models bring to HOI-R1's SFT (Qwen2.5-VL is trained to ground named
things in pixel coordinates): the demo pretrains the tiny random model on this task
(``configs/demo_grounding.yaml``) so that HOI SFT starts from a model that can already point at
things, as the real recipe does. Same answer contract and coordinate frames as the HOI answer;
entities are listed top-to-bottom, then left-to-right.

>>> from hoi_r1.frames import Frame
>>> from hoi_r1.sample import HOISample
>>> from hoi_r1.vocab import HOIVocabulary
>>> v = HOIVocabulary.open(["hold"], ["person", "cup"])
>>> s = HOISample(0, "a.png", "a.png", 100, 100, human_boxes=[[10, 20, 30, 60]],
...               object_boxes=[[40, 30, 50, 40]], object_labels=[1], pairs=[[0, 0, 0, 0]])
>>> render_grounding_answer(s, v, Frame("absolute_original", (100, 100), (100, 100)))
'<think>I see 1 person and 1 object.</think><answer>[{"label": "person", "box": [10, 20, 30, 60]}, {"label": "cup", "box": [40, 30, 50, 40]}]</answer>'
"""

from __future__ import annotations

import json

import numpy as np
import torch

from hoi_r1.boxes import box_iou
from hoi_r1.frames import Frame
from hoi_r1.lenient_json import read_json_list
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

GROUNDING_TASK = "Find every person and every object in the image and give the box of each."


def render_grounding_answer(sample: HOISample, vocab: HOIVocabulary, frame: Frame) -> str:
    """Every human and object box of ``sample`` with its label, in the text frame."""
    person = "person"
    entities = [(person, b) for b in sample.human_boxes] + [
        (vocab.objects[int(label)].replace("_", " "), b) for label, b in zip(sample.object_labels, sample.object_boxes)
    ]
    boxes = frame.to_text(np.array([b for _, b in entities]).reshape(-1, 4)) if entities else np.zeros((0, 4))
    order = sorted(range(len(entities)), key=lambda i: (int(boxes[i][1]), int(boxes[i][0])))
    people = len(sample.human_boxes)
    objects = len(entities) - people
    thinking = f"I see {people} {'person' if people == 1 else 'people'} and {objects} object{'' if objects == 1 else 's'}."
    items = [{"label": entities[i][0], "box": [int(x) for x in boxes[i]]} for i in order]
    return f"<think>{thinking}</think><answer>{json.dumps(items)}</answer>"


def build_grounding_instruction(vocab: HOIVocabulary, frame: Frame) -> str:
    """The user instruction of the grounding task."""
    labels = ", ".join(o.replace("_", " ") for o in vocab.objects)
    return (
        f"{GROUNDING_TASK}\n\nLabels: {labels}\n\n{frame.describe()} Think inside <think> and </think>, then "
        'answer inside <answer> and </answer> with a JSON list of {"label": ..., "box": [x1, y1, x2, y2]}.'
    )


def parse_grounding_answer(text: str, vocab: HOIVocabulary, frame: Frame) -> list[tuple[str, np.ndarray]]:
    """``(label, box in original pixels)`` per answer element; never raises (bad elements are
    left out). Reuses the codec's lenient list reader."""
    start = text.find("<answer>")
    start = start + len("<answer>") if start >= 0 else 0
    end = text.find("</answer>", start)
    reading = read_json_list(text, start, end if end >= 0 else None)
    out = []
    for value in reading.elements:
        if not isinstance(value, dict):
            continue
        label, box = value.get("label"), value.get("box")
        if not isinstance(label, str) or not isinstance(box, list) or len(box) != 4:
            continue
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in box):
            continue
        out.append((label, frame.from_text(np.array([box], dtype=np.float64))[0]))
    return out


def grounding_hits(predicted: list[tuple[str, np.ndarray]], sample: HOISample, vocab: HOIVocabulary, threshold: float = 0.5) -> int:
    """Predicted entities that match a distinct ground-truth entity of the same label at
    IoU ≥ ``threshold`` (greedy, in answer order)."""
    truth = [("person", b) for b in sample.human_boxes] + [
        (vocab.objects[int(label)].replace("_", " "), b) for label, b in zip(sample.object_labels, sample.object_boxes)
    ]
    used: set[int] = set()
    hits = 0
    for label, box in predicted:
        ious = box_iou(torch.as_tensor(box[None], dtype=torch.float64), torch.as_tensor(np.array([b for _, b in truth]).reshape(-1, 4)))[0] if truth else []
        for j in sorted(range(len(truth)), key=lambda j: -float(ious[j])):
            if j not in used and truth[j][0] == label.replace("_", " ") and float(ious[j]) >= threshold:
                used.add(j)
                hits += 1
                break
    return hits
