"""Confidence scores: rank, vote, and the label-span bookkeeping behind logprob."""

from __future__ import annotations

import math

import pytest

from hoi_r1.answer import ParsedAnswer, Triplet, parse_answer
from hoi_r1.answer_render import render_answer
from hoi_r1.frames import Frame
from hoi_r1.metric_input import to_metric_preds
from hoi_r1.sample import HOISample
from hoi_r1.scores import (
    LabelSpans,
    apply_scores,
    label_spans,
    logprob_scores,
    rank_scores,
    span_mean_logprobs,
    vote_scores,
)
from hoi_r1.vocab import HOIVocabulary

VOCAB = HOIVocabulary.open(["hold", "ride", "sit_on"], ["person", "bicycle", "dining_table"])
FRAME = Frame("absolute_original", (200, 100), (196, 112))


def test_rank_scores_follow_hoi_r1():
    assert rank_scores(0) == [] and rank_scores(1) == [1.0]
    assert rank_scores(2) == [1.0, 0.5]
    scores = rank_scores(5)
    assert scores == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5])


def test_logprob_scores():
    assert logprob_scores([0.0, math.log(0.25), -math.inf, math.nan, 0.3]) == pytest.approx([1.0, 0.25, 0.0, 0.0, 1.0])


def triplet(dx: float = 0.0, object_id: int = 1, verbs=(1,)) -> Triplet:
    return Triplet((0.0 + dx, 0.0, 10.0 + dx, 10.0), (20.0, 0.0, 30.0, 10.0), object_id, tuple(verbs))


def test_vote_scores_count_agreeing_samples_per_verb():
    first = ParsedAnswer(triplets=[triplet(verbs=(1, 2)), triplet(dx=100.0, verbs=(0,))])
    second = ParsedAnswer(triplets=[triplet(dx=1.0, verbs=(1,))])  # IoU 9/11 with the first triplet
    third = ParsedAnswer(triplets=[triplet(dx=6.0, verbs=(1, 2))])  # IoU 4/16: no match
    fourth = ParsedAnswer(triplets=[triplet(object_id=2, verbs=(1, 2))])  # other object class
    scores = vote_scores([first, second, third, fourth])
    # triplet 0: verb 1 in answers 1, 2 -> 2/4; verb 2 in answer 1 -> 1/4; mean 3/8. Triplet 1: only itself.
    assert scores == pytest.approx([3 / 8, 1 / 4])
    assert vote_scores([first]) == [1.0, 1.0]
    assert vote_scores([]) == [] and vote_scores([ParsedAnswer(), first]) == []
    lone = ParsedAnswer(triplets=[triplet(verbs=())])
    assert vote_scores([lone, ParsedAnswer(triplets=[triplet(dx=1.0, verbs=(2,))]), ParsedAnswer()]) == pytest.approx([2 / 3])


def test_vote_threshold_is_inclusive():
    a = ParsedAnswer(triplets=[Triplet((0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 10.0, 10.0), 1, (1,))])
    b = ParsedAnswer(triplets=[Triplet((0.0, 0.0, 10.0, 5.0), (0.0, 0.0, 10.0, 10.0), 1, (1,))])  # IoU exactly 0.5
    assert vote_scores([a, b]) == [1.0]
    assert vote_scores([a, b], iou_threshold=0.51) == [0.5]


def test_apply_scores_feeds_the_metric_input():
    p = parse_answer(
        '[{"human": [0,0,5,5], "object": [1,1,9,9], "object class": "bicycle", "verb class": "ride"}]', VOCAB, FRAME
    )
    scored = apply_scores(p, [0.3])
    assert scored.triplets[0].score == 0.3 and p.triplets[0].score == 1.0
    assert to_metric_preds(scored, VOCAB, 0)["scores"].tolist() == pytest.approx([0.3])
    with pytest.raises(ValueError, match="2 scores for 1 triplets"):
        apply_scores(p, [0.1, 0.2])


@pytest.mark.parametrize(
    "verbs",
    ['["sit on", "ride"]', '"sit on, ride"', '"sit_on,ride"', "['sit on', 'ride']", '["sit on, ride", "juggle"]'],
)
def test_label_spans_point_at_the_label_text(verbs):
    text = (
        '<think>a bicycle</think><answer>[{"human": [0,0,5,5], "object": [1,1,9,9], "object class": "dining table", '
        '"verb class": "hold"}, {"human": [0,0,5,5], "object": [1,1,9,9], "object_class": "bicycle", '
        f'"verb class": {verbs}}}]</answer>'
    )
    p = parse_answer(text, VOCAB, FRAME)
    spans = label_spans(text, p)
    assert label_spans(text, p, VOCAB) == spans
    assert [text[slice(*s.object_span)] for s in spans] == ["dining table", "bicycle"]
    assert [text[slice(*v)] for v in spans[0].verb_spans] == ["hold"]
    assert [text[slice(*v)].replace("_", " ") for v in spans[1].verb_spans] == ["sit on", "ride"]
    assert spans[1].object_span[0] > text.index("</think>")


def test_label_spans_of_rendered_answers_and_truncated_text():
    s = HOISample(0, "a.jpg", "a.jpg", 200, 100, human_boxes=[[1, 1, 50, 50]], object_boxes=[[20, 20, 90, 90]],
                  object_labels=[2], pairs=[[0, 0, 2, 5], [0, 0, 0, 6]])
    text = render_answer(s, VOCAB, FRAME)
    spans = label_spans(text, parse_answer(text, VOCAB, FRAME), VOCAB)
    assert [text[slice(*a)] for a in spans[0].all()] == ["dining table", "sit on", "hold"]
    cut = text[: text.rindex("]")]  # list never closed: the element is still complete
    assert label_spans(cut, parse_answer(cut, VOCAB, FRAME), VOCAB) == spans


def test_span_mean_logprobs_averages_overlapping_tokens():
    spans = [LabelSpans((10, 17), ((30, 34), None)), LabelSpans(None, ())]
    offsets = [(0, 10), (10, 14), (14, 17), (17, 30), (30, 32), (32, 34), (34, 40)]
    logprobs = [-9.0, -1.0, -2.0, -9.0, -3.0, -0.0, -9.0]
    assert span_mean_logprobs([s.all() for s in spans], offsets, logprobs) == pytest.approx([-1.5, -math.inf])


def test_label_spans_of_triplets_without_written_names_need_the_vocabulary():
    text = '[{"human": [0,0,5,5], "object": [1,1,9,9], "object class": "bicycle", "verb class": "sit on, ride"}]'
    p = parse_answer(text, VOCAB, FRAME)
    bare = ParsedAnswer(triplets=[Triplet(t.human_box, t.object_box, t.object_id, t.verb_ids, element=t.element) for t in p.triplets],
                        element_spans=p.element_spans)
    assert label_spans(text, bare, VOCAB) == label_spans(text, p)
    with pytest.raises(ValueError, match="need the vocabulary"):
        label_spans(text, bare)
