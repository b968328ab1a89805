"""HOI-mAP: the HICO-DET / SWIG-HOI detection metric as a ``torchmetrics.Metric``.

``update`` matches each batch of images (:func:`hoi_r1.hoi_map.match_images`) and keeps only
``(class, score, true positive, image id)`` per detection and the ground-truth count per
(image, class), as flat tensor states reduced with ``cat``; ``compute`` drops the duplicate images
a ``DistributedSampler`` pads with and takes the AP of every class
(:func:`hoi_r1.hoi_map.summarise_matches`). The algorithm and its protocols: :mod:`hoi_r1.hoi_map`,
docs/metric.md.

Returned values are fractions (0..1), as 0-d float64 tensors: ``mAP_full``, ``mAP_rare``,
``mAP_non_rare``, ``mean_max_recall``; ``mAP_unseen`` / ``mAP_seen`` with ``zero_shot``; the same
keys suffixed ``_known_object`` with ``known_object``; SWIG-HOI: ``mAP_full``, ``mAP_non_rare``,
``mAP_rare``, ``mAP_unseen``, ``mean_max_recall``; ``per_class_ap`` (``(C,)``, NaN for classes
outside the averages) with ``per_class``.

>>> import torch
>>> from hoi_r1.vocab import HOIVocabulary
>>> vocab = HOIVocabulary.open(["ride"], ["person", "bicycle"], [("ride", "bicycle")])
>>> box_h, box_o = torch.tensor([[0., 0., 10., 20.]]), torch.tensor([[5., 10., 30., 30.]])
>>> target = {"image_id": 0, "human_boxes": box_h, "object_boxes": box_o,
...           "object_labels": torch.tensor([1]), "hoi": torch.tensor([0])}
>>> pred = {"image_id": 0, "human_boxes": box_h.repeat(2, 1), "object_boxes": box_o.repeat(2, 1),
...         "object_labels": torch.tensor([1, 1]), "hoi": torch.tensor([0, 0]),
...         "scores": torch.tensor([0.9, 0.8])}
>>> metric = HOIMeanAveragePrecision(vocab)
>>> metric.update([pred], [target])
>>> round(metric.compute()["mAP_full"].item(), 12)  # 11 x (1/11), summed as the references do
1.0
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from hoi_r1.hoi_map import (
    STATE_NAMES,
    class_tables,
    match_images,
    one_cpu_thread,
    summarise_matches,
    unseen_ids,
)
from hoi_r1.metric_protocols import ProtocolName, TripletNMS, get_protocol
from hoi_r1.vocab import HOIVocabulary


class HOIMeanAveragePrecision(Metric):
    """HOI detection mAP of HICO-DET / SWIG-HOI in a chosen published protocol.

    Args:
        vocab: the dataset's vocabulary (classes, rare split, zero-shot lists, SWIG-HOI
            ``unevaluated`` / ``frequency``).
        protocol: ``hico_official`` (default), ``qpic``, ``gen_vlkt``, ``pocket`` or ``swig``.
        zero_shot: a zero-shot setting name of ``vocab.zero_shot`` (``rare_first``,
            ``non_rare_first``, ``unseen_object``, ``unseen_verb``) or a list of unseen class ids;
            adds ``mAP_unseen`` and ``mAP_seen``.
        known_object: also report the Known-Object setting (keys suffixed ``_known_object``).
        per_class: also return ``per_class_ap``.
        triplet_nms: GEN-VLKT's pairwise triplet NMS (``gen_vlkt`` only): ``True`` for
            threshold 0.7, alpha 1, beta 0.5, or a :class:`TripletNMS`.
        kwargs: passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    det_classes: list[torch.Tensor]
    det_scores: list[torch.Tensor]
    det_tp: list[torch.Tensor]
    det_image_ids: list[torch.Tensor]
    det_picks: list[torch.Tensor]
    gt_image_ids: list[torch.Tensor]
    gt_classes: list[torch.Tensor]
    gt_counts: list[torch.Tensor]
    image_ids: list[torch.Tensor]
    image_num_dets: list[torch.Tensor]
    image_num_gt: list[torch.Tensor]

    def __init__(
        self,
        vocab: HOIVocabulary,
        protocol: ProtocolName = "hico_official",
        zero_shot: str | Sequence[int] | None = None,
        known_object: bool = False,
        per_class: bool = False,
        triplet_nms: bool | TripletNMS = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocab = vocab
        self.protocol = get_protocol(protocol, triplet_nms)
        self.unseen = unseen_ids(vocab, self.protocol, zero_shot)
        self.known_object = known_object
        self.per_class = per_class
        self._tables = class_tables(vocab)
        for name in STATE_NAMES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: Sequence[Mapping[str, Any]], target: Sequence[Mapping[str, Any]]) -> None:
        """Match the detections of a batch of images (see the module docstring for the dicts)."""
        with one_cpu_thread():
            states = match_images(preds, target, self.vocab, self.protocol, self._tables)
        for name, value in zip(STATE_NAMES, states):  # on the metric's device, for NCCL gathers
            getattr(self, name).append(value.to(self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        states = [_cat(getattr(self, name)).cpu() for name in STATE_NAMES]
        with one_cpu_thread():
            return summarise_matches(states, self.vocab, self.protocol, self.unseen, self.known_object, self.per_class)


def _cat(value: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return dim_zero_cat(value) if value else torch.zeros(0, dtype=torch.long)
