"""11-point average precision of every class in one pass, in float64.

Input: one row per matched detection (class, score, true positive, image id) and the number of
ground-truth pairs per class (``npos``). Per class, rows are ranked by score, descending, with
a stable sort (ties: lower image id first, then the order the detections came in — the order
MATLAB's stable ``sort`` gives on the official detection files), or with the reference's own
sort call over the order it collected the detections in (:func:`ranking_order`). Then, with
cumulative sums, ``recall = tp / npos`` and ``precision = tp / (tp + fp)``, and the VOC2007 11-point AP:
``AP = sum over the 11 thresholds t of p(t) / 11``, ``p(t)`` the largest precision at a recall
``>= t`` (0 if none), summed in threshold order as the references do.

Exactness: ``p(t)`` is reached at a true positive (after one, precision only falls until the
next), so it is a maximum over true-positive rows only; no float is ever shifted or offset, so
per-class AP equals a per-detection Python loop bit for bit. The numpy references rank with
quicksort (``np.argsort(-score)``), pocket with a non-stable torch sort: their order of tied
scores depends on the library build, so it is reproduced by calling the same sort on the same
array (:func:`numpy_argsort_order`, :func:`torch_argsort_order`,
:func:`numpy_argsort_reversed_order`).

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
    det_picks: torch.Tensor | None = None,
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
        tie_order: how tied scores rank, :func:`ranking_order`.
        det_picks: ``(N,)`` with ``tp`` recomputed in the ranked order (SWIG-HOI, whose
            ``calc_ap`` matches while it walks the ranked list): each detection's picked
            ground-truth pair, a key unique within its image (``-1``: its best pair-IoU failed
            the threshold); then a detection is a true positive when it is the first of its
            (image, class, pick) in the ranking (:func:`first_of_pick_in_rank`).

    A class without ground truth has recall 0 and AP 0.
    """
    num_classes = len(npos)
    order = ranking_order(tie_order, classes, scores, image_ids)
    if det_picks is not None:
        tp = first_of_pick_in_rank(order, classes, image_ids, det_picks)
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


TIE_ORDERS = ("stable", "numpy_argsort", "torch_argsort", "numpy_argsort_reversed")
"""The rankings of :func:`ranking_order`."""


def ranking_order(tie_order: str, classes: torch.Tensor, scores: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """Permutation that ranks the detections class by class, best score first; ``tie_order`` says
    how tied scores come out, as each reference sorts:

    * ``stable`` — :func:`rank_order` (MATLAB's stable ``sort``; HOI-R1's ``sorted``);
    * ``numpy_argsort`` — :func:`numpy_argsort_order` (QPIC / GEN-VLKT ``compute_map``);
    * ``torch_argsort`` — :func:`torch_argsort_order` (pocket ``DetectionAPMeter``);
    * ``numpy_argsort_reversed`` — :func:`numpy_argsort_reversed_order` (THID ``calc_ap``).
    """
    if tie_order == "numpy_argsort":
        return numpy_argsort_order(classes, scores, image_ids)
    if tie_order == "torch_argsort":
        return torch_argsort_order(classes, scores, image_ids)
    if tie_order == "numpy_argsort_reversed":
        return numpy_argsort_reversed_order(classes, scores, image_ids)
    if tie_order != "stable":
        raise ValueError(f"tie_order must be one of {TIE_ORDERS}, found {tie_order!r}")
    return rank_order(classes, scores, image_ids)


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


def _append_order_segments(classes: torch.Tensor, image_ids: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
    """The detections grouped by class (ascending), each class in the order a reference that
    appends per image collects them: image id ascending, then input order; and the segments."""
    rows = np.arange(len(classes))
    append = np.lexsort((rows, image_ids.numpy()))  # image id, then row
    append = append[np.argsort(classes.numpy()[append], kind="stable")]
    bounds = np.flatnonzero(np.diff(classes.numpy()[append])) + 1
    return append, np.split(append, bounds)


def torch_argsort_order(classes: torch.Tensor, scores: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """Permutation: class ascending; inside a class ``torch.argsort(score, descending=True)``
    (not stable) over the class's detections in the order pocket's ``DetectionAPMeter.append``
    collects them from UPT's ``test_hico`` — image id ascending, then input order.

    On CPU that sort keeps ties in order up to 16 elements and reorders them beyond (with the
    torch 2.14 build this was written against, 17 tied scores come out as positions 8, 16, 15,
    ..., 9, 0, 7, ..., 1), so only calling it on the same float64 array reproduces pocket's
    ranking of ties; this does.
    """
    if len(classes) == 0:
        return torch.zeros(0, dtype=torch.long)
    s = scores.to(torch.float64)
    _, segments = _append_order_segments(classes, image_ids)
    out = [seg[torch.argsort(s[torch.from_numpy(seg)], descending=True).numpy()] for seg in segments]
    return torch.from_numpy(np.concatenate(out)).long()


def numpy_argsort_reversed_order(classes: torch.Tensor, scores: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """Permutation: class ascending; inside a class ``numpy.argsort(score)[::-1]`` — numpy's
    default ascending sort, reversed — over the class's detections in the order THID's
    ``SWiGEvaluator.update`` appends them (image id ascending, then input order): what
    ``calc_ap`` ranks by. Where that sort keeps ties in order, the reversal puts the *last*
    tied detection first.
    """
    if len(classes) == 0:
        return torch.zeros(0, dtype=torch.long)
    s = scores.to(torch.float64).numpy()
    _, segments = _append_order_segments(classes, image_ids)
    out = [seg[np.argsort(s[seg])[::-1]] for seg in segments]
    return torch.from_numpy(np.concatenate(out)).long()


def first_of_pick_in_rank(
    order: torch.Tensor, classes: torch.Tensor, image_ids: torch.Tensor, det_picks: torch.Tensor
) -> torch.Tensor:
    """``(N,)`` true positives when matching walks the ranking ``order`` (THID ``calc_ap``):
    best pair without fall-back, so a detection whose pick passed (``det_picks >= 0``) is a true
    positive exactly when no detection ranked before it picked the same pair (same image, class
    and pick). The greedy matching of ``update`` gives the same pairs to the same score level;
    this only moves a hit between tied detections to the one the ranking puts first.

    >>> first_of_pick_in_rank(torch.tensor([2, 1, 0]), torch.tensor([0, 0, 0]),
    ...                       torch.tensor([7, 7, 7]), torch.tensor([0, 0, -1])).tolist()
    [False, True, False]
    """
    n = len(order)
    tp = torch.zeros(n, dtype=torch.bool)
    if n == 0:
        return tp
    position = torch.empty(n, dtype=torch.long)
    position[order] = torch.arange(n)
    passed = (det_picks >= 0).nonzero().squeeze(1)
    if len(passed) == 0:
        return tp
    keys = torch.stack([image_ids[passed], classes[passed], det_picks[passed]], 1)
    _, group = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((int(group.max()) + 1,), n, dtype=torch.long).scatter_reduce(
        0, group, position[passed], "amin")
    tp[passed] = position[passed] == first[group]
    return tp


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
