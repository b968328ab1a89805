"""GRPO rewards: an annotated table of cases per reward, the weighted total, and properties
(bounded on arbitrary text, repeated boxes, thousands of elements, NaN coordinates)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers.answers import A, B, EMPTY_TARGET, FRAME, NO_GT_TARGET, O0, O1, SAMPLE, TARGET, VOCAB, H, W, answer, el
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoi_r1.answer_render import render_answer
from hoi_r1.boxes import box_iou
from hoi_r1.frames import Frame
from hoi_r1.reward_target import RewardTarget
from hoi_r1.rewards import BOX_TOLERANCE, REWARDS, CompletionReward, RewardWeights, score_completions

PERFECT = answer(A, B)

# (id, completion, target, expected, why)
FORMAT_CASES = [
    ("rendered", render_answer(SAMPLE, VOCAB, FRAME), TARGET, 1.0, "the renderer writes the exact structure"),
    ("perfect", PERFECT, TARGET, 1.0, "think then answer, nothing around"),
    ("whitespace", "  \n" + PERFECT.replace("</think>", "</think>\n") + "\n", TARGET, 1.0,
     "whitespace around and between the blocks is allowed"),
    ("no_think", answer(A, B, think=None), TARGET, 0.0, "the <think> block is required"),
    ("text_after", PERFECT + " Done.", TARGET, 0.0, "nothing may follow </answer>"),
    ("text_between", PERFECT.replace("</think>", "</think>So:"), TARGET, 0.0, "nothing between the blocks"),
    ("two_answers", PERFECT + "<answer>[]</answer>", TARGET, 0.0, "each tag exactly once"),
    ("unclosed", PERFECT[: -len("</answer>")], TARGET, 0.0, "a truncated answer is not the structure"),
    ("fenced", PERFECT.replace("<answer>", "<answer>```json\n").replace("</answer>", "\n```</answer>"), TARGET, 1.0,
     "a code fence is inside the answer block: the structure holds (keys will punish it)"),
    ("empty", "", TARGET, 0.0, "no text"),
    ("no_gt", PERFECT, NO_GT_TARGET, 1.0, "format needs no ground truth"),
]

KEYS_CASES = [
    ("perfect", PERFECT, TARGET, 1.0, "both elements fully valid"),
    ("missing_key", answer(A, el(B, verb_class=...)), TARGET, 0.5, "one of two elements lacks 'verb class'"),
    ("box_far_outside", answer(A, el(B, human=[150, 0, 210, 100])), TARGET, 0.5,
     "x2 = 210 is 10 px past the 200-px image, beyond the 2-px tolerance"),
    ("box_within_tolerance", answer(A, el(B, human=[150, -1, 201.5, 100])), TARGET, 1.0,
     "1.5 px past the border is within BOX_TOLERANCE (2 px here)"),
    ("degenerate_box", answer(A, el(B, object=[200, 40, 110, 100])), TARGET, 0.5, "x1 > x2"),
    ("unknown_object", answer(A, el(B, object_class="unicycle")), TARGET, 0.5, "object not in the vocabulary"),
    ("unknown_verb", answer(el(A, verb_class=["ride", "juggle"]), B), TARGET, 0.5,
     "one verb is not in the vocabulary (the element keeps 'ride' but is not clean)"),
    ("invalid_pair", answer(A, el(B, verb_class=["ride"])), TARGET, 0.5, "'ride dining table' is no class"),
    ("no_verbs", answer(A, el(B, verb_class=[])), TARGET, 0.5, "an element must name a verb"),
    ("string_box", answer(A, el(B, human="150, 0, 200, 100")), TARGET, 1.0,
     "the parser reads a box written as a string of four numbers, and keys follows the parser"),
    ("word_box", answer(A, el(B, human="left half")), TARGET, 0.5, "a box without four numbers is a bad box"),
    ("not_an_object", answer(A, [1, 2]), TARGET, 0.5, "a list element that is not an object"),
    ("trailing_comma", PERFECT.replace("}]", "},]"), TARGET, 0.0, "not a JSON list as written (needed a repair)"),
    ("fenced", FORMAT_CASES[8][1], TARGET, 0.0, "a code fence is a repair too"),
    ("prose", "<think>x</think><answer>a bicycle</answer>", TARGET, 0.0, "no list at all"),
    ("bare_object", answer(think="x").replace("[]", json.dumps(A)), TARGET, 0.0, "an object, not a list"),
    ("empty_list", answer(), TARGET, 1.0, "an empty list has no invalid element (label/iou punish it)"),
    ("no_gt", PERFECT, NO_GT_TARGET, 1.0, "keys needs no ground truth"),
]

LABEL_CASES = [
    ("perfect", PERFECT, TARGET, 1.0, "both pairs matched with the right object and verbs"),
    ("swapped_order", answer(B, A), TARGET, 1.0, "matching does not depend on element order"),
    ("one_missing", answer(A), TARGET, 0.5, "N = 2 ground-truth pairs, one matched perfectly"),
    ("wrong_object", answer(A, el(B, object_class="bicycle")), TARGET, 0.75,
     "pair B: object wrong (0) + verbs right (0.5) = 0.5; (1 + 0.5) / 2"),
    ("half_verbs", answer(el(A, verb_class=["ride"]), B), TARGET, 0.875,
     "pair A: Jaccard({ride}, {ride, sit on}) = 0.5 -> 0.5 + 0.25; (0.75 + 1) / 2"),
    ("extra_verb", answer(el(A, verb_class=["ride", "sit on", "hold"]), B), TARGET, (0.5 + 0.5 * 2 / 3 + 1) / 2,
     "pair A: Jaccard = 2/3"),
    ("duplicate", answer(A, B, A), TARGET, 2 / 3, "N = 3 answer elements: the extra one costs"),
    ("unreadable_extra", answer(A, B, el(A, human=...)), TARGET, 2 / 3,
     "an element that cannot be read still counts in N"),
    ("wrong_place_right_label", answer(el(A, human=[60, 0, 100, 40], object=[150, 0, 190, 30]), B), TARGET, 1.0,
     "every assigned pair counts, also without overlap: labels are rewarded on their own (iou is 0.5)"),
    ("empty_answer", answer(), TARGET, 0.0, "nothing predicted, two pairs missed"),
    ("garbage", "lorem ipsum", TARGET, 0.0, "no answer"),
    ("no_pairs_right", answer(), EMPTY_TARGET, 1.0, "no ground truth and an empty list: rightly nothing"),
    ("no_pairs_garbage", "lorem ipsum", EMPTY_TARGET, 0.0, "no ground truth but no list was read"),
    ("no_pairs_extra", answer(A), EMPTY_TARGET, 0.0, "N = 1 extra element, nothing to match"),
    ("no_gt", PERFECT, NO_GT_TARGET, None, "without a sample the reward does not apply"),
]

SHIFTED = [25, 0, 75, 100]  # IoU with H0 = 2500 / 7500 = 1/3
IOU_CASES = [
    ("perfect", PERFECT, TARGET, 1.0, "identical boxes"),
    ("rendered_resized", None, None, None, "placeholder, replaced below"),
    ("shifted_human", answer(el(A, human=SHIFTED), B), TARGET, (0.5 * (1 / 3 + 1) + 1) / 2,
     "pair A: (1/3 + 1) / 2; pair B: 1; mean over N = 2"),
    ("one_missing", answer(A), TARGET, 0.5, "N = 2, one pair perfect"),
    ("wrong_labels", answer(el(A, object_class="dining table", verb_class=["eat at"]), B), TARGET, 1.0,
     "iou ignores labels"),
    ("duplicate", answer(A, B, A), TARGET, 2 / 3, "N = 3"),
    ("wrong_place", answer(el(A, human=[60, 0, 100, 40], object=[150, 0, 190, 30]), B), TARGET, 0.5,
     "pair A has no overlap"),
    ("empty_answer", answer(), TARGET, 0.0, "nothing predicted"),
    ("no_pairs_right", answer(), EMPTY_TARGET, 1.0, "no ground truth and an empty list"),
    ("no_gt", PERFECT, NO_GT_TARGET, None, "without a sample the reward does not apply"),
]
# Qwen2.5-VL frame: boxes written in resized pixels are converted back before IoU; the rounding of
# the text frame (at most half a unit) costs a little IoU, never more.
_RESIZED = Frame.for_image("absolute_resized", W, H)
_RESIZED_TARGET = RewardTarget(SAMPLE, _RESIZED, VOCAB)
IOU_CASES[1] = ("rendered_resized", render_answer(SAMPLE, VOCAB, _RESIZED), _RESIZED_TARGET, "rounding",
                "rendered in the resized frame; rounding costs < 5 % IoU")

# The metric's hit rule, triplet by triplet (3 ground-truth triplets: ride + sit on the bicycle, eat at
# the table). IoU in the +1-pixel convention: H0 spans 51 x 101 pixels, so a copy shifted right by
# dx pixels has IoU (51 - dx) / (51 + dx): 0.5 exactly at dx = 17, 0.4956 at dx = 17.2.
NEAR_MISS = [17.2, 0, 67.2, 100]
EXACTLY_HALF = [17, 0, 67, 100]
TRUNCATED = PERFECT[: PERFECT.index('"eat at"')]  # cut inside element B: only A is read
RECALL_PRECISION_CASES = [  # (id, completion, target, recall, precision, why)
    ("perfect", PERFECT, TARGET, 1.0, 1.0, "three triplets written, three hits"),
    ("swapped_order", answer(B, A), TARGET, 1.0, 1.0, "order only decides who is matched first"),
    ("one_missing", answer(A), TARGET, 2 / 3, 1.0, "pair B's triplet is missed; what is written is right"),
    ("near_miss", answer(el(A, human=NEAR_MISS), B), TARGET, 1 / 3, 1 / 3,
     "human IoU 0.4956 < 0.5: both of pair A's triplets miss, as in the metric"),
    ("iou_exactly_half", answer(el(A, human=EXACTLY_HALF), B), TARGET, 1.0, 1.0, "IoU 0.5 is a hit (>=)"),
    ("wrong_verb", answer(el(A, verb_class=["hold"]), B), TARGET, 1 / 3, 1 / 2,
     "right boxes, wrong verb: 'hold bicycle' is a class but not this one"),
    ("wrong_object", answer(A, el(B, object_class="bicycle")), TARGET, 2 / 3, 2 / 3,
     "'eat at bicycle' is no class: written, never a hit"),
    ("extra_verb", answer(el(A, verb_class=["ride", "sit on", "hold"]), B), TARGET, 1.0, 3 / 4,
     "four triplets written, three hits"),
    ("duplicate", answer(A, B, A), TARGET, 1.0, 3 / 5, "the repeated pair's triplets are false detections"),
    ("truncated", TRUNCATED, TARGET, 2 / 3, 1.0, "the parser reads what was finished (pair A), like the metric"),
    ("empty_answer", answer(), TARGET, 0.0, 0.0, "nothing written"),
    ("garbage", "lorem ipsum", TARGET, 0.0, 0.0, "no answer"),
    ("no_pairs_right", answer(), EMPTY_TARGET, 1.0, 1.0, "no ground truth and an empty list: rightly nothing"),
    ("no_pairs_extra", answer(A), EMPTY_TARGET, 1.0, 0.0, "nothing to find; both written triplets are false"),
    ("no_pairs_garbage", "lorem ipsum", EMPTY_TARGET, 0.0, 0.0, "no list was read"),
    ("no_gt", PERFECT, NO_GT_TARGET, None, None, "without a sample the rewards do not apply"),
]
RECALL_CASES = [(c[0], c[1], c[2], c[3], c[5]) for c in RECALL_PRECISION_CASES]
PRECISION_CASES = [(c[0], c[1], c[2], c[4], c[5]) for c in RECALL_PRECISION_CASES]

CASES = [(name, *case) for name, cases in
         (("format", FORMAT_CASES), ("keys", KEYS_CASES), ("label", LABEL_CASES), ("iou", IOU_CASES),
          ("recall", RECALL_CASES), ("precision", PRECISION_CASES)) for case in cases]


@pytest.mark.parametrize("reward, case, completion, target, expected, why", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_reward_table(reward, case, completion, target, expected, why):
    value = REWARDS[reward]([completion], [target])[0]
    if expected is None:
        assert value is None, why
    elif expected == "rounding":
        assert 0.95 < value < 1.0, why
    else:
        assert value == pytest.approx(expected, abs=1e-9), why


def test_hits_are_the_metrics_true_positives():
    """recall x truth = the true positives the metric itself marks for the same answer and image."""
    from hoi_r1.answer import parse_answer
    from hoi_r1.metric_input import to_metric_preds
    from hoi_r1.hoi_map import targets_from_sample
    from hoi_r1.metric import HOIMeanAveragePrecision

    for _, completion, target, recall, _, _ in RECALL_PRECISION_CASES:
        if target is not TARGET:
            continue
        metric = HOIMeanAveragePrecision(VOCAB, protocol="hico_official")
        preds = to_metric_preds(parse_answer(completion, VOCAB, FRAME), VOCAB, SAMPLE.image_id)
        metric.update([preds], [targets_from_sample(SAMPLE)])
        found = int(torch.cat(metric.det_tp).sum())
        assert found == round(recall * 3), completion


DETECTION_HIT_CASES = [  # (id, completion, per triplet per verb: hit?, why)
    ("perfect", PERFECT, ((True, True), (True,)), "every detection is a hit"),
    ("wrong_verb", answer(el(A, verb_class=["hold"]), B), ((False,), (True,)), "right boxes, wrong verb"),
    ("wrong_object", answer(A, el(B, object_class="bicycle")), ((True, True), (False,)),
     "'eat at bicycle' is no class: never a hit"),
    ("extra_verb", answer(el(A, verb_class=["ride", "hold", "sit on"]), B), ((True, False, True), (True,)),
     "the hit flags follow the verbs in the order written"),
    ("duplicate", answer(A, B, A), ((True, True), (True,), (False, False)), "the repeat comes second: it misses"),
    ("near_miss", answer(el(A, human=NEAR_MISS), B), ((False, False), (True,)), "human IoU 0.4956"),
    ("garbage", "lorem ipsum", (), "no triplets"),
]


@pytest.mark.parametrize("case, completion, expected, why", DETECTION_HIT_CASES, ids=[c[0] for c in DETECTION_HIT_CASES])
def test_detection_hits_flag_each_written_verb(case, completion, expected, why):
    from hoi_r1.judged_answer import JudgedAnswer

    judged = JudgedAnswer.read(completion, TARGET)
    assert judged.detection_hits == expected, why
    assert judged.hits.hits == sum(map(sum, expected))
    assert JudgedAnswer.read(completion, NO_GT_TARGET).detection_hits == tuple(tuple(False for _ in t) for t in expected)


def test_score_completions_agrees_with_each_callable_and_weights_the_total():
    completions = [c for _, c, _, _, _ in LABEL_CASES]
    targets = [t for _, _, t, _, _ in LABEL_CASES]
    weights = RewardWeights(format=0.5, keys=0.0, label=2.0, iou=1.0)
    out = score_completions(completions, targets, weights)
    assert list(out.per_reward) == ["format", "keys", "label", "iou", "recall", "precision"]
    for name, values in out.per_reward.items():
        assert values == REWARDS[name](completions, targets)
    for i, total in enumerate(out.total):
        terms = [w * out.per_reward[n][i] for n, w in weights.as_dict().items() if out.per_reward[n][i] is not None]
        assert total == pytest.approx(sum(terms))
    last = out.per_reward  # the no-ground-truth case: label and iou are skipped, not counted as 0
    assert last["label"][-1] is None and out.total[-1] == pytest.approx(0.5 * last["format"][-1])
    means = out.means()
    assert means["label"] == pytest.approx(sum(v for v in last["label"] if v is not None) / (len(completions) - 1))


def test_total_is_nan_when_no_reward_applies(monkeypatch):
    from hoi_r1 import rewards

    assert not math.isnan(score_completions([PERFECT], [NO_GT_TARGET]).total[0])  # format and keys apply
    monkeypatch.setitem(rewards.ANSWER_REWARDS, "format", lambda answer: None)
    monkeypatch.setitem(rewards.ANSWER_REWARDS, "keys", lambda answer: None)
    assert math.isnan(score_completions([PERFECT], [NO_GT_TARGET]).total[0])


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="2 completions but 1 targets"):
        REWARDS["iou"]([PERFECT, PERFECT], [TARGET])
    with pytest.raises(ValueError, match=r"img.jpg: frame original_size \(100, 100\) is not the image size"):
        RewardTarget(SAMPLE, Frame("absolute_original", (100, 100), (100, 100)), VOCAB)
    with pytest.raises(ValueError, match="reward weight 'iou' must be a finite number"):
        RewardWeights(iou=math.nan)
    with pytest.raises(ValueError, match="unknown reward 'accuracy'"):
        CompletionReward("accuracy")


def test_registry_callables_are_named_for_logging():
    assert {name: fn.__name__ for name, fn in REWARDS.items()} == {n: n for n in ("format", "keys", "label", "iou", "recall", "precision")}
    assert BOX_TOLERANCE * max(W, H) == 2.0  # the table's tolerance cases rely on it


# ----------------------------------------------------------------- properties
SETTINGS = settings(max_examples=150, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FRAGMENTS = ["<think>", "</think>", "<answer>", "</answer>", "[", "]", "{", "}", ",", '"human": ', '"object": ',
             '"object class": ', '"verb class": ', "[0, 0, 50, 100]", "[NaN, 1, 2, 3]", "[1e308, -1e308, 1e999, 5]",
             '"bicycle"', '"ride, sit on"', '["eat at"]', "```", json.dumps(A), json.dumps(B), "null", "-0"]
TARGETS = st.sampled_from([TARGET, EMPTY_TARGET, NO_GT_TARGET, _RESIZED_TARGET])


def _check_bounded(completions, targets):
    out = score_completions(completions, targets)
    for name, values in out.per_reward.items():
        for v in values:
            assert v is None or (isinstance(v, float) and 0.0 <= v <= 1.0), (name, v)
    assert all(math.isnan(t) or 0.0 <= t <= 4.0 for t in out.total)


@SETTINGS
@given(st.lists(st.text(max_size=300) | st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
                min_size=1, max_size=4), TARGETS)
def test_rewards_are_bounded_on_arbitrary_text(texts, target):
    _check_bounded(texts, [target] * len(texts))


_coord = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**6, 10**6) | st.sampled_from([0, 50, 200])


@SETTINGS
@given(st.lists(st.fixed_dictionaries({
    "human": st.lists(_coord, min_size=4, max_size=4), "object": st.lists(_coord, min_size=4, max_size=4),
    "object class": st.sampled_from(["bicycle", "dining table", "person", "kite"]),
    "verb class": st.lists(st.sampled_from(["ride", "sit on", "eat at", "hold", "fly"]), max_size=3),
}), max_size=8), TARGETS)
def test_rewards_are_bounded_on_random_elements_with_nan_and_inf(elements, target):
    text = answer(*elements)  # json.dumps writes NaN / Infinity, which the lenient reader accepts
    _check_bounded([text], [target])


@pytest.mark.parametrize("repeats", [2, 50, 3000])
def test_repeated_elements_are_bounded_and_penalised(repeats):
    text = answer(*([A] * repeats))
    out = score_completions([text], [TARGET])
    # one copy matches pair A; the other copies and the missed pair B cost: N = max(repeats, 2)
    # (the parser reads at most MAX_ELEMENTS = 300 elements). A second copy is assigned to pair B:
    # wrong labels, human IoU 0, but the bicycle box overlaps the table box a little.
    n = max(min(repeats, 300), 2)
    o0_o1 = box_iou(torch.tensor([O0], dtype=torch.float64), torch.tensor([O1], dtype=torch.float64)).item()
    assert 0 < o0_o1 < 0.1
    assert out.per_reward["label"][0] == pytest.approx(1 / n)
    assert out.per_reward["iou"][0] == pytest.approx((1 + o0_o1 / 2) / n)
    # past MAX_ELEMENTS the list is not read whole, so it does not count as a JSON list as written
    assert out.per_reward["keys"][0] == (1.0 if repeats <= 300 else 0.0)
    _check_bounded([text], [TARGET])


def test_nan_coordinates_score_zero_iou_without_failing():
    text = answer(el(A, human=[math.nan, 0, 50, 100]), B)  # NaN written by json.dumps
    out = score_completions([text], [TARGET])
    assert out.per_reward["keys"][0] == 0.5  # the NaN box is a bad box
    assert out.per_reward["iou"][0] == pytest.approx(0.5)  # only pair B is read


def test_evaluation_reward_means_count_each_image_once_and_skip_rewards_that_do_not_apply():
    from hoi_r1.judged_answer import JudgedAnswer
    from hoi_r1.rewards import score_answers
    from hoi_r1.rollout.stats import RewardAverages

    weights = RewardWeights(format=1.0, keys=0.0, label=0.0, iou=0.0, recall=2.0, precision=0.0)
    completions = [answer(el(A)), "no answer here"]
    scores = score_completions(completions, [TARGET, TARGET], weights)
    judged = [JudgedAnswer.read(c, TARGET) for c in completions]
    assert score_answers(judged, weights).per_reward == scores.per_reward  # one scoring road
    averages = RewardAverages(weights.as_dict())
    averages.add([3, 4], scores.per_reward, scores.total)
    averages.add([3], {k: v[:1] for k, v in scores.per_reward.items()}, scores.total[:1])  # a padded duplicate
    means = averages.means("val")
    for name, values in scores.per_reward.items():
        applied = [v for v in values if v is not None]
        if applied:
            assert means[f"val/reward/{name}"] == pytest.approx(sum(applied) / len(applied))
        else:
            assert f"val/reward/{name}" not in means
    totals = [t for t in scores.total if not math.isnan(t)]
    assert means["val/reward"] == pytest.approx(sum(totals) / len(totals))
