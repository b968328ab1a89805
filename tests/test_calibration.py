"""The calibration term (hoi_r1/calibration.py): hand-worked Brier scores and log losses, token ownership on the
real tokenizer, and a GRPO step that adds it."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers.answers import A, B, TARGET, answer, el
from helpers.grpo import grpo_data, grpo_module, grpo_trainer
from transformers import AutoProcessor

from hoi_r1.calibration import calibration_loss, completion_score_targets, triplet_targets
from hoi_r1.generation import char_offsets
from hoi_r1.grpo import GRPOModule
from hoi_r1.grpo_settings import GRPOLossSettings
from hoi_r1.judged_answer import JudgedAnswer


def test_brier_and_log_loss_by_hand():
    # row 0: triplet 0 on tokens 0-1 (p 0.8, 0.2 -> s = exp(mean log) = 0.4), a hit: -log 0.4;
    #        triplet 1 on token 2 (p 0.9), a miss with two verbs: 2 * -log(1 - 0.9)
    # row 1: no triplet (weights 0) -> nothing
    logp = torch.log(torch.tensor([[0.8, 0.2, 0.9, 1.0], [0.5, 0.5, 0.5, 0.5]]))
    index = torch.tensor([[0, 0, 1, -1], [-1, -1, -1, -1]])
    targets, weights = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    loss, score = calibration_loss(logp, index, targets, weights, normaliser=3, kind="log")
    assert score[0].tolist() == pytest.approx([0.4, 0.9])
    assert loss.item() == pytest.approx((-math.log(0.4) - 2 * math.log(0.1)) / 3)
    brier, _ = calibration_loss(logp, index, targets, weights, normaliser=3)  # the default
    assert brier.item() == pytest.approx(((0.4 - 1) ** 2 + 2 * 0.9**2) / 3)
    with pytest.raises(ValueError, match="'log' or 'brier'"):
        calibration_loss(logp, index, targets, weights, normaliser=3, kind="bce")
    # the gradient lowers a confident miss and raises an unsure hit
    logp = logp.clone().requires_grad_(True)
    for kind in ("brier", "log"):
        logp.grad = None
        calibration_loss(logp, index, targets, weights, normaliser=3, kind=kind)[0].backward()
        assert logp.grad[0, 2] > 0 and logp.grad[0, 0] < 0 and logp.grad[0, 1] < 0 and logp.grad[1].abs().sum() == 0


def test_a_near_certain_miss_still_gets_a_gradient():
    """Through the softmax of a label token at p = 0.994 the log loss's gradient is p (the Brier score's would be ~0.01)."""
    logits = torch.tensor([[7.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    logp = torch.log_softmax(logits, dim=-1)[:, :1]  # the written token
    assert logp.exp().item() > 0.99
    loss, score = calibration_loss(logp, torch.tensor([[0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), normaliser=1,
                                   kind="log")
    loss.backward()
    assert logits.grad[0, 0].item() == pytest.approx(score.item(), rel=1e-3)  # d/dz of -log(1 - p) = p
    assert torch.isfinite(calibration_loss(torch.zeros(1, 1), torch.tensor([[0]]), torch.tensor([[0.0]]),
                                           torch.tensor([[1.0]]), normaliser=1, kind="log")[0])  # s = 1 is capped


def test_triplets_without_tokens_and_rows_without_triplets_add_nothing():
    logp = torch.zeros(2, 3)
    loss, score = calibration_loss(logp, torch.full((2, 3), -1), torch.ones(2, 1), torch.ones(2, 1), normaliser=2)
    assert loss.item() == 0.0 and score.abs().sum() == 0
    loss, _ = calibration_loss(logp, torch.full((2, 3), -1), torch.zeros(2, 0), torch.zeros(2, 0), normaliser=1)
    assert loss.item() == 0.0
    assert triplet_targets(((True, True), (), (False, True, False))) == ([1.0, 0.0, 1 / 3], [2.0, 0.0, 3.0])


def test_score_tokens_on_the_real_tokenizer(tiny_model_dir):
    """Pair A with a wrong extra verb (hit + miss), pair B right: label tokens belong to their triplet."""
    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    text = answer(el(A, verb_class=["ride", "hold"]), B)
    ids = tok.encode(text, add_special_tokens=False)
    offsets = char_offsets(tok, ids)
    index, targets, weights = completion_score_targets(text, JudgedAnswer.read(text, TARGET), offsets)
    assert targets == [0.5, 1.0] and weights == [2.0, 1.0]
    owned = {k: "".join(text[a:b] for (a, b), i in zip(offsets, index) if i == k) for k in (-1, 0, 1)}
    assert "bicycle" in owned[0] and "ride" in owned[0] and "hold" in owned[0]
    assert "dining" in owned[1] and "eat" in owned[1]
    assert "50" in owned[-1] and '"human"' in owned[-1] and "<think>" in owned[-1]  # boxes and keys: no triplet's


def test_element_score_tokens_include_the_boxes(tiny_model_dir):
    """With ``logprob_element`` scores the term trains every token of an element: boxes and keys
    belong to their triplet, the reasoning to none."""
    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    text = answer(el(A, verb_class=["ride", "hold"]), B)
    ids = tok.encode(text, add_special_tokens=False)
    offsets = char_offsets(tok, ids)
    index, targets, weights = completion_score_targets(text, JudgedAnswer.read(text, TARGET), offsets, "logprob_element")
    assert targets == [0.5, 1.0] and weights == [2.0, 1.0]
    owned = {k: "".join(text[a:b] for (a, b), i in zip(offsets, index) if i == k) for k in (-1, 0, 1)}
    assert '"human"' in owned[0] and "bicycle" in owned[0] and '"human"' in owned[1] and "dining" in owned[1]
    assert "<think>" in owned[-1] and '"human"' not in owned[-1]
    rank_kind = completion_score_targets(text, JudgedAnswer.read(text, TARGET), offsets, "rank")
    assert rank_kind == completion_score_targets(text, JudgedAnswer.read(text, TARGET), offsets)  # rank: the label tokens'


def test_grpo_step_adds_the_calibration_term(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = grpo_module(tiny_model_dir)
    module.loss_settings = GRPOLossSettings(steps_per_generation=2, calibration=1.0)
    trainer = grpo_trainer(tmp_path, max_steps=1)
    trainer.fit(module, datamodule=grpo_data(synthetic_world))
    buffer = module._buffer
    assert buffer.score_index.shape == buffer.completion_ids.shape and buffer.score_targets.shape[0] == buffer.completion_ids.shape[0]
    assert torch.isfinite(trainer.callback_metrics["train/calibration/loss"])
    assert buffer.state_dict()["score_index"].device.type == "cpu"  # saved with the buffer on resume


def test_negative_calibration_and_tool_episodes_are_refused():
    from hoi_r1.ov_hoi.tool_grpo import ToolGRPOModule

    with pytest.raises(ValueError, match="calibration must be >= 0"):
        GRPOModule(loss=GRPOLossSettings(calibration=-1.0))
    with pytest.raises(ValueError, match="single-turn answers"):
        ToolGRPOModule(loss=GRPOLossSettings(calibration=1.0))
