"""GRPO rewards for HOI answers: ``format``, ``keys``, ``label`` and ``iou`` (docs/grpo.md,
"Rewards"; the HOI-R1 paper names these rewards but publishes no formula, so these are ours).

A reward is a plain callable ``(completions, targets) -> list[float | None]`` (TRL's contract),
one value in ``[0, 1]`` per completion, ``None`` where it does not apply (a target without
ground truth). A target is a :class:`~hoi_r1.reward_target.RewardTarget`. Every completion is
read once by the one answer parser (:func:`hoi_r1.answer.parse_answer`) that the metric also
uses, into a :class:`~hoi_r1.judged_answer.JudgedAnswer`; pairs are matched by
:func:`hoi_r1.matching.hungarian_pairs` (cost ``1 - IoU_h * IoU_o``, ties broken by labels).

With ``N = max(answer elements, ground-truth pairs)`` — a ground-truth *pair* is a distinct
(human, object) pair with its verb set (``HOISample.grouped_pairs``), the unit of one answer
element — so that both extra and missed pairs cost:

* ``format``: 1 if the text is exactly ``<think>…</think><answer>…</answer>``, else 0.
* ``keys``: share of answer elements that are fully valid — the four keys, boxes finite with
  ``x1 < x2`` and ``y1 < y2`` and inside the image up to :data:`BOX_TOLERANCE` of its longer side,
  labels in the vocabulary, every verb valid with the object, at least one verb (the parser's
  element checks, plus the image bounds); 0 if the payload is not a JSON list exactly as written
  (a repair was needed, or the list was longer than the parser reads); 1 for an empty list.
* ``label``: ``(1/N) Σ_matched [0.5 (object class right) + 0.5 Jaccard(verb sets)]``.
* ``iou``: ``(1/N) Σ_matched (IoU_h + IoU_o) / 2``.
* ``recall`` and ``precision``: the metric's own hit rule, triplet by triplet. Each (element,
  verb) of the answer is one detection, exactly as the metric receives it
  (:func:`hoi_r1.metric_input.to_metric_preds`); a detection is a *hit* when the metric's matcher
  (:func:`hoi_r1.matching.greedy_match`, ``hico_official`` rule: same interaction class, human
  and object IoU both ≥ 0.5 in the +1-pixel convention, best ground-truth pair, no fall-back,
  earlier in the answer first) gives it a ground-truth pair. ``recall`` = hits / ground-truth
  triplets, ``precision`` = hits / detections written (a verb that is no class of the object
  counts as written and missed). They pay exactly where HOI-mAP pays: a box at IoU 0.49, a wrong
  object or a wrong verb earns nothing, and a duplicate is a false detection.

Every assigned pair counts, also one without overlap: early in training the boxes are poor and
the label reward still tells the model which classes the image holds. When both the answer and
the ground truth are empty, ``label`` and ``iou`` are 1 if the payload was read as a list (the
model rightly said "nothing") and 0 otherwise.

:func:`score_completions` parses each completion once, matches it once, and evaluates every
weighted reward on that shared reading; the total is ``Σ w_i r_i`` with ``None`` rewards left
out of the sum (TRL's ``nansum``), or NaN when every reward is ``None``.

>>> from hoi_r1.frames import Frame
>>> from hoi_r1.sample import HOISample
>>> from hoi_r1.vocab import HOIVocabulary
>>> vocab = HOIVocabulary.open(["ride", "hold"], ["person", "bicycle"])
>>> s = HOISample(0, "a.jpg", "a.jpg", 100, 100, human_boxes=[[0, 0, 50, 100]],
...               object_boxes=[[0, 50, 100, 100]], object_labels=[1], pairs=[[0, 0, 0, vocab.interaction_id(0, 1)]])
>>> t = RewardTarget(s, Frame("absolute_original", (100, 100), (100, 100)), vocab)
>>> text = ('<think>one rider</think><answer>[{"human": [0, 0, 50, 100], "object": [0, 50, 100, 100], '
...         '"object class": "bicycle", "verb class": ["ride", "hold"]}]</answer>')
>>> [REWARDS[name]([text], [t])[0] for name in ("format", "keys", "label", "iou", "recall", "precision")]
[1.0, 1.0, 0.75, 1.0, 1.0, 0.5]
>>> score_completions([text], [t], RewardWeights(keys=0.0)).total
[2.75]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np
import torch

from hoi_r1.boxes import valid_boxes
from hoi_r1.judged_answer import JudgedAnswer
from hoi_r1.reward_target import RewardTarget

BOX_TOLERANCE = 0.01
"""How far outside the image a box may reach for ``keys``, as a fraction of the image's longer
side (1 % ≈ 6 pixels of a 640-pixel HICO-DET image; ten units of the 0..1000 frame): text
frames round coordinates, and a box touching the border may land a unit outside."""


# ===================================================================== settings
@dataclass(frozen=True)
class NamedWeights:
    """Base of the reward-weight dataclasses: one finite float field per reward."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"reward weight {f.name!r} must be a finite number, found {value!r}")

    def as_dict(self) -> dict[str, float]:
        """``{reward name: weight}`` in field order."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class RewardWeights(NamedWeights):
    """Weight of each reward in the total ``Σ w_i r_i`` (YAML: ``rewards: {format: 1.0, ...}``).
    A reward with weight 0 is still computed and logged.

    Args:
        format: weight of ``format`` (the ``<think>…</think><answer>…</answer>`` structure).
        keys: weight of ``keys`` (share of fully valid answer elements).
        label: weight of ``label`` (object class and verb-set agreement of matched pairs).
        iou: weight of ``iou`` (box IoU of matched pairs).
        recall: weight of ``recall`` (ground-truth triplets hit by the metric's rule).
        precision: weight of ``precision`` (written triplets that are hits).
    """

    format: float = 1.0
    keys: float = 1.0
    label: float = 1.0
    iou: float = 1.0
    recall: float = 0.0
    precision: float = 0.0


# ===================================================================== the rewards of one judged answer
AnswerReward = Callable[[JudgedAnswer], "float | None"]
"""A reward on one judged answer (the pure form behind each registry entry)."""


def format_score(answer: JudgedAnswer) -> float:
    """1 if the text is exactly ``<think>…</think><answer>…</answer>``, else 0."""
    return float(answer.parsed.structure_ok)


def keys_score(answer: JudgedAnswer) -> float:
    """Share of fully valid answer elements; 0 if the payload is not a strict JSON list."""
    parsed = answer.parsed
    if not parsed.json_ok:
        return 0.0
    if parsed.num_elements == 0:
        return 1.0
    flawed = {p.element for p in parsed.problems}
    clean = [t for t in parsed.triplets if t.element not in flawed]
    if not clean:
        return 0.0
    width, height = answer.target.frame.original_size
    tolerance = BOX_TOLERANCE * max(width, height)
    boxes = torch.tensor([b for t in clean for b in (t.human_box, t.object_box)], dtype=torch.float64)
    inside = valid_boxes(boxes, width, height, tolerance).reshape(-1, 2).all(dim=1)
    return int(inside.sum()) / parsed.num_elements


def label_score(answer: JudgedAnswer) -> float | None:
    """``(1/N) Σ_matched [0.5 (object right) + 0.5 Jaccard(verbs)]``; ``None`` without ground truth."""
    if answer.target.sample is None:
        return None
    m = answer.match
    if m.num_units == 0:
        return float(answer.parsed.decoded)
    return float(np.sum(0.5 * m.object_right + 0.5 * m.verb_jaccard)) / m.num_units


def iou_score(answer: JudgedAnswer) -> float | None:
    """``(1/N) Σ_matched (IoU_h + IoU_o) / 2``; ``None`` without ground truth."""
    if answer.target.sample is None:
        return None
    m = answer.match
    if m.num_units == 0:
        return float(answer.parsed.decoded)
    return float(np.sum(0.5 * (m.iou_h + m.iou_o))) / m.num_units


def recall_score(answer: JudgedAnswer) -> float | None:
    """Share of ground-truth triplets hit under the metric's rule; ``None`` without ground truth.
    An image without pairs scores 1 when the payload was read (there was nothing to find)."""
    if answer.target.sample is None:
        return None
    h = answer.hits
    return h.hits / h.truth if h.truth else float(answer.parsed.decoded)


def precision_score(answer: JudgedAnswer) -> float | None:
    """Share of written triplets that are hits; ``None`` without ground truth. An answer that
    writes none scores 1 on an image without pairs (read as a list) and 0 otherwise."""
    if answer.target.sample is None:
        return None
    h = answer.hits
    if not h.written:
        return float(answer.parsed.decoded and not h.truth)
    return h.hits / h.written


ANSWER_REWARDS: dict[str, AnswerReward] = {
    "format": format_score,
    "keys": keys_score,
    "label": label_score,
    "iou": iou_score,
    "recall": recall_score,
    "precision": precision_score,
}
"""Reward name → pure function of one :class:`JudgedAnswer`."""


# ===================================================================== the plain callables
class CompletionReward:
    """A registry reward as TRL-style plain callable ``(completions, targets) -> list[float | None]``.

    Args:
        name: a key of :data:`ANSWER_REWARDS`.
    """

    def __init__(self, name: str) -> None:
        if name not in ANSWER_REWARDS:
            raise ValueError(f"unknown reward {name!r}; known rewards: {sorted(ANSWER_REWARDS)}")
        self.name = self.__name__ = name
        self._fn = ANSWER_REWARDS[name]

    def __call__(self, completions: Sequence[str], targets: Sequence[RewardTarget]) -> list[float | None]:
        _check_lengths(completions, targets)
        return [self._fn(JudgedAnswer.read(c, t)) for c, t in zip(completions, targets)]

    def __repr__(self) -> str:
        return f"CompletionReward({self.name!r})"


REWARDS: dict[str, CompletionReward] = {name: CompletionReward(name) for name in ANSWER_REWARDS}
"""Reward name → plain callable ``(completions, targets) -> list[float | None]``."""


@dataclass(frozen=True)
class RewardBreakdown:
    """Rewards of a batch of completions.

    Args:
        per_reward: reward name → one value (or ``None``) per completion, unweighted.
        total: ``Σ w_i r_i`` per completion over the rewards that apply (NaN when none applies).
        answers: the judged answers, for logging (parse problems, repairs, lengths).
    """

    per_reward: dict[str, list[float | None]]
    total: list[float]
    answers: list[JudgedAnswer]

    def select(self, rows: list[int]) -> "RewardBreakdown":
        """The rewards of completions ``rows``, in that order."""
        return RewardBreakdown({k: [v[i] for i in rows] for k, v in self.per_reward.items()},
                               [self.total[i] for i in rows], [self.answers[i] for i in rows])

    def means(self) -> dict[str, float]:
        """Mean of each reward over the completions where it applies (NaN if none)."""
        out = {}
        for name, values in self.per_reward.items():
            kept = [v for v in values if v is not None]
            out[name] = sum(kept) / len(kept) if kept else math.nan
        return out


def score_completions(
    completions: Sequence[str], targets: Sequence[RewardTarget], weights: RewardWeights | None = None
) -> RewardBreakdown:
    """Parse and match every completion once, evaluate each weighted reward, and sum them.

    Args:
        completions: generated texts.
        targets: one :class:`RewardTarget` per completion (the same object may repeat for the
            ``G`` completions of a prompt; its ground truth is prepared once).
        weights: weight of each reward (default: all 1).
    """
    _check_lengths(completions, targets)
    return score_answers([JudgedAnswer.read(c, t) for c, t in zip(completions, targets)], weights)


def score_answers(answers: Sequence[JudgedAnswer], weights: RewardWeights | None = None) -> RewardBreakdown:
    """Each weighted reward of answers already parsed and matched, and their sum (what
    :func:`score_completions` does after reading the texts; validation scores the parsed answers
    the metric saw with it)."""
    weights = weights if weights is not None else RewardWeights()
    per_reward = {name: [ANSWER_REWARDS[name](a) for a in answers] for name in weights.as_dict()}
    total = []
    for i in range(len(answers)):
        terms = [w * per_reward[name][i] for name, w in weights.as_dict().items() if per_reward[name][i] is not None]
        total.append(float(sum(terms)) if terms else math.nan)
    return RewardBreakdown(per_reward, total, answers)


def _check_lengths(completions: Sequence[str], targets: Sequence[RewardTarget]) -> None:
    if len(completions) != len(targets):
        raise ValueError(f"rewards: {len(completions)} completions but {len(targets)} targets")
