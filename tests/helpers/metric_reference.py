"""The per-class AP of any protocol by per-detection loops (:func:`reference`): each evaluator's
own flow (:mod:`helpers.qpic_reference`, :mod:`helpers.hoi_r1_reference`,
:mod:`helpers.pocket_reference`, :mod:`helpers.thid_reference`) and, for ``hico_official``, a
loop over classes, ranked detections and ground-truth pairs as ``VOCevaldet_bboxpair.m`` runs
it. Shares no code with the metric."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from helpers.hoi_r1_reference import hoi_r1_flow_reference
from helpers.pocket_reference import pocket_flow_reference
from helpers.qpic_reference import qpic_flow_reference
from helpers.thid_reference import thid_flow_reference

THRESHOLDS = {
    "hico_official": [k * 0.1 if k <= 5 else 1 - (10 - k) * 0.1 for k in range(11)],  # MATLAB 0:0.1:1
    "qpic": list(np.arange(0.0, 1.1, 0.1)),
    "gen_vlkt": list(np.arange(0.0, 1.1, 0.1)),
    "pocket": torch.linspace(0, 1, 11, dtype=torch.float64).tolist(),
    "swig": [i / 10.0 for i in range(11)],
}


def iou(a, b, plus_one):
    e = 1.0 if plus_one else 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0]) + e
    ih = min(a[3], b[3]) - max(a[1], b[1]) + e
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0] + e) * (a[3] - a[1] + e) + (b[2] - b[0] + e) * (b[3] - b[1] + e) - inter)


def nms_loop(rows, plus_one=True, thr=0.7, alpha=1.0, beta=0.5):
    """GEN-VLKT-style greedy triplet NMS of one image: rows are dicts; per class."""
    kept = []
    for k in sorted({r["hoi"] for r in rows}):
        order = sorted([r for r in rows if r["hoi"] == k], key=lambda r: -r["score"])
        while order:
            top = order.pop(0)
            kept.append(top)
            order = [r for r in order
                     if iou(top["h"], r["h"], plus_one) ** alpha * iou(top["o"], r["o"], plus_one) ** beta <= thr]
    return kept


def reference(preds, targets, vocab, protocol, nms=False, known_object=False):
    """Per-class AP (list, NaN for classes outside the averages) with per-detection loops."""
    if protocol in ("qpic", "gen_vlkt"):
        return qpic_flow_reference(preds, targets, vocab, protocol == "gen_vlkt", nms, known_object)
    if protocol == "hoi_r1":
        return hoi_r1_flow_reference(preds, targets, vocab, known_object)
    if protocol == "pocket" and not known_object:
        return pocket_flow_reference(preds, targets, vocab)
    if protocol == "swig" and not known_object:
        return thid_flow_reference(preds, targets, vocab)
    plus_one = protocol in ("hico_official", "qpic", "gen_vlkt")
    strict = protocol == "pocket"
    table = {pair: k for k, pair in enumerate(vocab.interactions)}
    gt = defaultdict(list)  # (class, image) -> boxes
    npos = defaultdict(int)
    objects_in_image = defaultdict(set)
    for t in targets:
        for h, o, k in zip(t["human_boxes"].tolist(), t["object_boxes"].tolist(), t["hoi"].tolist()):
            gt[k, t["image_id"]].append((h, o))
            npos[k] += 1
            objects_in_image[t["image_id"]].add(vocab.interactions[k][1])
    dets = defaultdict(list)  # class -> [(score, image, h, o)]
    for p, t in zip(preds, targets):
        image = t["image_id"]
        rows = [dict(h=h, o=o, obj=ol, hoi=k, score=s) for h, o, ol, k, s in zip(
            p["human_boxes"].tolist(), p["object_boxes"].tolist(), p["object_labels"].tolist(),
            p["hoi"].tolist(), p["scores"].tolist())]
        if protocol == "pocket":  # UPT test_hico: the empty images are not in the test set
            if len(t["hoi"]) == 0:
                continue
            for r in rows:  # interactions = conversion[objects, verbs]
                r["hoi"] = table.get((vocab.interactions[r["hoi"]][0], r["obj"]))
            rows = [r for r in rows if r["hoi"] is not None]
        if protocol == "qpic":
            for r in rows:
                k = table.get((vocab.interactions[r["hoi"]][0], r["obj"]))
                r["hoi"], r["score"] = (k, r["score"]) if k is not None else (None, r["score"] * 0)
        if protocol in ("qpic", "gen_vlkt"):
            rows = sorted(rows, key=lambda r: -r["score"])[:100]
            rows = [r for r in rows if r["hoi"] is not None]
        if nms:
            rows = nms_loop(rows)
        for r in rows:
            if known_object and vocab.interactions[r["hoi"]][1] not in objects_in_image[image]:
                continue
            dets[r["hoi"]].append((r["score"], image, r["h"], r["o"]))
    aps = []
    for k in range(vocab.num_classes):
        if protocol == "swig" and k in vocab.unevaluated:
            aps.append(math.nan)
            continue
        if protocol in ("qpic", "gen_vlkt") and npos[k] == 0:
            aps.append(math.nan)
            continue
        ranked = sorted(dets[k], key=lambda d: -d[0])
        if protocol == "swig":
            ranked = ranked[:19999]
        used, tp, fp, prec, rec = set(), 0, 0, [], []
        for score, image, h, o in ranked:
            best, j_best = -math.inf, None
            for j, (gh, go) in enumerate(gt.get((k, image), [])):
                v = min(iou(h, gh, plus_one), iou(o, go, plus_one))
                if v > best:
                    best, j_best = v, j
            hit = j_best is not None and (best > 0.5 if strict else best >= 0.5)
            if hit and (image, j_best) not in used:
                used.add((image, j_best))
                tp += 1
            else:
                fp += 1
            prec.append(tp / (tp + fp))
            rec.append(tp / npos[k] if npos[k] else math.nan)
        ap = 0.0
        for t in THRESHOLDS[protocol]:
            ps = [p for p, r in zip(prec, rec) if r >= t]
            ap = ap + (max(ps) if ps else 0.0) / 11.0
        aps.append(ap)
    return aps
