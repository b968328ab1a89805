"""Matching detected human-object pairs to ground-truth pairs.

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

import torch

from hoi_r1.boxes import PixelConvention, box_iou, pair_iou


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
) -> torch.Tensor:
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
    """
    n = len(det_cells)
    det_idx, gt_idx = cell_candidates(det_cells, gt_cells)
    tp = torch.zeros(n, dtype=torch.bool)
    if len(det_idx) == 0:
        return tp
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
