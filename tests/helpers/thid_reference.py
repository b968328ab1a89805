"""The loop reference of the ``swig`` protocol: the flow of THID's ``datasets/swig_evaluator.py``
(``update``, ``calc_ap`` with its ranking ``np.argsort(scores)[::-1]``, matching inside the
ranking loop and the 19,999 cut, ``calc_hit`` / ``iou``). Shares no code with the metric."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def thid_iou(bb1, bb2):
    """THID ``iou``: continuous sides clamped at 0; 0 unless the boxes overlap."""
    w1, h1 = max(bb1[2] - bb1[0], 0), max(bb1[3] - bb1[1], 0)
    w2, h2 = max(bb2[2] - bb2[0], 0), max(bb2[3] - bb2[1], 0)
    xi = max(min(bb1[2], bb2[2]) - max(bb1[0], bb2[0]), 0)
    yi = max(min(bb1[3], bb2[3]) - max(bb1[1], bb2[1]), 0)
    return 0 if xi * yi <= 0 else xi * yi / (w1 * h1 + w2 * h2 - xi * yi)


def thid_flow_reference(preds, targets, vocab):
    """Per-class AP (NaN outside ``evaluation == 1``) in the flow of THID's ``SWiGEvaluator``."""
    gts = defaultdict(dict)  # load_anno: hoi -> image -> array of [person box + object box]
    for t in targets:
        for h, o, k in zip(t["human_boxes"].tolist(), t["object_boxes"].tolist(), t["hoi"].tolist()):
            gts[k].setdefault(t["image_id"], []).append(h + o)
    gts = {k: {img: np.array(b) for img, b in per.items()} for k, per in gts.items()}
    scores, boxes, keys = defaultdict(list), defaultdict(list), defaultdict(list)
    for p, t in sorted(zip(preds, targets), key=lambda pt: pt[1]["image_id"]):  # update
        for h, o, k, sc in zip(p["human_boxes"].tolist(), p["object_boxes"].tolist(), p["hoi"].tolist(),
                               p["scores"].tolist()):
            scores[k].append(sc)
            boxes[k].append(h + o)
            keys[k].append(t["image_id"])
    aps = []
    for k in range(vocab.num_classes):
        if k in vocab.unevaluated:
            aps.append(math.nan)
            continue
        if not keys[k]:  # calc_ap
            aps.append(0.0)
            continue
        sc, bx = np.array(scores[k]), np.array(boxes[k])
        idx = np.argsort(sc)[::-1]
        gt_boxes = gts.get(k, {})
        npos = sum(b.shape[0] for b in gt_boxes.values())
        used = {key: set() for key in gt_boxes}
        hit = []
        for i in range(min(len(idx), 19999)):
            box, key = bx[idx[i], :], keys[k][idx[i]]
            if key in gt_boxes:
                maxi, best = 0.0, -1
                for j in range(gt_boxes[key].shape[0]):
                    tmp = min(thid_iou(box[:4], gt_boxes[key][j, :4]), thid_iou(box[4:], gt_boxes[key][j, 4:]))
                    if maxi < tmp:
                        maxi, best = tmp, j
                if best in used[key] or maxi < 0.5:
                    hit.append(0)
                else:
                    hit.append(1)
                    used[key].add(best)
            else:
                hit.append(0)
        bottom = np.arange(len(hit)) + 1
        hit = np.cumsum(hit)
        with np.errstate(divide="ignore", invalid="ignore"):
            rec = hit / npos
        prec = hit / bottom
        ap = 0.0
        for i in range(11):
            mask = rec >= (i / 10.0)
            if np.sum(mask) > 0:
                ap += np.max(prec[mask]) / 11.0
        aps.append(float(ap))
    return aps
