"""The five HOI-mAP protocols: what each published evaluation does differently.

Every protocol shares the matching of :mod:`hoi_r1.matching` and the 11-point AP of
:mod:`hoi_r1.average_precision`; they differ only in the settings of :class:`Protocol`
(EVAL_SPEC.md, "Protocols"):

==================  ==========  =====  =============================  ===========================
protocol            pixels      IoU    per image                      classes averaged
==================  ==========  =====  =============================  ===========================
``hico_official``   +1          >= .5  nothing                        all (no ground truth: AP 0)
``qpic``            +1          >= .5  score x validity, top 100      classes with test ground truth
``gen_vlkt``        +1          >= .5  top 100 (+ triplet NMS)        classes with test ground truth
``pocket``          continuous  > .5   images without GT skipped      all (no ground truth: AP 0)
``swig``            continuous  >= .5  nothing (top 19,999 / class)   evaluated classes
==================  ==========  =====  =============================  ===========================

The 11 recall thresholds are the floats each reference produces: MATLAB's ``0:0.1:1``
(``hico_official``; identical to ``torch.linspace``, so ``pocket`` too), numpy's
``arange(0, 1.1, 0.1)`` (``qpic``, ``gen_vlkt``) and ``i / 10.0`` (``swig``). A recall of exactly
0.6 passes the first and the last but not numpy's ``0.6000000000000001``.

>>> PROTOCOLS["qpic"].recall_thresholds[6], PROTOCOLS["pocket"].recall_thresholds[6]
(0.6000000000000001, 0.6)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from hoi_r1.boxes import PixelConvention
from hoi_r1.matching import cell_candidates, paired_box_iou

ProtocolName = Literal["hico_official", "qpic", "gen_vlkt", "pocket", "swig"]
PROTOCOL_NAMES: tuple[str, ...] = ("hico_official", "qpic", "gen_vlkt", "pocket", "swig")


@dataclass(frozen=True)
class TripletNMS:
    """GEN-VLKT's pairwise triplet NMS, per image and class, after the top-k cut.

    A detection is suppressed by a higher-scoring one of the same class when
    ``IoU_h ** alpha * IoU_o ** beta > threshold`` (+1 pixel convention).

    Args:
        threshold: suppression threshold on the combined overlap.
        alpha: exponent of the human-box IoU.
        beta: exponent of the object-box IoU.
    """

    threshold: float = 0.7
    alpha: float = 1.0
    beta: float = 0.5


@dataclass(frozen=True)
class Protocol:
    """Settings that make one published HOI-mAP evaluation.

    Args:
        name: protocol name.
        convention: pixel convention of box IoU.
        strict: match when pair-IoU ``> 0.5`` (``pocket``) instead of ``>= 0.5``.
        recall_thresholds: the 11 recall floats of the 11-point AP, in summation order.
        object_label_class: the class of a detection is ``(verb of its class, its predicted
            object label)``; a detection whose pair is not a valid class scores 0 and is dropped
            after the top-k cut (QPIC: scores x verb-object validity).
        top_k_per_image: keep the k best detections per image (stable on ties).
        top_k_per_class: keep the k best detections per class over the test set.
        skip_images_without_gt: detections of images without any ground-truth pair are ignored.
        drop_classes_without_gt: classes without test ground truth leave the averages (QPIC and
            GEN-VLKT); otherwise they count with AP 0.
        evaluated_only: only classes outside ``vocab.unevaluated`` are averaged (SWIG-HOI).
        report: ``hico`` (Full / Rare / Non-rare from ``vocab.rare``) or ``swig`` (Full /
            Non-rare / Rare / Unseen from ``vocab.frequency``).
        triplet_nms: GEN-VLKT's optional triplet NMS, or ``None``.
    """

    name: str
    convention: PixelConvention
    strict: bool
    recall_thresholds: tuple[float, ...]
    object_label_class: bool = False
    top_k_per_image: int | None = None
    top_k_per_class: int | None = None
    skip_images_without_gt: bool = False
    drop_classes_without_gt: bool = False
    evaluated_only: bool = False
    report: Literal["hico", "swig"] = "hico"
    triplet_nms: TripletNMS | None = None


def matlab_colon_thresholds() -> tuple[float, ...]:
    """``0:0.1:1`` as MATLAB fills it: ``k * 0.1`` up to the middle, ``1 - (10 - k) * 0.1`` after."""
    return tuple(k * 0.1 if k <= 5 else 1.0 - (10 - k) * 0.1 for k in range(11))


def numpy_arange_thresholds() -> tuple[float, ...]:
    """``numpy.arange(0., 1.1, 0.1)``: ``k * 0.1``."""
    return tuple(k * 0.1 for k in range(11))


def exact_decimal_thresholds() -> tuple[float, ...]:
    """``i / 10.0`` (THID's SWIG-HOI evaluator)."""
    return tuple(i / 10.0 for i in range(11))


def torch_linspace_thresholds() -> tuple[float, ...]:
    """``torch.linspace(0, 1, 11, dtype=float64)`` (pocket's ``DetectionAPMeter``)."""
    return tuple(torch.linspace(0, 1, 11, dtype=torch.float64).tolist())


def hico_official() -> Protocol:
    """The official MATLAB evaluation (``eval_default.m`` / ``VOCevaldet_bboxpair.m``)."""
    return Protocol("hico_official", "plus_one", strict=False, recall_thresholds=matlab_colon_thresholds())


def qpic() -> Protocol:
    """QPIC's / CDN's ``hico_eval.py``."""
    return Protocol(
        "qpic", "plus_one", strict=False, recall_thresholds=numpy_arange_thresholds(),
        object_label_class=True, top_k_per_image=100, drop_classes_without_gt=True,
    )


def gen_vlkt(nms: TripletNMS | None = None) -> Protocol:
    """GEN-VLKT's ``hico_eval_triplet.py`` (object label ignored; optional triplet NMS)."""
    return Protocol(
        "gen_vlkt", "plus_one", strict=False, recall_thresholds=numpy_arange_thresholds(),
        top_k_per_image=100, drop_classes_without_gt=True, triplet_nms=nms,
    )


def pocket() -> Protocol:
    """UPT's evaluation with pocket's ``DetectionAPMeter(algorithm="11P")``."""
    return Protocol(
        "pocket", "continuous", strict=True, recall_thresholds=torch_linspace_thresholds(),
        skip_images_without_gt=True,
    )


def swig() -> Protocol:
    """THID's SWIG-HOI evaluator (``swig_evaluator.py``)."""
    return Protocol(
        "swig", "continuous", strict=False, recall_thresholds=exact_decimal_thresholds(),
        top_k_per_class=19_999, evaluated_only=True, report="swig",
    )


PROTOCOLS: dict[str, Protocol] = {
    "hico_official": hico_official(),
    "qpic": qpic(),
    "gen_vlkt": gen_vlkt(),
    "pocket": pocket(),
    "swig": swig(),
}


def get_protocol(name: str, triplet_nms: bool | TripletNMS = False) -> Protocol:
    """The protocol called ``name``; ``triplet_nms`` (``gen_vlkt`` only) turns its NMS on."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOL_NAMES}, found {name!r}")
    if triplet_nms:
        if name != "gen_vlkt":
            raise ValueError(f"triplet_nms is part of the gen_vlkt protocol only, not {name!r}")
        return gen_vlkt(triplet_nms if isinstance(triplet_nms, TripletNMS) else TripletNMS())
    return PROTOCOLS[name]


# --------------------------------------------------------------------------- per-image filters
@dataclass
class FlatDetections:
    """Detections of a batch of images as flat tensors (one row per detection).

    Args:
        image_slot: ``(N,)`` index of the image in the batch.
        humans: ``(N, 4)`` human boxes, float64.
        objects: ``(N, 4)`` object boxes, float64.
        object_labels: ``(N,)`` predicted object ids.
        classes: ``(N,)`` HOI class ids.
        scores: ``(N,)`` scores, float64.
    """

    image_slot: torch.Tensor
    humans: torch.Tensor
    objects: torch.Tensor
    object_labels: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor

    def select(self, keep: torch.Tensor) -> "FlatDetections":
        if bool(keep.all()):
            return self
        return FlatDetections(*(t[keep] for t in self.__dict__.values()))


def apply_image_filters(
    protocol: Protocol,
    dets: FlatDetections,
    image_has_gt: torch.Tensor,
    class_table: torch.Tensor,
    class_verbs: torch.Tensor,
) -> FlatDetections:
    """The per-image steps of ``protocol``, in the order the reference runs them.

    Args:
        protocol: the protocol.
        dets: detections of the batch.
        image_has_gt: ``(B,)`` whether each image has a ground-truth pair.
        class_table: ``(num_verbs, num_objects)`` class id of each pair, ``-1`` if invalid.
        class_verbs: ``(num_classes,)`` verb id of each class.
    """
    if protocol.object_label_class:
        classes = class_table[class_verbs[dets.classes], dets.object_labels]
        dets = FlatDetections(dets.image_slot, dets.humans, dets.objects, dets.object_labels,
                              classes, dets.scores * (classes >= 0))
    if protocol.skip_images_without_gt:
        dets = dets.select(image_has_gt[dets.image_slot])
    if protocol.top_k_per_image is not None:
        dets = dets.select(top_k_per_group(dets.image_slot, dets.scores, protocol.top_k_per_image))
    dets = dets.select(dets.classes >= 0)
    if protocol.triplet_nms is not None:
        dets = dets.select(triplet_nms_keep(dets, protocol.triplet_nms, len(class_verbs)))
    return dets


def descending_order(groups: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Permutation that sorts by group, then score descending, then original position."""
    order = torch.sort(-scores, stable=True).indices
    return order[torch.sort(groups[order], stable=True).indices]


def position_in_group(groups: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``(N,)`` 0-based position of each row within its group, best score first (stable)."""
    order = descending_order(groups, scores)
    sorted_groups = groups[order]
    start = torch.searchsorted(sorted_groups, sorted_groups, side="left")
    pos = torch.empty_like(order)
    pos[order] = torch.arange(len(order)) - start
    return pos


def top_k_per_group(groups: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the ``k`` best rows of each group (stable: earlier rows win ties)."""
    return position_in_group(groups, scores) < k


def triplet_nms_keep(dets: FlatDetections, nms: TripletNMS, num_classes: int) -> torch.Tensor:
    """Greedy NMS per (image, class): keep a detection unless a kept better one overlaps it.

    Runs over rank positions within a cell (at most the top-k cut), never over detections.
    """
    cells = dets.image_slot * num_classes + dets.classes
    pos = position_in_group(cells, dets.scores)
    src, dst = cell_candidates(cells, cells)
    ahead = pos[src] < pos[dst]
    src, dst = src[ahead], dst[ahead]
    iou_h = paired_box_iou(dets.humans[src], dets.humans[dst], "plus_one")
    iou_o = paired_box_iou(dets.objects[src], dets.objects[dst], "plus_one")
    overlap = torch.pow(iou_h, nms.alpha) * torch.pow(iou_o, nms.beta)
    src, dst = src[overlap > nms.threshold], dst[overlap > nms.threshold]
    keep = torch.ones(len(cells), dtype=torch.bool)
    dst_pos = pos[dst]
    for p in torch.unique(dst_pos).tolist():
        at = dst_pos == p
        keep[dst[at][keep[src[at]]]] = False
    return keep
