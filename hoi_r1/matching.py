"""Matching detected human-object pairs to ground-truth pairs: VOC greedy (the metric) and
Hungarian (the rewards, :func:`hungarian_pairs`; see the end of the file).

VOC greedy matching, "best pair, no fall-back" (the HICO-DET evaluation, Chao et al. WACV 2018,
``VOCevaldet_bboxpair.m``; kept by every Python port): inside one *cell* — one image and one HOI
class — every detection looks at all ground-truth pairs of the cell, taken or not, and picks the
one with the largest pair-IoU (the first in ground-truth order on a tie). It is a true positive
when that pair-IoU passes the threshold and no higher-ranked detection picked the same pair;
otherwise a false positive. There is no fall-back to the second-best pair.

Because a detection's choice never depends on other detections, the whole matching is
vectorised: every detection picks its pair at once, then each pair's highest-ranked picker wins.
No Python loop runs over detections. Pair-IoU is :func:`hoi_r1.boxes.pair_iou` (the one IoU
implementation), batched over the candidate (detection, ground-truth) pairs with
:func:`torch.vmap`.

>>> import torch
>>> box = torch.tensor([[0., 0., 10., 10.]])
>>> humans = box.repeat(3, 1); objects = box.repeat(3, 1) + 20
>>> greedy_match(
...     det_cells=torch.tensor([0, 0, 1]), det_ranks=torch.tensor([1, 0, 2]),
...     det_humans=humans, det_objects=objects,
...     gt_cells=torch.tensor([0]), gt_humans=box, gt_objects=box + 20).tolist()
[False, True, False]
"""

from __future__ import annotations

from typing import Collection, Sequence

import numpy as np
import torch

from hoi_r1.boxes import PixelConvention, as_boxes, box_iou, pair_iou


def greedy_match(
    det_cells: torch.Tensor,
    det_ranks: torch.Tensor,
    det_humans: torch.Tensor,
    det_objects: torch.Tensor,
    gt_cells: torch.Tensor,
    gt_humans: torch.Tensor,
    gt_objects: torch.Tensor,
    threshold: float = 0.5,
    strict: bool = False,
    convention: PixelConvention = "plus_one",
    return_picks: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """True-positive mask ``(N,)`` of ``N`` detections against ``P`` ground-truth pairs.

    Args:
        det_cells: ``(N,)`` cell id (image and class) of each detection.
        det_ranks: ``(N,)`` rank of each detection, lower ranks first; distinct within a cell.
        det_humans: ``(N, 4)`` human boxes, xyxy.
        det_objects: ``(N, 4)`` object boxes, xyxy.
        gt_cells: ``(P,)`` cell id of each ground-truth pair; ground-truth order within a cell is
            the order of these rows.
        gt_humans: ``(P, 4)`` human boxes.
        gt_objects: ``(P, 4)`` object boxes.
        threshold: pair-IoU needed for a match.
        strict: ``pair-IoU > threshold`` instead of ``>=``.
        convention: pixel convention of the IoU.
        return_picks: also return ``(N,)`` the row of the ground-truth pair each detection picked
            when its pair-IoU passed, ``-1`` otherwise (the metric's ``swig`` protocol re-decides
            hits between tied detections from it).
    """
    n = len(det_cells)
    det_idx, gt_idx = cell_candidates(det_cells, gt_cells)
    tp = torch.zeros(n, dtype=torch.bool)
    picks = torch.full((n,), -1, dtype=torch.long)
    if len(det_idx) == 0:
        return (tp, picks) if return_picks else tp
    iou = paired_pair_iou(det_humans[det_idx], det_objects[det_idx], gt_humans[gt_idx], gt_objects[gt_idx], convention)
    # best pair of each detection; first candidate (= first in ground-truth order) on a tie
    best = torch.full((n,), -1.0, dtype=iou.dtype).scatter_reduce(0, det_idx, iou, "amax")
    k = torch.arange(len(iou))
    first = torch.full((n,), len(iou), dtype=torch.long)
    first = first.scatter_reduce(0, det_idx[iou == best[det_idx]], k[iou == best[det_idx]], "amin")
    has = first < len(iou)
    passes = has & ((best > threshold) if strict else (best >= threshold))
    dets = passes.nonzero().squeeze(1)
    chosen = gt_idx[first[dets]]
    # each ground-truth pair goes to its highest-ranked picker
    winner = torch.full((len(gt_cells),), torch.iinfo(torch.long).max, dtype=torch.long)
    winner = winner.scatter_reduce(0, chosen, det_ranks[dets], "amin")
    tp[dets] = det_ranks[dets] == winner[chosen]
    picks[dets] = chosen
    return (tp, picks) if return_picks else tp


def first_free_match(
    det_cells: torch.Tensor,
    det_ranks: torch.Tensor,
    det_humans: torch.Tensor,
    det_objects: torch.Tensor,
    gt_cells: torch.Tensor,
    gt_humans: torch.Tensor,
    gt_objects: torch.Tensor,
    threshold: float = 0.5,
    convention: PixelConvention = "plus_one_eps",
) -> torch.Tensor:
    """True-positive mask ``(N,)`` under the fall-back rule of HOI-R1's ``hico_eval.py``
    (``match_hoi``, GGNet's de/ko evaluation): inside a cell, detections in rank order each take
    the *first remaining* ground-truth pair, in ground-truth order, whose human IoU and object IoU
    are both ``> threshold``; the pair is removed. Arguments as :func:`greedy_match`.

    Exact without a loop over detections: the eligible (detection, pair) candidates are computed
    at once; then one step per rank position ``p`` inside a cell (at most the per-cell detection
    count, 100 with a top-100 cut) lets the ``p``-th detection of *every* cell take its first
    free eligible pair simultaneously — cells share no pairs, so the steps are independent
    across cells and equal the sequential loop.

    >>> box = torch.tensor([[0., 0., 9., 19.]]); near = box + torch.tensor([2., 0., 2., 0.])
    >>> first_free_match(torch.tensor([0, 0]), torch.tensor([0, 1]), torch.cat([near, near + 1]),
    ...                  box.repeat(2, 1), torch.tensor([0, 0]), torch.cat([box, near]), box.repeat(2, 1)).tolist()
    [True, True]
    """
    n = len(det_cells)
    tp = torch.zeros(n, dtype=torch.bool)
    det_idx, gt_idx = cell_candidates(det_cells, gt_cells)
    if len(det_idx) == 0:
        return tp
    iou_h = paired_box_iou(det_humans[det_idx], gt_humans[gt_idx], convention)
    iou_o = paired_box_iou(det_objects[det_idx], gt_objects[gt_idx], convention)
    eligible = (iou_h > threshold) & (iou_o > threshold)
    det_idx, gt_idx = det_idx[eligible], gt_idx[eligible]  # still ground-truth order per detection
    order = torch.sort(det_ranks, stable=True).indices
    sorted_cells = det_cells[order]
    cell_order = torch.sort(sorted_cells, stable=True).indices
    pos = torch.empty(n, dtype=torch.long)
    grouped = order[cell_order]
    starts = torch.searchsorted(det_cells[grouped], det_cells[grouped], side="left")
    pos[grouped] = torch.arange(n) - starts
    taken = torch.zeros(len(gt_cells), dtype=torch.bool)
    cand_pos = pos[det_idx]
    k = torch.arange(len(det_idx))
    for p in torch.unique(cand_pos).tolist():
        at = (cand_pos == p) & ~taken[gt_idx]
        if not bool(at.any()):
            continue
        first = torch.full((n,), len(det_idx), dtype=torch.long).scatter_reduce(0, det_idx[at], k[at], "amin")
        winners = (first < len(det_idx)).nonzero().squeeze(1)
        taken[gt_idx[first[winners]]] = True
        tp[winners] = True
    return tp


def cell_candidates(det_cells: torch.Tensor, gt_cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (detection, ground truth) index pair that shares a cell, ground truths of one
    detection in their row order: two ``(K,)`` tensors."""
    gt_order = torch.sort(gt_cells, stable=True).indices
    sorted_cells = gt_cells[gt_order]
    start = torch.searchsorted(sorted_cells, det_cells, side="left")
    count = torch.searchsorted(sorted_cells, det_cells, side="right") - start
    det_idx = torch.repeat_interleave(torch.arange(len(det_cells)), count)
    run_start = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    offset = torch.arange(len(det_idx)) - run_start
    return det_idx, gt_order[start[det_idx] + offset]


def paired_pair_iou(
    humans_a: torch.Tensor,
    objects_a: torch.Tensor,
    humans_b: torch.Tensor,
    objects_b: torch.Tensor,
    convention: PixelConvention,
) -> torch.Tensor:
    """``pair_iou`` of row ``k`` of ``a`` with row ``k`` of ``b``: ``(K,)``."""
    if len(humans_a) == 0:
        return torch.zeros(0, dtype=humans_a.dtype)
    fn = torch.vmap(lambda ha, oa, hb, ob: pair_iou(ha, oa, hb, ob, convention))
    return fn(humans_a[:, None], objects_a[:, None], humans_b[:, None], objects_b[:, None]).reshape(-1)


def paired_box_iou(a_xyxy: torch.Tensor, b_xyxy: torch.Tensor, convention: PixelConvention) -> torch.Tensor:
    """``box_iou`` of row ``k`` of ``a`` with row ``k`` of ``b``: ``(K,)``."""
    if len(a_xyxy) == 0:
        return torch.zeros(0, dtype=a_xyxy.dtype)
    fn = torch.vmap(lambda a, b: box_iou(a, b, convention))
    return fn(a_xyxy[:, None], b_xyxy[:, None]).reshape(-1)


# ===================================================================== Hungarian (rewards)
HUNGARIAN_TIE_EPSILON = 1e-6
"""Weight of label disagreement in the Hungarian cost: far below any IoU difference that
matters, so labels only decide between (near-)equal geometric costs."""


def hungarian_pairs(
    pred_humans: torch.Tensor,
    pred_objects: torch.Tensor,
    gt_humans: torch.Tensor,
    gt_objects: torch.Tensor,
    pred_object_labels: Sequence[int] | None = None,
    gt_object_labels: Sequence[int] | None = None,
    pred_verbs: Sequence[Collection[int]] | None = None,
    gt_verbs: Sequence[Collection[int]] | None = None,
    tie_epsilon: float = HUNGARIAN_TIE_EPSILON,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-to-one assignment of ``P`` predicted pairs to ``G`` ground-truth pairs (the rewards).

    Minimises, with :func:`scipy.optimize.linear_sum_assignment`, the total cost
    ``1 - IoU_h * IoU_o + tie_epsilon * disagreement`` where ``disagreement`` is
    ``0.5 * (object labels differ) + 0.5 * (1 - Jaccard(verb sets))`` (the terms whose labels are
    not given count 0). IoU is :func:`hoi_r1.boxes.box_iou`, ``continuous`` convention;
    non-finite boxes have IoU 0 with everything. Exactly ``min(P, G)`` pairs are returned, also
    those without overlap: the caller decides what a zero-IoU match is worth.

    Cost: ``O(P * G)`` memory for the IoU matrices and ``O(min(P, G)^2 * max(P, G))`` time for
    the assignment; the answer parser caps ``P`` at 300 elements, for which this takes well under
    a millisecond per image.

    Args:
        pred_humans: ``(P, 4)`` predicted human boxes, xyxy original pixels.
        pred_objects: ``(P, 4)`` predicted object boxes.
        gt_humans: ``(G, 4)`` ground-truth human boxes.
        gt_objects: ``(G, 4)`` ground-truth object boxes.
        pred_object_labels: ``P`` predicted object ids (tie-breaking only).
        gt_object_labels: ``G`` ground-truth object ids.
        pred_verbs: ``P`` collections of predicted verb ids (tie-breaking only).
        gt_verbs: ``G`` collections of ground-truth verb ids.
        tie_epsilon: weight of the label disagreement in the cost.

    Returns:
        ``(pred_idx, gt_idx, iou_h, iou_o)``: ``(K,)`` long indices of the matched pairs sorted by
        ``pred_idx``, and ``(K,)`` float64 IoUs of their human and object boxes, ``K = min(P, G)``.

    >>> h = torch.tensor([[0., 0., 10., 10.], [50., 0., 60., 10.]])
    >>> o = h + 100
    >>> p, g, ih, io = hungarian_pairs(h.flip(0), o.flip(0), h, o)
    >>> p.tolist(), g.tolist(), ih.tolist()
    ([0, 1], [1, 0], [1.0, 1.0])
    >>> # equal geometry: the pair whose object label agrees wins
    >>> hungarian_pairs(h[:1].repeat(2, 1), o[:1].repeat(2, 1), h[:1], o[:1], [3, 7], [7])[0].tolist()
    [1]
    """
    ph, po, gh, go = (as_boxes(b) for b in (pred_humans, pred_objects, gt_humans, gt_objects))
    if len(ph) != len(po) or len(gh) != len(go):
        raise ValueError(
            f"hungarian_pairs: {len(ph)} predicted human boxes but {len(po)} object boxes, "
            f"{len(gh)} ground-truth human boxes but {len(go)} object boxes"
        )
    empty_long = torch.zeros(0, dtype=torch.long)
    if len(ph) == 0 or len(gh) == 0:
        return empty_long, empty_long.clone(), torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    iou_h = box_iou(ph, gh).numpy()  # (P, G)
    iou_o = box_iou(po, go).numpy()
    cost = 1.0 - iou_h * iou_o
    labels = (pred_object_labels, gt_object_labels, pred_verbs, gt_verbs)
    cost += tie_epsilon * label_disagreement(*labels, len(ph), len(gh))
    from scipy.optimize import linear_sum_assignment  # scipy only for the rewards: `hoi-r1 eval` starts without it

    rows, cols = linear_sum_assignment(cost)
    return (
        torch.from_numpy(rows.astype(np.int64)),
        torch.from_numpy(cols.astype(np.int64)),
        torch.from_numpy(iou_h[rows, cols]),
        torch.from_numpy(iou_o[rows, cols]),
    )


def label_disagreement(
    pred_object_labels: Sequence[int] | None,
    gt_object_labels: Sequence[int] | None,
    pred_verbs: Sequence[Collection[int]] | None,
    gt_verbs: Sequence[Collection[int]] | None,
    num_pred: int,
    num_gt: int,
) -> np.ndarray:
    """``(P, G)`` matrix ``0.5 * (objects differ) + 0.5 * (1 - Jaccard(verbs))`` in ``[0, 1]``;
    a term whose labels are not given is 0.

    >>> label_disagreement([1, 2], [1], [{0, 1}, {0}], [{0}], 2, 1).tolist()
    [[0.25], [0.5]]
    """
    out = np.zeros((num_pred, num_gt), dtype=np.float64)
    if pred_object_labels is not None and gt_object_labels is not None:
        a = np.asarray(pred_object_labels, dtype=np.int64).reshape(num_pred, 1)
        b = np.asarray(gt_object_labels, dtype=np.int64).reshape(1, num_gt)
        out += 0.5 * (a != b)
    if pred_verbs is not None and gt_verbs is not None:
        out += 0.5 * (1.0 - verb_jaccard(pred_verbs, gt_verbs))
    return out


def verb_jaccard(pred_verbs: Sequence[Collection[int]], gt_verbs: Sequence[Collection[int]]) -> np.ndarray:
    """``(P, G)`` Jaccard index ``|A ∩ B| / |A ∪ B|`` of verb-id sets (0 when both are empty).

    >>> verb_jaccard([[0, 1], []], [[1, 2], [0, 1]]).tolist()
    [[0.3333333333333333, 1.0], [0.0, 0.0]]
    """
    columns: dict[int, int] = {}
    for verbs in (*pred_verbs, *gt_verbs):
        for v in verbs:
            columns.setdefault(int(v), len(columns))
    a = _multi_hot(pred_verbs, columns)
    b = _multi_hot(gt_verbs, columns)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _multi_hot(sets: Sequence[Collection[int]], columns: dict[int, int]) -> np.ndarray:
    out = np.zeros((len(sets), max(len(columns), 1)), dtype=np.float64)
    for i, verbs in enumerate(sets):
        out[i, [columns[int(v)] for v in verbs]] = 1.0
    return out
