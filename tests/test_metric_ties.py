"""Tied scores in the ``pocket`` and ``swig`` protocols worked by hand: pocket ranks ties with torch's
unstable ``argsort(descending=True)`` and counts classes without ground truth as 0; THID ranks
the last tied detection first (``np.argsort(scores)[::-1]``) and matches in that ranking order.
Each case also checks the loop reference of :mod:`helpers.metric_reference`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.metric_cases import ONE_CLASS, SWIG_ONE_CLASS, eleven, one_class_ap, one_class_case
from helpers.metric_reference import reference
from helpers.pocket_reference import pocket_flow_reference

from hoi_r1.hoi_map import hoi_mean_average_precision
from hoi_r1.vocab import HOIVocabulary


def test_pocket_ranks_ties_with_torchs_unstable_argsort():
    # one pair, n tied detections on it: argmax gives the pair to the first detection, the rest
    # are duplicates (FP). DetectionAPMeter ranks with argsort(descending=True): up to 16 ties
    # stay in order (TP first, AP 1); 17 ties are reordered, the TP lands at position `pos`
    # (9 with the torch 2.14 CPU sort): precision 1 / (pos + 1) at recall 1 for every threshold
    preds, targets = one_class_case([[0.5] * 16])
    assert one_class_ap(preds, targets, "pocket") == pytest.approx(1.0, abs=1e-12)
    pos = int((torch.argsort(torch.full((17,), 0.5, dtype=torch.float64), descending=True) == 0).nonzero())
    preds, targets = one_class_case([[0.5] * 17])
    ap = one_class_ap(preds, targets, "pocket")
    assert ap == eleven([1.0 / (pos + 1)] * 11)
    assert ap == reference(preds, targets, ONE_CLASS, "pocket")[0]
    if pos == 0:
        pytest.skip("this torch build keeps 17 ties in order: the rule changes nothing here")
    assert ap < 0.5  # a stable ranking would give 1.0


def test_pocket_counts_classes_without_ground_truth_as_zero():
    # compute_ap_for_each: a class with detections but no ground truth has recall div(tp, 0) = 0
    # and precision 0, so AP 0; and the mean runs over every class
    vocab = HOIVocabulary.open(["ride", "hold"], ["person", "bicycle"], [("ride", "bicycle"), ("hold", "bicycle")])
    preds, targets = one_class_case([[0.8, 0.9]])
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
    preds, targets = one_class_case([[0.5], [0.5]])
    first = int(np.argsort(np.array([0.5, 0.5]))[::-1][0])
    ap = one_class_ap(preds, targets, "swig", SWIG_ONE_CLASS)
    assert ap == (eleven([0.5] * 11) if first == 1 else pytest.approx(1.0, abs=1e-12))
    assert ap == reference(preds, targets, SWIG_ONE_CLASS, "swig")[0]
    if first == 0:
        pytest.skip("this numpy build reverses the order of two ties: nothing to tell apart")
    assert ap == pytest.approx(0.5, abs=1e-15)


def test_swig_matches_in_its_ranking_order():
    # one image, two tied detections on its one pair. calc_ap matches while it walks its ranking,
    # so whichever it ranks first takes the pair: TP first, AP 1. Matching in input order would
    # make detection 0 the TP, and the reversed ranking would put the FP (detection 1) first:
    # AP 0.5
    preds, targets = one_class_case([[0.5, 0.5]])
    assert one_class_ap(preds, targets, "swig", SWIG_ONE_CLASS) == pytest.approx(1.0, abs=1e-12)
    assert reference(preds, targets, SWIG_ONE_CLASS, "swig")[0] == pytest.approx(1.0, abs=1e-12)
    # three tied detections, one off the pair: THID ranks [2, 1, 0]; 2 is off (FP), 1 takes the
    # pair, 0 is a duplicate: precision 1/2 at recall 1
    preds, targets = one_class_case([[0.5, 0.5, 0.5]])
    preds[0]["human_boxes"][2] = torch.tensor([50.0, 50.0, 60.0, 60.0], dtype=torch.float64)
    if list(np.argsort(np.array([0.5] * 3))[::-1]) != [2, 1, 0]:
        pytest.skip("this numpy build orders three ties differently")
    assert one_class_ap(preds, targets, "swig", SWIG_ONE_CLASS) == pytest.approx(eleven([0.5] * 11), abs=1e-15)
    assert reference(preds, targets, SWIG_ONE_CLASS, "swig")[0] == pytest.approx(eleven([0.5] * 11), abs=1e-15)
