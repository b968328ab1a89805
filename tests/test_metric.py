"""Hand-worked HOI-mAP cases with known AP, and invariants of HOIMeanAveragePrecision."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from hoi_r1.matching import greedy_match
from hoi_r1.hoi_map import hoi_mean_average_precision, targets_from_sample
from hoi_r1.metric import HOIMeanAveragePrecision
from hoi_r1.metric_protocols import PROTOCOLS, get_protocol
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

# classes: 0 ride bicycle, 1 hold bicycle, 2 hold cup
VOCAB = HOIVocabulary.open(["hold", "ride"], ["person", "bicycle", "cup"],
                           [("ride", "bicycle"), ("hold", "bicycle"), ("hold", "cup")])
H = [0.0, 0.0, 9.0, 19.0]
O = [20.0, 0.0, 39.0, 9.0]
ALL = ("hico_official", "qpic", "gen_vlkt", "pocket", "swig", "hoi_r1")
SWIG_VOCAB = replace(VOCAB, frequency=(2, 1, 0))


def shift(box, dx):
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


def target(image_id, pairs):
    """pairs: [(human box, object box, class)]."""
    classes = [k for _, _, k in pairs]
    return {"image_id": image_id, "human_boxes": torch.tensor([p[0] for p in pairs]).reshape(-1, 4),
            "object_boxes": torch.tensor([p[1] for p in pairs]).reshape(-1, 4),
            "object_labels": torch.tensor([VOCAB.interactions[k][1] for k in classes], dtype=torch.long),
            "hoi": torch.tensor(classes, dtype=torch.long)}


def pred(image_id, dets):
    """dets: [(human box, object box, class, score)] or (..., object label) as a 5th item."""
    labels = [d[4] if len(d) > 4 else VOCAB.interactions[d[2]][1] for d in dets]
    return {"image_id": image_id, "human_boxes": torch.tensor([d[0] for d in dets]).reshape(-1, 4),
            "object_boxes": torch.tensor([d[1] for d in dets]).reshape(-1, 4),
            "object_labels": torch.tensor(labels, dtype=torch.long),
            "hoi": torch.tensor([d[2] for d in dets], dtype=torch.long),
            "scores": torch.tensor([d[3] for d in dets], dtype=torch.float64)}


def ap_of(preds, targets, protocol="hico_official", cls=0, vocab=VOCAB, **kw):
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True, **kw)
    return out["per_class_ap"][cls].item()


def eleven(p_at):
    """AP from the 11 p(t) values, summed as the references do."""
    ap = 0.0
    for p in p_at:
        ap = ap + p / 11.0
    return ap


# --------------------------------------------------------------------------- matching rules
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
    from hoi_r1.boxes import pair_iou
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


# --------------------------------------------------------------------------- caps and filters
def test_top_100_per_image():
    far = [200.0, 200.0, 210.0, 210.0]
    dets = [(far, far, 0, 0.9 - i / 1000) for i in range(100)] + [(H, O, 0, 0.1)]
    p, t = [pred(0, dets)], [target(0, [(H, O, 0)])]
    assert ap_of(p, t, "hico_official") == pytest.approx(1 / 101, abs=1e-15)  # 11 x (1/101)/11
    assert ap_of(p, t, "qpic") == 0.0
    assert ap_of(p, t, "gen_vlkt") == 0.0
    # the cut is stable: with tied scores the earlier rows are kept
    tied = [(far, far, 0, 0.5)] * 100 + [(H, O, 0, 0.5)]
    assert ap_of([pred(0, tied)], t, "qpic") == 0.0
    assert ap_of([pred(0, tied[-1:] + tied[:-1])], t, "qpic") == pytest.approx(1.0, abs=1e-12)


def test_top_19999_per_class_in_swig():
    far = [200.0, 200.0, 210.0, 210.0]
    preds = [pred(i, [(far, far, 0, 1.0 - (i * 100 + j) * 1e-6) for j in range(100)]) for i in range(200)]
    preds[-1]["scores"][-1] = 1e-9  # the 20,000th detection of class 0 (lowest score) ...
    preds[-1]["human_boxes"][-1] = torch.tensor(H)
    preds[-1]["object_boxes"][-1] = torch.tensor(O)  # ... is the only true positive
    targets = [target(i, []) for i in range(199)] + [target(199, [(H, O, 0)])]
    assert ap_of(preds, targets, "swig", vocab=SWIG_VOCAB) == 0.0
    assert ap_of(preds, targets, "hico_official") == pytest.approx(1 / 20000, abs=1e-15)


def test_qpic_object_label_rule():
    # class 0 = ride bicycle, but the predicted object label says cup
    p = [pred(0, [(H, O, 0, 0.9, VOCAB.objects.index("cup"))])]
    t = [target(0, [(H, O, 0)])]
    assert ap_of(p, t, "qpic") == 0.0
    assert ap_of(p, t, "gen_vlkt") == pytest.approx(1.0, abs=1e-12)
    assert ap_of(p, t, "hico_official") == pytest.approx(1.0, abs=1e-12)
    # the label makes another valid class: hold + bicycle label -> counted as hold bicycle
    p = [pred(0, [(H, O, 2, 0.9, VOCAB.objects.index("bicycle"))])]
    t = [target(0, [(H, O, 1)])]
    assert ap_of(p, t, "qpic", cls=1) == pytest.approx(1.0, abs=1e-12)
    assert ap_of(p, t, "gen_vlkt", cls=1) == 0.0


def test_pocket_class_comes_from_object_label_and_verb():
    # UPT's test_hico: interactions = conversion[objects, verbs]. "hold" with a bicycle label is
    # class 1 (hold bicycle), whatever the detection's own class (2, hold cup) says
    p = [pred(0, [(H, O, 2, 0.9, VOCAB.objects.index("bicycle"))])]
    t = [target(0, [(H, O, 1)])]
    assert ap_of(p, t, "pocket", cls=1) == pytest.approx(1.0, abs=1e-12)
    assert ap_of(p, t, "hico_official", cls=1) == 0.0


def test_classes_without_test_ground_truth():
    t = [target(0, [(H, O, 0)])]
    p = [pred(0, [(H, O, 0, 0.9), (H, O, 1, 0.8)])]
    qpic = hoi_mean_average_precision(p, t, VOCAB, protocol="qpic", per_class=True)
    official = hoi_mean_average_precision(p, t, VOCAB, protocol="hico_official", per_class=True)
    assert math.isnan(qpic["per_class_ap"][1].item()) and math.isnan(qpic["per_class_ap"][2].item())
    assert qpic["mAP_full"].item() == pytest.approx(1.0, abs=1e-12)  # only class 0 has ground truth
    assert official["per_class_ap"][1].item() == 0.0
    assert official["mAP_full"].item() == pytest.approx(1 / 3, abs=1e-12)
    assert official["mean_max_recall"].item() == pytest.approx(1 / 3, abs=1e-12)


def test_known_object_drops_detections_in_images_without_the_object():
    t = [target(0, [(H, O, 0)]), target(1, [(H, O, 2)])]  # image 1 has a cup, no bicycle
    p = [pred(0, [(H, O, 0, 0.5)]), pred(1, [(H, O, 0, 0.9)])]
    out = hoi_mean_average_precision(p, t, VOCAB, known_object=True, per_class=True)
    assert out["per_class_ap"][0].item() == pytest.approx(eleven([0.5] * 11), abs=1e-15)
    assert out["per_class_ap_known_object"][0].item() == pytest.approx(1.0, abs=1e-12)
    assert {"mAP_full_known_object", "mAP_rare_known_object", "mAP_non_rare_known_object",
            "mean_max_recall_known_object"} <= out.keys()


# --------------------------------------------------------------------------- invariants
def _random_set(seed, n_images=25):
    rng = random.Random(seed)
    targets, preds = [], []
    for i in range(n_images):
        pairs = [([x := rng.randint(0, 50), 0.0, x + rng.randint(5, 30), 30.0],
                  [y := rng.randint(0, 50), 5.0, y + rng.randint(5, 30), 40.0], rng.randrange(3))
                 for _ in range(rng.randrange(4))]
        targets.append(target(i * 7, pairs))
        dets = [(shift(h, rng.choice([0, 1, 4])), o, k if rng.random() < 0.8 else rng.randrange(3),
                 round(rng.random(), 1)) for h, o, k in pairs for _ in range(rng.randrange(1, 3))]
        preds.append(pred(i * 7, dets))
    return preds, targets


@pytest.mark.parametrize("protocol", ALL)
def test_perfect_predictions_give_one(protocol):
    vocab = SWIG_VOCAB if protocol == "swig" else VOCAB
    t = [target(i, [(shift(H, 50 * j), shift(O, 50 * j), (i + j) % 3) for j in range(3)]) for i in range(6)]
    # distinct scores inside an image: gen_vlkt turns tied scores into copies of the first
    p = [pred(x["image_id"], [(h, o, k, 0.9 - 0.01 * j) for j, (h, o, k) in enumerate(zip(
          x["human_boxes"].tolist(), x["object_boxes"].tolist(), x["hoi"].tolist()))]) for x in t]
    out = hoi_mean_average_precision(p, t, vocab, protocol=protocol)
    assert out["mAP_full"].item() == pytest.approx(1.0, abs=1e-12)
    assert out["mean_max_recall"].item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("protocol", ALL)
def test_image_order_and_batching_do_not_matter(protocol):
    vocab = SWIG_VOCAB if protocol == "swig" else VOCAB
    preds, targets = _random_set(1)  # scores rounded to 0.1: many ties
    whole = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True)
    assert 0 < whole["mAP_full"].item() < 1
    order = list(range(len(preds)))
    random.Random(2).shuffle(order)
    metric = HOIMeanAveragePrecision(vocab, protocol=protocol, per_class=True)
    cuts = [0, 1, 2, 9, 17, len(order)]
    for a, b in zip(cuts[:-1], cuts[1:]):
        metric.update([preds[i] for i in order[a:b]], [targets[i] for i in order[a:b]])
    batched = metric.compute()
    for k in whole:
        torch.testing.assert_close(batched[k], whole[k], equal_nan=True, rtol=0, atol=0)


def test_duplicate_images_are_dropped():
    preds, targets = _random_set(3)
    whole = hoi_mean_average_precision(preds, targets, VOCAB, per_class=True)
    metric = HOIMeanAveragePrecision(VOCAB, per_class=True)
    metric.update(preds, targets)
    metric.update(preds[:3], targets[:3])  # DistributedSampler-style padding
    for k, v in metric.compute().items():
        torch.testing.assert_close(v, whole[k], equal_nan=True, rtol=0, atol=0)


def test_targets_from_sample():
    s = HOISample(image_id=4, file_name="a.jpg", image_path="a.jpg", width=64, height=48,
                  human_boxes=[[1, 2, 20, 40]], object_boxes=[[25, 30, 40, 45], [0, 0, 5, 5]],
                  object_labels=[1, 2], pairs=[[0, 0, 1, 0], [0, 1, 0, 2]])
    t = targets_from_sample(s)
    assert t["image_id"] == 4
    assert t["hoi"].tolist() == [0, 2] and t["object_labels"].tolist() == [1, 2]
    assert t["object_boxes"].tolist() == [[25, 30, 40, 45], [0, 0, 5, 5]]
    assert t["human_boxes"].tolist() == [[1, 2, 20, 40]] * 2


def test_bad_input_is_reported():
    t = [target(0, [(H, O, 0)])]
    with pytest.raises(ValueError, match="image_id"):
        hoi_mean_average_precision([pred(1, [])], t, VOCAB)
    with pytest.raises(ValueError, match="class ids"):
        hoi_mean_average_precision([pred(0, [(H, O, 7, 0.5, 1)])], t, VOCAB)
    with pytest.raises(ValueError, match="finite"):
        hoi_mean_average_precision([pred(0, [(H, O, 0, float("nan"))])], t, VOCAB)
    bad = pred(0, [(H, O, 0, 0.5)])
    bad["scores"] = torch.tensor([0.5, 0.4])
    with pytest.raises(ValueError, match=r"preds\[0\].*'scores'"):
        hoi_mean_average_precision([bad], t, VOCAB)
    wrong = target(0, [(H, O, 0)])
    wrong["object_labels"] = torch.tensor([2])
    with pytest.raises(ValueError, match="object label"):
        hoi_mean_average_precision([pred(0, [])], [wrong], VOCAB)
    with pytest.raises(ValueError, match="protocol"):
        HOIMeanAveragePrecision(VOCAB, protocol="voc")
    with pytest.raises(ValueError, match="triplet_nms"):
        HOIMeanAveragePrecision(VOCAB, protocol="qpic", triplet_nms=True)
    with pytest.raises(ValueError, match="frequency"):
        HOIMeanAveragePrecision(VOCAB, protocol="swig")
    with pytest.raises(KeyError, match="zero-shot"):
        HOIMeanAveragePrecision(VOCAB, zero_shot="rare_first")


def test_hico_det_vocabulary_reports_every_group():
    vocab = HOIVocabulary.hico_det()
    metric = HOIMeanAveragePrecision(vocab, zero_shot="rare_first", known_object=True)
    metric.update([{"image_id": 0, "human_boxes": torch.zeros(0, 4), "object_boxes": torch.zeros(0, 4),
                    "object_labels": torch.zeros(0, dtype=torch.long), "hoi": torch.zeros(0, dtype=torch.long),
                    "scores": torch.zeros(0)}],
                  [{"image_id": 0, "human_boxes": torch.tensor([H]), "object_boxes": torch.tensor([O]),
                    "object_labels": torch.tensor([vocab.interactions[16][1]]), "hoi": torch.tensor([16])}])
    out = metric.compute()
    assert {"mAP_full", "mAP_rare", "mAP_non_rare", "mean_max_recall", "mAP_unseen", "mAP_seen"} <= out.keys()
    assert all(v.item() == 0.0 for v in out.values())
    assert HOIMeanAveragePrecision.higher_is_better and not HOIMeanAveragePrecision.full_state_update
