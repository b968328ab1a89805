"""The ``hoi_r1`` protocol's IoU rules worked by hand: ``+1`` areas, ``inter / (union + 1e-6)``, a
zero-area box never matches, and the threshold is strictly above one half (HOI-R1's
``hico_eval.py`` ``compute_iou`` / ``compute_area`` / ``match_hoi``)."""

from __future__ import annotations

import pytest
import torch
from helpers.hoi_r1_reference import hoi_r1_area, hoi_r1_iou
from helpers.metric_cases import GT_H, one_pair_ap

from hoi_r1.boxes import box_iou


def test_hoi_r1_iou_uses_plus_one_areas():
    # gt [0, 3] x [0, 3], det [1, 4] x [0, 3]: continuous IoU 6 / 12 = 0.5 (not > 0.5);
    # +1 sides: intersection 3 x 4 = 12, areas 16, union 20 -> 0.6 > 0.5: a match
    gt, det = [0.0, 0.0, 3.0, 3.0], [1.0, 0.0, 4.0, 3.0]
    assert hoi_r1_iou(gt, det) == pytest.approx(12 / (20 + 1e-6), abs=1e-15)
    assert one_pair_ap("hoi_r1", gt, det, obj=gt) == pytest.approx(1.0, abs=1e-12)
    assert one_pair_ap("pocket", gt, det, obj=gt) == 0.0  # continuous pixels, > 0.5: no match


def test_hoi_r1_iou_divides_by_union_plus_1e_minus_6():
    # det human [0, 19 - 5e-8] x [0, 9] against gt [0, 9] x [0, 9]: intersection 100, union
    # 200 - 5e-7. inter / union = 0.50000000125 > 0.5, but inter / (union + 1e-6)
    # = 0.49999999875: HOI-R1 does not match it (QPIC's >= on inter / union does)
    det = [0.0, 0.0, 19.0 - 5e-8, 9.0]
    assert hoi_r1_iou(GT_H, det) < 0.5 < 100 / (200 - 5e-7)
    assert one_pair_ap("hoi_r1", GT_H, det) == 0.0
    assert one_pair_ap("qpic", GT_H, det) == pytest.approx(1.0, abs=1e-12)


def test_hoi_r1_zero_area_box_never_matches():
    # a ground-truth human box of zero width, and a detection on exactly the same box:
    # compute_area gives 0 (x2 <= x1) and the intersection has no positive extent, so IoU 0;
    # with the official +1 rule the 1-pixel-wide boxes overlap fully (IoU 1)
    flat = [5.0, 0.0, 5.0, 9.0]
    assert hoi_r1_area(flat) == 0.0 and hoi_r1_iou(flat, flat) == 0.0
    assert one_pair_ap("hoi_r1", flat, flat) == 0.0
    assert one_pair_ap("hico_official", flat, flat) == pytest.approx(1.0, abs=1e-12)
    inverted = [5.0, 0.0, 4.0, 9.0]  # x2 < x1
    assert one_pair_ap("hoi_r1", inverted, inverted) == 0.0


def test_hoi_r1_threshold_is_strictly_above_one_half():
    # det human [0, 9] x [0, 18.9999999]: intersection 100, union 200 - 1e-6, so
    # inter / (union + 1e-6) is exactly 0.5 in float64: > 0.5 fails, >= 0.5 would pass
    det = [0.0, 0.0, 9.0, 18.9999999]
    as64 = lambda b: torch.tensor([b], dtype=torch.float64)  # noqa: E731
    assert box_iou(as64(GT_H), as64(det), "plus_one_eps").item() == 0.5
    assert one_pair_ap("hoi_r1", GT_H, det) == 0.0
    nudged = [0.0, 0.0, 9.0, 18.9999998]  # a hair more overlap: 0.5000000025 -> a match
    assert one_pair_ap("hoi_r1", GT_H, nudged) == pytest.approx(1.0, abs=1e-12)
