"""Hand-worked HOI-mAP cases of the protocols' caps and filters: top 100 per image, top 19,999 per
class, the class from (verb, predicted object), classes without test ground truth, Known-Object
(cases built with :mod:`helpers.metric_cases`)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.metric_cases import H, O, SWIG_VOCAB, VOCAB, ap_of, eleven, pred, target

from hoi_r1.hoi_map import hoi_mean_average_precision


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
