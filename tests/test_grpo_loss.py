"""GRPO maths: hand-computed values on tiny tensors, and equality with TRL 1.16's own loss.

TRL comparison: ``GRPOTrainer._compute_loss`` is called on an instance made with
``object.__new__`` (no model, no accelerator), holding only the attributes that method reads;
its model forward ``_get_per_token_logps_and_entropies`` is replaced by a stub returning our
log-probs. Losses (ours = TRL's × ``current_gradient_accumulation_steps``: Lightning divides by
the accumulation steps outside the loss, TRL inside), gradients with respect to the log-probs, and
the logged clip fractions and KL are compared to 1e-6 for every loss type (grpo, bnpo, dr_grpo,
dapo), with β = 0, with β > 0 and TRL's ``use_bias_correction_kl`` off (our default) and on (our
``kl_ratio_correction=True``), with gradient accumulation and ``steps_per_generation`` > 1, and
with vLLM importance-sampling weights. Nothing is skipped.

What is not compared with TRL here: the advantages (``tests/test_advantages.py``).
"""

from __future__ import annotations

import math
import types
from collections import defaultdict

import pytest
import torch

from hoi_r1.grpo_loss import clipped_policy_loss, k3_kl, per_token_logps, truncated_importance_weights


# ===================================================================== log-probabilities
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk_rows", [1, 3, 512])
def test_per_token_logps_equals_log_softmax_gather(dtype, chunk_rows):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 11, generator=g, dtype=dtype, requires_grad=True)
    ids = torch.randint(0, 11, (2, 5), generator=g)
    ours = per_token_logps(logits, ids, temperature=0.7, chunk_rows=chunk_rows)
    ref = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, ids[..., None]).squeeze(-1)
    assert ours.dtype == dtype and torch.allclose(ours, ref, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)


def test_per_token_logps_equals_trls_selective_log_softmax():
    from trl.trainer.utils import selective_log_softmax

    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 50, generator=g)
    ids = torch.randint(0, 50, (3, 4), generator=g)
    assert torch.allclose(per_token_logps(logits, ids, 1.3), selective_log_softmax(logits, ids, temperature=1.3),
                          atol=1e-6)


def test_per_token_logps_upcasts_bfloat16():
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 3, 20, generator=g) * 5).to(torch.bfloat16)
    ids = torch.randint(0, 20, (2, 3), generator=g)
    ours = per_token_logps(logits, ids, chunk_rows=2)
    ref = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[..., None]).squeeze(-1)
    assert ours.dtype == torch.float32 and torch.allclose(ours, ref, atol=1e-6)


def test_per_token_logps_refuses_bad_inputs():
    with pytest.raises(ValueError, match="temperature must be positive"):
        per_token_logps(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match=r"logits \(1, 2, 3\) do not match input_ids \(1, 3\)"):
        per_token_logps(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long))


# ===================================================================== the objective by hand
# Two completions, three positions; ratios ρ chosen directly (old = 0, logp = log ρ); ε = 0.2.
RATIOS = torch.tensor([[1.5, 0.5, 1.0], [1.1, 0.7, 2.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])
ADV = torch.tensor([1.0, -1.0], dtype=torch.float64)
# per-token loss -min(ρA, clip(ρ, 0.8, 1.2)A):
#   A = +1: ρ 1.5 -> -min(1.5, 1.2) = -1.2 (clipped high); ρ 0.5 -> -0.5; third token masked
#   A = -1: ρ 1.1 -> 1.1; ρ 0.7 -> -min(-0.7, -0.8) = 0.8 (clipped low); ρ 2.0 -> -min(-2, -1.2) = 2.0
# sums: -1.7 over 2 tokens, 3.9 over 3 tokens; 5 active tokens
HAND_LOSS = {
    "grpo": (-1.7 / 2 + 3.9 / 3) / 2,  # per-sequence means, then their mean
    "bnpo": 2.2 / 5,  # active tokens of the micro-batch
    "dr_grpo": 2.2 / (2 * 4),  # batch size × max_completion_length = 4
    "dapo": 2.2 / 10,  # num_items_in_batch = 10 (a generation batch twice this one)
}
# d loss / d logp_t = -A ρ_t where the unclipped term is the minimum, 0 where clipped
HAND_GRAD_SUMS = torch.tensor([[0.0, -0.5, 0.0], [1.1, 0.0, 2.0]], dtype=torch.float64)
HAND_GRAD_SCALE = {
    "grpo": torch.tensor([[1 / 4], [1 / 6]], dtype=torch.float64),
    "bnpo": 1 / 5,
    "dr_grpo": 1 / 8,
    "dapo": 1 / 10,
}


def _hand_inputs():
    logp = RATIOS.log().requires_grad_()
    return logp, torch.zeros_like(RATIOS)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_clipped_loss_by_hand(loss_type):
    logp, old = _hand_inputs()
    loss, stats = clipped_policy_loss(logp, old, None, ADV, MASK, 0.2, 0.2, 0.0, loss_type,
                                      max_completion_length=4, num_items_in_batch=10)
    assert loss.item() == pytest.approx(HAND_LOSS[loss_type], abs=1e-12)
    loss.backward()
    assert torch.allclose(logp.grad, HAND_GRAD_SUMS * HAND_GRAD_SCALE[loss_type], atol=1e-12)
    assert stats.clip_low.item() == pytest.approx(1 / 5)  # ρ = 0.7 with A < 0
    assert stats.clip_high.item() == pytest.approx(1 / 5)  # ρ = 1.5 with A > 0
    assert stats.clip_region.item() == pytest.approx(2 / 5)
    assert stats.ratio.item() == pytest.approx((1.5 + 0.5 + 1.1 + 0.7 + 2.0) / 5)
    assert stats.kl is None and stats.tokens.item() == 5


def test_dapo_scales_with_the_micro_batches_of_a_generation_batch():
    logp, old = _hand_inputs()
    loss, _ = clipped_policy_loss(logp, old, None, ADV, MASK, 0.2, 0.2, loss_type="dapo", num_items_in_batch=10,
                                  steps_per_generation=2)
    assert loss.item() == pytest.approx(2 * 2.2 / 10)  # averaged over the 2 micro-batches, the step sees 2.2/10


def test_clip_higher_is_asymmetric():
    # ε_high = 0.28 (DAPO): ρ = 1.1 with A > 0 is no longer clipped; ρ = 1.5 still is, at 1.28
    logp = torch.tensor([[1.5, 1.1]], dtype=torch.float64).log()
    loss, stats = clipped_policy_loss(logp, torch.zeros_like(logp), None, torch.tensor([1.0]),
                                      torch.ones(1, 2), 0.2, 0.28, loss_type="bnpo")
    assert loss.item() == pytest.approx(-(1.28 + 1.1) / 2)
    assert stats.clip_high.item() == 0.5


def test_kl_penalty_by_hand():
    # on-policy (old = logp), A = 0: only β KL remains. ref = logp - ln 2:
    # k3 = exp(-ln 2) + ln 2 - 1 = 0.5 + 0.6931 - 1 = 0.19315 per token
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    ref = logp.detach() - math.log(2)
    k3 = 0.5 + math.log(2) - 1
    loss, stats = clipped_policy_loss(logp, None, ref, torch.zeros(1), torch.ones(1, 2), beta=0.1, loss_type="bnpo")
    assert loss.item() == pytest.approx(0.1 * k3) and stats.kl.item() == pytest.approx(k3)
    loss.backward()
    # d k3 / d logp = -exp(ref - logp) + 1 = 0.5 per token, × β / 2 tokens
    assert logp.grad[0].tolist() == pytest.approx([0.025, 0.025])
    assert k3_kl(torch.tensor(-1.0), torch.tensor(-1.0)).item() == 0.0


def test_kl_ratio_correction_keeps_the_value_and_changes_the_gradient():
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    ref = logp.detach() - math.log(2)
    loss, _ = clipped_policy_loss(logp, None, ref, torch.zeros(1), torch.ones(1, 2), beta=0.1, loss_type="bnpo",
                                  kl_ratio_correction=True)
    k3 = 0.5 + math.log(2) - 1
    assert loss.item() == pytest.approx(0.1 * k3)  # ρ = 1 on-policy
    loss.backward()
    # d (ρ k3) / d logp = k3 + 0.5 at ρ = 1
    assert logp.grad[0].tolist() == pytest.approx([0.05 * (k3 + 0.5)] * 2)


def test_importance_weights_scale_the_policy_term_only():
    logp, old = _hand_inputs()
    w = torch.full_like(RATIOS, 0.5)
    ref = logp.detach() - 1.0
    plain, _ = clipped_policy_loss(logp, old, ref, ADV, MASK, beta=0.0, loss_type="bnpo")
    weighted, _ = clipped_policy_loss(logp, old, ref, ADV, MASK, beta=0.0, loss_type="bnpo", importance_weights=w)
    assert weighted.item() == pytest.approx(0.5 * plain.item())
    kl_only, _ = clipped_policy_loss(logp, old, ref, torch.zeros(2), MASK, beta=0.3, loss_type="bnpo",
                                     importance_weights=w)
    assert kl_only.item() == pytest.approx(0.3 * k3_kl(logp, ref)[MASK.bool()].mean().item())


def test_truncated_importance_weights_by_hand():
    old = torch.tensor([[0.0, -1.0, -1.0, -3.0]])
    sampler = torch.tensor([[-2.0, -1.5, math.nan, -1.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = truncated_importance_weights(old, sampler, cap=3.0, mask=mask)
    # exp(2) capped at 3; exp(0.5); NaN sampler log-prob -> weight 1; masked -> 1
    assert w[0].tolist() == pytest.approx([3.0, math.exp(0.5), 1.0, 1.0])
    seq = truncated_importance_weights(old, sampler, cap=20.0, mask=mask, level="sequence")  # exp(2 + 0.5)
    assert seq.shape == (1, 1) and seq.item() == pytest.approx(math.exp(2.5))
    masked = truncated_importance_weights(old, sampler, cap=3.0, mask=mask, level="token_mask")
    assert masked[0].tolist() == pytest.approx([0.0, math.exp(0.5), 1.0, 1.0])  # exp(2) > 3: dropped, not capped
    for cap, expected in ((20.0, math.exp(2.5)), (3.0, 0.0)):  # the whole sequence kept, or dropped
        assert truncated_importance_weights(old, sampler, cap=cap, mask=mask, level="sequence_mask").item() == \
            pytest.approx(expected)
    with pytest.raises(ValueError, match="importance level"):
        truncated_importance_weights(old, sampler, level="token_truncate")


def test_loss_refuses_bad_settings():
    logp, old = _hand_inputs()
    with pytest.raises(ValueError, match="beta > 0 needs ref_logp"):
        clipped_policy_loss(logp, old, None, ADV, MASK, beta=0.1)
    with pytest.raises(ValueError, match="'dr_grpo' needs max_completion_length"):
        clipped_policy_loss(logp, old, None, ADV, MASK, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="'dapo' needs num_items_in_batch"):
        clipped_policy_loss(logp, old, None, ADV, MASK, loss_type="dapo")
    with pytest.raises(ValueError, match="loss_type must be one of"):
        clipped_policy_loss(logp, old, None, ADV, MASK, loss_type="ppo", num_items_in_batch=1)
    with pytest.raises(ValueError, match=r"logp \(2, 3\) and mask \(2, 2\) differ"):
        clipped_policy_loss(logp, old, None, ADV, MASK[:, :2])


# ===================================================================== equality with TRL
class _Accelerator:
    """The accelerator calls `_compute_loss` makes, for one process."""

    num_processes = 1

    def gather(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x

    def gather_for_metrics(self, x):
        return x


def _trl_trainer(loss_type, beta, eps_low, eps_high, accumulation, steps_per_generation, bias_kl, is_weights,
                 max_completion_length):
    from trl.trainer.grpo_trainer import GRPOTrainer

    t = object.__new__(GRPOTrainer)
    t.loss_type, t.beta, t.epsilon_low, t.epsilon_high = loss_type, beta, eps_low, eps_high
    t.importance_sampling_level = "token"
    t.top_entropy_quantile = 1.0
    t.off_policy_mask_threshold = None
    t.aux_loss_enabled = False
    t._entropy_bonus_enabled = False
    t.use_vllm = t.vllm_importance_sampling_correction = is_weights
    t.max_completion_length = max_completion_length
    t.current_gradient_accumulation_steps = accumulation
    t.args = types.SimpleNamespace(
        use_bias_correction_kl=bias_kl, delta=None, steps_per_generation=steps_per_generation
    )
    t.model = types.SimpleNamespace(training=True)
    t.accelerator = _Accelerator()
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return t


def _random_batch(seed):
    g = torch.Generator().manual_seed(seed)
    b, t = 4, 7
    logp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    old = logp + 0.3 * torch.randn(b, t, generator=g, dtype=torch.float64)  # ratios well beyond the clip range
    ref = logp + 0.5 * torch.randn(b, t, generator=g, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5, 1])
    mask = (torch.arange(t)[None] < lengths[:, None]).long()
    adv = torch.tensor([1.3, -0.7, 0.4, -1.1], dtype=torch.float64)
    sampler = old + 0.2 * torch.randn(b, t, generator=g, dtype=torch.float64)
    return logp, old, ref, mask, adv, sampler


LOSS_TYPES = ["grpo", "bnpo", "dr_grpo", "dapo"]
TRL_CASES = [
    # (beta, use_bias_correction_kl, accumulation, steps_per_generation, importance weights)
    (0.0, True, 1, 1, False),  # TRL's default flag is irrelevant at β = 0
    (0.04, False, 1, 1, False),  # β > 0, textbook KL (our default)
    (0.04, True, 1, 1, False),  # β > 0, TRL 1.16's default ratio-corrected KL (our kl_ratio_correction=True)
    (0.04, True, 4, 4, False),  # gradient accumulation, one generation batch per optimizer step
    (0.0, True, 2, 4, False),  # two optimizer steps per generation batch
    (0.04, False, 1, 1, True),  # vLLM importance-sampling correction
]


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("beta, bias_kl, accumulation, steps_per_generation, with_is", TRL_CASES)
def test_equal_to_trl_compute_loss(loss_type, beta, bias_kl, accumulation, steps_per_generation, with_is):
    case = (beta, bias_kl, accumulation, steps_per_generation, with_is)
    seed = 10 * LOSS_TYPES.index(loss_type) + TRL_CASES.index(case)
    logp0, old, ref, mask, adv, sampler = _random_batch(seed)
    weights = truncated_importance_weights(old, sampler, cap=2.0, mask=mask) if with_is else None
    num_items = torch.tensor(5.0 * int(mask.sum()), dtype=torch.float64)  # generation batch over all ranks / world
    eps_low, eps_high, max_len = 0.2, 0.28, 9

    trl_logp = logp0.clone().requires_grad_()
    trainer = _trl_trainer(loss_type, beta, eps_low, eps_high, accumulation, steps_per_generation, bias_kl, with_is,
                           max_len)
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (trl_logp, torch.zeros_like(trl_logp), None)
    inputs = {
        "prompt_ids": torch.zeros(4, 2, dtype=torch.long), "prompt_mask": torch.ones(4, 2, dtype=torch.long),
        "completion_ids": torch.zeros(4, 7, dtype=torch.long), "completion_mask": mask,
        "advantages": adv, "old_per_token_logps": old, "num_items_in_batch": num_items,
    }
    if beta:
        inputs["ref_per_token_logps"] = ref
    if with_is:
        inputs["importance_sampling_ratio"] = weights
    trl_loss = trainer._compute_loss(None, inputs)
    trl_loss.backward()

    our_logp = logp0.clone().requires_grad_()
    loss, stats = clipped_policy_loss(
        our_logp, old, ref if beta else None, adv, mask, eps_low, eps_high, beta, loss_type,
        max_completion_length=max_len, num_items_in_batch=num_items, steps_per_generation=steps_per_generation,
        importance_weights=weights, kl_ratio_correction=bias_kl,
    )
    (loss / accumulation).backward()  # what Lightning does with accumulate_grad_batches

    assert abs(loss.item() / accumulation - trl_loss.item()) < 1e-6
    assert torch.allclose(our_logp.grad, trl_logp.grad, atol=1e-6, rtol=0)
    assert trl_logp.grad.abs().sum() > 0  # the comparison is not between two zero gradients
    metrics = trainer._metrics["train"]
    assert stats.clip_low.item() == pytest.approx(metrics["clip_ratio/low_mean"][-1], abs=1e-6)
    assert stats.clip_high.item() == pytest.approx(metrics["clip_ratio/high_mean"][-1], abs=1e-6)
    assert stats.clip_region.item() == pytest.approx(metrics["clip_ratio/region_mean"][-1], abs=1e-6)
    assert metrics["clip_ratio/region_mean"][-1] > 0  # the batch does exercise the clipping
    if beta:
        assert stats.kl.item() == pytest.approx(metrics["kl"][-1], abs=1e-6)


def test_trl_ratio_corrected_kl_differs_from_the_textbook_gradient():
    """Documents why the flag matters: same loss value on-policy, different gradient."""
    logp0, _, ref, mask, adv, _ = _random_batch(seed=5)
    grads = []
    for bias_kl in (False, True):
        logp = logp0.clone().requires_grad_()
        loss, _ = clipped_policy_loss(logp, None, ref, adv, mask, beta=0.5, loss_type="bnpo",
                                      kl_ratio_correction=bias_kl)
        loss.backward()
        grads.append((loss.item(), logp.grad))
    assert grads[0][0] == pytest.approx(grads[1][0])
    assert not torch.allclose(grads[0][1], grads[1][1])
