"""Per-class precision-recall curves of an HOI-mAP evaluation (for ``hoi-r1 eval --plots``).

The curves are read off the matched columns of :func:`hoi_r1.hoi_map.match_images`, so they hold exactly the detections the protocol kept and matched: per class, the
detections ranked as the protocol ranks them (:mod:`hoi_r1.average_precision`), cumulative
true positives, ``recall = tp / npos`` and ``precision = tp / (tp + fp)``, one point per
detection. The last recall of a class is its maximum recall.

>>> import torch
>>> from hoi_r1.vocab import HOIVocabulary
>>> vocab = HOIVocabulary.open(["ride"], ["person", "bicycle"], [("ride", "bicycle")])
>>> h, o = [[0., 0., 10., 20.]], [[5., 10., 30., 30.]]
>>> target = {"image_id": 0, "human_boxes": torch.tensor(h * 2), "object_boxes": torch.tensor(o + [[50., 50., 60., 60.]]),
...           "object_labels": torch.tensor([1, 1]), "hoi": torch.tensor([0, 0])}
>>> pred = {"image_id": 0, "human_boxes": torch.tensor(h * 2), "object_boxes": torch.tensor(o * 2),
...         "object_labels": torch.tensor([1, 1]), "hoi": torch.tensor([0, 0]), "scores": torch.tensor([.9, .8])}
>>> curves = precision_recall_curves([pred], [target], vocab)
>>> curves.recall[0].tolist(), curves.precision[0].tolist(), curves.max_recall.tolist()
([0.5, 0.5], [1.0, 0.5], [0.5])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from hoi_r1.average_precision import first_of_pick_in_rank, ranking_order
from hoi_r1.hoi_map import STATE_NAMES, match_images, one_cpu_thread
from hoi_r1.metric_protocols import TripletNMS, get_protocol
from hoi_r1.vocab import HOIVocabulary


@dataclass(frozen=True)
class PRCurves:
    """Precision-recall curves of every class.

    Args:
        recall: per class, ``(n_c,)`` float64 recall after each ranked detection (empty for a
            class without detections).
        precision: per class, ``(n_c,)`` float64 precision after each ranked detection.
        npos: ``(C,)`` ground-truth pairs per class.
        max_recall: ``(C,)`` last recall of each class (0 without detections or ground truth).
    """

    recall: list[torch.Tensor]
    precision: list[torch.Tensor]
    npos: torch.Tensor
    max_recall: torch.Tensor


def precision_recall_curves(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    vocab: HOIVocabulary,
    protocol: str = "hico_official",
    triplet_nms: bool | TripletNMS = False,
) -> PRCurves:
    """Curves of every class of ``vocab`` for the metric-input ``preds`` and ``targets``.

    Args:
        preds: prediction dicts, one per image (see :mod:`hoi_r1.metric`).
        targets: target dicts, one per image, same order.
        vocab: the vocabulary.
        protocol: HOI-mAP protocol name.
        triplet_nms: GEN-VLKT's triplet NMS (``gen_vlkt`` only).
    """
    proto = get_protocol(protocol, triplet_nms)
    with one_cpu_thread():
        states = dict(zip(STATE_NAMES, match_images(preds, targets, vocab, proto)))
    classes, scores, tp, image_ids = (states[name] for name in ("det_classes", "det_scores", "det_tp", "det_image_ids"))
    npos = torch.zeros(vocab.num_classes, dtype=torch.long).index_add_(0, states["gt_classes"], states["gt_counts"])
    top_k = proto.top_k_per_class
    order = ranking_order(proto.tie_order, classes, scores, image_ids)
    if proto.match_in_rank_order:  # SWIG-HOI: of tied detections on one pair, the first ranked takes it
        tp = first_of_pick_in_rank(order, classes, image_ids, states["det_picks"])
    counts = torch.bincount(classes, minlength=vocab.num_classes).tolist()
    recall, precision = [], []
    for c, ranked in enumerate(tp[order].split(counts)):
        ranked = ranked[:top_k] if top_k is not None else ranked
        hits = torch.cumsum(ranked.double(), 0)
        recall.append(hits / npos[c] if npos[c] > 0 else torch.zeros_like(hits))
        precision.append(hits / torch.arange(1, len(hits) + 1, dtype=torch.float64))
    max_recall = torch.tensor([float(r[-1]) if len(r) else 0.0 for r in recall], dtype=torch.float64)
    return PRCurves(recall, precision, npos, max_recall)
