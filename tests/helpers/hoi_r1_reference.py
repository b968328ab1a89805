"""The loop reference of the ``hoi_r1`` protocol: the control flow of HOI-R1's ``hico_eval.py``
``HICOEvaluator`` (``__init__`` top-k and score floor, ``eval_hoi`` / ``match_hoi`` /
``compute_iou``, ``compute_pr``, ``compute_ap``, ``evaluation_default`` / ``evaluation_ko``).
Shares no code with the metric."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def hoi_r1_area(b):
    """HOI-R1 ``compute_area`` (invalid = 0)."""
    return 0.0 if b[2] <= b[0] or b[3] <= b[1] else (b[2] - b[0] + 1) * (b[3] - b[1] + 1)


def hoi_r1_iou(a, b):
    """HOI-R1 ``compute_iou``."""
    inter = hoi_r1_area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    return inter / (hoi_r1_area(a) + hoi_r1_area(b) - inter + 1e-6)


def hoi_r1_flow_reference(preds, targets, vocab, known_object=False):
    """Per-class AP (NaN where HOI-R1 gets NaN) in the control flow of HOI-R1's hico_eval.py."""
    table = {pair: k for k, pair in enumerate(vocab.interactions)}
    gt_dets, pred_anno, obj_cats = {}, {}, {}
    for p, t in sorted(zip(preds, targets), key=lambda pt: pt[1]["image_id"]):
        image = t["image_id"]
        gt_dets[image] = defaultdict(list)
        for h, o, k in zip(t["human_boxes"].tolist(), t["object_boxes"].tolist(), t["hoi"].tolist()):
            gt_dets[image][k].append((h, o))
        obj_cats[image] = {vocab.interactions[k][1] for k in t["hoi"].tolist()}
        hois = []
        for h, o, ol, k, sc in zip(p["human_boxes"].tolist(), p["object_boxes"].tolist(),
                                   p["object_labels"].tolist(), p["hoi"].tolist(), p["scores"].tolist()):
            cls = table.get((vocab.interactions[k][0], ol))
            hois.append((h, o, cls, sc if cls is not None else sc * 0))  # hoi_scores *= masks
        hois = sorted(hois, key=lambda e: e[3], reverse=True)[:100]
        pred_anno[image] = defaultdict(list)
        for h, o, cls, sc in hois:
            if sc < 0.001:
                continue
            pred_anno[image][cls].append((h, o, sc))
    aps = []
    for k in range(vocab.num_classes):  # eval_hoi
        y_true, y_score, npos = [], [], 0
        for image in gt_dets:
            if known_object and vocab.interactions[k][1] not in obj_cats[image]:
                continue
            candidates = list(gt_dets[image].get(k, []))
            npos += len(candidates)
            dets = pred_anno[image].get(k, [])
            for i in sorted(range(len(dets)), key=lambda i: dets[i][2], reverse=True):
                h, o, sc = dets[i]
                is_match = False
                for j, (gh, go) in enumerate(candidates):  # match_hoi
                    if hoi_r1_iou(h, gh) > 0.5 and hoi_r1_iou(o, go) > 0.5:
                        is_match = True
                        del candidates[j]
                        break
                y_true.append(is_match)
                y_score.append(sc)
        ranked = [y for y, _ in sorted(zip(y_true, y_score), key=lambda x: x[1], reverse=True)]  # compute_pr
        if not ranked:
            aps.append(0.0)
            continue
        tp = np.array(ranked)
        fp = np.cumsum(~tp)
        tp = np.cumsum(tp)
        recall = tp / npos if npos else np.nan * tp
        precision = tp / (tp + fp)
        if np.any(np.isnan(recall)):  # compute_ap
            aps.append(math.nan)
            continue
        ap = 0
        for thr in np.arange(0, 1.1, 0.1):
            selected = precision[recall >= thr]
            ap += (0 if selected.size == 0 else np.max(selected)) / 11.0
        aps.append(float(ap))
    return aps
