"""The loop reference of the ``qpic`` and ``gen_vlkt`` protocols: the control flow of QPIC's
``datasets/hico_eval.py`` ``HICOEvaluator`` (``__init__`` top-k, ``evaluate``, ``compute_fptp``,
``compute_iou_mat``, ``compute_IOU``, ``compute_map``, ``voc_ap``) and, with ``gen_vlkt=True``,
the places where GEN-VLKT's ``datasets/hico_eval_triplet.py`` departs from it (``util/topk.py``
``top_k`` with the ``np.where`` look-up, the images-without-GT branch, ``triplet_nms_filter``).
Shares no code with the metric."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def qpic_iou(a, b):
    """QPIC ``compute_IOU``: +1 areas; 0 unless the boxes overlap with positive extent."""
    left, right = max(a[1], b[1]), min(a[3], b[3])
    top, bottom = max(a[0], b[0]), min(a[2], b[2])
    if left >= right or top >= bottom:
        return 0
    inter = (right - left + 1) * (bottom - top + 1)
    return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)


def heap_top_k_scores(scores, k):
    """GEN-VLKT ``top_k``: the k largest scores, descending (values only)."""
    return sorted(scores, reverse=True)[:k]


def pairwise_nms(rows, thr=0.7, alpha=1.0, beta=0.5):
    """GEN-VLKT ``pairwise_nms`` over the rows of one class: indices kept, best first."""
    def inter_union(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        area = lambda z: (z[2] - z[0] + 1) * (z[3] - z[1] + 1)  # noqa: E731
        return iw * ih, area(a) + area(b) - iw * ih
    order = list(np.array([r["score"] for r in rows]).argsort()[::-1])
    keep = []
    while order:
        i = order[0]
        keep.append(i)
        rest = []
        for j in order[1:]:
            sh, su = inter_union(rows[i]["h"], rows[j]["h"])
            oh, ou = inter_union(rows[i]["o"], rows[j]["o"])
            with np.errstate(divide="ignore", invalid="ignore"):  # numpy arrays there: 0/0 is nan
                ovr = np.power(np.float64(sh) / su, alpha) * np.power(np.float64(oh) / ou, beta)
            if ovr <= thr:
                rest.append(j)
        order = rest
    return keep


def qpic_flow_reference(preds, targets, vocab, gen_vlkt=False, nms=False, known_object=False):
    """Per-class AP (NaN for classes without test ground truth) in QPIC's / GEN-VLKT's flow."""
    table = {pair: k for k, pair in enumerate(vocab.interactions)}
    gt_triplets, sum_gts = [], defaultdict(int)
    objects_in_image = defaultdict(set)
    for t in targets:
        for k in t["hoi"].tolist():
            if k not in gt_triplets:
                gt_triplets.append(k)
            sum_gts[k] += 1
            objects_in_image[t["image_id"]].add(vocab.interactions[k][1])
    tp, fp, score = defaultdict(list), defaultdict(list), defaultdict(list)
    for p, t in sorted(zip(preds, targets), key=lambda pt: pt[1]["image_id"]):
        image = t["image_id"]
        entries = [dict(h=h, o=o, obj=ol, hoi=k, score=sc) for h, o, ol, k, sc in zip(
            p["human_boxes"].tolist(), p["object_boxes"].tolist(), p["object_labels"].tolist(),
            p["hoi"].tolist(), p["scores"].tolist())]
        if gen_vlkt:  # top_k values, each looked up with np.where(hoi_scores == score)[0][0]
            all_scores = np.array([e["score"] for e in entries])
            hois = [dict(entries[np.where(all_scores == v)[0][0]]) for v in
                    heap_top_k_scores([e["score"] for e in entries], 100)]
            if nms:
                groups = {}
                for i, r in enumerate(hois):
                    groups.setdefault(r["hoi"], []).append(i)
                kept = []
                for idx in groups.values():
                    kept += [idx[j] for j in pairwise_nms([hois[i] for i in idx])]
                hois = [hois[i] for i in kept]
        else:  # scores x validity of (verb, predicted object), stable sort, first 100
            for e in entries:
                k = table.get((vocab.interactions[e["hoi"]][0], e["obj"]))
                e["hoi"], e["score"] = (k, e["score"]) if k is not None else ((e["hoi"], e["obj"]), e["score"] * 0)
            hois = sorted(entries, key=lambda e: e["score"], reverse=True)[:100]
        if known_object:
            hois = [e for e in hois if not isinstance(e["hoi"], tuple)
                    and vocab.interactions[e["hoi"]][1] in objects_in_image[image]]
        gt_hois = [dict(h=h, o=o, obj=ol, hoi=k) for h, o, ol, k in zip(
            t["human_boxes"].tolist(), t["object_boxes"].tolist(), t["object_labels"].tolist(), t["hoi"].tolist())]
        if not gt_hois:  # evaluate: images without ground-truth boxes
            for e in hois:
                key = e["hoi"] if gen_vlkt else [0, e["obj"], e["hoi"]]  # QPIC: a list, never found
                if key not in gt_triplets:
                    continue
                tp[key].append(0)
                fp[key].append(1)
                score[key].append(e["score"])
            continue
        vis_tag = [0] * len(gt_hois)  # compute_fptp
        for e in sorted(hois, key=lambda e: e["score"], reverse=True):
            is_match, max_overlap, max_gt = 0, 0, None
            for j, g in enumerate(gt_hois):
                if not gen_vlkt and e["obj"] != g["obj"]:
                    continue  # compute_IOU: boxes of different categories have IoU 0
                ov_h, ov_o = qpic_iou(e["h"], g["h"]), qpic_iou(e["o"], g["o"])
                if ov_h >= 0.5 and ov_o >= 0.5 and e["hoi"] == g["hoi"]:
                    is_match = 1
                    if min(ov_h, ov_o) > max_overlap:
                        max_overlap, max_gt = min(ov_h, ov_o), j
            if e["hoi"] not in gt_triplets:
                continue
            if is_match and vis_tag[max_gt] == 0:
                tp[e["hoi"]].append(1)
                fp[e["hoi"]].append(0)
                vis_tag[max_gt] = 1
            else:
                tp[e["hoi"]].append(0)
                fp[e["hoi"]].append(1)
            score[e["hoi"]].append(e["score"])
    aps = [math.nan] * vocab.num_classes
    for k in gt_triplets:  # compute_map
        if not tp[k]:
            aps[k] = 0.0
            continue
        order = np.argsort(-np.array(score[k]))
        ctp, cfp = np.cumsum(np.array(tp[k])[order]), np.cumsum(np.array(fp[k])[order])
        rec, prec = ctp / sum_gts[k], ctp / (cfp + ctp)
        ap = 0.0
        for thr in np.arange(0.0, 1.1, 0.1):  # voc_ap
            ap = ap + (0 if np.sum(rec >= thr) == 0 else np.max(prec[rec >= thr])) / 11.0
        aps[k] = float(ap)
    return aps
