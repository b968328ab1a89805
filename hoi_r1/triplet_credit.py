"""Triplet credit: token-level GRPO advantages from the metric's hit rule, part by part.

GRPO gives every token of a completion one advantage, the completion's group-relative reward
(:func:`hoi_r1.advantages.group_advantages`). An HOI answer is a list of detections, though, and
one answer may hold a hit next to a miss, or right boxes with a wrong verb: the sequence
advantage pushes all of it the same way, and only the average over many completions tells the
parts apart. Triplet credit gives each part of each answer element a term of its own, judged the
way the metric judges it (an addition of this project; HOI-R1 and OV-HOI use sequence rewards only):

1. **Credit of each part** (:func:`element_credits`), with the metric's matcher
   (:func:`hoi_r1.matching.greedy_match`: IoU ≥ 0.5 for both boxes in the +1-pixel convention,
   one ground-truth pair per element, earlier elements first, so a repeated pair earns nothing):

   ==========  ==================================================================================
   ``boxes``   1 when the element's two boxes match a ground-truth pair, whatever its labels
   ``object``  1 when they match a ground-truth pair with the object class written
   ``verb``    per verb, 1 when that (element, verb) detection is a hit
               (:attr:`hoi_r1.judged_answer.JudgedAnswer.detection_hits`)
   ==========  ==================================================================================

2. **Credit of each token** (:func:`token_credits`): a token of a verb name carries that verb's
   credit, a token of the object-class value the element's ``object`` credit, any other token of
   the element (its boxes, its keys and punctuation) its ``boxes`` credit. Tokens outside every
   element that yielded a triplet (reasoning, tags, a rejected element) carry none.
3. **Advantage** (:func:`group_triplet_advantages`): within each group (the ``G`` completions of
   one prompt) and each part, the credits of all the units written (elements for ``boxes`` and
   ``object``, detections for ``verb``) give a baseline ``b`` (their mean) and a scale ``s``
   (their Bessel std); a credited token gets ``(c_t - b) / (s + 1e-4)``, 0 when that part has
   fewer than two units in the group or no spread. The loss then uses, per token,
   ``A_i + λ · that`` (``λ``: ``loss.triplet_credit`` of :class:`~hoi_r1.grpo.GRPOModule`; 0 is
   plain GRPO).

A missed ground-truth triplet has no tokens: omissions are paid for by the sequence rewards
(``recall``). Because the ``logprob`` confidence score is the mean log-prob of a detection's
label tokens, pushing right labels up and wrong ones down also trains the ranking mAP integrates over.

>>> credits = ElementCredit(boxes=1.0, object=1.0, verbs=(1.0, 0.0))   # right pair, verbs "ride", "hold"
>>> element, object_span, verbs = (10, 40), (12, 16), [(30, 34), (36, 40)]
>>> offsets = [(0, 10), (10, 12), (12, 16), (16, 30), (30, 34), (34, 36), (36, 40)]
>>> values, parts = token_credits(offsets, [element], [object_span], [verbs], [credits])
>>> values, parts
([nan, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [-1, 0, 1, 0, 2, 0, 2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from hoi_r1.advantages import STD_EPSILON, nanstd
from hoi_r1.judged_answer import HIT_IOU, JudgedAnswer, JudgedRow
from hoi_r1.matching import greedy_match
from hoi_r1.scores import label_spans

Span = tuple[int, int]
PARTS = ("boxes", "object", "verb")
"""Token parts, in the order of the part index :func:`token_credits` returns (-1: no part)."""


@dataclass(frozen=True)
class ElementCredit:
    """Credits of one answer element's parts (1 right, 0 wrong).

    Args:
        boxes: the two boxes match a ground-truth pair.
        object: they match a ground-truth pair of the object class written.
        verbs: per verb (in the order written), that detection is a hit.
    """

    boxes: float
    object: float
    verbs: tuple[float, ...]

    def units(self) -> tuple[list[float], list[float], list[float]]:
        """The units of each part this element adds to its group's baselines."""
        return [self.boxes], [self.object], list(self.verbs)


def element_credits(answer: JudgedAnswer) -> list[ElementCredit]:
    """Credit of each triplet (answer element) of ``answer`` (all 0 without ground truth)."""
    triplets, sample = answer.parsed.triplets, answer.target.sample
    hits = answer.detection_hits
    if not triplets:
        return []
    gt = answer.target.ground_truth
    if sample is None or not len(gt):
        return [ElementCredit(0.0, 0.0, tuple(0.0 for _ in t.verb_ids)) for t in triplets]
    humans = torch.tensor([t.human_box for t in triplets], dtype=torch.float64)
    objects = torch.tensor([t.object_box for t in triplets], dtype=torch.float64)
    order = torch.arange(len(triplets))

    def matched(det_cells: torch.Tensor, gt_cells: torch.Tensor) -> list[bool]:
        return greedy_match(det_cells, order, humans, objects, gt_cells, gt.humans, gt.objects,
                            threshold=HIT_IOU, convention="plus_one").tolist()

    located = matched(torch.zeros(len(triplets), dtype=torch.long), torch.zeros(len(gt), dtype=torch.long))
    right_object = matched(torch.tensor([t.object_id for t in triplets]), torch.tensor(gt.object_labels))
    return [ElementCredit(float(b), float(o), tuple(float(h) for h in v))
            for b, o, v in zip(located, right_object, hits)]


def answer_credits(
    text: str, answer: JudgedAnswer, token_offsets: Sequence[Span]
) -> tuple[list[float], list[int], list[ElementCredit]]:
    """Token credits and parts of one completion (:func:`token_credits`) and its element credits.

    Args:
        text: the completion; ``answer`` must be its reading (``JudgedAnswer.read(text, …)``).
        answer: the judged answer.
        token_offsets: characters of each completion token (:func:`hoi_r1.generation.char_offsets`).
    """
    parsed = answer.parsed
    keep = [k for k, t in enumerate(parsed.triplets) if 0 <= t.element < len(parsed.element_spans)]
    spans, credits = label_spans(text, parsed, answer.target.vocab), element_credits(answer)
    values, parts = token_credits(
        token_offsets,
        [parsed.element_spans[parsed.triplets[k].element] for k in keep],
        [spans[k].object_span for k in keep],
        [spans[k].verb_spans for k in keep],
        [credits[k] for k in keep],
    )
    return values, parts, [credits[k] for k in keep]


def token_credits(
    token_offsets: Sequence[Span],
    element_spans: Sequence[Span],
    object_spans: Sequence[Span | None],
    verb_spans: Sequence[Sequence[Span | None]],
    credits: Sequence[ElementCredit],
) -> tuple[list[float], list[int]]:
    """Credit (NaN: none) and part index (:data:`PARTS`; -1: none) of each token of one completion.

    Args:
        token_offsets: ``(start, end)`` characters of each completion token.
        element_spans: per element, its characters.
        object_spans: per element, the characters of its object-class value (``None``: not found).
        verb_spans: per element, per verb (the order of ``ElementCredit.verbs``), the characters
            of its name, ``None`` when not found (:func:`hoi_r1.scores.label_spans`).
        credits: per element, its credits.
    """
    if not len(element_spans) == len(object_spans) == len(verb_spans) == len(credits):
        raise ValueError(
            f"token_credits: {len(element_spans)} element spans, {len(object_spans)} object spans, "
            f"{len(verb_spans)} verb-span lists and {len(credits)} credits must be one per element"
        )
    values, parts = [math.nan] * len(token_offsets), [-1] * len(token_offsets)

    def mark(span: Span, value: float, part: int) -> None:
        for k, (a, b) in enumerate(token_offsets):
            if a < span[1] and span[0] < b:
                values[k], parts[k] = value, part

    for element, credit in zip(element_spans, credits):
        mark(element, credit.boxes, 0)
    for span, credit in zip(object_spans, credits):
        if span is not None:
            mark(span, credit.object, 1)
    for spans, credit in zip(verb_spans, credits):
        for span, value in zip(spans, credit.verbs):
            if span is not None:
                mark(span, value, 2)
    return values, parts


def group_triplet_advantages(
    values: torch.Tensor, parts: torch.Tensor, credits: Sequence[Sequence[ElementCredit]], group_size: int
) -> torch.Tensor:
    """Per-token triplet advantages ``(c_t - b) / (s + 1e-4)`` of ``B·G`` completions.

    Args:
        values: ``(B·G, T)`` token credits, NaN where a token has none (:func:`token_credits`);
            the ``G`` completions of a prompt are contiguous rows.
        parts: ``(B·G, T)`` part index of each token (-1: none).
        credits: per completion, its element credits (the units of the baselines).
        group_size: ``G``.

    Returns:
        ``(B·G, T)`` advantages, 0 on tokens without credit and for parts with fewer than two
        units in the group or no spread.

    >>> c = [[ElementCredit(1.0, 1.0, (1.0,))], [ElementCredit(1.0, 0.0, (0.0,))]]   # G = 2
    >>> values, parts = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), torch.tensor([[0, 1, 2], [0, 1, 2]])
    >>> [[round(v, 3) for v in row] for row in group_triplet_advantages(values, parts, c, 2).tolist()]
    [[0.0, 0.707, 0.707], [0.0, -0.707, -0.707]]
    """
    rows = values.shape[0]
    if values.shape != parts.shape or values.ndim != 2 or group_size < 1 or rows % group_size or len(credits) != rows:
        raise ValueError(
            f"group_triplet_advantages: values {tuple(values.shape)} and parts {tuple(parts.shape)} must be one "
            f"(B·G, T) shape with B·G a multiple of group_size={group_size}, and one credit list per row "
            f"(found {len(credits)})"
        )
    out = torch.zeros_like(values)
    for first in range(0, rows, group_size):
        group = slice(first, first + group_size)
        units = [[], [], []]
        for element in (e for row in credits[group] for e in row):
            for part, unit in zip(units, element.units()):
                part.extend(unit)
        for index, part in enumerate(units):
            if len(part) < 2:
                continue
            part = torch.tensor(part, dtype=values.dtype)
            std = nanstd(part)
            if torch.isclose(std, torch.zeros_like(std)):
                continue
            here = parts[group] == index
            scaled = (values[group] - part.mean()) / (std + STD_EPSILON)
            out[group] = torch.where(here, scaled, out[group])
    return out


def batch_triplet_advantages(rows: Iterable[JudgedRow], shape: tuple[int, int], group_size: int) -> torch.Tensor:
    """``shape`` per-token triplet advantages of a batch of single-turn completions (whole groups
    of ``group_size`` rows): :func:`answer_credits` per row, then :func:`group_triplet_advantages`."""
    values = torch.full(shape, float("nan"))
    parts = torch.full(shape, -1, dtype=torch.long)
    credits = []
    for r in rows:
        row_values, row_parts, row_credits = answer_credits(r.text, r.answer, r.offsets)
        values[r.row, : len(r.offsets)] = torch.tensor(row_values, dtype=values.dtype)
        parts[r.row, : len(r.offsets)] = torch.tensor(row_parts, dtype=torch.long)
        credits.append(row_credits)
    return group_triplet_advantages(values, parts, credits, group_size)
