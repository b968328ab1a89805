"""A judged answer: one completion parsed once against its :class:`~hoi_r1.reward_target.RewardTarget`,
with the two matchings the rewards read, each computed at most once:

* :attr:`JudgedAnswer.match` — the answer's triplets assigned to the ground-truth pairs by
  :func:`hoi_r1.matching.hungarian_pairs` (cost ``1 - IoU_h * IoU_o``, ties broken by labels):
  IoUs, object agreement and verb-set Jaccard of every assigned pair (the ``label`` and ``iou``
  rewards);
* :attr:`JudgedAnswer.detection_hits` — each (element, verb) detection, exactly as the metric
  receives it (:func:`hoi_r1.metric_input.to_metric_preds`), a hit or not under the metric's own
  matcher (:func:`hoi_r1.matching.greedy_match`, ``hico_official`` rule; the ``recall`` and
  ``precision`` rewards, and the per-triplet credit of :mod:`hoi_r1.triplet_credit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple, Sequence

import numpy as np
import torch

from hoi_r1.answer import ParsedAnswer, parse_answer
from hoi_r1.generation import char_offsets
from hoi_r1.matching import greedy_match, hungarian_pairs
from hoi_r1.metric_input import metric_rows, to_metric_preds
from hoi_r1.reward_target import RewardTarget


@dataclass(frozen=True)
class PairMatch:
    """Hungarian matching of an answer's triplets with the ground-truth pairs (``K`` matches)."""

    num_units: int  # N = max(answer elements, ground-truth pairs)
    iou_h: np.ndarray  # (K,)
    iou_o: np.ndarray  # (K,)
    object_right: np.ndarray  # (K,) bool
    verb_jaccard: np.ndarray  # (K,)


@dataclass(frozen=True, eq=False)
class JudgedAnswer:
    """One completion read against its target; the matching is computed at most once."""

    parsed: ParsedAnswer
    target: RewardTarget

    @classmethod
    def read(cls, completion: str, target: RewardTarget) -> "JudgedAnswer":
        return cls(parse_answer(completion, target.vocab, target.frame), target)

    @cached_property
    def match(self) -> PairMatch:
        gt, triplets = self.target.ground_truth, self.parsed.triplets
        n = max(self.parsed.num_elements, len(gt))
        if not triplets or not len(gt):
            empty = np.zeros(0)
            return PairMatch(n, empty, empty, np.zeros(0, dtype=bool), empty)
        pred_objects = [t.object_id for t in triplets]
        pred_verbs = [t.verb_ids for t in triplets]
        p, g, iou_h, iou_o = hungarian_pairs(
            [t.human_box for t in triplets], [t.object_box for t in triplets], gt.humans, gt.objects,
            pred_objects, gt.object_labels, pred_verbs, gt.verbs,
        )
        p, g = p.numpy(), g.numpy()
        object_right = np.asarray(pred_objects)[p] == np.asarray(gt.object_labels)[g]
        jaccard = np.array([_jaccard(set(pred_verbs[i]), gt.verbs[j]) for i, j in zip(p, g)])
        return PairMatch(n, iou_h.numpy(), iou_o.numpy(), object_right, jaccard)

    @cached_property
    def detection_hits(self) -> tuple[tuple[bool, ...], ...]:
        """Per triplet, per verb (in the order written): is that detection a hit under the metric's
        rule (``hico_official``: :func:`~hoi_r1.matching.greedy_match`)? A verb that is no class
        of the object is a detection the metric never sees: not a hit."""
        sample, vocab, triplets = self.target.sample, self.target.vocab, self.parsed.triplets
        hit = [[False] * len(t.verb_ids) for t in triplets]
        rows = metric_rows(self.parsed, vocab)
        if sample is not None and rows and sample.num_pairs:
            det = to_metric_preds(self.parsed, vocab, sample.image_id)
            gt_h, gt_o = sample.pair_boxes()
            tp = greedy_match(det["hoi"], torch.arange(len(det["hoi"])), det["human_boxes"], det["object_boxes"],
                              torch.from_numpy(sample.hoi_ids), torch.from_numpy(gt_h), torch.from_numpy(gt_o),
                              threshold=HIT_IOU, convention="plus_one")
            for (index, position, _), is_hit in zip(rows, tp.tolist()):
                hit[index][position] = bool(is_hit)
        return tuple(tuple(h) for h in hit)

    @cached_property
    def hits(self) -> "TripletHits":
        """Triplet hits under the metric's rule, counted (:attr:`detection_hits`)."""
        written = sum(len(t.verb_ids) for t in self.parsed.triplets)
        truth = self.target.sample.num_pairs if self.target.sample is not None else 0
        return TripletHits(sum(map(sum, self.detection_hits)), written, truth)


@dataclass(frozen=True)
class TripletHits:
    """An answer's detections against the ground truth, triplet by triplet (the metric's unit)."""

    hits: int  # detections the metric would count as true positives
    written: int  # (element, verb) detections written, valid classes or not
    truth: int  # ground-truth triplets (rows of HOISample.pairs)


HIT_IOU = 0.5
"""Human and object IoU a hit needs (HICO-DET's rule, ``≥``)."""


def _jaccard(a: set[int], b: frozenset[int]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


class JudgedRow(NamedTuple):
    """One single-turn completion of a generation batch, judged, with its tokens' characters.

    Args:
        row: its row in the batch.
        text: the completion.
        answer: its judged answer.
        offsets: ``(start, end)`` characters of each of its real (unpadded) tokens in ``text``.
    """

    row: int
    text: str
    answer: JudgedAnswer
    offsets: list[tuple[int, int]]


def judged_rows(tokenizer, texts: Sequence[str], answers: Sequence[JudgedAnswer], token_ids: torch.Tensor,
                mask: torch.Tensor) -> list[JudgedRow]:
    """The :class:`JudgedRow` of every completion of a batch (``(N, T)`` token ids and mask)."""
    return [JudgedRow(row, text, answer, char_offsets(tokenizer, ids[: int(m.sum())].tolist()))
            for row, (text, answer, ids, m) in enumerate(zip(texts, answers, token_ids, mask))]
