"""Parity of HOIMeanAveragePrecision with per-detection Python-loop references, one per protocol,
on random data (:mod:`helpers.metric_data`): every per-class AP must agree to 1e-9.

The references share no code with the metric: :mod:`helpers.metric_reference` (the
``VOCevaldet_bboxpair.m`` loop of ``hico_official``, and the dispatch to the others),
:mod:`helpers.qpic_reference` (``qpic``, ``gen_vlkt``), :mod:`helpers.hoi_r1_reference`,
:mod:`helpers.pocket_reference`, :mod:`helpers.thid_reference` (``swig``), each following its
evaluator's control flow. The rules worked by hand, case by case: ``test_metric_hoi_r1_iou.py``
and ``test_metric_ties.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers.metric_data import assert_close_ap, random_data, small_vocab
from helpers.metric_reference import reference

from hoi_r1.hoi_map import hoi_mean_average_precision
from hoi_r1.metric import HOIMeanAveragePrecision


@pytest.mark.parametrize("protocol", ["hico_official", "qpic", "gen_vlkt", "pocket", "swig", "hoi_r1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_ap_matches_loop_reference(protocol, seed):
    vocab = small_vocab(swig=protocol == "swig")
    preds, targets = random_data(vocab, seed, integer_boxes=seed != 2)
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True)
    ref = reference(preds, targets, vocab, protocol)
    assert_close_ap(out["per_class_ap"], ref)
    assert any(a > 0 for a in ref if not math.isnan(a))  # the data exercise true positives
    counted = [a for a in ref if not math.isnan(a)]
    assert out["mAP_full"].item() == pytest.approx(sum(counted) / len(counted), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_gen_vlkt_triplet_nms_matches_loop_reference(seed):
    vocab = small_vocab()
    preds, targets = random_data(vocab, seed)
    out = hoi_mean_average_precision(preds, targets, vocab, protocol="gen_vlkt", per_class=True, triplet_nms=True)
    assert_close_ap(out["per_class_ap"], reference(preds, targets, vocab, "gen_vlkt", nms=True))
    plain = hoi_mean_average_precision(preds, targets, vocab, protocol="gen_vlkt", per_class=True)
    assert not torch.allclose(plain["per_class_ap"].nan_to_num(), out["per_class_ap"].nan_to_num())


@pytest.mark.parametrize("protocol", ["hico_official", "qpic", "hoi_r1"])
def test_known_object_matches_loop_reference(protocol):
    vocab = small_vocab()
    preds, targets = random_data(vocab, 4)
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True, known_object=True)
    assert_close_ap(out["per_class_ap_known_object"], reference(preds, targets, vocab, protocol, known_object=True))
    assert_close_ap(out["per_class_ap"], reference(preds, targets, vocab, protocol))


def test_zero_shot_and_rare_groups_match_reference_means():
    vocab = small_vocab()
    preds, targets = random_data(vocab, 6)
    out = hoi_mean_average_precision(preds, targets, vocab, zero_shot="mine")
    ref = reference(preds, targets, vocab, "hico_official")
    unseen = set(vocab.zero_shot["mine"])
    mean = lambda ids: sum(ref[k] for k in ids) / len(ids)  # noqa: E731
    every = range(vocab.num_classes)
    assert out["mAP_unseen"].item() == pytest.approx(mean(sorted(unseen)), abs=1e-12)
    assert out["mAP_seen"].item() == pytest.approx(mean([k for k in every if k not in unseen]), abs=1e-12)
    assert out["mAP_rare"].item() == pytest.approx(mean(sorted(vocab.rare)), abs=1e-12)
    assert out["mAP_non_rare"].item() == pytest.approx(mean([k for k in every if k not in vocab.rare]), abs=1e-12)


def test_swig_groups_use_frequency_over_evaluated_classes():
    vocab = small_vocab(swig=True)
    preds, targets = random_data(vocab, 7)
    out = hoi_mean_average_precision(preds, targets, vocab, protocol="swig")
    ref = reference(preds, targets, vocab, "swig")
    for key, f in [("mAP_non_rare", 2), ("mAP_rare", 1), ("mAP_unseen", 0)]:
        ids = [k for k in range(vocab.num_classes) if vocab.frequency[k] == f and k not in vocab.unevaluated]
        assert out[key].item() == pytest.approx(sum(ref[k] for k in ids) / len(ids), abs=1e-12)
    assert set(out) == {"mAP_full", "mAP_non_rare", "mAP_rare", "mAP_unseen", "mean_max_recall"}


def test_class_form_equals_functional_form():
    vocab = small_vocab()
    preds, targets = random_data(vocab, 8)
    metric = HOIMeanAveragePrecision(vocab, protocol="qpic", per_class=True)
    metric.update(preds, targets)
    a, b = metric.compute(), hoi_mean_average_precision(preds, targets, vocab, protocol="qpic", per_class=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("protocol", ["hico_official", "pocket"])
def test_metric_benchmark_equals_the_per_detection_loop(protocol):
    from benchmarks.metric_benchmark import run

    figures = run(num_images=60, num_pairs=700, per_image=20, protocol=protocol, batch_size=8)
    assert figures["max_abs_delta_ap"] == 0.0
    assert figures["detections"] == 1200 and 0 < figures["mAP_full"] < 1


@pytest.mark.parametrize("protocol", ["hico_official", "qpic", "gen_vlkt", "hoi_r1", "pocket", "swig"])
def test_tied_scores_rank_as_the_reference_does(protocol):
    # scores on a grid of 8 values: classes with dozens of tied detections. QPIC and GEN-VLKT
    # rank them with np.argsort(-score) (unstable), MATLAB with its stable sort, pocket with
    # torch's argsort(descending=True), THID with np.argsort(score)[::-1] and matches in that
    # order; GEN-VLKT also turns tied scores of one image into copies of the first.
    vocab = small_vocab(swig=protocol == "swig")
    preds, targets = random_data(vocab, 9, num_images=40)
    for p in preds:
        p["scores"] = (p["scores"] * 8).ceil() / 8
    out = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True)
    assert_close_ap(out["per_class_ap"], reference(preds, targets, vocab, protocol))


@pytest.mark.parametrize("seed", [0, 1])
def test_hoi_r1_fall_back_on_crowded_images_matches_loop_reference(seed):
    # each image with ground truth gets two more pairs of its first pair's class, 2 and 4 pixels
    # apart: jittered detections then pass several pairs, where the fall-back rule and the
    # best-pair rule part ways
    vocab = small_vocab()
    preds, targets = random_data(vocab, seed, num_images=40)
    for t in targets:
        if len(t["hoi"]):
            extra_h = torch.stack([t["human_boxes"][0] + d for d in (2.0, 4.0)])
            t["human_boxes"] = torch.cat([t["human_boxes"], extra_h])
            t["object_boxes"] = torch.cat([t["object_boxes"], t["object_boxes"][:1].repeat(2, 1)])
            t["object_labels"] = torch.cat([t["object_labels"], t["object_labels"][:1].repeat(2)])
            t["hoi"] = torch.cat([t["hoi"], t["hoi"][:1].repeat(2)])
    out = hoi_mean_average_precision(preds, targets, vocab, protocol="hoi_r1", per_class=True)
    assert_close_ap(out["per_class_ap"], reference(preds, targets, vocab, "hoi_r1"))
