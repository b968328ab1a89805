"""HOI-mAP, the algorithm: match detections to ground truth image by image, then the 11-point AP
of every class and the averages a protocol reports. Plain torch, no ``torchmetrics``: ``hoi-r1 eval``
and the breakdown / curve tools run on it, and :class:`hoi_r1.metric.HOIMeanAveragePrecision` (the
``torchmetrics.Metric`` used in training) keeps its states and calls it.

1. :func:`match_images` (per image, vectorised over the images given): apply the protocol's
   per-image filters, match every detection to the ground truth of its image and class with the
   greedy "best pair, no fall-back" rule (:func:`hoi_r1.matching.greedy_match`; ``hoi_r1``: the
   fall-back rule of :func:`hoi_r1.matching.first_free_match`), and keep only
   ``(class, score, true positive, image id, picked pair)`` per detection and the ground-truth count per
   (image, class): the :data:`STATE_NAMES` columns.
2. :func:`summarise_matches`: drop the duplicate images a ``DistributedSampler`` pads with (by
   image id, first occurrence kept), then the 11-point AP of every class in one float64 pass
   (:mod:`hoi_r1.average_precision`), and the averages the protocol reports.

The algorithm and its rules per protocol: docs/metric.md (Chao et al., "Learning to Detect
Human-Object Interactions", WACV 2018, and the ports named in :mod:`hoi_r1.metric_protocols`).
Returned values are fractions (0..1), as 0-d float64 tensors (keys: :mod:`hoi_r1.metric`).

>>> import torch
>>> from hoi_r1.vocab import HOIVocabulary
>>> vocab = HOIVocabulary.open(["ride"], ["person", "bicycle"], [("ride", "bicycle")])
>>> box_h, box_o = torch.tensor([[0., 0., 10., 20.]]), torch.tensor([[5., 10., 30., 30.]])
>>> target = {"image_id": 0, "human_boxes": box_h, "object_boxes": box_o,
...           "object_labels": torch.tensor([1]), "hoi": torch.tensor([0])}
>>> pred = {"image_id": 0, "human_boxes": box_h.repeat(2, 1), "object_boxes": box_o.repeat(2, 1),
...         "object_labels": torch.tensor([1, 1]), "hoi": torch.tensor([0, 0]),
...         "scores": torch.tensor([0.9, 0.8])}
>>> states = match_images([pred], [target], vocab, get_protocol("hico_official"))
>>> dict(zip(STATE_NAMES, states))["det_tp"].tolist()  # the second detection finds its pair taken
[True, False]
>>> round(hoi_mean_average_precision([pred], [target], vocab)["mAP_full"].item(), 12)
1.0
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import torch

from hoi_r1.average_precision import first_occurrences, known_object_mask, per_class_average_precision
from hoi_r1.detection_filters import FlatDetections, apply_image_filters
from hoi_r1.matching import first_free_match, greedy_match
from hoi_r1.metric_protocols import Protocol, ProtocolName, TripletNMS, get_protocol
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

STATE_NAMES = (
    "det_classes", "det_scores", "det_tp", "det_image_ids", "det_picks",
    "gt_image_ids", "gt_classes", "gt_counts",
    "image_ids", "image_num_dets", "image_num_gt",
)
"""The columns :func:`match_images` returns, in order: per detection its class, score, hit, image
id and picked pair (its image's ground-truth row of largest pair-IoU when that passed the
threshold, else -1; only protocols with ``match_in_rank_order`` read it); per (image, class) cell
with ground truth its image id, class and pair count; per image its id and its numbers of
detections and of cells."""


def hoi_mean_average_precision(
    preds: Sequence[Mapping[str, Any]],
    target: Sequence[Mapping[str, Any]],
    vocab: HOIVocabulary,
    protocol: ProtocolName = "hico_official",
    zero_shot: str | Sequence[int] | None = None,
    known_object: bool = False,
    per_class: bool = False,
    triplet_nms: bool | TripletNMS = False,
) -> dict[str, torch.Tensor]:
    """HOI-mAP of a whole test set at once (the arguments of :class:`hoi_r1.metric.HOIMeanAveragePrecision`)."""
    proto = get_protocol(protocol, triplet_nms)
    unseen = unseen_ids(vocab, proto, zero_shot)
    with one_cpu_thread():
        states = match_images(preds, target, vocab, proto)
        return summarise_matches(list(states), vocab, proto, unseen, known_object, per_class)


def targets_from_sample(sample: HOISample) -> dict[str, Any]:
    """The metric's target dict of one annotated image (one row per ground-truth pair)."""
    humans, objects = sample.pair_boxes()
    return {
        "image_id": sample.image_id,
        "human_boxes": torch.as_tensor(humans, dtype=torch.float64),
        "object_boxes": torch.as_tensor(objects, dtype=torch.float64),
        "object_labels": torch.as_tensor(sample.pair_object_labels(), dtype=torch.long),
        "hoi": torch.as_tensor(sample.hoi_ids, dtype=torch.long),
    }


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run the metric's CPU work on one intra-op thread, then restore the setting. Its tensors are
    small per update; thread synchronisation dominated (measured on a busy 2-core machine: the
    HICO-DET-size benchmark took 14.9 s with 2 threads, 1.8 s with 1)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- update
def match_images(
    preds: Sequence[Mapping[str, Any]],
    target: Sequence[Mapping[str, Any]],
    vocab: HOIVocabulary,
    protocol: Protocol,
    tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Match a batch of images; returns the states in :data:`STATE_NAMES` order (``tables``:
    :func:`class_tables` of ``vocab``, built here when not given)."""
    if not isinstance(preds, Sequence) or not isinstance(target, Sequence) or isinstance(preds, Mapping):
        raise TypeError("update expects a list of prediction dicts and a list of target dicts")
    if len(preds) != len(target):
        raise ValueError(f"update got {len(preds)} prediction dicts but {len(target)} target dicts")
    image_ids = torch.tensor([_image_id(p, t, i) for i, (p, t) in enumerate(zip(preds, target))], dtype=torch.long)
    dets = _flatten(preds, "preds", vocab, with_scores=True)
    gts = _flatten(target, "target", vocab, with_scores=False)
    batch = len(target)
    has_gt = torch.bincount(gts.image_slot, minlength=batch) > 0
    tables = tables if tables is not None else class_tables(vocab)
    _check_target_objects(gts, vocab, image_ids, tables[2])
    dets = apply_image_filters(protocol, dets, has_gt, tables[0], tables[1])
    c = vocab.num_classes
    ranks = torch.empty(len(dets.scores), dtype=torch.long)
    ranks[torch.sort(-dets.scores, stable=True).indices] = torch.arange(len(dets.scores))
    picks = torch.full((len(dets.scores),), -1, dtype=torch.long)
    if protocol.matching == "first_free":
        tp = first_free_match(
            dets.image_slot * c + dets.classes, ranks, dets.humans, dets.objects,
            gts.image_slot * c + gts.classes, gts.humans, gts.objects,
            threshold=0.5, convention=protocol.convention,
        )
    else:
        tp, rows = greedy_match(
            dets.image_slot * c + dets.classes, ranks, dets.humans, dets.objects,
            gts.image_slot * c + gts.classes, gts.humans, gts.objects,
            threshold=0.5, strict=protocol.strict, convention=protocol.convention, return_picks=True,
        )
        gt_start = torch.cumsum(torch.bincount(gts.image_slot, minlength=batch), 0) - torch.bincount(
            gts.image_slot, minlength=batch)
        passed = rows >= 0
        picks[passed] = rows[passed] - gt_start[dets.image_slot[passed]]  # row inside its image
    cells, gt_counts = torch.unique(gts.image_slot * c + gts.classes, return_counts=True)
    return (
        dets.classes, dets.scores, tp, image_ids[dets.image_slot], picks,
        image_ids[cells // c], cells % c, gt_counts,
        image_ids, torch.bincount(dets.image_slot, minlength=batch), torch.bincount(cells // c, minlength=batch),
    )


def _image_id(pred: Mapping[str, Any], tgt: Mapping[str, Any], index: int) -> int:
    if not isinstance(pred, Mapping) or not isinstance(tgt, Mapping):
        raise TypeError(f"image {index}: predictions and targets must be dicts")
    if "image_id" not in tgt:
        raise KeyError(f"target {index}: missing 'image_id'")
    image_id = int(tgt["image_id"])
    if "image_id" in pred and int(pred["image_id"]) != image_id:
        raise ValueError(f"image {index}: prediction image_id {int(pred['image_id'])} != target image_id {image_id}")
    return image_id


def _flatten(dicts: Sequence[Mapping[str, Any]], what: str, vocab: HOIVocabulary, with_scores: bool) -> FlatDetections:
    keys = ["human_boxes", "object_boxes", "object_labels", "hoi"] + (["scores"] if with_scores else [])
    columns: dict[str, list[torch.Tensor]] = {}
    for k in keys:
        try:
            parts = [d[k] if isinstance(d[k], torch.Tensor) else torch.as_tensor(d[k]) for d in dicts]
        except KeyError:
            i = next(i for i, d in enumerate(dicts) if k not in d)
            raise KeyError(f"{what}[{i}] (image_id {dicts[i].get('image_id')}): missing key {k!r}") from None
        if k.endswith("boxes"):
            parts = [p if p.ndim == 2 else p.reshape(-1, 4) for p in parts]
        columns[k] = parts
    sizes = [p.shape[0] if p.ndim else 1 for p in columns["hoi"]]
    for k in keys:
        shapes = [p.shape for p in columns[k]]
        expected = [(n, 4) if k.endswith("boxes") else (n,) for n in sizes]
        if shapes != expected:
            i = next(i for i, (a, b) in enumerate(zip(shapes, expected)) if a != b)
            raise ValueError(
                f"{what}[{i}] (image_id {dicts[i].get('image_id')}): '{k}' has shape {tuple(shapes[i])}, "
                f"expected {expected[i]} to match 'hoi'"
            )
    cat = {k: _cat_as(v, torch.long if k in ("object_labels", "hoi") else torch.float64) for k, v in columns.items()}
    boxes_h, boxes_o = cat["human_boxes"].reshape(-1, 4), cat["object_boxes"].reshape(-1, 4)
    classes, objects = cat["hoi"], cat["object_labels"]
    if len(classes) and (classes.min() < 0 or classes.max() >= vocab.num_classes):
        raise ValueError(
            f"{what}: HOI class ids must lie in [0, {vocab.num_classes}), found {int(classes.min())}..{int(classes.max())}"
        )
    if len(objects) and (objects.min() < 0 or objects.max() >= len(vocab.objects)):
        raise ValueError(
            f"{what}: object labels must lie in [0, {len(vocab.objects)}), found {int(objects.min())}..{int(objects.max())}"
        )
    scores = cat["scores"] if with_scores else torch.zeros(len(classes), dtype=torch.float64)
    if not torch.isfinite(scores).all():
        raise ValueError(f"{what}: scores must be finite")
    slot = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))
    return FlatDetections(slot, boxes_h, boxes_o, objects, classes, scores)


def _cat_as(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    if not parts:
        return torch.zeros(0, dtype=dtype)
    return torch.cat([p.reshape(-1) if p.ndim == 0 else p for p in parts]).detach().to("cpu", dtype)


def _check_target_objects(
    gts: FlatDetections, vocab: HOIVocabulary, image_ids: torch.Tensor, class_objects: torch.Tensor
) -> None:
    wrong = (class_objects[gts.classes] != gts.object_labels).nonzero().squeeze(1)
    if len(wrong):
        k = int(wrong[0])
        raise ValueError(
            f"target image_id {int(image_ids[gts.image_slot[k]])}: a pair of class {int(gts.classes[k])} "
            f"({vocab.interaction_name(int(gts.classes[k]))}) has object label {int(gts.object_labels[k])}"
        )


def class_tables(vocab: HOIVocabulary) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(verb x object → class or -1, verb of each class, object of each class)."""
    table = torch.full((len(vocab.verbs), len(vocab.objects)), -1, dtype=torch.long)
    pairs = torch.tensor(vocab.interactions, dtype=torch.long).reshape(-1, 2)
    table[pairs[:, 0], pairs[:, 1]] = torch.arange(len(pairs))
    return table, pairs[:, 0], pairs[:, 1]


# --------------------------------------------------------------------------- compute
def summarise_matches(
    states: list[torch.Tensor],
    vocab: HOIVocabulary,
    protocol: Protocol,
    unseen: tuple[int, ...] | None,
    known_object: bool,
    per_class: bool,
) -> dict[str, torch.Tensor]:
    """The AP of every class and the protocol's averages from the concatenated
    :func:`match_images` columns of a whole test set (``unseen``: :func:`unseen_ids`)."""
    (det_classes, det_scores, det_tp, det_image_ids, det_picks, gt_image_ids, gt_classes, gt_counts,
     image_ids, image_num_dets, image_num_gt) = states
    det = [det_classes.long(), det_scores.double(), det_tp.bool(), det_image_ids.long(), det_picks.long()]
    gt = [gt_image_ids.long(), gt_classes.long(), gt_counts.long()]
    keep = first_occurrences(image_ids)  # DistributedSampler padding
    if not bool(keep.all()):
        occurrence = torch.arange(len(image_ids))
        det_keep = keep[torch.repeat_interleave(occurrence, image_num_dets.long())]
        gt_keep = keep[torch.repeat_interleave(occurrence, image_num_gt.long())]
        det, gt = [t[det_keep] for t in det], [t[gt_keep] for t in gt]
    gt_image_ids, gt_classes, gt_counts = gt
    npos = torch.zeros(vocab.num_classes, dtype=torch.long).index_add_(0, gt_classes, gt_counts)
    out = _summaries(*_ap(det, npos, protocol), npos, _num_dets(det, vocab), vocab, protocol, unseen, per_class,
                     suffix="")
    if known_object:
        mask = known_object_mask(det[3], det[0], gt_image_ids, gt_classes, class_tables(vocab)[2])
        ko = [t[mask] for t in det]
        out |= _summaries(*_ap(ko, npos, protocol), npos, _num_dets(ko, vocab), vocab, protocol, unseen, per_class,
                          suffix="_known_object")
    return out


def _ap(det: list[torch.Tensor], npos: torch.Tensor, protocol: Protocol) -> tuple[torch.Tensor, torch.Tensor]:
    classes, scores, tp, image_ids, picks = det
    return per_class_average_precision(
        classes, scores, tp, image_ids, npos, protocol.recall_thresholds, protocol.top_k_per_class,
        protocol.tie_order, picks if protocol.match_in_rank_order else None,
    )


def _num_dets(det: list[torch.Tensor], vocab: HOIVocabulary) -> torch.Tensor:
    return torch.bincount(det[0], minlength=vocab.num_classes)


def _summaries(
    ap: torch.Tensor,
    max_recall: torch.Tensor,
    npos: torch.Tensor,
    num_dets: torch.Tensor,
    vocab: HOIVocabulary,
    protocol: Protocol,
    unseen: tuple[int, ...] | None,
    per_class: bool,
    suffix: str,
) -> dict[str, torch.Tensor]:
    c = vocab.num_classes
    counted = torch.ones(c, dtype=torch.bool)
    if protocol.evaluated_only:
        counted[list(vocab.unevaluated)] = False
    if protocol.drop_classes_without_gt:
        if protocol.count_undetected_classes_without_gt:
            counted &= (npos > 0) | (num_dets == 0)
        else:
            counted &= npos > 0
    groups: dict[str, torch.Tensor] = {"full": counted}
    if protocol.report == "swig":
        frequency = torch.tensor(vocab.frequency, dtype=torch.long)
        groups |= {"non_rare": counted & (frequency == 2), "rare": counted & (frequency == 1),
                   "unseen": counted & (frequency == 0)}
    else:
        rare = _mask(vocab.rare, c)
        groups |= {"rare": counted & rare, "non_rare": counted & ~rare}
    if unseen is not None:
        unseen_mask = _mask(unseen, c)
        groups |= {"unseen": counted & unseen_mask, "seen": counted & ~unseen_mask}
    out = {f"mAP_{name}{suffix}": _mean(ap, mask) for name, mask in groups.items()}
    out[f"mean_max_recall{suffix}"] = _mean(max_recall, counted)
    if per_class:
        out[f"per_class_ap{suffix}"] = torch.where(counted, ap, torch.full_like(ap, float("nan")))
    return out


def _mask(ids: Any, size: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[torch.tensor(sorted(ids), dtype=torch.long)] = True
    return mask


def _mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values[mask].mean() if mask.any() else torch.tensor(float("nan"), dtype=torch.float64)


def unseen_ids(
    vocab: HOIVocabulary, protocol: Protocol, zero_shot: str | Sequence[int] | None
) -> tuple[int, ...] | None:
    """The unseen class ids of a zero-shot setting (None without one); checks that the vocabulary
    carries what the protocol reports (SWIG-HOI: every class's frequency)."""
    if protocol.report == "swig" and len(vocab.frequency) != vocab.num_classes:
        raise ValueError(
            f"the swig protocol needs vocab.frequency for all {vocab.num_classes} classes; "
            f"vocabulary {vocab.name!r} has {len(vocab.frequency)}"
        )
    if zero_shot is None:
        return None
    if protocol.report == "swig":
        raise ValueError("zero_shot does not apply to the swig protocol: its Unseen split comes from vocab.frequency")
    ids = vocab.unseen(zero_shot) if isinstance(zero_shot, str) else tuple(int(i) for i in zero_shot)
    bad = [i for i in ids if not 0 <= i < vocab.num_classes]
    if bad:
        raise ValueError(f"zero_shot: class ids {bad[:5]} are outside [0, {vocab.num_classes})")
    return ids
