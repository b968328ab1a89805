"""11-point average precision of every class in one pass, in float64.

Input: one row per matched detection (class, score, true positive, image id) and the number of
ground-truth pairs per class (``npos``). Per class, rows are ranked by score, descending, with
a stable sort (ties: lower image id first, then the order the detections came in — the order
MATLAB's stable ``sort`` gives on the official detection files). Then, with cumulative sums,
``recall = tp / npos`` and ``precision = tp / (tp + fp)``, and the VOC2007 11-point AP:
``AP = sum over the 11 thresholds t of p(t) / 11``, ``p(t)`` the largest precision at a recall
``>= t`` (0 if none), summed in threshold order as the references do.

Exactness: ``p(t)`` is reached at a true positive (after one, precision only falls until the
next), so it is a maximum over true-positive rows only; no float is ever shifted or offset, so
per-class AP equals a per-detection Python loop bit for bit. The numpy references rank with
quicksort (``np.argsort(-score)``), which orders tied scores arbitrarily: bit-exact parity with
them needs distinct scores within a class.

>>> import torch
>>> ap, rec = per_class_average_precision(
...     classes=torch.tensor([0, 0, 0]), scores=torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64),
...     tp=torch.tensor([True, False, True]), image_ids=torch.tensor([0, 0, 1]),
...     npos=torch.tensor([2]), recall_thresholds=tuple(i / 10 for i in range(11)))
>>> round(ap.item(), 6), rec.item()
(0.848485, 1.0)
"""

from __future__ import annotations

import numpy as np
import torch


def per_class_average_precision(
    classes: torch.Tensor,
    scores: torch.Tensor,
    tp: torch.Tensor,
    image_ids: torch.Tensor,
    npos: torch.Tensor,
    recall_thresholds: tuple[float, ...],
    top_k_per_class: int | None = None,
    tie_order: str = "stable",
) -> tuple[torch.Tensor, torch.Tensor]:
    """AP and maximum recall of each class: two ``(C,)`` float64 tensors, ``C = len(npos)``.

    Args:
        classes: ``(N,)`` class of each detection.
        scores: ``(N,)`` score of each detection.
        tp: ``(N,)`` whether each detection is a true positive.
        image_ids: ``(N,)`` image id of each detection (breaks score ties).
        npos: ``(C,)`` ground-truth pairs per class over the test set.
        recall_thresholds: the recall floats of the interpolation, in summation order.
        top_k_per_class: only the ``k`` best detections of each class count (SWIG-HOI).
        tie_order: ``stable`` (:func:`rank_order`) or ``numpy_argsort``
            (:func:`numpy_argsort_order`, QPIC's and GEN-VLKT's ``compute_map``).

    A class without ground truth has recall 0 and AP 0.
    """
    num_classes = len(npos)
    if tie_order == "numpy_argsort":
        order = numpy_argsort_order(classes, scores, image_ids)
    else:
        order = rank_order(classes, scores, image_ids)
    cls, hit = classes[order], tp[order].to(torch.long)
    counts = torch.bincount(cls, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(cls)) - starts[cls]
    if top_k_per_class is not None:
        kept = pos < top_k_per_class
        cls, hit, pos = cls[kept], hit[kept], pos[kept]
    cum = torch.cumsum(hit, 0)
    before = torch.zeros(num_classes, dtype=torch.long)  # true positives of earlier classes
    first = pos == 0
    before[cls[first]] = (cum - hit)[first]
    tp_cum = cum - before[cls]
    npos64 = npos.to(torch.float64)
    rows = hit.bool()  # p(t) is reached at a true positive
    c, tp_rows = cls[rows], tp_cum[rows].to(torch.float64)
    precision = tp_rows / (pos[rows] + 1).to(torch.float64)
    recall = tp_rows / npos64[c]
    ap = torch.zeros(num_classes, dtype=torch.float64)
    for t in recall_thresholds:
        above = recall >= t
        p_t = torch.zeros(num_classes, dtype=torch.float64).scatter_reduce(0, c[above], precision[above], "amax")
        ap = ap + p_t / 11.0
    total_tp = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, cls, hit.to(torch.float64))
    max_recall = torch.where(npos > 0, total_tp / npos64.clamp(min=1), torch.zeros_like(total_tp))
    return ap, max_recall


def rank_order(classes: torch.Tensor, scores: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """Permutation: class ascending, score descending, image id ascending, input order (stable)."""
    if len(image_ids) > 1 and bool((image_ids[1:] < image_ids[:-1]).any()):
        order = torch.sort(image_ids, stable=True).indices
        order = order[torch.sort(-scores[order], stable=True).indices]
    else:  # already in image order (one process, sequential loader)
        order = torch.sort(-scores, stable=True).indices
    return order[_stable_argsort_small_ints(classes[order])]


def numpy_argsort_order(classes: torch.Tensor, scores: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """Permutation: class ascending; inside a class ``numpy.argsort(-score)`` (numpy's default,
    unstable sort) over the class's detections in the order QPIC's ``evaluate`` appends them —
    image id ascending, inside an image score descending, then input order.

    The default sort orders tied scores in a way that depends on numpy's build (on an AVX-512
    machine, 16 tied values can come out reversed), so only calling it on the same array
    reproduces the reference's ranking of ties; this does.
    """
    if len(classes) == 0:
        return torch.zeros(0, dtype=torch.long)
    rows = np.arange(len(classes))
    s, img = scores.numpy(), image_ids.numpy()
    append = np.lexsort((rows, -s, img))  # last key first: image id, then -score, then row
    append = append[np.argsort(classes.numpy()[append], kind="stable")]
    cls_sorted = classes.numpy()[append]
    bounds = np.flatnonzero(np.diff(cls_sorted)) + 1
    out = np.empty_like(append)
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(append)]):
        seg = append[start:stop]
        out[start:stop] = seg[np.argsort(-s[seg])]
    return torch.from_numpy(out).long()


def _stable_argsort_small_ints(values: torch.Tensor) -> torch.Tensor:
    """Stable argsort; numpy's radix sort when the values fit in int16 (class ids do)."""
    if len(values) and int(values.max()) < 2**15 and int(values.min()) >= 0:
        return torch.from_numpy(np.argsort(values.numpy().astype(np.int16), kind="stable")).long()
    return torch.sort(values, stable=True).indices


def first_occurrences(image_ids: torch.Tensor) -> torch.Tensor:
    """Mask ``(M,)`` of the first occurrence of each image id (padded duplicates removed)."""
    if len(image_ids) == 0:
        return torch.zeros(0, dtype=torch.bool)
    unique, inverse = torch.unique(image_ids, return_inverse=True)
    position = torch.arange(len(image_ids))
    first = torch.full((len(unique),), len(image_ids), dtype=torch.long).scatter_reduce(0, inverse, position, "amin")
    return first[inverse] == position


def known_object_mask(
    det_image_ids: torch.Tensor,
    det_classes: torch.Tensor,
    gt_image_ids: torch.Tensor,
    gt_classes: torch.Tensor,
    class_objects: torch.Tensor,
) -> torch.Tensor:
    """Known-Object setting: keep a detection of class ``c`` (object ``o``) only in images with a
    ground-truth pair of some class with object ``o``."""
    num_objects = int(class_objects.max()) + 1 if len(class_objects) else 1
    all_ids = torch.cat([det_image_ids, gt_image_ids])
    _, inverse = torch.unique(all_ids, return_inverse=True)
    det_key = inverse[: len(det_image_ids)] * num_objects + class_objects[det_classes]
    gt_key = inverse[len(det_image_ids):] * num_objects + class_objects[gt_classes]
    return torch.isin(det_key, gt_key)
