"""Hungarian matching of predicted pairs to ground-truth pairs (the rewards' matcher)."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoi_r1.boxes import box_iou
from hoi_r1.matching import hungarian_pairs, label_disagreement, verb_jaccard

SETTINGS = settings(max_examples=60, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _boxes(rows):
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


H = _boxes([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
O = H + 100


@pytest.mark.parametrize("num_pred, num_gt", [(0, 0), (0, 3), (3, 0)])
def test_empty_sides_give_no_match(num_pred, num_gt):
    p, g, ih, io = hungarian_pairs(H[:num_pred], O[:num_pred], H[:num_gt], O[:num_gt])
    assert p.shape == g.shape == ih.shape == io.shape == (0,)
    assert p.dtype == g.dtype == torch.long and ih.dtype == torch.float64


def test_permuted_predictions_are_recovered():
    perm = [2, 0, 1]
    p, g, ih, io = hungarian_pairs(H[perm], O[perm], H, O)
    assert p.tolist() == [0, 1, 2] and g.tolist() == perm
    assert ih.tolist() == io.tolist() == [1.0, 1.0, 1.0]


def test_hungarian_beats_greedy_where_greedy_fails():
    # All object boxes are equal (IoU_o = 1), so the gain is IoU_h. Pred 0 overlaps gt 0 best
    # (0.67 vs 0.43) but pred 1 overlaps only gt 0 (0.43): greedy gives gt 0 to pred 0 and
    # leaves pred 1 with nothing (total 0.67); the optimum swaps them (total 0.86).
    gt_h = _boxes([[0, 0, 10, 10], [6, 0, 16, 10]])
    pred_h = _boxes([[2, 0, 12, 10], [-4, 0, 6, 10]])
    same = _boxes([[0, 0, 5, 5]] * 2)
    iou = box_iou(pred_h, gt_h)
    assert iou[0, 0] > iou[0, 1] > 0 and iou[1, 1] == 0 < iou[1, 0]
    p, g, ih, io = hungarian_pairs(pred_h, same, gt_h, same)
    assert g.tolist() == [1, 0] and io.tolist() == [1.0, 1.0]
    assert ih.sum() == pytest.approx(6 / 7) and ih.sum() > iou[0, 0]


def test_object_label_breaks_a_geometric_tie():
    two = H[:1].repeat(2, 1)
    p, g, _, _ = hungarian_pairs(two, two + 100, H[:1], O[:1], [5, 7], [7])
    assert p.tolist() == [1] and g.tolist() == [0]
    p, _, _, _ = hungarian_pairs(two, two + 100, H[:1], O[:1], [7, 5], [7])
    assert p.tolist() == [0]


def test_verb_sets_break_a_geometric_tie():
    two = H[:1].repeat(2, 1)
    p, _, _, _ = hungarian_pairs(two, two + 100, H[:1], O[:1], [1, 1], [1], [[0], [0, 2]], [[0, 2]])
    assert p.tolist() == [1]


def test_labels_never_override_a_real_geometric_difference():
    # pred 0 has the right label but a worse box: IoU decides.
    gt = H[:1]
    preds = _boxes([[0, 0, 10, 9], [0, 0, 10, 10]])
    p, _, _, _ = hungarian_pairs(preds, preds + 100, gt, gt + 100, [7, 5], [7])
    assert p.tolist() == [1]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_boxes_have_zero_iou(bad):
    pred = _boxes([[bad, 0, 10, 10], [0, 0, 10, 10]])
    p, g, ih, io = hungarian_pairs(pred, pred + 100, H[:2], O[:2])
    assert torch.isfinite(ih).all() and torch.isfinite(io).all()
    assert dict(zip(p.tolist(), ih.tolist()))[0] == 0.0
    assert dict(zip(p.tolist(), g.tolist()))[1] == 0  # the finite box still finds its pair


def test_repeated_boxes_match_one_to_one():
    pred = H[:1].repeat(50, 1)
    p, g, ih, _ = hungarian_pairs(pred, pred + 100, H, O)
    assert len(p) == 3 and sorted(g.tolist()) == [0, 1, 2] and len(set(p.tolist())) == 3
    assert sorted(ih.tolist()) == [0.0, 0.0, 1.0]


def test_thousands_of_pairs_are_fast():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (2000, 2))
    pred = torch.from_numpy(np.concatenate([xy, xy + rng.uniform(5, 80, (2000, 2))], 1))
    start = time.perf_counter()
    p, g, _, _ = hungarian_pairs(pred, pred, pred[:40], pred[:40])
    elapsed = time.perf_counter() - start
    assert len(p) == 40 and sorted(g.tolist()) == list(range(40))
    assert (p == g).all()  # each ground-truth pair is its own prediction
    assert elapsed < 2.0, elapsed


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 predicted human boxes but 3 object boxes"):
        hungarian_pairs(H[:2], O, H, O)


def test_label_disagreement_and_jaccard_values():
    assert verb_jaccard([[0, 1], [2]], [[1], [2], []]).tolist() == [[0.5, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert verb_jaccard([], [[1]]).shape == (0, 1)
    d = label_disagreement([3, 4], [3], [[0], [0, 1]], [[0]], 2, 1)
    assert d.tolist() == [[0.0], [0.5 + 0.25]]
    assert label_disagreement(None, None, None, None, 2, 3).tolist() == [[0.0] * 3] * 2


_box = st.tuples(*[st.integers(0, 30)] * 2, *[st.integers(1, 15)] * 2).map(
    lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@SETTINGS
@given(st.lists(st.tuples(_box, _box), max_size=5), st.lists(st.tuples(_box, _box), max_size=5))
def test_total_cost_is_the_brute_force_minimum(preds, gts):
    ph, po = _boxes([a for a, _ in preds]), _boxes([b for _, b in preds])
    gh, go = _boxes([a for a, _ in gts]), _boxes([b for _, b in gts])
    p, g, ih, io = hungarian_pairs(ph, po, gh, go)
    k = min(len(preds), len(gts))
    assert len(p) == k and len(set(p.tolist())) == k and len(set(g.tolist())) == k
    assert torch.allclose(ih, box_iou(ph, gh)[p, g]) and torch.allclose(io, box_iou(po, go)[p, g])
    if k == 0:
        return
    gain = (box_iou(ph, gh) * box_iou(po, go)).numpy()
    if len(preds) <= len(gts):
        best = max(sum(gain[i, c] for i, c in enumerate(cols)) for cols in itertools.permutations(range(len(gts)), k))
    else:
        best = max(sum(gain[r, j] for j, r in enumerate(rows)) for rows in itertools.permutations(range(len(preds)), k))
    assert float((ih * io).sum()) == pytest.approx(best, abs=1e-4)  # ties may differ by label epsilon only
