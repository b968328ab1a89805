"""Hand-worked HOI-mAP cases: builders of ground truth and predictions with known AP.

* a three-class vocabulary (:data:`VOCAB`: 0 ride bicycle, 1 hold bicycle, 2 hold cup), the
  boxes :data:`H` and :data:`O`, :func:`target` / :func:`pred` dicts and :func:`ap_of`;
* a one-class vocabulary (:data:`ONE_CLASS`: ride bicycle) with one ground-truth pair
  (:data:`GT_H`, :data:`OBJ`): :func:`one_pair_ap` (one detection against it) and
  :func:`one_class_case` / :func:`one_class_ap` (tied detections on it, over several images);
* :func:`eleven`: an 11-point AP summed as the references sum it.
"""

from __future__ import annotations

import dataclasses

import torch

from hoi_r1.hoi_map import hoi_mean_average_precision
from hoi_r1.vocab import HOIVocabulary

# classes: 0 ride bicycle, 1 hold bicycle, 2 hold cup
VOCAB = HOIVocabulary.open(["hold", "ride"], ["person", "bicycle", "cup"],
                           [("ride", "bicycle"), ("hold", "bicycle"), ("hold", "cup")])
H = [0.0, 0.0, 9.0, 19.0]
O = [20.0, 0.0, 39.0, 9.0]
ALL = ("hico_official", "qpic", "gen_vlkt", "pocket", "swig", "hoi_r1")
SWIG_VOCAB = dataclasses.replace(VOCAB, frequency=(2, 1, 0))


def shift(box, dx):
    """``box`` moved ``dx`` pixels to the right."""
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


def target(image_id, pairs):
    """pairs: [(human box, object box, class)]."""
    classes = [k for _, _, k in pairs]
    return {"image_id": image_id, "human_boxes": torch.tensor([p[0] for p in pairs]).reshape(-1, 4),
            "object_boxes": torch.tensor([p[1] for p in pairs]).reshape(-1, 4),
            "object_labels": torch.tensor([VOCAB.interactions[k][1] for k in classes], dtype=torch.long),
            "hoi": torch.tensor(classes, dtype=torch.long)}


def pred(image_id, dets):
    """dets: [(human box, object box, class, score)] or (..., object label) as a 5th item."""
    labels = [d[4] if len(d) > 4 else VOCAB.interactions[d[2]][1] for d in dets]
    return {"image_id": image_id, "human_boxes": torch.tensor([d[0] for d in dets]).reshape(-1, 4),
            "object_boxes": torch.tensor([d[1] for d in dets]).reshape(-1, 4),
            "object_labels": torch.tensor(labels, dtype=torch.long),
            "hoi": torch.tensor([d[2] for d in dets], dtype=torch.long),
            "scores": torch.tensor([d[3] for d in dets], dtype=torch.float64)}


def ap_of(preds, targets, protocol="hico_official", cls=0, vocab=VOCAB, **kw):
    """AP of class ``cls`` under ``protocol``."""
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True, **kw)
    return out["per_class_ap"][cls].item()


def eleven(p_at):
    """AP from the 11 p(t) values, summed as the references do."""
    ap = 0.0
    for p in p_at:
        ap = ap + p / 11.0
    return ap


ONE_CLASS = HOIVocabulary.open(["ride"], ["person", "bicycle"], [("ride", "bicycle")])
GT_H, OBJ = [0.0, 0.0, 9.0, 9.0], [20.0, 0.0, 29.0, 9.0]
SWIG_ONE_CLASS = dataclasses.replace(ONE_CLASS, frequency=(2,))


def one_pair_ap(protocol, gt_human, det_human, obj=OBJ):
    """AP of one detection (score 0.9) against one ground-truth pair sharing the object box."""
    as64 = lambda boxes: torch.tensor(boxes, dtype=torch.float64)  # noqa: E731 (float32 would round the 1e-7s away)
    target = {"image_id": 0, "human_boxes": as64([gt_human]), "object_boxes": as64([obj]),
              "object_labels": torch.tensor([1]), "hoi": torch.tensor([0])}
    pred = {"image_id": 0, "human_boxes": as64([det_human]), "object_boxes": as64([obj]),
            "object_labels": torch.tensor([1]), "hoi": torch.tensor([0]), "scores": as64([0.9])}
    out = hoi_mean_average_precision([pred], [target], ONE_CLASS, protocol=protocol, per_class=True)
    return out["per_class_ap"][0].item()


def one_class_case(dets_per_image, gt_images=(0,)):
    """Images 0, 1, ...: each row of ``dets_per_image`` is a list of scores of detections placed
    exactly on the one ground-truth pair (``GT_H``, ``OBJ``), which only ``gt_images`` hold."""
    as64 = lambda boxes: torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)  # noqa: E731
    preds, targets = [], []
    for i, scores in enumerate(dets_per_image):
        n, g = len(scores), int(i in gt_images)
        targets.append({"image_id": i, "human_boxes": as64([GT_H] * g), "object_boxes": as64([OBJ] * g),
                        "object_labels": torch.tensor([1] * g), "hoi": torch.tensor([0] * g)})
        preds.append({"image_id": i, "human_boxes": as64([GT_H] * n), "object_boxes": as64([OBJ] * n),
                      "object_labels": torch.tensor([1] * n), "hoi": torch.tensor([0] * n),
                      "scores": torch.tensor(scores, dtype=torch.float64)})
    return preds, targets


def one_class_ap(preds, targets, protocol, vocab=ONE_CLASS):
    """AP of class 0 of a :func:`one_class_case`."""
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True)
    return out["per_class_ap"][0].item()
