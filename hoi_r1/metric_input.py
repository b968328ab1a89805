"""The metric input of a parsed answer: one detection per (triplet, verb) whose (verb, object) is
a class, in the prediction-dict format :func:`hoi_r1.hoi_map.hoi_mean_average_precision` reads
(docs/metric.md). The ``recall`` / ``precision`` rewards score exactly these detections.
"""

from __future__ import annotations

import math

import torch

from hoi_r1.answer import ParsedAnswer
from hoi_r1.vocab import HOIVocabulary


def metric_rows(parsed: ParsedAnswer, vocab: HOIVocabulary) -> list[tuple[int, int, int]]:
    """``(triplet index, verb position, interaction id)`` of each detection :func:`to_metric_preds`
    makes, in its order: every (triplet, verb) whose (verb, object) is a class and whose score is finite."""
    rows = []
    for index, t in enumerate(parsed.triplets):
        for position, verb in enumerate(t.verb_ids):
            hoi = vocab.interaction_id(verb, t.object_id)
            if hoi is not None and math.isfinite(t.score):
                rows.append((index, position, hoi))
    return rows


def to_metric_preds(parsed: ParsedAnswer, vocab: HOIVocabulary, image_id: int) -> dict:
    """Metric-input predictions of one image: one row per (triplet, verb) whose (verb, object)
    is a class of ``vocab``, scored with the triplet's score (float64 boxes and scores).

    >>> from hoi_r1.vocab import HOIVocabulary
    >>> vocab = HOIVocabulary.open(["ride", "sit_on"], ["person", "bicycle"], [("ride", "bicycle")])
    >>> from hoi_r1.answer import Triplet
    >>> t = Triplet((0., 0., 5., 5.), (1., 1., 9., 9.), 1, (0, 1), 0.5)
    >>> p = to_metric_preds(ParsedAnswer(triplets=[t]), vocab, image_id=7)
    >>> p["hoi"].tolist(), p["object_labels"].tolist(), p["scores"].tolist()
    ([0], [1], [0.5])
    """
    humans, objects, labels, hois, scores = [], [], [], [], []
    for index, _, hoi in metric_rows(parsed, vocab):
        t = parsed.triplets[index]
        humans.append(t.human_box)
        objects.append(t.object_box)
        labels.append(t.object_id)
        hois.append(hoi)
        scores.append(t.score)
    return {
        "image_id": int(image_id),
        "human_boxes": torch.tensor(humans, dtype=torch.float64).reshape(-1, 4),
        "object_boxes": torch.tensor(objects, dtype=torch.float64).reshape(-1, 4),
        "object_labels": torch.tensor(labels, dtype=torch.long),
        "hoi": torch.tensor(hois, dtype=torch.long),
        "scores": torch.tensor(scores, dtype=torch.float64),
    }
