"""Score calibration: a GRPO term that trains the ``logprob`` confidence the ranking of mAP uses.

mAP ranks every detection of the test set by its confidence, and a model whose detections are
right but ranked below its wrong ones loses AP it could have had: the gap between the mean max
recall (the AP of a perfect ranking of the same detections) and mAP is what the ranking costs.
The ``logprob`` score of a triplet is ``s = exp(mean log-prob of its label tokens)``
(:mod:`hoi_r1.scores`; ``logprob_element``: of every token of its answer element), a function of
the policy itself, so it can be trained directly. The term trains the kind the evaluation ranks
by (``evaluation.scores``; the label tokens' when it ranks by ``rank`` or ``vote``). This
term (an addition of this project; Visual-RFT, Liu et al. 2025, rewards an emitted confidence
instead) is the Brier score of ``s`` against the metric's verdict on each detection, over the
completions of a generation batch:

    L_cal = Σ_d w_d (s_d − h_d)² / D

with ``h_d = 1`` for a hit under the metric's rule (:attr:`hoi_r1.judged_answer.JudgedAnswer.
detection_hits`), 0 otherwise, and ``D`` the detections of the generation batch. A triplet with
``n`` verbs is ``n`` detections sharing one score: one term of weight ``n`` against the mean of
its verbs' verdicts (the same loss up to a constant). ``kind="log"`` takes the log loss
``−[h log s + (1 − h) log(1 − s)]`` instead (the same exactly, per triplet). Its gradient does
not vanish on near-certain label tokens, where the softmax saturates and the Brier gradient
``2 (s − h) s (1 − p)`` does, but on the demo it ranked worse (docs/grpo.md, round 6). The
log-probs are the policy's training log-probs (logits divided by the sampling temperature), not
those of greedy evaluation.

* :func:`score_token_index` assigns each completion token to the triplet whose score spans it
  overlaps (the tokens :func:`hoi_r1.scores.span_mean_logprobs` averages);
* :func:`triplet_targets` gives each triplet its verdict and weight;
* :func:`completion_score_targets` does both for one judged completion, and
  :func:`batch_score_targets` for a batch of them;
* :func:`calibration_loss` is the term over a micro-batch of rows.

>>> score_token_index([[(2, 5), (8, 9)]], [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)])
[-1, 0, 0, -1, 0]
>>> triplet_targets(((True, False), (False,)))
([0.5, 0.0], [2.0, 1.0])
"""

from __future__ import annotations

from typing import Iterable, Literal, Sequence

import torch

from hoi_r1.judged_answer import JudgedAnswer, JudgedRow
from hoi_r1.scores import LOGPROB_SCORES, ScoreKind, Span, score_spans

CalibrationLoss = Literal["log", "brier"]
LOG_EPSILON = 1e-6
"""Scores are capped at ``exp(−1e-6)``, so that ``log(1 − s)`` stays finite."""


def score_token_index(spans: Sequence[Sequence[Span]], token_offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Per token, the index of the triplet whose score spans it overlaps (``-1``: none).

    Args:
        spans: per triplet, the spans its score averages (:func:`hoi_r1.scores.score_spans`).
        token_offsets: ``(start, end)`` characters of each completion token.
    """
    out = []
    for a, b in token_offsets:
        owner = -1
        for k, triplet in enumerate(spans):
            if any(a < e and s < b for s, e in triplet):
                owner = k
                break
        out.append(owner)
    return out


def triplet_targets(detection_hits: Sequence[Sequence[bool]]) -> tuple[list[float], list[float]]:
    """Per triplet, the mean verdict of its verbs' detections and their number (its weight)."""
    targets = [sum(map(float, hits)) / len(hits) if hits else 0.0 for hits in detection_hits]
    return targets, [float(len(hits)) for hits in detection_hits]


def completion_score_targets(
    text: str, answer: JudgedAnswer, token_offsets: Sequence[tuple[int, int]], kind: ScoreKind = "logprob",
) -> tuple[list[int], list[float], list[float]]:
    """Per token its triplet (:func:`score_token_index`), per triplet its verdict and weight
    (:func:`triplet_targets`), for one completion judged against its ground truth; the spans are
    those of the score ``kind`` (the label tokens' unless it is one of ``LOGPROB_SCORES``)."""
    kind = kind if kind in LOGPROB_SCORES else "logprob"
    spans = score_spans(kind, text, answer.parsed, answer.target.vocab)
    targets, weights = triplet_targets(answer.detection_hits)
    return score_token_index(spans, token_offsets), targets, weights


def batch_score_targets(
    rows: Iterable[JudgedRow], shape: tuple[int, int], kind: ScoreKind = "logprob",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`completion_score_targets` of a batch of single-turn completions, as the ``shape``
    token index (``-1``: no triplet) and the ``(R, K)`` targets and weights (0: padding) that
    :func:`calibration_loss` takes."""
    index = torch.full(shape, -1, dtype=torch.long)
    per_row = []
    for r in rows:
        token_index, row_targets, row_weights = completion_score_targets(r.text, r.answer, r.offsets, kind)
        index[r.row, : len(r.offsets)] = torch.tensor(token_index, dtype=torch.long)
        per_row.append((row_targets, row_weights))
    K = max((len(t) for t, _ in per_row), default=0)
    targets, weights = torch.zeros(shape[0], K), torch.zeros(shape[0], K)
    for row, (t, w) in enumerate(per_row):
        targets[row, : len(t)], weights[row, : len(w)] = torch.tensor(t), torch.tensor(w)
    return index, targets, weights


def calibration_loss(
    logp: torch.Tensor, token_index: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
    normaliser: float, kind: CalibrationLoss = "brier",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Σ_k w_k (s_k − t_k)² / normaliser`` over the triplets of a micro-batch (``kind="log"``:
    ``− Σ_k w_k [t_k log s_k + (1 − t_k) log(1 − s_k)] / normaliser``).

    Args:
        logp: ``(R, T)`` log-probs of the completion tokens.
        token_index: ``(R, T)`` triplet of each token within its row (:func:`score_token_index`;
            ``-1``: none, padding included).
        targets: ``(R, K)`` per triplet, the mean verdict of its detections.
        weights: ``(R, K)`` per triplet, its detections (0: no triplet, or no label token found).
        normaliser: the detections of the whole generation batch (the micro-batches' terms add
            up to the mean over it).
        kind: ``brier`` (the Brier score) or ``log`` (the log loss).

    Returns:
        The loss and the ``(R, K)`` scores ``s = exp(mean log-prob)`` (0 where a triplet has no
        token).

    >>> logp = torch.log(torch.tensor([[0.5, 0.5, 0.8]]))
    >>> loss, s = calibration_loss(logp, torch.tensor([[0, 0, 1]]), torch.tensor([[0.0, 1.0]]),
    ...                            torch.tensor([[1.0, 1.0]]), normaliser=2, kind="log")
    >>> round(loss.item(), 4), [round(v, 4) for v in s[0].tolist()]
    (0.4581, [0.5, 0.8])
    """
    K = targets.shape[1]
    if K == 0:
        return logp.sum() * 0.0, targets
    member = (token_index[:, :, None] == torch.arange(K, device=logp.device)).to(logp.dtype)  # (R, T, K)
    count = member.sum(dim=1)
    has = count > 0
    mean = ((logp[:, :, None] * member).sum(dim=1) / count.clamp(min=1)).clamp(max=-LOG_EPSILON)
    log_miss = torch.log(-torch.expm1(mean))  # log(1 − s), stable near s = 1
    t = targets.to(logp.dtype)
    w = weights.to(logp.dtype) * has
    score = torch.where(has, mean.exp(), torch.zeros_like(mean))
    if kind == "brier":
        per_triplet = (score - t) ** 2
    elif kind == "log":
        per_triplet = -(t * mean + (1 - t) * log_miss)
    else:
        raise ValueError(f"calibration loss must be 'log' or 'brier', found {kind!r}")
    return (w * per_triplet).sum() / max(float(normaliser), 1.0), score
