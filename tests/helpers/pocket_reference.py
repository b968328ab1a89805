"""The loop reference of the ``pocket`` protocol: the flow of UPT's ``test_hico`` (per image and
predicted class, pocket's ``BoxPairAssociation``: ``iou.max(0)``, ``> 0.5``, ``argmax`` of the
scores per pair) and ``DetectionAPMeter`` (``append`` per class, ``argsort(descending=True)``,
``div``, the ``torch.linspace`` 11-point loop). Shares no code with the metric."""

from __future__ import annotations

import torch


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
