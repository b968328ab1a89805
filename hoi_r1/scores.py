"""Confidence scores for parsed triplets: an LLM writes no scores, mAP needs a ranking.

Four variants, chosen by a :data:`ScoreKind` setting:

* ``rank`` (HOI-R1): the k-th of n triplets of an answer (k from 0) scores
  ``1 - 0.5 * k / (n - 1)``; a lone triplet scores 1 (:func:`hoi_r1.answer.rank_scores`, which
  :func:`~hoi_r1.answer.parse_answer` applies when it reads an answer).
* ``logprob``: ``exp(mean log-probability)`` of the triplet's label tokens (its object class and
  verb class values). The model module supplies token log-probs; this module does the pure
  bookkeeping: :func:`label_spans` gives the character spans of each triplet's label strings in
  the completion, :func:`span_mean_logprobs` averages the log-probs of the tokens that overlap
  them (given each token's character offsets), :func:`logprob_scores` maps means to (0, 1].
* ``logprob_element``: the same over every token of the triplet's answer element (its two boxes,
  its labels, keys and punctuation): the boxes' tokens carry the model's confidence in where the
  pair is, which decides most misses (:func:`score_spans` gives either kind's spans).
* ``vote``: agreement across N sampled answers for one image. A triplet of the first answer
  scores, averaged over its verbs, the fraction of answers (the first included) that contain a
  triplet with the same object class, the verb, and pair-IoU ≥ ``iou_threshold``
  (:func:`hoi_r1.boxes.pair_iou`). A triplet without verbs scores the fraction with a
  same-object, overlapping triplet.

:func:`apply_scores` writes any list of scores into a parsed answer.

>>> rank_scores(3)
[1.0, 0.75, 0.5]
>>> [round(s, 4) for s in logprob_scores([0.0, -0.6931])]
[1.0, 0.5]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Literal, Sequence

import torch

from hoi_r1.answer import ParsedAnswer, rank_scores
from hoi_r1.boxes import PixelConvention, pair_iou
from hoi_r1.vocab import HOIVocabulary

ScoreKind = Literal["rank", "logprob", "logprob_element", "vote"]
LOGPROB_SCORES: tuple[ScoreKind, ...] = ("logprob", "logprob_element")
"""The kinds computed from the token log-probabilities of the answer."""
Span = tuple[int, int]
_STRING = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"' r"|'([^'\\]*(?:\\.[^'\\]*)*)'", re.S)


def logprob_scores(mean_logprobs: Sequence[float]) -> list[float]:
    """``exp(mean log-prob)`` per triplet; a non-finite mean scores 0."""
    return [math.exp(min(v, 0.0)) if math.isfinite(v) else 0.0 for v in mean_logprobs]


def vote_scores(
    parsed_answers: Sequence["ParsedAnswer"],
    iou_threshold: float = 0.5,
    convention: PixelConvention = "continuous",
) -> list[float]:
    """Agreement score of each triplet of ``parsed_answers[0]`` across all the answers.

    >>> from hoi_r1.answer import ParsedAnswer, Triplet
    >>> a = Triplet((0., 0., 10., 10.), (20., 0., 30., 10.), 1, (0, 1))
    >>> b = Triplet((0., 0., 10., 11.), (20., 0., 30., 10.), 1, (0,))
    >>> vote_scores([ParsedAnswer(triplets=[a]), ParsedAnswer(triplets=[b]), ParsedAnswer()])
    [0.5]
    """
    if not parsed_answers:
        return []
    reference = parsed_answers[0].triplets
    if not reference:
        return []
    ref_h, ref_o = _boxes(reference)
    agree = torch.zeros(len(reference), dtype=torch.float64)
    for answer in parsed_answers:
        if not answer.triplets:
            continue
        h, o = _boxes(answer.triplets)
        overlap = pair_iou(ref_h, ref_o, h, o, convention) >= iou_threshold  # (R, T)
        for i, t in enumerate(reference):
            matches = [answer.triplets[j] for j in overlap[i].nonzero().flatten().tolist()]
            matches = [m for m in matches if m.object_id == t.object_id]
            if not t.verb_ids:
                agree[i] += float(bool(matches))
            else:
                agree[i] += sum(any(v in m.verb_ids for m in matches) for v in t.verb_ids) / len(t.verb_ids)
    return (agree / len(parsed_answers)).tolist()


def apply_scores(parsed: "ParsedAnswer", scores: Sequence[float]) -> "ParsedAnswer":
    """A copy of ``parsed`` whose triplets carry ``scores`` (one per triplet)."""
    if len(scores) != len(parsed.triplets):
        raise ValueError(f"apply_scores: {len(scores)} scores for {len(parsed.triplets)} triplets")
    return replace(parsed, triplets=[replace(t, score=float(s)) for t, s in zip(parsed.triplets, scores)])


@dataclass(frozen=True)
class LabelSpans:
    """Character spans ``(start, end)`` of one triplet's label strings in the completion.

    Args:
        object_span: the ``object class`` value (inside the quotes), if found.
        verb_spans: per verb id of the triplet (same order), the span of its name, if found.
    """

    object_span: tuple[int, int] | None
    verb_spans: tuple[tuple[int, int] | None, ...]

    def all(self) -> list[tuple[int, int]]:
        return [s for s in (self.object_span, *self.verb_spans) if s is not None]


def label_spans(text: str, parsed: "ParsedAnswer", vocab: "HOIVocabulary | None" = None) -> list[LabelSpans]:
    """Spans of each triplet's labels in ``text``; ``parsed`` must be ``parse_answer(text, …)``.

    Verb names are matched to the triplet's verbs through :attr:`Triplet.verb_names` (the names
    as written); ``vocab`` is only needed for triplets built without them.

    >>> from hoi_r1.answer import parse_answer
    >>> from hoi_r1.frames import Frame
    >>> from hoi_r1.vocab import HOIVocabulary
    >>> vocab = HOIVocabulary.open(["ride", "sit_on"], ["person", "bicycle"])
    >>> text = '[{"human": [0,0,5,5], "object": [1,1,9,9], "object class": "bicycle", "verb class": "sit on, ride"}]'
    >>> p = parse_answer(text, vocab, Frame("absolute_original", (10, 10), (10, 10)))
    >>> s = label_spans(text, p)[0]
    >>> text[slice(*s.object_span)], [text[slice(*v)] for v in s.verb_spans]
    ('bicycle', ['sit on', 'ride'])
    """
    out = []
    for t in parsed.triplets:
        if not 0 <= t.element < len(parsed.element_spans):
            out.append(LabelSpans(None, (None,) * len(t.verb_ids)))
            continue
        start, end = parsed.element_spans[t.element]
        object_span, written = _element_label_spans(text, start, end)
        if len(t.verb_names) == len(t.verb_ids):
            keys, same = [_norm(n) for n in t.verb_names], lambda name, key: _norm(name) == key
        elif vocab is not None:
            keys, same = list(t.verb_ids), lambda name, key: vocab.verb_id(name) == key
        else:
            raise ValueError("label_spans: triplets without verb_names need the vocabulary")
        spans = tuple(next((span for name, span in written if same(name, key)), None) for key in keys)
        out.append(LabelSpans(object_span, spans))
    return out


def score_spans(kind: ScoreKind, text: str, parsed: "ParsedAnswer", vocab: "HOIVocabulary | None" = None) -> list[list[Span]]:
    """Per triplet, the character spans of ``text`` whose tokens its ``logprob`` confidence
    averages: its label strings (``logprob``, :func:`label_spans`) or its whole answer element
    (``logprob_element``); ``parsed`` must be ``parse_answer(text, …)``.

    >>> from hoi_r1.answer import parse_answer
    >>> from hoi_r1.frames import Frame
    >>> from hoi_r1.vocab import HOIVocabulary
    >>> vocab = HOIVocabulary.open(["ride"], ["person", "bicycle"])
    >>> text = 'x [{"human": [0,0,5,5], "object": [1,1,9,9], "object class": "bicycle", "verb class": "ride"}]'
    >>> p = parse_answer(text, vocab, Frame("absolute_original", (10, 10), (10, 10)))
    >>> [[text[a:b] for a, b in t] for t in score_spans("logprob", text, p)]
    [['bicycle', 'ride']]
    >>> text[slice(*score_spans("logprob_element", text, p)[0][0])][:12]
    '{"human": [0'
    """
    if kind == "logprob_element":
        return [[parsed.element_spans[t.element]] if 0 <= t.element < len(parsed.element_spans) else []
                for t in parsed.triplets]
    return [s.all() for s in label_spans(text, parsed, vocab)]


def span_mean_logprobs(
    spans: Sequence[Sequence[Span]],
    token_offsets: Sequence[tuple[int, int]],
    token_logprobs: Sequence[float],
) -> list[float]:
    """Mean log-prob of the tokens overlapping each triplet's spans (``-inf`` if none).

    Args:
        spans: per triplet, its character spans (:func:`score_spans`).
        token_offsets: ``(start, end)`` characters of each completion token (tokenizer offsets).
        token_logprobs: log-probability of each completion token.

    >>> s = [LabelSpans((2, 5), ((8, 9),)).all()]
    >>> span_mean_logprobs(s, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)], [0., -1., -2., 0., -3.])
    [-2.0]
    """
    out = []
    for triplet in spans:
        values = [
            lp
            for (a, b), lp in zip(token_offsets, token_logprobs)
            if any(a < e and s < b for s, e in triplet)
        ]
        out.append(sum(values) / len(values) if values else -math.inf)
    return out


def _boxes(triplets) -> tuple[torch.Tensor, torch.Tensor]:
    h = torch.tensor([t.human_box for t in triplets], dtype=torch.float64).reshape(-1, 4)
    o = torch.tensor([t.object_box for t in triplets], dtype=torch.float64).reshape(-1, 4)
    return h, o


def _element_label_spans(text: str, start: int, end: int) -> tuple[tuple[int, int] | None, list[tuple[str, tuple[int, int]]]]:
    """The ``object class`` value span and the ``(name, span)`` of each verb name in one element."""
    object_span = None
    verbs: list[tuple[str, tuple[int, int]]] = []
    pos = start
    while (m := _STRING.search(text, pos, end)) is not None:
        colon = _skip_ws(text, m.end(), end)
        if colon >= end or text[colon] != ":":
            pos = m.end()
            continue
        key = " ".join(_content(m).replace("_", " ").lower().split())
        value = _skip_ws(text, colon + 1, end)
        pos = colon + 1
        if key == "object class" and object_span is None:
            v = _STRING.match(text, value, end)
            if v is not None:
                object_span, pos = _content_span(v), v.end()
        elif key == "verb class" and not verbs:
            if value < end and text[value] == "[":
                close = text.find("]", value, end)
                close = end if close < 0 else close
                for v in _STRING.finditer(text, value, close):
                    verbs += _split_names(text, *_content_span(v))
                pos = close
            elif (v := _STRING.match(text, value, end)) is not None:
                verbs += _split_names(text, *_content_span(v))
                pos = v.end()
    return object_span, verbs


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def _content(m: re.Match) -> str:
    return m.group(1) if m.group(1) is not None else m.group(2)


def _content_span(m: re.Match) -> tuple[int, int]:
    return m.start() + 1, m.end() - 1


def _split_names(text: str, start: int, end: int) -> list[tuple[str, tuple[int, int]]]:
    """Comma-separated names in ``text[start:end]`` with their stripped spans."""
    out = []
    pos = start
    while pos <= end:
        comma = text.find(",", pos, end)
        stop = end if comma < 0 else comma
        a, b = pos, stop
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((text[a:b], (a, b)))
        pos = stop + 1
    return out


def _skip_ws(s: str, pos: int, end: int) -> int:
    while pos < end and s[pos] in " \t\r\n":
        pos += 1
    return pos
