"""HOI-mAP broken down by the geometry of the pairs: human-object distance and object area.

Two breakdowns (``hoi-r1 eval --breakdown``, and a picture with ``--plots``):

* **distance** — the distance between the centres of the human and the object box, in units of
  the human box's size ``sqrt(w * h)`` (scale-free, so no image size is needed); bins
  :data:`DISTANCE_BINS`: ``[0, 0.5)``, ``[0.5, 1)``, ``[1, 2)``, ``[2, inf)``;
* **area** — the object box's area in pixels, COCO's small / medium / large
  (:data:`AREA_BINS`: ``< 32²``, ``< 96²``, the rest).

Boxes are measured continuously (``w = x2 - x1``). Each bin is evaluated as a test set of its
own, with the same protocol: its ground-truth pairs, and the detections whose *own* boxes fall
in the bin, taken after the protocol's per-image steps over all of an image's detections (so a
top-100 cut sees the whole image, not the bin). Per bin:

* ``mAP``: mean AP over the classes with ground truth in the bin (a class absent from a bin
  does not pull it down; classes the protocol leaves out stay out);
* ``recall``: the share of the bin's ground-truth pairs that some kept detection matched;
* ``num_gt_pairs``, ``num_detections``, ``num_classes``.

>>> import torch
>>> from hoi_r1.vocab import HOIVocabulary
>>> vocab = HOIVocabulary.open(["ride"], ["person", "bicycle"], [("ride", "bicycle")])
>>> h, near, far = [0., 0., 10., 10.], [0., 0., 10., 10.], [100., 0., 110., 10.]
>>> target = {"image_id": 0, "human_boxes": torch.tensor([h, h]), "object_boxes": torch.tensor([near, far]),
...           "object_labels": torch.tensor([1, 1]), "hoi": torch.tensor([0, 0])}
>>> pred = {"image_id": 0, "human_boxes": torch.tensor([h]), "object_boxes": torch.tensor([near]),
...         "object_labels": torch.tensor([1]), "hoi": torch.tensor([0]), "scores": torch.tensor([.9])}
>>> rows = breakdown([pred], [target], vocab)["distance"]
>>> [(r["bin"], r["num_gt_pairs"], r["mAP"], r["recall"]) for r in rows if r["num_gt_pairs"]]
[('0-0.5', 1, 1.0000000000000002, 1.0), ('2+', 1, 0.0, 0.0)]
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from hoi_r1.detection_filters import FlatDetections, apply_image_filters
from hoi_r1.hoi_map import STATE_NAMES, match_images, one_cpu_thread, summarise_matches, unseen_ids
from hoi_r1.metric_protocols import TripletNMS, get_protocol
from hoi_r1.vocab import HOIVocabulary

DISTANCE_BINS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, math.inf)
"""Edges of the distance bins, in human-box sizes (``[low, high)``)."""
AREA_BINS: tuple[float, ...] = (0.0, 32.0**2, 96.0**2, math.inf)
"""Edges of the object-area bins in square pixels (COCO small / medium / large)."""
BREAKDOWNS: dict[str, tuple[float, ...]] = {"distance": DISTANCE_BINS, "area": AREA_BINS}


def pair_distance(humans: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
    """``(N,)`` distance between box centres in human-box sizes ``sqrt(w_h * h_h)`` (``inf``
    for a human box without area).

    >>> pair_distance(torch.tensor([[0., 0., 10., 40.]]), torch.tensor([[30., 0., 50., 40.]])).tolist()
    [1.75]
    """
    centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
    size = ((humans[:, 2] - humans[:, 0]).clamp(min=0) * (humans[:, 3] - humans[:, 1]).clamp(min=0)).sqrt()
    gap = torch.linalg.vector_norm(centre(humans) - centre(objects), dim=1)
    return torch.where(size > 0, gap / size.clamp(min=torch.finfo(size.dtype).tiny), torch.full_like(gap, math.inf))


def object_area(objects: torch.Tensor) -> torch.Tensor:
    """``(N,)`` object-box area ``(x2 - x1) * (y2 - y1)``, 0 for an inverted box.

    >>> object_area(torch.tensor([[0., 0., 32., 32.], [5., 5., 1., 9.]])).tolist()
    [1024.0, 0.0]
    """
    return (objects[:, 2] - objects[:, 0]).clamp(min=0) * (objects[:, 3] - objects[:, 1]).clamp(min=0)


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Short names of the bins ``[edges[k], edges[k + 1])``.

    >>> bin_labels(DISTANCE_BINS), bin_labels(AREA_BINS)
    (['0-0.5', '0.5-1', '1-2', '2+'], ['<32²', '32²-96²', '96²+'])
    """
    if tuple(edges) == AREA_BINS:
        return ["<32²", "32²-96²", "96²+"]
    name = lambda v: f"{v:g}"  # noqa: E731
    return [f"{name(lo)}-{name(hi)}" if math.isfinite(hi) else f"{name(lo)}+" for lo, hi in zip(edges, edges[1:])]


def breakdown(
    preds: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    vocab: HOIVocabulary,
    protocol: str = "hico_official",
    triplet_nms: bool | TripletNMS = False,
    bins: Mapping[str, Sequence[float]] = BREAKDOWNS,
) -> dict[str, list[dict[str, Any]]]:
    """One row per bin of each breakdown (see the module docstring), JSON-ready.

    Args:
        preds: prediction dicts, one per image (see :mod:`hoi_r1.metric`).
        targets: target dicts, one per image, same order.
        vocab: the vocabulary.
        protocol: HOI-mAP protocol name.
        triplet_nms: GEN-VLKT's triplet NMS (``gen_vlkt`` only).
        bins: breakdown name (``distance`` or ``area``) to bin edges.
    """
    image_ids = [int(t["image_id"]) for t in targets]
    dets = _after_image_filters(_flat(preds, with_scores=True), targets, vocab, protocol, triplet_nms)
    gts = _flat(targets, with_scores=False)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, edges in bins.items():
        det_value, gt_value = _measure(name, dets), _measure(name, gts)
        rows = []
        for label, lo, hi in zip(bin_labels(edges), edges, edges[1:]):
            bin_preds = _per_image(dets.select((det_value >= lo) & (det_value < hi)), image_ids, with_scores=True)
            bin_targets = _per_image(gts.select((gt_value >= lo) & (gt_value < hi)), image_ids, with_scores=False)
            rows.append({"bin": label, "low": lo, "high": hi if math.isfinite(hi) else None,
                         **_evaluate_bin(bin_preds, bin_targets, vocab, protocol, triplet_nms)})
        out[name] = rows
    return out


def _measure(name: str, rows: FlatDetections) -> torch.Tensor:
    if name == "distance":
        return pair_distance(rows.humans, rows.objects)
    if name == "area":
        return object_area(rows.objects)
    raise ValueError(f"breakdown must be one of {tuple(BREAKDOWNS)}, found {name!r}")


def _evaluate_bin(preds: list[dict], targets: list[dict], vocab: HOIVocabulary, protocol: str,
                  triplet_nms: bool | TripletNMS) -> dict[str, Any]:
    proto = get_protocol(protocol, triplet_nms)
    with one_cpu_thread():
        states = match_images(preds, targets, vocab, proto)
        result = summarise_matches(list(states), vocab, proto, unseen_ids(vocab, proto, None), False, True)
    gt_classes = torch.cat([t["hoi"] for t in targets]) if targets else torch.zeros(0, dtype=torch.long)
    has_gt = torch.zeros(vocab.num_classes, dtype=torch.bool)
    has_gt[gt_classes] = True
    ap = result["per_class_ap"].reshape(-1)[has_gt]
    ap = ap[~ap.isnan()]
    true_positives = int(dict(zip(STATE_NAMES, states))["det_tp"].sum())
    num_gt = len(gt_classes)
    return {"num_gt_pairs": num_gt, "num_detections": sum(len(p["hoi"]) for p in preds),
            "num_classes": len(ap), "mAP": float(ap.mean()) if len(ap) else None,
            "recall": true_positives / num_gt if num_gt else None}


def _flat(dicts: Sequence[Mapping[str, Any]], with_scores: bool) -> FlatDetections:
    """The rows of all images as one :class:`FlatDetections` (``image_slot``: position in
    ``dicts``; targets get zero scores)."""
    def cat(key: str, dtype: torch.dtype) -> torch.Tensor:
        parts = [torch.as_tensor(d[key], dtype=dtype).reshape((-1, 4) if key.endswith("boxes") else (-1,))
                 for d in dicts]
        return torch.cat(parts) if parts else torch.zeros((0, 4) if key.endswith("boxes") else 0, dtype=dtype)

    classes = cat("hoi", torch.long)
    sizes = torch.tensor([len(torch.as_tensor(d["hoi"]).reshape(-1)) for d in dicts], dtype=torch.long)
    scores = cat("scores", torch.float64) if with_scores else torch.zeros(len(classes), dtype=torch.float64)
    return FlatDetections(torch.repeat_interleave(torch.arange(len(dicts)), sizes), cat("human_boxes", torch.float64),
                          cat("object_boxes", torch.float64), cat("object_labels", torch.long), classes, scores)


def _per_image(rows: FlatDetections, image_ids: list[int], with_scores: bool) -> list[dict[str, Any]]:
    """Metric-input dicts, one per image, from rows sorted by ``image_slot``."""
    counts = torch.bincount(rows.image_slot, minlength=len(image_ids)).tolist()
    columns = [rows.humans, rows.objects, rows.object_labels, rows.classes] + ([rows.scores] if with_scores else [])
    keys = ("human_boxes", "object_boxes", "object_labels", "hoi", "scores")
    return [{"image_id": i, **dict(zip(keys, parts))} for i, *parts in zip(image_ids, *(c.split(counts) for c in columns))]


def _after_image_filters(dets: FlatDetections, targets: Sequence[Mapping[str, Any]], vocab: HOIVocabulary,
                         protocol: str, triplet_nms: bool | TripletNMS) -> FlatDetections:
    """``dets`` after the protocol's per-image steps (:func:`apply_image_filters`), sorted by
    image (stable). Those steps leave their own output unchanged, so the per-bin metric, which
    runs them again, keeps every row."""
    proto = get_protocol(protocol, triplet_nms)
    has_gt = torch.tensor([len(t["hoi"]) > 0 for t in targets], dtype=torch.bool)
    table = torch.full((len(vocab.verbs), len(vocab.objects)), -1, dtype=torch.long)
    pairs = torch.tensor(vocab.interactions, dtype=torch.long).reshape(-1, 2)
    table[pairs[:, 0], pairs[:, 1]] = torch.arange(len(pairs))
    dets = apply_image_filters(proto, dets, has_gt, table, pairs[:, 0])
    return dets.select(torch.sort(dets.image_slot, stable=True).indices)
