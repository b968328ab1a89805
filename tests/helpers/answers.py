"""The reward tests' ground truth and the answers written about it: a 200 x 100 image with two
annotated pairs (:data:`A`: a person riding and sitting on a bicycle; :data:`B`: a person eating at
a dining table), its reward targets, and builders of completions (:func:`answer`) and of changed
elements (:func:`el`)."""

from __future__ import annotations

import json

from hoi_r1.frames import Frame
from hoi_r1.reward_target import RewardTarget
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

VOCAB = HOIVocabulary.open(
    ["hold", "ride", "sit_on", "eat_at"],
    ["person", "bicycle", "dining_table"],
    [("hold", "bicycle"), ("ride", "bicycle"), ("sit_on", "bicycle"), ("eat_at", "dining_table"),
     ("sit_on", "dining_table"), ("hold", "person")],
)
W, H = 200, 100  # BOX_TOLERANCE * 200 = 2 pixels
# ground truth: pair A = (h0, bicycle o0, {ride, sit on}); pair B = (h1, dining table o1, {eat at})
H0, O0 = [0, 0, 50, 100], [40, 50, 120, 100]
H1, O1 = [150, 0, 200, 100], [110, 40, 200, 100]
SAMPLE = HOISample(
    0, "img.jpg", "img.jpg", W, H, human_boxes=[H0, H1], object_boxes=[O0, O1], object_labels=[1, 2],
    pairs=[[0, 0, 1, 1], [0, 0, 2, 2], [1, 1, 3, 3]],
)
FRAME = Frame("absolute_original", (W, H), (W, H))
TARGET = RewardTarget(SAMPLE, FRAME, VOCAB)
EMPTY_TARGET = RewardTarget(SAMPLE.with_pairs([False] * 3), FRAME, VOCAB)
NO_GT_TARGET = RewardTarget(None, FRAME, VOCAB)

A = {"human": H0, "object": O0, "object class": "bicycle", "verb class": ["ride", "sit on"]}
B = {"human": H1, "object": O1, "object class": "dining table", "verb class": ["eat at"]}


def el(base: dict, **changes) -> dict:
    """A copy of an element with keys changed (``object_class=`` for ``object class``), or
    removed (value ``...``)."""
    out = dict(base)
    for key, value in changes.items():
        key = key.replace("_", " ")
        if value is ...:
            out.pop(key)
        else:
            out[key] = value
    return out


def answer(*elements, think: str | None = "I look at the people.") -> str:
    """A completion: the ``<think>`` part (none for ``think=None``) and ``elements`` as the answer's JSON."""
    head = f"<think>{think}</think>" if think is not None else ""
    return f"{head}<answer>{json.dumps(list(elements))}</answer>"
