"""Parity of HOIMeanAveragePrecision with per-detection Python-loop references, one per protocol.

The references below are written from EVAL_SPEC.md in the shape of the published evaluators
(a loop over classes, over ranked detections, over ground-truth pairs), sharing no code with
the metric. On random data with distinct scores every per-class AP must agree to 1e-9.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import numpy as np
import pytest
import torch

from hoi_r1.metric import HOIMeanAveragePrecision, hoi_mean_average_precision
from hoi_r1.vocab import HOIVocabulary

THRESHOLDS = {
    "hico_official": [k * 0.1 if k <= 5 else 1 - (10 - k) * 0.1 for k in range(11)],  # MATLAB 0:0.1:1
    "qpic": list(np.arange(0.0, 1.1, 0.1)),
    "gen_vlkt": list(np.arange(0.0, 1.1, 0.1)),
    "pocket": torch.linspace(0, 1, 11, dtype=torch.float64).tolist(),
    "swig": [i / 10.0 for i in range(11)],
}


# --------------------------------------------------------------------------- references
def iou(a, b, plus_one):
    e = 1.0 if plus_one else 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0]) + e
    ih = min(a[3], b[3]) - max(a[1], b[1]) + e
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0] + e) * (a[3] - a[1] + e) + (b[2] - b[0] + e) * (b[3] - b[1] + e) - inter)


def nms_loop(rows, plus_one=True, thr=0.7, alpha=1.0, beta=0.5):
    """GEN-VLKT-style greedy triplet NMS of one image: rows are dicts; per class."""
    kept = []
    for k in sorted({r["hoi"] for r in rows}):
        order = sorted([r for r in rows if r["hoi"] == k], key=lambda r: -r["score"])
        while order:
            top = order.pop(0)
            kept.append(top)
            order = [r for r in order
                     if iou(top["h"], r["h"], plus_one) ** alpha * iou(top["o"], r["o"], plus_one) ** beta <= thr]
    return kept


def reference(preds, targets, vocab, protocol, nms=False, known_object=False):
    """Per-class AP (list, NaN for classes outside the averages) with per-detection loops."""
    plus_one = protocol in ("hico_official", "qpic", "gen_vlkt")
    strict = protocol == "pocket"
    table = {pair: k for k, pair in enumerate(vocab.interactions)}
    gt = defaultdict(list)  # (class, image) -> boxes
    npos = defaultdict(int)
    objects_in_image = defaultdict(set)
    for t in targets:
        for h, o, k in zip(t["human_boxes"].tolist(), t["object_boxes"].tolist(), t["hoi"].tolist()):
            gt[k, t["image_id"]].append((h, o))
            npos[k] += 1
            objects_in_image[t["image_id"]].add(vocab.interactions[k][1])
    dets = defaultdict(list)  # class -> [(score, image, h, o)]
    for p, t in zip(preds, targets):
        image = t["image_id"]
        rows = [dict(h=h, o=o, obj=ol, hoi=k, score=s) for h, o, ol, k, s in zip(
            p["human_boxes"].tolist(), p["object_boxes"].tolist(), p["object_labels"].tolist(),
            p["hoi"].tolist(), p["scores"].tolist())]
        if protocol == "pocket" and len(t["hoi"]) == 0:
            continue
        if protocol == "qpic":
            for r in rows:
                k = table.get((vocab.interactions[r["hoi"]][0], r["obj"]))
                r["hoi"], r["score"] = (k, r["score"]) if k is not None else (None, r["score"] * 0)
        if protocol in ("qpic", "gen_vlkt"):
            rows = sorted(rows, key=lambda r: -r["score"])[:100]
            rows = [r for r in rows if r["hoi"] is not None]
        if nms:
            rows = nms_loop(rows)
        for r in rows:
            if known_object and vocab.interactions[r["hoi"]][1] not in objects_in_image[image]:
                continue
            dets[r["hoi"]].append((r["score"], image, r["h"], r["o"]))
    aps = []
    for k in range(vocab.num_classes):
        if protocol == "swig" and k in vocab.unevaluated:
            aps.append(math.nan)
            continue
        if protocol in ("qpic", "gen_vlkt") and npos[k] == 0:
            aps.append(math.nan)
            continue
        ranked = sorted(dets[k], key=lambda d: -d[0])
        if protocol == "swig":
            ranked = ranked[:19999]
        used, tp, fp, prec, rec = set(), 0, 0, [], []
        for score, image, h, o in ranked:
            best, j_best = -math.inf, None
            for j, (gh, go) in enumerate(gt.get((k, image), [])):
                v = min(iou(h, gh, plus_one), iou(o, go, plus_one))
                if v > best:
                    best, j_best = v, j
            hit = j_best is not None and (best > 0.5 if strict else best >= 0.5)
            if hit and (image, j_best) not in used:
                used.add((image, j_best))
                tp += 1
            else:
                fp += 1
            prec.append(tp / (tp + fp))
            rec.append(tp / npos[k] if npos[k] else math.nan)
        ap = 0.0
        for t in THRESHOLDS[protocol]:
            ps = [p for p, r in zip(prec, rec) if r >= t]
            ap = ap + (max(ps) if ps else 0.0) / 11.0
        aps.append(ap)
    return aps


# --------------------------------------------------------------------------- random data
def small_vocab(swig=False):
    verbs = ["hold", "ride", "eat", "look", "carry"]
    objects = ["person", "bicycle", "apple", "cup"]
    pairs = [(v, o) for o in objects for v in verbs if (v, o) not in {("eat", "bicycle"), ("ride", "cup")}]
    v = HOIVocabulary.open(verbs, objects, pairs)
    rng = random.Random(5)
    rare = frozenset(rng.sample(range(v.num_classes), 5))
    from dataclasses import replace
    v = replace(v, rare=rare, zero_shot={"mine": tuple(sorted(rng.sample(range(v.num_classes), 4)))})
    if swig:
        freq = tuple(rng.choice([0, 1, 2]) for _ in range(v.num_classes))
        v = replace(v, frequency=freq, unevaluated=frozenset(rng.sample(range(v.num_classes), 3)))
    return v


def random_data(vocab, seed, num_images=30, max_dets=130, integer_boxes=True):
    g = torch.Generator().manual_seed(seed)
    c = vocab.num_classes
    objs = torch.tensor([o for _, o in vocab.interactions])

    def boxes(n):
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 60
        wh = 5 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 40
        b = torch.cat([xy, xy + wh], 1)
        return b.round() if integer_boxes else b

    preds, targets = [], []
    scores = torch.randperm(num_images * max_dets, generator=g).double() / (num_images * max_dets) + 1e-3
    used = 0
    for i in range(num_images):
        p = int(torch.randint(0, 5, (1,), generator=g))
        hoi = torch.randint(0, c, (p,), generator=g)
        h, o = boxes(p), boxes(p)
        if p > 1:  # shared boxes between pairs
            h[1] = h[0]
        targets.append({"image_id": 100 + i, "human_boxes": h, "object_boxes": o, "object_labels": objs[hoi],
                        "hoi": hoi})
        n = int(torch.randint(0, max_dets, (1,), generator=g))
        dk = torch.randint(0, c, (n,), generator=g)
        dh, do = boxes(n), boxes(n)
        if p:
            src = torch.randint(0, p, (n,), generator=g)
            near = torch.rand(n, generator=g) < 0.6
            dk = torch.where(near & (torch.rand(n, generator=g) < 0.7), hoi[src], dk)
            jitter = lambda b: (b + torch.randn(b.shape, generator=g, dtype=torch.float64) * 3)  # noqa: E731
            dh = torch.where(near[:, None], jitter(h[src]), dh)
            do = torch.where(near[:, None], jitter(o[src]), do)
            if integer_boxes:
                dh, do = dh.round(), do.round()
        labels = objs[dk].clone()
        flip = torch.rand(n, generator=g) < 0.05  # a few object labels that disagree with the class
        labels[flip] = torch.randint(0, len(vocab.objects), (int(flip.sum()),), generator=g)
        preds.append({"image_id": 100 + i, "human_boxes": dh, "object_boxes": do, "object_labels": labels,
                      "hoi": dk, "scores": scores[used : used + n]})
        used += n
    return preds, targets


def assert_close_ap(got, ref):
    got = got.tolist()
    assert len(got) == len(ref)
    for k, (a, b) in enumerate(zip(got, ref)):
        if math.isnan(b):
            assert math.isnan(a), f"class {k}: {a} vs excluded"
        else:
            assert abs(a - b) <= 1e-9, f"class {k}: {a} vs {b}"


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("protocol", ["hico_official", "qpic", "gen_vlkt", "pocket", "swig"])
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


@pytest.mark.parametrize("protocol", ["hico_official", "qpic"])
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
def test_benchmark_smoke(protocol):
    from benchmarks.metric_benchmark import run

    figures = run(num_images=60, num_pairs=700, per_image=20, protocol=protocol, batch_size=8)
    assert figures["max_abs_delta_ap"] == 0.0
    assert figures["detections"] == 1200 and 0 < figures["mAP_full"] < 1
