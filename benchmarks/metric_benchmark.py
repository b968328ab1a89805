"""HOI-mAP benchmark: the vectorised metric against a plain per-detection Python loop.

Builds a HICO-DET-sized test set (9,658 images, 33,405 ground-truth pairs over the 600 classes,
112 images without any pair, 100 predictions per image: boxes jittered from the image's ground
truth with its class or another class of the same object, plus random pairs), then times
``update`` (in batches, as a validation loop calls it) + ``compute`` of
:class:`hoi_r1.metric.HOIMeanAveragePrecision` and, in the same run, a straightforward loop
implementation of the same protocol, written here after ``VOCevaldet_bboxpair.m``. Prints both times, the
speed ratio and the largest per-class ``|ΔAP|``.

Run: ``python -m benchmarks.metric_benchmark [--images N --pairs P --per-image K --protocol NAME]``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from hoi_r1.metric import HOIMeanAveragePrecision
from hoi_r1.metric_protocols import get_protocol
from hoi_r1.vocab import HOIVocabulary


def make_test_set(
    vocab: HOIVocabulary,
    num_images: int = 9658,
    num_pairs: int = 33405,
    per_image: int = 100,
    empty_images: int = 112,
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """Random predictions and targets in the metric's dict layout (every class has ground truth
    when ``num_pairs >= num_classes``)."""
    rng = np.random.default_rng(seed)
    c = vocab.num_classes
    class_objects = np.array([o for _, o in vocab.interactions])
    by_object = defaultdict(list)
    for k, o in enumerate(class_objects):
        by_object[int(o)].append(k)
    with_gt = rng.permutation(num_images)[: num_images - empty_images]
    counts = np.zeros(num_images, dtype=np.int64)
    counts[with_gt] = 1 + np.bincount(rng.integers(0, len(with_gt), num_pairs - len(with_gt)), minlength=len(with_gt))
    gt_classes = rng.permutation(np.concatenate([np.arange(c), rng.integers(0, c, max(num_pairs - c, 0))]))[:num_pairs]
    preds, targets, start = [], [], 0
    for image in range(num_images):
        n = int(counts[image])
        classes = gt_classes[start : start + n]
        start += n
        humans, objects = _random_boxes(rng, n), _random_boxes(rng, n)
        if n > 1:  # several verbs on one human-object pair, as in HICO-DET
            same = rng.random(n) < 0.4
            same[0] = False
            src = np.maximum(np.arange(n) - 1, 0)
            humans[same], objects[same] = humans[src[same]], objects[src[same]]
        targets.append({
            "image_id": image, "human_boxes": torch.from_numpy(humans), "object_boxes": torch.from_numpy(objects),
            "object_labels": torch.from_numpy(class_objects[classes]),
            "hoi": torch.from_numpy(classes.astype(np.int64)),
        })
        derived = int(per_image * 0.6) if n else 0
        src = rng.integers(0, max(n, 1), derived)
        p_classes = rng.integers(0, c, per_image)
        p_h, p_o = _random_boxes(rng, per_image), _random_boxes(rng, per_image)
        if derived:
            own = rng.random(derived) < 0.7
            other = np.array([rng.choice(by_object[int(class_objects[k])]) for k in classes[src]])
            p_classes[:derived] = np.where(own, classes[src], other)
            p_h[:derived] = _jitter(rng, humans[src])
            p_o[:derived] = _jitter(rng, objects[src])
        preds.append({
            "image_id": image, "human_boxes": torch.from_numpy(p_h), "object_boxes": torch.from_numpy(p_o),
            "object_labels": torch.from_numpy(class_objects[p_classes]), "hoi": torch.from_numpy(p_classes),
            "scores": torch.from_numpy(rng.random(per_image)),
        })
    return preds, targets


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 500, (n, 2))
    wh = rng.uniform(20, 300, (n, 2))
    return np.round(np.concatenate([xy, xy + wh], 1))


def _jitter(rng: np.random.Generator, boxes: np.ndarray) -> np.ndarray:
    size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, 1)
    return np.round(boxes + rng.normal(0, 0.12, boxes.shape) * size)


# --------------------------------------------------------------------------- loop reference
def loop_average_precision(preds: list[dict], targets: list[dict], num_classes: int, protocol: str) -> np.ndarray:
    """Per-class 11-point AP with one Python iteration per detection and ground-truth pair
    (protocols without per-image filters: ``hico_official``, ``pocket``, ``swig`` minus its cap)."""
    proto = get_protocol(protocol)
    extra = 1.0 if proto.convention == "plus_one" else 0.0
    gt = defaultdict(list)  # (class, image) -> [(human, object)]
    npos = np.zeros(num_classes, dtype=np.int64)
    images_with_gt = set()
    for t in targets:
        for h, o, k in zip(t["human_boxes"].tolist(), t["object_boxes"].tolist(), t["hoi"].tolist()):
            gt[k, t["image_id"]].append((h, o))
            npos[k] += 1
            images_with_gt.add(t["image_id"])
    dets = defaultdict(list)  # class -> [(score, image, human, object)]
    for p in preds:
        if proto.skip_images_without_gt and p["image_id"] not in images_with_gt:
            continue
        columns = (p["human_boxes"].tolist(), p["object_boxes"].tolist(), p["hoi"].tolist(), p["scores"].tolist())
        for h, o, k, s in zip(*columns):
            dets[k].append((s, p["image_id"], h, o))
    ap = np.zeros(num_classes)
    for k in range(num_classes):
        ranked = sorted(dets[k], key=lambda d: (-d[0], d[1]))
        used, tp, fp = set(), 0, 0
        precision, recall = [], []
        for score, image, h, o in ranked:
            best, best_j = -1.0, -1
            for j, (gh, go) in enumerate(gt.get((k, image), ())):
                v = min(_iou(h, gh, extra), _iou(o, go, extra))
                if v > best:
                    best, best_j = v, j
            ok = best > 0.5 if proto.strict else best >= 0.5
            if best_j >= 0 and ok and (image, best_j) not in used:
                used.add((image, best_j))
                tp += 1
            else:
                fp += 1
            precision.append(tp / (tp + fp))
            recall.append(tp / npos[k] if npos[k] else 0.0)
        total = 0.0
        for t in proto.recall_thresholds:
            total = total + max((p for p, r in zip(precision, recall) if r >= t), default=0.0) / 11.0
        ap[k] = total
    return ap


def _iou(a: list[float], b: list[float], extra: float) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + extra
    ih = min(a[3], b[3]) - max(a[1], b[1]) + extra
    if iw <= 0 or ih <= 0:
        return 0.0
    area_a = (a[2] - a[0] + extra) * (a[3] - a[1] + extra)
    area_b = (b[2] - b[0] + extra) * (b[3] - b[1] + extra)
    return iw * ih / (area_a + area_b - iw * ih)


# --------------------------------------------------------------------------- run
def run(num_images: int, num_pairs: int, per_image: int, protocol: str, batch_size: int, loop: bool = True) -> dict:
    """Time the metric (and the loop reference); returns the figures."""
    vocab = HOIVocabulary.hico_det()
    empty = min(112, num_images // 10)
    preds, targets = make_test_set(vocab, num_images, num_pairs, per_image, empty_images=empty)
    metric = HOIMeanAveragePrecision(vocab, protocol=protocol, per_class=True)
    start = time.perf_counter()
    for i in range(0, num_images, batch_size):
        metric.update(preds[i : i + batch_size], targets[i : i + batch_size])
    result = metric.compute()
    metric_s = time.perf_counter() - start
    figures = {"images": num_images, "pairs": num_pairs, "detections": num_images * per_image,
               "protocol": protocol, "batch_size": batch_size, "metric_s": metric_s,
               "mAP_full": float(result["mAP_full"])}
    if loop:
        start = time.perf_counter()
        ref = loop_average_precision(preds, targets, vocab.num_classes, protocol)
        figures["loop_s"] = time.perf_counter() - start
        figures["speedup"] = figures["loop_s"] / metric_s
        figures["max_abs_delta_ap"] = float(np.max(np.abs(result["per_class_ap"].numpy() - ref)))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9658)
    parser.add_argument("--pairs", type=int, default=33405)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64, help="images per update call")
    parser.add_argument("--protocol", default="hico_official", choices=["hico_official", "pocket"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-loop", action="store_true", help="skip the Python loop reference")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    f = run(args.images, args.pairs, args.per_image, args.protocol, args.batch_size, loop=not args.no_loop)
    print(f"HOI-mAP ({f['protocol']}): {f['images']} images, {f['pairs']} GT pairs, {f['detections']} detections, "
          f"update batches of {f['batch_size']}, {torch.get_num_threads()} torch thread(s)")
    print(f"  vectorised metric (update + compute): {f['metric_s']:.3f} s   mAP_full = {f['mAP_full']:.6f}")
    if "loop_s" in f:
        print(f"  per-detection Python loop:            {f['loop_s']:.3f} s")
        print(f"  speed ratio: {f['speedup']:.1f}x   max per-class |dAP|: {f['max_abs_delta_ap']:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
