"""Random HOI-mAP data for the reference parity tests: a small vocabulary (rare classes, a zero-shot
split and, for SWIG-HOI, frequencies and unevaluated classes), random images whose detections
sit near, on or away from their ground-truth pairs, and the per-class comparison to 1e-9."""

from __future__ import annotations

import math
import random

import torch

from hoi_r1.vocab import HOIVocabulary


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
