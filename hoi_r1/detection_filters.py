"""The per-image steps of an HOI-mAP protocol, run on flat detection tensors before matching: the
class from (verb, predicted object) with validity weighting, images without ground truth
skipped, the top-k cut per image (GEN-VLKT's tied scores as copies of the first), the score
floor and GEN-VLKT's triplet NMS — each switched on by a setting of
:class:`~hoi_r1.metric_protocols.Protocol`, in the order the reference evaluators run them (:func:`apply_image_filters`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hoi_r1.matching import cell_candidates
from hoi_r1.metric_protocols import Protocol, TripletNMS


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
        """Rows where the mask ``keep`` is true, or the rows of the index tensor ``keep``."""
        if keep.dtype == torch.bool and bool(keep.all()):
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
        kept = top_k_per_group(dets.image_slot, dets.scores, protocol.top_k_per_image)
        if protocol.top_k_ties_repeat_first:
            dets = dets.select(first_with_equal_score(dets.image_slot, dets.scores)[kept])
        else:
            dets = dets.select(kept)
    dets = dets.select(dets.classes >= 0)
    if protocol.min_score is not None:
        dets = dets.select(dets.scores >= protocol.min_score)
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


def first_with_equal_score(groups: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``(N,)`` index of the first row of the same group with the same score as each row.

    >>> first_with_equal_score(torch.tensor([0, 0, 0, 1]), torch.tensor([.5, .9, .5, .5])).tolist()
    [0, 1, 0, 3]
    """
    if len(groups) == 0:
        return torch.zeros(0, dtype=torch.long)
    keys = torch.stack([groups.to(torch.float64), scores.to(torch.float64)], 1)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    rows = torch.arange(len(groups))
    first = torch.full((int(inverse.max()) + 1,), len(groups), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, rows, "amin")
    return first[inverse]


def nms_box_iou(a_xyxy: torch.Tensor, b_xyxy: torch.Tensor) -> torch.Tensor:
    """IoU of row ``k`` of ``a`` with row ``k`` of ``b`` as GEN-VLKT's ``pairwise_nms`` computes it:
    ``+1`` sides clamped at 0, ``+1`` areas *not* clamped, no guard on the division (an inverted
    box gives a negative or NaN overlap, as numpy does there)."""
    iw = (torch.minimum(a_xyxy[:, 2], b_xyxy[:, 2]) - torch.maximum(a_xyxy[:, 0], b_xyxy[:, 0]) + 1).clamp(min=0)
    ih = (torch.minimum(a_xyxy[:, 3], b_xyxy[:, 3]) - torch.maximum(a_xyxy[:, 1], b_xyxy[:, 1]) + 1).clamp(min=0)
    area_a = (a_xyxy[:, 2] - a_xyxy[:, 0] + 1) * (a_xyxy[:, 3] - a_xyxy[:, 1] + 1)
    area_b = (b_xyxy[:, 2] - b_xyxy[:, 0] + 1) * (b_xyxy[:, 3] - b_xyxy[:, 1] + 1)
    inter = iw * ih
    return inter / (area_a + area_b - inter)


def triplet_nms_keep(dets: FlatDetections, nms: TripletNMS, num_classes: int) -> torch.Tensor:
    """Greedy NMS per (image, class): keep a detection unless a kept better one overlaps it
    (GEN-VLKT ``triplet_nms_filter`` / ``pairwise_nms``).

    Runs over rank positions within a cell (at most the top-k cut), never over detections.
    """
    cells = dets.image_slot * num_classes + dets.classes
    pos = position_in_group(cells, dets.scores)
    src, dst = cell_candidates(cells, cells)
    ahead = pos[src] < pos[dst]
    src, dst = src[ahead], dst[ahead]
    overlap = torch.pow(nms_box_iou(dets.humans[src], dets.humans[dst]), nms.alpha) * torch.pow(
        nms_box_iou(dets.objects[src], dets.objects[dst]), nms.beta)
    suppressed = ~(overlap <= nms.threshold)  # pairwise_nms keeps ``ovr <= thres``: NaN suppresses
    src, dst = src[suppressed], dst[suppressed]
    keep = torch.ones(len(cells), dtype=torch.bool)
    dst_pos = pos[dst]
    for p in torch.unique(dst_pos).tolist():
        at = dst_pos == p
        keep[dst[at][keep[src[at]]]] = False
    return keep
