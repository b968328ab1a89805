"""Parity of HOIMeanAveragePrecision with per-detection Python-loop references, one per protocol.

Two kinds of reference, sharing no code with the metric:

* :func:`qpic_flow_reference` follows the control flow of QPIC's ``datasets/hico_eval.py``
  ``HICOEvaluator`` (``__init__`` top-k, ``evaluate``, ``compute_fptp``, ``compute_iou_mat``,
  ``compute_IOU``, ``compute_map``, ``voc_ap``) and, with ``gen_vlkt=True``, the places where
  GEN-VLKT's ``datasets/hico_eval_triplet.py`` departs from it (``util/topk.py`` ``top_k`` with
  the ``np.where`` look-up, the images-without-GT branch, ``triplet_nms_filter``). It is the
  reference of ``qpic`` and ``gen_vlkt``, also on tied scores.
* :func:`hoi_r1_flow_reference` follows HOI-R1's ``hico_eval.py`` ``HICOEvaluator``
  (``__init__`` top-k and score floor, ``eval_hoi`` / ``match_hoi`` / ``compute_iou``,
  ``compute_pr``, ``compute_ap``, ``evaluation_default`` / ``evaluation_ko``).
* :func:`pocket_flow_reference` follows UPT's ``test_hico`` (per image and predicted class,
  pocket's ``BoxPairAssociation``: ``iou.max(0)``, ``> 0.5``, ``argmax`` of the scores per pair)
  and ``DetectionAPMeter`` (``append`` per class, ``argsort(descending=True)``, ``div``, the
  ``torch.linspace`` 11-point loop).
* :func:`thid_flow_reference` follows THID's ``datasets/swig_evaluator.py`` (``update``,
  ``calc_ap`` with its ranking ``np.argsort(scores)[::-1]``, matching inside the ranking loop and
  the 19,999 cut, ``calc_hit`` / ``iou``).
* :func:`reference` follows ``VOCevaldet_bboxpair.m`` (a loop over classes, ranked detections and
  ground-truth pairs) for ``hico_official``.

On random data every per-class AP must agree to 1e-9.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict

import numpy as np
import pytest
import torch

from hoi_r1.boxes import box_iou
from hoi_r1.hoi_map import hoi_mean_average_precision
from hoi_r1.metric import HOIMeanAveragePrecision
from hoi_r1.vocab import HOIVocabulary

THRESHOLDS = {
    "hico_official": [k * 0.1 if k <= 5 else 1 - (10 - k) * 0.1 for k in range(11)],  # MATLAB 0:0.1:1
    "qpic": list(np.arange(0.0, 1.1, 0.1)),
    "gen_vlkt": list(np.arange(0.0, 1.1, 0.1)),
    "pocket": torch.linspace(0, 1, 11, dtype=torch.float64).tolist(),
    "swig": [i / 10.0 for i in range(11)],
}


# --------------------------------------------------------------------------- references
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


def continuous_iou_matrix(a, b):
    """torchvision ``box_iou`` (pocket ``box_iou(encoding='coord')``): rows ``a``, columns ``b``."""
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            w = max(0.0, min(x[2], y[2]) - max(x[0], y[0]))
            h = max(0.0, min(x[3], y[3]) - max(x[1], y[1]))
            union = (x[2] - x[0]) * (x[3] - x[1]) + (y[2] - y[0]) * (y[3] - y[1]) - w * h
            out[i, j] = w * h / union
    return out


def pocket_flow_reference(preds, targets, vocab):
    """Per-class AP in the flow of UPT's ``test_hico`` with pocket's association and meter."""
    table = {pair: k for k, pair in enumerate(vocab.interactions)}
    num_gt = [0] * vocab.num_classes  # HICODet.anno_interaction: a list of ints
    for t in targets:
        for k in t["hoi"].tolist():
            num_gt[k] += 1
    outputs, labels_of = [[] for _ in range(vocab.num_classes)], [[] for _ in range(vocab.num_classes)]
    for p, t in sorted(zip(preds, targets), key=lambda pt: pt[1]["image_id"]):
        if len(t["hoi"]) == 0:  # HICODet drops the 'empty' images from the test set
            continue
        verbs = [vocab.interactions[k][0] for k in p["hoi"].tolist()]
        keep = [i for i, (v, o) in enumerate(zip(verbs, p["object_labels"].tolist())) if (v, o) in table]
        interactions = [table[verbs[i], p["object_labels"][i].item()] for i in keep]  # conversion[objects, verbs]
        scores = p["scores"][keep].double()
        boxes_h, boxes_o = p["human_boxes"][keep].tolist(), p["object_boxes"][keep].tolist()
        labels = [0.0] * len(keep)
        for hoi in sorted(set(interactions)):  # interactions.unique()
            gt_idx = [i for i, k in enumerate(t["hoi"].tolist()) if k == hoi]
            det_idx = [i for i, k in enumerate(interactions) if k == hoi]
            if not gt_idx:
                continue
            iou = torch.min(  # BoxPairAssociation._iou: gt rows, detection columns
                continuous_iou_matrix([t["human_boxes"][i].tolist() for i in gt_idx], [boxes_h[i] for i in det_idx]),
                continuous_iou_matrix([t["object_boxes"][i].tolist() for i in gt_idx], [boxes_o[i] for i in det_idx]))
            max_iou, max_idx = iou.max(0)
            match = torch.zeros_like(iou)
            match[max_idx, torch.arange(iou.shape[1])] = max_iou
            for m in match > 0.5:
                matched = torch.nonzero(m).squeeze(1)
                if len(matched):
                    labels[det_idx[matched[scores[[det_idx[i] for i in matched]].argmax()]]] = 1.0
        for k, sc, lab in zip(interactions, scores.tolist(), labels):  # DetectionAPMeter.append
            outputs[k].append(sc)
            labels_of[k].append(lab)
    aps = []
    for k in range(vocab.num_classes):  # compute_ap_for_each
        if not outputs[k]:
            aps.append(0.0)
            continue
        output, lab = torch.tensor(outputs[k], dtype=torch.float64), torch.tensor(labels_of[k], dtype=torch.float64)
        order = output.argsort(descending=True)  # compute_pr_for_each
        tp = lab[order].cumsum(0)
        fp = (1 - lab[order]).cumsum(0)
        prec = tp / (tp + fp)
        rec = torch.zeros_like(tp) if num_gt[k] == 0 else tp / num_gt[k]  # div
        ap = 0
        for thr in torch.linspace(0, 1, 11, dtype=torch.float64):
            inds = torch.nonzero(rec >= thr).squeeze()
            if inds.numel():
                ap += prec[inds].max() / 11
        aps.append(float(ap))
    return aps


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


# --------------------------------------------------------------------------- random data
def small_vocab(swig=False):
    verbs = ["hold", "ride", "eat", "look", "carry"]
    objects = ["person", "bicycle", "apple", "cup"]
    pairs = [(v, o) for o in objects for v in verbs if (v, o) not in {("eat", "bicycle"), ("ride", "cup")}]
    v = HOIVocabulary.open(verbs, objects, pairs)
    rng = random.Random(5)
    rare = frozenset(rng.sample(range(v.num_classes), 5))
    from dataclasses import replace
    v = replace(v, rare=rare, zero_shot={"mine": tuple(sorted(rng.sample(range(v.num_classes), 4)))})
    if swig:
        freq = tuple(rng.choice([0, 1, 2]) for _ in range(v.num_classes))
        v = replace(v, frequency=freq, unevaluated=frozenset(rng.sample(range(v.num_classes), 3)))
    return v


def random_data(vocab, seed, num_images=30, max_dets=130, integer_boxes=True):
    g = torch.Generator().manual_seed(seed)
    c = vocab.num_classes
    objs = torch.tensor([o for _, o in vocab.interactions])

    def boxes(n):
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 60
        wh = 5 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 40
        b = torch.cat([xy, xy + wh], 1)
        return b.round() if integer_boxes else b

    preds, targets = [], []
    scores = torch.randperm(num_images * max_dets, generator=g).double() / (num_images * max_dets) + 1e-3
    used = 0
    for i in range(num_images):
        p = int(torch.randint(0, 5, (1,), generator=g))
        hoi = torch.randint(0, c, (p,), generator=g)
        h, o = boxes(p), boxes(p)
        if p > 1:  # shared boxes between pairs
            h[1] = h[0]
        targets.append({"image_id": 100 + i, "human_boxes": h, "object_boxes": o, "object_labels": objs[hoi],
                        "hoi": hoi})
        n = int(torch.randint(0, max_dets, (1,), generator=g))
        dk = torch.randint(0, c, (n,), generator=g)
        dh, do = boxes(n), boxes(n)
        if p:
            src = torch.randint(0, p, (n,), generator=g)
            near = torch.rand(n, generator=g) < 0.6
            dk = torch.where(near & (torch.rand(n, generator=g) < 0.7), hoi[src], dk)
            jitter = lambda b: (b + torch.randn(b.shape, generator=g, dtype=torch.float64) * 3)  # noqa: E731
            dh = torch.where(near[:, None], jitter(h[src]), dh)
            do = torch.where(near[:, None], jitter(o[src]), do)
            if integer_boxes:
                dh, do = dh.round(), do.round()
        labels = objs[dk].clone()
        flip = torch.rand(n, generator=g) < 0.05  # a few object labels that disagree with the class
        labels[flip] = torch.randint(0, len(vocab.objects), (int(flip.sum()),), generator=g)
        preds.append({"image_id": 100 + i, "human_boxes": dh, "object_boxes": do, "object_labels": labels,
                      "hoi": dk, "scores": scores[used : used + n]})
        used += n
    return preds, targets


def assert_close_ap(got, ref):
    got = got.tolist()
    assert len(got) == len(ref)
    for k, (a, b) in enumerate(zip(got, ref)):
        if math.isnan(b):
            assert math.isnan(a), f"class {k}: {a} vs excluded"
        else:
            assert abs(a - b) <= 1e-9, f"class {k}: {a} vs {b}"


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("protocol", ["hico_official", "qpic", "gen_vlkt", "pocket", "swig", "hoi_r1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_ap_matches_loop_reference(protocol, seed):
    vocab = small_vocab(swig=protocol == "swig")
    preds, targets = random_data(vocab, seed, integer_boxes=seed != 2)
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True)
    ref = reference(preds, targets, vocab, protocol)
    assert_close_ap(out["per_class_ap"], ref)
    assert any(a > 0 for a in ref if not math.isnan(a))  # the data exercise true positives
    counted = [a for a in ref if not math.isnan(a)]
    assert out["mAP_full"].item() == pytest.approx(sum(counted) / len(counted), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_gen_vlkt_triplet_nms_matches_loop_reference(seed):
    vocab = small_vocab()
    preds, targets = random_data(vocab, seed)
    out = hoi_mean_average_precision(preds, targets, vocab, protocol="gen_vlkt", per_class=True, triplet_nms=True)
    assert_close_ap(out["per_class_ap"], reference(preds, targets, vocab, "gen_vlkt", nms=True))
    plain = hoi_mean_average_precision(preds, targets, vocab, protocol="gen_vlkt", per_class=True)
    assert not torch.allclose(plain["per_class_ap"].nan_to_num(), out["per_class_ap"].nan_to_num())


@pytest.mark.parametrize("protocol", ["hico_official", "qpic", "hoi_r1"])
def test_known_object_matches_loop_reference(protocol):
    vocab = small_vocab()
    preds, targets = random_data(vocab, 4)
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True, known_object=True)
    assert_close_ap(out["per_class_ap_known_object"], reference(preds, targets, vocab, protocol, known_object=True))
    assert_close_ap(out["per_class_ap"], reference(preds, targets, vocab, protocol))


def test_zero_shot_and_rare_groups_match_reference_means():
    vocab = small_vocab()
    preds, targets = random_data(vocab, 6)
    out = hoi_mean_average_precision(preds, targets, vocab, zero_shot="mine")
    ref = reference(preds, targets, vocab, "hico_official")
    unseen = set(vocab.zero_shot["mine"])
    mean = lambda ids: sum(ref[k] for k in ids) / len(ids)  # noqa: E731
    every = range(vocab.num_classes)
    assert out["mAP_unseen"].item() == pytest.approx(mean(sorted(unseen)), abs=1e-12)
    assert out["mAP_seen"].item() == pytest.approx(mean([k for k in every if k not in unseen]), abs=1e-12)
    assert out["mAP_rare"].item() == pytest.approx(mean(sorted(vocab.rare)), abs=1e-12)
    assert out["mAP_non_rare"].item() == pytest.approx(mean([k for k in every if k not in vocab.rare]), abs=1e-12)


def test_swig_groups_use_frequency_over_evaluated_classes():
    vocab = small_vocab(swig=True)
    preds, targets = random_data(vocab, 7)
    out = hoi_mean_average_precision(preds, targets, vocab, protocol="swig")
    ref = reference(preds, targets, vocab, "swig")
    for key, f in [("mAP_non_rare", 2), ("mAP_rare", 1), ("mAP_unseen", 0)]:
        ids = [k for k in range(vocab.num_classes) if vocab.frequency[k] == f and k not in vocab.unevaluated]
        assert out[key].item() == pytest.approx(sum(ref[k] for k in ids) / len(ids), abs=1e-12)
    assert set(out) == {"mAP_full", "mAP_non_rare", "mAP_rare", "mAP_unseen", "mean_max_recall"}


def test_class_form_equals_functional_form():
    vocab = small_vocab()
    preds, targets = random_data(vocab, 8)
    metric = HOIMeanAveragePrecision(vocab, protocol="qpic", per_class=True)
    metric.update(preds, targets)
    a, b = metric.compute(), hoi_mean_average_precision(preds, targets, vocab, protocol="qpic", per_class=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("protocol", ["hico_official", "pocket"])
def test_metric_benchmark_equals_the_per_detection_loop(protocol):
    from benchmarks.metric_benchmark import run

    figures = run(num_images=60, num_pairs=700, per_image=20, protocol=protocol, batch_size=8)
    assert figures["max_abs_delta_ap"] == 0.0
    assert figures["detections"] == 1200 and 0 < figures["mAP_full"] < 1


@pytest.mark.parametrize("protocol", ["hico_official", "qpic", "gen_vlkt", "hoi_r1", "pocket", "swig"])
def test_tied_scores_rank_as_the_reference_does(protocol):
    # scores on a grid of 8 values: classes with dozens of tied detections. QPIC and GEN-VLKT
    # rank them with np.argsort(-score) (unstable), MATLAB with its stable sort, pocket with
    # torch's argsort(descending=True), THID with np.argsort(score)[::-1] and matches in that
    # order; GEN-VLKT also turns tied scores of one image into copies of the first.
    vocab = small_vocab(swig=protocol == "swig")
    preds, targets = random_data(vocab, 9, num_images=40)
    for p in preds:
        p["scores"] = (p["scores"] * 8).ceil() / 8
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True)
    assert_close_ap(out["per_class_ap"], reference(preds, targets, vocab, protocol))


@pytest.mark.parametrize("seed", [0, 1])
def test_hoi_r1_fall_back_on_crowded_images_matches_loop_reference(seed):
    # each image with ground truth gets two more pairs of its first pair's class, 2 and 4 pixels
    # apart: jittered detections then pass several pairs, where the fall-back rule and the
    # best-pair rule part ways
    vocab = small_vocab()
    preds, targets = random_data(vocab, seed, num_images=40)
    for t in targets:
        if len(t["hoi"]):
            extra_h = torch.stack([t["human_boxes"][0] + d for d in (2.0, 4.0)])
            t["human_boxes"] = torch.cat([t["human_boxes"], extra_h])
            t["object_boxes"] = torch.cat([t["object_boxes"], t["object_boxes"][:1].repeat(2, 1)])
            t["object_labels"] = torch.cat([t["object_labels"], t["object_labels"][:1].repeat(2)])
            t["hoi"] = torch.cat([t["hoi"], t["hoi"][:1].repeat(2)])
    out = hoi_mean_average_precision(preds, targets, vocab, protocol="hoi_r1", per_class=True)
    assert_close_ap(out["per_class_ap"], reference(preds, targets, vocab, "hoi_r1"))


# --------------------------------------------------------------------------- hoi_r1 IoU rules, by hand
ONE_CLASS = HOIVocabulary.open(["ride"], ["person", "bicycle"], [("ride", "bicycle")])
GT_H, OBJ = [0.0, 0.0, 9.0, 9.0], [20.0, 0.0, 29.0, 9.0]


def _one_pair_ap(protocol, gt_human, det_human, obj=OBJ):
    """AP of one detection (score 0.9) against one ground-truth pair sharing the object box."""
    as64 = lambda boxes: torch.tensor(boxes, dtype=torch.float64)  # noqa: E731 (float32 would round the 1e-7s away)
    target = {"image_id": 0, "human_boxes": as64([gt_human]), "object_boxes": as64([obj]),
              "object_labels": torch.tensor([1]), "hoi": torch.tensor([0])}
    pred = {"image_id": 0, "human_boxes": as64([det_human]), "object_boxes": as64([obj]),
            "object_labels": torch.tensor([1]), "hoi": torch.tensor([0]), "scores": as64([0.9])}
    out = hoi_mean_average_precision([pred], [target], ONE_CLASS, protocol=protocol, per_class=True)
    return out["per_class_ap"][0].item()


def test_hoi_r1_iou_uses_plus_one_areas():
    # gt [0, 3] x [0, 3], det [1, 4] x [0, 3]: continuous IoU 6 / 12 = 0.5 (not > 0.5);
    # +1 sides: intersection 3 x 4 = 12, areas 16, union 20 -> 0.6 > 0.5: a match
    gt, det = [0.0, 0.0, 3.0, 3.0], [1.0, 0.0, 4.0, 3.0]
    assert hoi_r1_iou(gt, det) == pytest.approx(12 / (20 + 1e-6), abs=1e-15)
    assert _one_pair_ap("hoi_r1", gt, det, obj=gt) == pytest.approx(1.0, abs=1e-12)
    assert _one_pair_ap("pocket", gt, det, obj=gt) == 0.0  # continuous pixels, > 0.5: no match


def test_hoi_r1_iou_divides_by_union_plus_1e_minus_6():
    # det human [0, 19 - 5e-8] x [0, 9] against gt [0, 9] x [0, 9]: intersection 100, union
    # 200 - 5e-7. inter / union = 0.50000000125 > 0.5, but inter / (union + 1e-6)
    # = 0.49999999875: HOI-R1 does not match it (QPIC's >= on inter / union does)
    det = [0.0, 0.0, 19.0 - 5e-8, 9.0]
    assert hoi_r1_iou(GT_H, det) < 0.5 < 100 / (200 - 5e-7)
    assert _one_pair_ap("hoi_r1", GT_H, det) == 0.0
    assert _one_pair_ap("qpic", GT_H, det) == pytest.approx(1.0, abs=1e-12)


def test_hoi_r1_zero_area_box_never_matches():
    # a ground-truth human box of zero width, and a detection on exactly the same box:
    # compute_area gives 0 (x2 <= x1) and the intersection has no positive extent, so IoU 0;
    # with the official +1 rule the 1-pixel-wide boxes overlap fully (IoU 1)
    flat = [5.0, 0.0, 5.0, 9.0]
    assert hoi_r1_area(flat) == 0.0 and hoi_r1_iou(flat, flat) == 0.0
    assert _one_pair_ap("hoi_r1", flat, flat) == 0.0
    assert _one_pair_ap("hico_official", flat, flat) == pytest.approx(1.0, abs=1e-12)
    inverted = [5.0, 0.0, 4.0, 9.0]  # x2 < x1
    assert _one_pair_ap("hoi_r1", inverted, inverted) == 0.0


def test_hoi_r1_threshold_is_strictly_above_one_half():
    # det human [0, 9] x [0, 18.9999999]: intersection 100, union 200 - 1e-6, so
    # inter / (union + 1e-6) is exactly 0.5 in float64: > 0.5 fails, >= 0.5 would pass
    det = [0.0, 0.0, 9.0, 18.9999999]
    as64 = lambda b: torch.tensor([b], dtype=torch.float64)  # noqa: E731
    assert box_iou(as64(GT_H), as64(det), "plus_one_eps").item() == 0.5
    assert _one_pair_ap("hoi_r1", GT_H, det) == 0.0
    nudged = [0.0, 0.0, 9.0, 18.9999998]  # a hair more overlap: 0.5000000025 -> a match
    assert _one_pair_ap("hoi_r1", GT_H, nudged) == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- pocket and THID ties, by hand
SWIG_ONE_CLASS = dataclasses.replace(ONE_CLASS, frequency=(2,))


def _one_class_case(dets_per_image, gt_images=(0,)):
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


def _eleven(p):
    ap = 0.0
    for _ in range(11):
        ap = ap + p / 11.0
    return ap


def test_pocket_ranks_ties_with_torchs_unstable_argsort():
    # one pair, n tied detections on it: argmax gives the pair to the first detection, the rest
    # are duplicates (FP). DetectionAPMeter ranks with argsort(descending=True): up to 16 ties
    # stay in order (TP first, AP 1); 17 ties are reordered, the TP lands at position `pos`
    # (9 with the torch 2.14 CPU sort): precision 1 / (pos + 1) at recall 1 for every threshold
    preds, targets = _one_class_case([[0.5] * 16])
    assert _one_pair_ap_of(preds, targets, "pocket") == pytest.approx(1.0, abs=1e-12)
    pos = int((torch.argsort(torch.full((17,), 0.5, dtype=torch.float64), descending=True) == 0).nonzero())
    preds, targets = _one_class_case([[0.5] * 17])
    ap = _one_pair_ap_of(preds, targets, "pocket")
    assert ap == _eleven(1.0 / (pos + 1))
    assert ap == reference(preds, targets, ONE_CLASS, "pocket")[0]
    if pos == 0:
        pytest.skip("this torch build keeps 17 ties in order: the rule changes nothing here")
    assert ap < 0.5  # a stable ranking would give 1.0


def test_pocket_counts_classes_without_ground_truth_as_zero():
    # compute_ap_for_each: a class with detections but no ground truth has recall div(tp, 0) = 0
    # and precision 0, so AP 0; and the mean runs over every class
    vocab = HOIVocabulary.open(["ride", "hold"], ["person", "bicycle"], [("ride", "bicycle"), ("hold", "bicycle")])
    preds, targets = _one_class_case([[0.8, 0.9]])
    preds[0]["hoi"] = torch.tensor([0, 1])  # the 0.9 detection is of class 1 (hold bicycle), no pair
    out = hoi_mean_average_precision(preds, targets, vocab, protocol="pocket", per_class=True)
    assert out["per_class_ap"].tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert out["mAP_full"].item() == pytest.approx(0.5, abs=1e-12)
    assert pocket_flow_reference(preds, targets, vocab) == pytest.approx([1.0, 0.0], abs=1e-12)


def test_swig_ranks_the_last_tied_detection_first():
    # image 0: the pair and a detection on it (TP); image 1: no pair, a detection of the same
    # score (FP). calc_ap ranks by np.argsort(scores)[::-1] over [TP, FP]; numpy keeps two ties
    # in order, so the reversal puts the FP first: precision 1/2 at recall 1, AP 0.5
    # (a stable descending ranking would give 1.0)
    preds, targets = _one_class_case([[0.5], [0.5]])
    first = int(np.argsort(np.array([0.5, 0.5]))[::-1][0])
    ap = _one_pair_ap_of(preds, targets, "swig", SWIG_ONE_CLASS)
    assert ap == (_eleven(0.5) if first == 1 else pytest.approx(1.0, abs=1e-12))
    assert ap == reference(preds, targets, SWIG_ONE_CLASS, "swig")[0]
    if first == 0:
        pytest.skip("this numpy build reverses the order of two ties: nothing to tell apart")
    assert ap == pytest.approx(0.5, abs=1e-15)


def test_swig_matches_in_its_ranking_order():
    # one image, two tied detections on its one pair. calc_ap matches while it walks its ranking,
    # so whichever it ranks first takes the pair: TP first, AP 1. Matching in input order would
    # make detection 0 the TP, and the reversed ranking would put the FP (detection 1) first:
    # AP 0.5
    preds, targets = _one_class_case([[0.5, 0.5]])
    assert _one_pair_ap_of(preds, targets, "swig", SWIG_ONE_CLASS) == pytest.approx(1.0, abs=1e-12)
    assert reference(preds, targets, SWIG_ONE_CLASS, "swig")[0] == pytest.approx(1.0, abs=1e-12)
    # three tied detections, one off the pair: THID ranks [2, 1, 0]; 2 is off (FP), 1 takes the
    # pair, 0 is a duplicate: precision 1/2 at recall 1
    preds, targets = _one_class_case([[0.5, 0.5, 0.5]])
    preds[0]["human_boxes"][2] = torch.tensor([50.0, 50.0, 60.0, 60.0], dtype=torch.float64)
    if list(np.argsort(np.array([0.5] * 3))[::-1]) != [2, 1, 0]:
        pytest.skip("this numpy build orders three ties differently")
    assert _one_pair_ap_of(preds, targets, "swig", SWIG_ONE_CLASS) == pytest.approx(_eleven(0.5), abs=1e-15)
    assert reference(preds, targets, SWIG_ONE_CLASS, "swig")[0] == pytest.approx(_eleven(0.5), abs=1e-15)


def _one_pair_ap_of(preds, targets, protocol, vocab=ONE_CLASS):
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True)
    return out["per_class_ap"][0].item()
