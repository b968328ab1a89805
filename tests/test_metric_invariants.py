"""Invariants of HOIMeanAveragePrecision: perfect predictions give 1, image order and batching do not
matter, padded duplicate images are dropped; the targets of a sample, bad input reported, every
group of the HICO-DET vocabulary, and the torchmetrics contract."""

from __future__ import annotations

import random

import pytest
import torch
from helpers.metric_cases import ALL, H, O, SWIG_VOCAB, VOCAB, pred, shift, target

from hoi_r1.hoi_map import hoi_mean_average_precision, targets_from_sample
from hoi_r1.metric import HOIMeanAveragePrecision
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary


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
