"""Triplet credit: token credits of hand-built answers, group baselines, the real tokenizer's
offsets, and GRPO training with per-token advantages."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers.answers import A, B, TARGET, answer, el
from helpers.grpo import grpo_data, grpo_module, grpo_trainer
from transformers import AutoProcessor

from hoi_r1.generation import char_offsets
from hoi_r1.grpo import GRPOModule
from hoi_r1.grpo_settings import GRPOLossSettings
from hoi_r1.judged_answer import JudgedAnswer
from hoi_r1.triplet_credit import ElementCredit, answer_credits, element_credits, group_triplet_advantages, token_credits

NAN = math.nan


def _same(a, b):
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


def test_token_credits_each_part_gets_its_own():
    offsets = [(0, 5), (5, 12), (12, 16), (16, 20), (20, 24), (24, 30), (30, 34), (34, 40)]
    elements = [(5, 20), (24, 40)]                  # element 0: tokens 1-3; element 1: tokens 5-7
    objects = [(5, 12), None]                       # element 1's object value was not found
    verbs = [[(12, 16), None], [(30, 34)]]          # nor element 0's second verb name
    credits = [ElementCredit(1.0, 0.0, (1.0, 0.0)), ElementCredit(0.0, 0.0, (0.0,))]
    values, parts = token_credits(offsets, elements, objects, verbs, credits)
    assert _same(values, [NAN, 0.0, 1.0, 1.0, NAN, 0.0, 0.0, 0.0])
    assert parts == [-1, 1, 2, 0, -1, 0, 2, 0]


def test_token_credits_bad_lengths():
    with pytest.raises(ValueError, match="one per element"):
        token_credits([(0, 4)], [(0, 4)], [None], [], [])


def test_group_baselines_are_per_part_and_over_units_not_tokens():
    # G = 2. Completion 0: element A (boxes right, object right, verbs hit + miss); completion 1:
    # one element with the boxes right and everything else wrong.
    credits = [[ElementCredit(1.0, 1.0, (1.0, 0.0))], [ElementCredit(1.0, 0.0, (0.0,))]]
    values = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, NAN, NAN]])
    parts = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 2, -1, -1]])
    adv = group_triplet_advantages(values, parts, credits, group_size=2)
    obj = 0.5 / (math.sqrt(0.5) + 1e-4)                 # object units (1, 0)
    b, s = 1 / 3, math.sqrt(1 / 3)                      # verb units (1, 0, 0)
    hit, miss = (1 - b) / (s + 1e-4), (0 - b) / (s + 1e-4)
    assert adv.flatten().tolist() == pytest.approx([0, 0, obj, hit, miss, 0, -obj, miss, 0, 0])  # boxes: no spread


def test_groups_without_spread_or_units_get_nothing():
    credits = [[ElementCredit(1.0, 1.0, (1.0,))], [], [ElementCredit(0.0, 0.0, ())], []]
    values = torch.tensor([[1.0, 1.0], [NAN, NAN], [0.0, 0.0], [NAN, NAN]])
    parts = torch.tensor([[0, 2], [-1, -1], [0, 1], [-1, -1]])
    assert group_triplet_advantages(values, parts, credits, group_size=2).abs().sum() == 0
    with pytest.raises(ValueError, match="multiple of"):
        group_triplet_advantages(torch.zeros(3, 2), torch.zeros(3, 2), [[], [], []], group_size=2)


@pytest.mark.parametrize("completion, expected, why", [
    (answer(A, B), [(1, 1, (1, 1)), (1, 1, (1,))], "all right"),
    (answer(el(A, object_class="dining table", verb_class=["sit on"]), B), [(1, 0, (0,)), (1, 1, (1,))],
     "right boxes, wrong object: boxes earn, object and verb do not"),
    (answer(el(A, human=[100, 0, 150, 100]), B), [(0, 0, (0, 0)), (1, 1, (1,))], "the human box is elsewhere"),
    (answer(A, B, A), [(1, 1, (1, 1)), (1, 1, (1,)), (0, 0, (0, 0))], "the repeated pair earns nothing"),
    (answer(el(A, verb_class=["ride", "hold"]), B), [(1, 1, (1, 0)), (1, 1, (1,))], "a wrong extra verb"),
])
def test_element_credits_follow_the_metric(completion, expected, why):
    got = [(c.boxes, c.object, c.verbs) for c in element_credits(JudgedAnswer.read(completion, TARGET))]
    assert got == expected, why


def test_answer_credits_on_the_real_tokenizer(tiny_model_dir):
    """Pair A with a wrong extra verb (hit, miss), pair B right: tokens of each land in their part."""
    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    text = answer(el(A, verb_class=["ride", "hold"]), B)
    ids = tok.encode(text, add_special_tokens=False)
    offsets = char_offsets(tok, ids)
    values, parts, credits = answer_credits(text, JudgedAnswer.read(text, TARGET), offsets)
    assert [c.verbs for c in credits] == [(1.0, 0.0), (1.0,)]
    written = {}
    for (a, b), v, p in zip(offsets, values, parts):
        written.setdefault((p, v if p >= 0 else None), []).append(text[a:b])
    text_of = {k: "".join(v) for k, v in written.items()}
    assert "<think>" in text_of[(-1, None)] and "</answer>" in text_of[(-1, None)]  # outside every element
    assert "hold" in text_of[(2, 0.0)] and "ride" in text_of[(2, 1.0)] and "eat" in text_of[(2, 1.0)]
    assert text_of[(1, 1.0)].replace(" ", "") == "bicycledining table".replace(" ", "")
    assert '"human"' in text_of[(0, 1.0)] and "50" in text_of[(0, 1.0)]  # keys and coordinates: boxes part


def test_char_offsets_of_split_multibyte_characters(tiny_model_dir):
    """A character the tokenizer splits over tokens lands on the token that completes it."""
    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    text = '<answer>[{"object class": "caf\u00e9 \U0001f6b2"}]</answer>'
    ids = tok.encode(text, add_special_tokens=False)
    offsets = char_offsets(tok, ids)
    assert offsets[-1][1] == len(text) and "".join(text[a:b] for a, b in offsets) == text
    pieces = tok.batch_decode([[i] for i in ids])
    assert "".join(pieces) != text  # the fast path does not apply: the prefix decoding ran


def test_grpo_trains_with_per_token_advantages(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = grpo_module(tiny_model_dir)
    module.loss_settings = GRPOLossSettings(steps_per_generation=2, triplet_credit=1.0)
    module.rollout.max_completion_length = 24
    trainer = grpo_trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=grpo_data(synthetic_world))
    buffer = module._buffer
    assert buffer.advantages.shape == buffer.completion_ids.shape  # (B·G, T): one per token
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_negative_triplet_credit_and_tool_episodes_are_refused():
    from hoi_r1.ov_hoi.tool_grpo import ToolGRPOModule

    with pytest.raises(ValueError, match="triplet_credit must be >= 0"):
        GRPOModule(loss=GRPOLossSettings(triplet_credit=-1.0))
    with pytest.raises(ValueError, match="single-turn answers"):
        ToolGRPOModule(loss=GRPOLossSettings(triplet_credit=1.0))
