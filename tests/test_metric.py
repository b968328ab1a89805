"""Hand-worked HOI-mAP cases with known AP: the matching rules of each protocol (duplicates, no
fall-back, ties, images without ground truth, touching boxes, IoU exactly one half) and the
recall-threshold floats (cases built with :mod:`helpers.metric_cases`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.metric_cases import H, O, SWIG_VOCAB, VOCAB, ap_of, eleven, pred, shift, target

from hoi_r1.boxes import pair_iou
from hoi_r1.hoi_map import hoi_mean_average_precision
from hoi_r1.matching import greedy_match
from hoi_r1.metric_protocols import PROTOCOLS, get_protocol


def test_duplicate_detection_is_a_false_positive():
    t = [target(0, [(H, O, 0), (shift(H, 100), shift(O, 100), 0)])]
    p = [pred(0, [(H, O, 0, 0.9), (H, O, 0, 0.8), (shift(H, 100), shift(O, 100), 0, 0.7)])]
    # rec .5 .5 1, prec 1 .5 2/3
    assert ap_of(p, t) == pytest.approx(eleven([1.0] * 6 + [2 / 3] * 5), abs=1e-15)


def test_no_fall_back_to_the_second_best_pair():
    # two ground-truth pairs side by side; both detections are closest to pair A but also overlap B >= 0.5
    a_h, a_o = [0.0, 0.0, 19.0, 19.0], [40.0, 0.0, 59.0, 19.0]
    b_h, b_o = [3.0, 0.0, 22.0, 19.0], [43.0, 0.0, 62.0, 19.0]
    t = [target(0, [(a_h, a_o, 0), (b_h, b_o, 0)])]
    p = [pred(0, [(a_h, a_o, 0, 0.9), (shift(a_h, 1), shift(a_o, 1), 0, 0.8)])]
    proto = get_protocol("hico_official")
    second = pair_iou(torch.tensor([shift(a_h, 1)]), torch.tensor([shift(a_o, 1)]), torch.tensor([b_h]),
                      torch.tensor([b_o]), proto.convention).item()
    assert second >= 0.5  # a fall-back would make it a true positive
    # rec .5 .5 -> AP = 6/11 * 1 (recall never passes 0.6)
    assert ap_of(p, t) == pytest.approx(eleven([1.0] * 6 + [0.0] * 5), abs=1e-15)


def test_best_pair_already_taken_by_a_higher_ranked_later_detection():
    # the lower-scoring detection comes first in the input; ranking, not input order, decides
    t = [target(0, [(H, O, 0)])]
    tp = greedy_match(torch.tensor([0, 0]), torch.tensor([1, 0]), torch.tensor([H, H]), torch.tensor([O, O]),
                      torch.tensor([0]), torch.tensor([H]), torch.tensor([O]))
    assert tp.tolist() == [False, True]
    p = [pred(0, [(H, O, 0, 0.5), (H, O, 0, 0.9)])]
    assert ap_of(p, t) == pytest.approx(1.0, abs=1e-12)


def test_ties_first_detection_and_first_ground_truth_win():
    # equal scores: the first detection in input order is the true positive
    tp = greedy_match(torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([H, H]), torch.tensor([O, O]),
                      torch.tensor([0]), torch.tensor([H]), torch.tensor([O]))
    assert tp.tolist() == [True, False]
    # equal pair-IoU to two identical ground-truth pairs: the first pair is chosen, so the second
    # detection (also choosing the first pair) is a false positive although pair 2 is free
    t = [target(0, [(H, O, 0), (H, O, 0)])]
    p = [pred(0, [(H, O, 0, 0.9), (H, O, 0, 0.8)])]
    assert ap_of(p, t) == pytest.approx(eleven([1.0] * 6 + [0.0] * 5), abs=1e-15)
    # tied scores across images rank the lower image id first, whatever the input order
    t2 = [target(5, [(H, O, 0)]), target(3, [])]
    p2 = [pred(5, [(H, O, 0, 0.5)]), pred(3, [(H, O, 0, 0.5)])]
    # image 3 (FP) ranks first: prec 0 then 1/2 at rec 1
    assert ap_of(p2, t2) == pytest.approx(eleven([0.5] * 11), abs=1e-15)


def test_images_without_ground_truth():
    t = [target(0, [(H, O, 0)]), target(1, [])]
    p = [pred(0, [(H, O, 0, 0.5)]), pred(1, [(H, O, 0, 0.9)])]
    # hico_official: the FP of image 1 ranks first -> prec 1/2 at rec 1; pocket skips image 1
    assert ap_of(p, t, "hico_official") == pytest.approx(eleven([0.5] * 11), abs=1e-15)
    assert ap_of(p, t, "pocket") == pytest.approx(eleven([1.0] * 11), abs=1e-15)
    assert ap_of(p, t, "swig", vocab=SWIG_VOCAB) == pytest.approx(eleven([0.5] * 11), abs=1e-15)


def test_qpic_ignores_images_without_ground_truth_gen_vlkt_does_not():
    # QPIC's evaluate builds a list key for an image without ground truth, and a list is never
    # "in" its list of tuples: the detection of image 1 is skipped. GEN-VLKT keys by HOI id and
    # counts it as a false positive.
    t = [target(0, [(H, O, 0)]), target(1, [])]
    p = [pred(0, [(H, O, 0, 0.5)]), pred(1, [(H, O, 0, 0.9)])]
    assert ap_of(p, t, "qpic") == pytest.approx(eleven([1.0] * 11), abs=1e-15)
    assert ap_of(p, t, "gen_vlkt") == pytest.approx(eleven([0.5] * 11), abs=1e-15)


def test_touching_boxes_do_not_overlap_in_qpic_and_gen_vlkt():
    gt_h = [0.0, 0.0, 0.5, 10.0]  # +1: 1.5 x 11 = 16.5
    det_h = [0.5, 0.0, 1.0, 10.0]  # touches gt_h at x = 0.5; +1 intersection 1 x 11
    # +1 IoU = 11 / (16.5 + 16.5 - 11) = 0.5: the official rule matches ...
    t, p = [target(0, [(gt_h, O, 0)])], [pred(0, [(det_h, O, 0, 0.9)])]
    assert ap_of(p, t, "hico_official") == pytest.approx(1.0, abs=1e-12)
    # ... QPIC's compute_IOU returns 0 unless max(x1) < min(x2): a false positive
    assert ap_of(p, t, "qpic") == 0.0
    assert ap_of(p, t, "gen_vlkt") == 0.0


def test_gen_vlkt_tied_scores_become_copies_of_the_first():
    second = (shift(H, 50), shift(O, 50), 0)
    t = [target(0, [(H, O, 0), second])]
    p = [pred(0, [(H, O, 0, 0.5), (*second[:2], 0, 0.5)])]
    # hico_official / qpic: both detections are true positives
    assert ap_of(p, t, "hico_official") == pytest.approx(1.0, abs=1e-12)
    assert ap_of(p, t, "qpic") == pytest.approx(1.0, abs=1e-12)
    # gen_vlkt looks each top-k score up with np.where(scores == s)[0][0]: two copies of the
    # first detection, TP then FP -> precision 1 up to recall 1/2, nothing above
    assert ap_of(p, t, "gen_vlkt") == pytest.approx(eleven([1.0] * 6 + [0.0] * 5), abs=1e-15)


def test_hoi_r1_falls_back_to_the_first_free_pair():
    # pairs A (H) and B (H shifted by 2) of class 0; det 1 is B's box exactly, det 2 is H
    # shifted by 3 and 1 pixel down. +1 human IoUs: det 1 vs A 160/240, vs B 1 (passes both);
    # det 2 vs A 133/267 (fails), vs B 171/229 (passes).
    b = shift(H, 2)
    d2 = [3.0, 1.0, 12.0, 20.0]
    t = [target(0, [(H, O, 0), (b, O, 0)])]
    p = [pred(0, [(b, O, 0, 0.9), (d2, O, 0, 0.8)])]
    # best pair, no fall-back: det 1 takes B, det 2's best (B) is taken -> FP; recall 1/2
    assert ap_of(p, t, "hico_official") == pytest.approx(eleven([1.0] * 6 + [0.0] * 5), abs=1e-15)
    # HOI-R1's match_hoi: det 1 takes the first pair passing both IoUs (A), det 2 then takes B
    assert ap_of(p, t, "hoi_r1") == pytest.approx(eleven([1.0] * 11), abs=1e-15)


def test_hoi_r1_drops_scores_below_one_thousandth():
    t = [target(0, [(H, O, 0)])]
    p = [pred(0, [(H, O, 0, 0.0009)])]
    assert ap_of(p, t, "hoi_r1") == 0.0
    assert ap_of(p, t, "hico_official") == pytest.approx(1.0, abs=1e-12)
    p = [pred(0, [(H, O, 0, 0.001)])]
    assert ap_of(p, t, "hoi_r1") == pytest.approx(1.0, abs=1e-12)


def test_hoi_r1_classes_without_ground_truth():
    # class 0 has ground truth; class 1 none but a detection (NaN recall -> left out); class 2
    # neither (compute_pr returns AP 0 before any NaN -> counted)
    t = [target(0, [(H, O, 0)])]
    p = [pred(0, [(H, O, 0, 0.9), (shift(H, 100), shift(O, 100), 1, 0.8)])]
    out = hoi_mean_average_precision(p, t, VOCAB, protocol="hoi_r1", per_class=True)
    ap = out["per_class_ap"].tolist()
    assert ap[0] == pytest.approx(1.0, abs=1e-12) and math.isnan(ap[1]) and ap[2] == 0.0
    assert out["mAP_full"].item() == pytest.approx((eleven([1.0] * 11) + 0.0) / 2, abs=1e-15)


def test_iou_exactly_one_half_and_the_plus_one_convention():
    gt_h = [0.0, 0.0, 9.0, 9.0]  # +1: 10 x 10
    det_h = [0.0, 0.0, 9.0, 19.0]  # +1: 10 x 20 -> IoU exactly 0.5 (+1); continuous 81/171
    t = [target(0, [(gt_h, O, 0)])]
    p = [pred(0, [(det_h, O, 0, 0.9)])]
    assert ap_of(p, t, "hico_official") == pytest.approx(1.0, abs=1e-12)  # >= 0.5
    assert ap_of(p, t, "swig", vocab=SWIG_VOCAB) == 0.0  # continuous 0.47 < 0.5
    # continuous IoU exactly 0.5: swig (>=) matches, pocket (> 0.5) does not
    gt_c, det_c = [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0]
    t, p = [target(0, [(gt_c, O, 0)])], [pred(0, [(det_c, O, 0, 0.9)])]
    assert ap_of(p, t, "swig", vocab=SWIG_VOCAB) == pytest.approx(1.0, abs=1e-12)
    assert ap_of(p, t, "pocket") == 0.0
    # +1 turns a continuous 16/36 into 25/50
    t, p = [target(0, [([0.0, 0.0, 4.0, 4.0], O, 0)])], [pred(0, [([0.0, 0.0, 4.0, 9.0], O, 0, 0.9)])]
    assert ap_of(p, t, "qpic") == pytest.approx(1.0, abs=1e-12)
    assert ap_of(p, t, "pocket") == 0.0


def _sequence_case(hits, npos=10):
    """One image per detection, ranked in list order; ``hits`` marks true positives. Images of
    false positives hold a pair of another class (so that ``pocket`` does not skip them)."""
    preds, targets = [], []
    for i, hit in enumerate(hits):
        targets.append(target(i, [(H, O, 0)] if hit else [(H, O, 2)]))
        preds.append(pred(i, [(H, O, 0, 1.0 - i / 100)]))
    for j in range(npos - sum(hits)):  # missed pairs
        targets.append(target(1000 + j, [(H, O, 0)]))
        preds.append(pred(1000 + j, []))
    return preds, targets


def test_recall_exactly_on_point_three():
    # T T T F F F T, npos 10: recall 0.3 (= 3/10) at precision 1, then 0.4 at 4/7
    p, t = _sequence_case([1, 1, 1, 0, 0, 0, 1])
    exact = eleven([1.0] * 4 + [4 / 7] + [0.0] * 6)  # i/10: 0.3 >= 0.3
    above = eleven([1.0] * 3 + [4 / 7] * 2 + [0.0] * 6)  # 0.30000000000000004 > 3/10
    assert ap_of(p, t, "swig", vocab=SWIG_VOCAB) == pytest.approx(exact, abs=1e-15)
    for protocol in ("hico_official", "qpic", "gen_vlkt", "pocket"):
        assert ap_of(p, t, protocol) == pytest.approx(above, abs=1e-15), protocol
    assert exact != pytest.approx(above)


def test_recall_exactly_on_point_six_and_point_seven():
    # 6 TP, 4 FP, 1 TP, npos 10: recall 0.6 at precision 1, recall 0.7 at 7/11
    p, t = _sequence_case([1] * 6 + [0] * 4 + [1])
    exact = eleven([1.0] * 7 + [7 / 11] + [0.0] * 3)  # 0.6 and 0.7 exact (MATLAB, linspace, i/10)
    numpy_floats = eleven([1.0] * 6 + [7 / 11] + [0.0] * 4)  # arange: 0.6000000000000001, 0.7000000000000001
    for protocol in ("hico_official", "pocket"):
        assert ap_of(p, t, protocol) == pytest.approx(exact, abs=1e-15), protocol
    assert ap_of(p, t, "swig", vocab=SWIG_VOCAB) == pytest.approx(exact, abs=1e-15)
    for protocol in ("qpic", "gen_vlkt"):
        assert ap_of(p, t, protocol) == pytest.approx(numpy_floats, abs=1e-15), protocol


def test_threshold_floats_are_the_references():
    assert list(PROTOCOLS["qpic"].recall_thresholds) == np.arange(0.0, 1.1, 0.1).tolist()
    assert list(PROTOCOLS["pocket"].recall_thresholds) == torch.linspace(0, 1, 11, dtype=torch.float64).tolist()
    assert list(PROTOCOLS["hico_official"].recall_thresholds) == list(PROTOCOLS["pocket"].recall_thresholds)
    assert list(PROTOCOLS["swig"].recall_thresholds) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
