"""OV-HOI rewards: annotated cases, bounds on arbitrary transcripts, the synthetic cue table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoi_r1.answer_render import render_answer
from hoi_r1.frames import Frame
from hoi_r1.ov_hoi.episode import Episode, Turn
from hoi_r1.ov_hoi.rewards import (
    CUES,
    TOOL_REWARDS,
    SpatialRewardConfig,
    ToolReward,
    ToolRewardWeights,
    ToolUsageConfig,
    score_tool_completions,
)
from hoi_r1.reward_target import RewardTarget
from hoi_r1.rewards import REWARDS
from hoi_r1.sample import HOISample
from hoi_r1.synthetic.scene import SyntheticWorldConfig, synthetic_vocabulary
from hoi_r1.synthetic.scene_sampler import sample_scene
from hoi_r1.synthetic.world import scene_to_sample

VOCAB = synthetic_vocabulary()
V, O = VOCAB.verbs.index, VOCAB.objects.index
PERSON, BALL, KITE = [40, 24, 64, 72], [64, 40, 80, 56], [80, 24, 96, 44]  # hold the ball, look at the kite
SAMPLE = HOISample(
    0, "a.png", "a.png", 112, 112, human_boxes=[PERSON], object_boxes=[BALL, KITE], object_labels=[O("ball"), O("kite")],
    pairs=[[0, 0, V("hold"), VOCAB.interaction_id(V("hold"), O("ball"))],
           [0, 1, V("look_at"), VOCAB.interaction_id(V("look_at"), O("kite"))]],
)
FRAME = Frame("absolute_original", (112, 112), (112, 112))
TARGET = RewardTarget(SAMPLE, FRAME, VOCAB)


def _element(human, obj, name, verbs):
    return {"human": human, "object": obj, "object class": name, "verb class": verbs}


def _answer(*elements) -> str:
    return f"<think>so</think><answer>{json.dumps(list(elements))}</answer>"


RIGHT = _answer(_element(PERSON, BALL, "ball", ["hold"]), _element(PERSON, KITE, "kite", ["look at"]))
HALF = _answer(_element(PERSON, BALL, "ball", ["hold"]))
SWAPPED = _answer(_element(PERSON, BALL, "ball", ["look at"]), _element(PERSON, KITE, "kite", ["hold"]))
SHIFTED = _answer(_element(PERSON, [70, 46, 86, 62], "ball", ["hold"]), _element(PERSON, KITE, "kite", ["look at"]))
HUMANS = '<tool_call>{"name": "detect_humans", "arguments": {}}</tool_call>'
SPATIAL = ('<tool_call>{"name": "spatial_relations", "arguments": {"human_box": [40, 24, 64, 72], '
           '"object_box": [64, 40, 80, 56]}}</tool_call>')
OK, ERR = '<tool_response>{"detections": []}</tool_response>', "<tool_response>error: unknown tool 'x'</tool_response>"


def _rewards(completion, target=TARGET):
    return {name: reward([completion], [target])[0] for name, reward in TOOL_REWARDS.items()}


@pytest.mark.parametrize(
    "completion, expected",
    [
        # a direct answer: right, well formed, no tool credit
        (RIGHT, {"accuracy": 1.0, "format": 1.0, "tool_usage": 0.0, "spatial": 1.0}),
        # two distinct valid calls, then the right answer
        ("<think>a</think>" + HUMANS + OK + "<think>b</think>" + SPATIAL + OK + RIGHT,
         {"accuracy": 1.0, "format": 1.0, "tool_usage": 1.0, "spatial": 1.0}),
        # two distinct valid calls, one repeated (redundant) and one invalid call: 1 - 0.25 - 0.25
        ("<think>a</think>" + HUMANS + '<tool_call>{"name": "x"}</tool_call>' + OK + "\n" + ERR
         + "<think>b</think>" + HUMANS + SPATIAL + OK + "\n" + OK + RIGHT,
         {"accuracy": 1.0, "format": 1.0, "tool_usage": 0.5, "spatial": 1.0}),
        # one distinct valid call, its repeat and an invalid call: 1/2 - 0.25 - 0.25
        ("<think>a</think>" + HUMANS + '<tool_call>{"name": "x"}</tool_call>' + OK + "\n" + ERR
         + "<think>b</think>" + HUMANS + OK + RIGHT, {"tool_usage": 0.0}),
        # one of two pairs: F1 = 2 * 1 / (1 + 2); one valid call of two for saturation
        ("<think>a</think>" + HUMANS + OK + HALF, {"accuracy": 2 / 3, "format": 1.0, "tool_usage": 0.5, "spatial": 1.0}),
        # verbs swapped: no triplet right, so no tool credit; verbs disagree with the geometry
        ("<think>a</think>" + HUMANS + OK + SWAPPED, {"accuracy": 0.0, "format": 1.0, "tool_usage": 0.0, "spatial": 0.2}),
        # the ball box moved 6 px away: IoU 0.24 < 0.5, one of two triplets right; "hold" without
        # contact: 1.5 of 2.5 for the ball, 2.5 of 2.5 for the kite
        (SHIFTED, {"accuracy": 0.5, "format": 1.0, "tool_usage": 0.0, "spatial": 0.8}),
        # calls but the turn budget ran out: no answer
        ("<think>a</think>" + HUMANS + OK + "<think>b</think>" + HUMANS,
         {"accuracy": 0.0, "format": 0.0, "tool_usage": 0.0, "spatial": 0.0}),
        # format failures: a call turn without <think>, prose between calls, a call in the answer turn
        (HUMANS + OK + RIGHT, {"accuracy": 1.0, "format": 0.0, "tool_usage": 0.5, "spatial": 1.0}),
        ("<think>a</think>" + HUMANS + " and then " + SPATIAL + OK + "\n" + OK + RIGHT, {"format": 0.0, "tool_usage": 1.0}),
        (RIGHT.replace("</think>", "</think>" + HUMANS), {"format": 0.0}),
        ("<think>a</think>" + '<tool_call>{"name": }</tool_call>' + ERR + RIGHT, {"format": 0.0, "tool_usage": 0.0}),
        # an empty answer while the image has pairs
        (_answer(), {"accuracy": 0.0, "format": 1.0, "tool_usage": 0.0, "spatial": 0.0}),
    ],
)
def test_annotated_cases(completion, expected):
    got = _rewards(completion)
    assert {k: got[k] for k in expected} == pytest.approx(expected)


def test_spatial_swapped_by_hand():
    # ball "look at": no_contact 0/1, head_height 0/1 (centre at 0.5), near 0.5/0.5 -> 0.5 of 2.5;
    # kite "hold": contact 0/1, hand_height 0/1 (0.21), beside 0.5/0.5 -> 0.5 of 2.5
    assert TOOL_REWARDS["spatial"]([SWAPPED], [TARGET]) == [pytest.approx(1.0 / 5.0)]


def test_without_ground_truth_only_format_and_spatial_apply():
    target = RewardTarget(None, FRAME, VOCAB)
    assert _rewards(RIGHT, target) == {"accuracy": None, "format": 1.0, "tool_usage": None, "spatial": 1.0}


def test_empty_ground_truth_and_empty_answer():
    empty = RewardTarget(HOISample(0, "b.png", "b.png", 112, 112), FRAME, VOCAB)
    assert _rewards(_answer(), empty)["accuracy"] == 1.0
    assert _rewards("<think>x</think><answer>nothing</answer>", empty)["accuracy"] == 0.0
    assert _rewards(RIGHT, empty)["accuracy"] == 0.0


def test_accuracy_counts_hits_by_the_metrics_matcher():
    # two people holding two balls, 8 px apart. The first detection sits between them, closer to the
    # first pair (pair-IoU 0.82 / 0.54); the second overlaps only the first pair (0.67 / 0.25). The
    # metric's rule (each detection takes its best pair, taken or not) gives one hit: F1 = 2·1/(2+2).
    # A maximum matching would give two (first -> second pair, second -> first pair): F1 = 1.
    hold_ball = VOCAB.interaction_id(V("hold"), O("ball"))
    two = HOISample(
        0, "c.png", "c.png", 112, 112,
        human_boxes=[[10, 10, 40, 90], [18, 10, 48, 90]], object_boxes=[[40, 40, 60, 60], [48, 40, 68, 60]],
        object_labels=[O("ball"), O("ball")],
        pairs=[[0, 0, V("hold"), hold_ball], [1, 1, V("hold"), hold_ball]],
    )
    between = _element([12, 10, 42, 90], [42, 40, 62, 60], "ball", ["hold"])
    left = _element([6, 10, 36, 90], [36, 40, 56, 60], "ball", ["hold"])
    target = RewardTarget(two, FRAME, VOCAB)
    assert TOOL_REWARDS["accuracy"]([_answer(between, left)], [target]) == [pytest.approx(0.5)]
    # the same hits as the direct mode's recall and precision
    assert REWARDS["recall"]([_answer(between, left)], [target]) == [pytest.approx(0.5)]
    assert REWARDS["precision"]([_answer(between, left)], [target]) == [pytest.approx(0.5)]


def test_episode_completions_catch_a_model_that_writes_responses():
    honest = Episode([Turn("assistant", "<think>a</think>" + HUMANS), Turn("tool", OK), Turn("assistant", RIGHT)])
    forged = Episode([Turn("assistant", "<think>a</think>" + HUMANS + OK), Turn("tool", OK), Turn("assistant", RIGHT)])
    assert TOOL_REWARDS["format"]([honest, forged], [TARGET, TARGET]) == [1.0, 0.0]


def test_settings_change_the_rewards():
    text = "<think>a</think>" + HUMANS + OK + "<think>b</think>" + HUMANS + OK + RIGHT
    assert TOOL_REWARDS["tool_usage"]([text], [TARGET]) == [0.25]  # 1/2 - 0.25
    assert ToolReward("tool_usage", ToolUsageConfig(saturation=1, redundant_cost=0.0))([text], [TARGET]) == [1.0]
    hold_only = SpatialRewardConfig(verb_cues={"hold": {"contact": 1.0}}, default_cues={})
    assert ToolReward("spatial", spatial=hold_only)([SWAPPED], [TARGET]) == [0.0]  # kite "hold": no contact
    assert ToolReward("spatial", spatial=SpatialRewardConfig(verb_cues={}, default_cues={"near": 1.0}))([SWAPPED], [TARGET]) == [1.0]
    with pytest.raises(ValueError, match="unknown spatial cue 'touching'"):
        SpatialRewardConfig(verb_cues={"hold": {"touching": 1.0}})
    with pytest.raises(ValueError, match="weight"):
        SpatialRewardConfig(default_cues={"near": -1.0})
    with pytest.raises(ValueError, match="unknown OV-HOI reward"):
        ToolReward("iou")


def test_weighted_total():
    breakdown = score_tool_completions([RIGHT, SWAPPED], [TARGET, TARGET], ToolRewardWeights(1.0, 0.5, 0.25, 0.25))
    assert breakdown.total == pytest.approx([1.0 + 0.5 + 0.0 + 0.25, 0.0 + 0.5 + 0.0 + 0.25 * 0.2])
    assert breakdown.answers[0].parsed.triplets[0].verb_ids == (V("hold"),)
    none = score_tool_completions([RIGHT], [RewardTarget(None, FRAME, VOCAB)], ToolRewardWeights(1, 0, 1, 0))
    assert none.total == [0.0] and math.isnan(score_tool_completions([RIGHT], [RewardTarget(None, FRAME, VOCAB)],
                                                                     ToolRewardWeights(1, 0, 1, 0)).means()["accuracy"])
    with pytest.raises(ValueError, match="2 completions but 1 targets"):
        TOOL_REWARDS["format"]([RIGHT, RIGHT], [TARGET])


PIECES = [RIGHT, HALF, SWAPPED, HUMANS, SPATIAL, OK, ERR, "<think>", "</think>", "<answer>", "</answer>", "[", "{", "x",
          '<tool_call>{"name": "crop", "arguments": {"box": [1e309, 0, 5, 5]}}</tool_call>', "<tool_response>", "\n"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=12).map("".join))
def test_rewards_are_bounded_on_any_transcript(text):
    for name, value in _rewards(text).items():
        assert value is not None and 0.0 <= value <= 1.0, name


def test_synthetic_ground_truth_agrees_with_the_cue_table():
    """Ground-truth answers of generated scenes score spatial 1; answers whose every verb is
    swapped for another valid one score far lower (measured: mean 0.32, at most 0.6)."""
    config, allowed = SyntheticWorldConfig(), list(range(VOCAB.num_classes))
    gt, wrong = [], []
    for i in range(60):
        rng = np.random.default_rng([11, i])
        s = scene_to_sample(sample_scene(rng, config, allowed), i, "x.png", "x.png")
        frame = Frame("absolute_original", (s.width, s.height), (s.width, s.height))
        target = RewardTarget(s, frame, VOCAB)
        pairs = s.pairs.copy()
        for k, (_, o, v, _) in enumerate(pairs):
            obj = int(s.object_labels[o])
            options = [x for x in VOCAB.verbs_for_object(obj) if x != v]
            pairs[k, 2] = options[int(rng.integers(len(options)))]
            pairs[k, 3] = VOCAB.interaction_id(int(pairs[k, 2]), obj)
        swapped = HOISample(i, "x.png", "x.png", s.width, s.height, s.human_boxes, s.object_boxes, s.object_labels, pairs)
        texts = [render_answer(s, VOCAB, frame), render_answer(swapped, VOCAB, frame)]
        a, b = TOOL_REWARDS["spatial"](texts, [target, target])
        gt.append(a)
        wrong.append(b)
    assert min(gt) == 1.0 and np.mean(wrong) < 0.5 and max(wrong) < 1.0
    assert set(CUES) >= {c for cues in SpatialRewardConfig().table.values() for c in cues}
