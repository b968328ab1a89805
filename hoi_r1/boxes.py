"""Boxes: validity, area, IoU and pair-IoU in both pixel conventions.

Every box inside the program is ``xyxy``, float, in pixels of the *original* image.
Two pixel conventions exist in the HOI literature:

* ``continuous`` — a box spans ``x2 - x1`` pixels (UPT/pocket, SWIG-HOI, the rewards);
* ``plus_one`` — a box spans ``x2 - x1 + 1`` pixels, and two boxes overlap only when both
  intersection sides ``min(x2) - max(x1) + 1`` are positive (the official HICO-DET MATLAB
  evaluation, ``VOCevaldet_bboxpair.m``; GEN-VLKT's triplet NMS, ``pairwise_nms``);
* ``plus_one_positive_overlap`` — the same ``+ 1`` areas and intersection sides, but two boxes
  overlap only when ``max(x1) < min(x2)`` and ``max(y1) < min(y2)``: boxes that only touch
  (or overlap by less than nothing) have IoU 0 (QPIC ``datasets/hico_eval.py``
  ``HICOEvaluator.compute_IOU``, copied unchanged by GEN-VLKT's ``hico_eval_triplet.py``);
* ``plus_one_eps`` — as ``plus_one_positive_overlap``, but a box with ``x2 <= x1`` or
  ``y2 <= y1`` has area 0 and ``IoU = intersection / (union + 1e-6)`` (HOI-R1's
  ``hico_eval.py``, ``compute_area`` / ``compute_iou``, from GGNet's de/ko evaluation).

Pair-IoU of two human-object pairs is ``min(IoU(humans), IoU(objects))``: the quantity the
HOI-mAP metric thresholds and the rewards match on. The metric and the rewards both call
:func:`pair_iou`, so the training signal uses the same geometry as the reported number.

>>> import torch
>>> a = torch.tensor([[0., 0., 10., 10.]]); b = torch.tensor([[5., 0., 15., 10.]])
>>> round(box_iou(a, b).item(), 4)
0.3333
>>> round(box_iou(a, b, "plus_one").item(), 4)
0.375
>>> touch = torch.tensor([[10., 0., 20., 10.]])  # shares the line x = 10 with a
>>> round(box_iou(a, touch, "plus_one").item(), 4), box_iou(a, touch, "plus_one_positive_overlap").item()
(0.0476, 0.0)
"""

from __future__ import annotations

from typing import Literal

import torch

PixelConvention = Literal["continuous", "plus_one", "plus_one_positive_overlap", "plus_one_eps"]
"""How many pixels a box ``[x1, y1, x2, y2]`` spans (``x2 - x1`` or ``x2 - x1 + 1``) and when
two boxes count as overlapping (see the module docstring)."""


def as_boxes(boxes: object, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Return ``boxes`` as an ``(N, 4)`` tensor (an empty list gives ``(0, 4)``)."""
    t = torch.as_tensor(boxes, dtype=dtype)
    if t.numel() == 0:
        return t.reshape(0, 4)
    if t.ndim != 2 or t.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), found {tuple(t.shape)}")
    return t


def box_area(boxes_xyxy: torch.Tensor, convention: PixelConvention = "continuous") -> torch.Tensor:
    """Area of each box, ``(N,)``; degenerate boxes have area 0."""
    extra = 0.0 if convention == "continuous" else 1.0
    if convention == "plus_one_eps":  # compute_area: a box without positive extent has area 0
        proper = (boxes_xyxy[:, 2] > boxes_xyxy[:, 0]) & (boxes_xyxy[:, 3] > boxes_xyxy[:, 1])
        w = boxes_xyxy[:, 2] - boxes_xyxy[:, 0] + extra
        h = boxes_xyxy[:, 3] - boxes_xyxy[:, 1] + extra
        return torch.where(proper, w * h, torch.zeros_like(w))
    w = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0] + extra).clamp(min=0)
    h = (boxes_xyxy[:, 3] - boxes_xyxy[:, 1] + extra).clamp(min=0)
    return w * h


def box_iou(
    a_xyxy: torch.Tensor, b_xyxy: torch.Tensor, convention: PixelConvention = "continuous"
) -> torch.Tensor:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): ``(N, M)``.

    With ``plus_one`` the computation is the official HICO-DET one: intersection sides
    ``min(x2) - max(x1) + 1``; no overlap unless both sides are positive. With
    ``plus_one_positive_overlap`` (QPIC) the sides are the same, but no overlap unless
    ``min(x2) - max(x1) > 0`` and ``min(y2) - max(y1) > 0``.
    Non-finite boxes give IoU 0 rather than NaN.
    """
    extra = 0.0 if convention == "continuous" else 1.0
    iw = torch.minimum(a_xyxy[:, None, 2], b_xyxy[None, :, 2]) - torch.maximum(
        a_xyxy[:, None, 0], b_xyxy[None, :, 0]
    ) + extra
    ih = torch.minimum(a_xyxy[:, None, 3], b_xyxy[None, :, 3]) - torch.maximum(
        a_xyxy[:, None, 1], b_xyxy[None, :, 1]
    ) + extra
    if convention in ("plus_one_positive_overlap", "plus_one_eps"):
        overlap = (iw > extra) & (ih > extra)  # raw sides min(x2) - max(x1) > 0
    else:
        overlap = (iw > 0) & (ih > 0)
    inter = torch.where(overlap, iw * ih, torch.zeros_like(iw))
    union = box_area(a_xyxy, convention)[:, None] + box_area(b_xyxy, convention)[None, :] - inter
    if convention == "plus_one_eps":
        return torch.nan_to_num(inter / (union + 1e-6), nan=0.0, posinf=0.0, neginf=0.0)
    iou = torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))
    return torch.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0)


def pair_iou(
    humans_a: torch.Tensor,
    objects_a: torch.Tensor,
    humans_b: torch.Tensor,
    objects_b: torch.Tensor,
    convention: PixelConvention = "continuous",
) -> torch.Tensor:
    """Pair-IoU ``min(IoU_h, IoU_o)`` of every pair in ``a`` (N) with every pair in ``b`` (M).

    >>> h = torch.tensor([[0., 0., 10., 10.]]); o = torch.tensor([[20., 0., 30., 10.]])
    >>> pair_iou(h, o, h, o).tolist()
    [[1.0]]
    """
    return torch.minimum(box_iou(humans_a, humans_b, convention), box_iou(objects_a, objects_b, convention))


def valid_boxes(
    boxes_xyxy: torch.Tensor, width: float | None = None, height: float | None = None, tolerance: float = 0.0
) -> torch.Tensor:
    """Mask ``(N,)`` of boxes that are finite, have ``x1 < x2`` and ``y1 < y2``, and — when the
    image size is given — lie inside the image up to ``tolerance`` pixels."""
    ok = torch.isfinite(boxes_xyxy).all(dim=1)
    ok &= (boxes_xyxy[:, 2] > boxes_xyxy[:, 0]) & (boxes_xyxy[:, 3] > boxes_xyxy[:, 1])
    if width is not None and height is not None:
        ok &= (boxes_xyxy[:, 0] >= -tolerance) & (boxes_xyxy[:, 1] >= -tolerance)
        ok &= (boxes_xyxy[:, 2] <= width + tolerance) & (boxes_xyxy[:, 3] <= height + tolerance)
    return ok


def scale_boxes(boxes_xyxy: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Multiply x coordinates by ``sx`` and y coordinates by ``sy`` (frame changes)."""
    factors = torch.tensor([sx, sy, sx, sy], dtype=boxes_xyxy.dtype)
    return boxes_xyxy * factors


def xywh_to_xyxy(boxes_xywh: torch.Tensor) -> torch.Tensor:
    """``[x, y, w, h]`` → ``[x1, y1, x2, y2]`` (continuous convention)."""
    out = boxes_xywh.clone()
    out[:, 2:] = boxes_xywh[:, :2] + boxes_xywh[:, 2:]
    return out
