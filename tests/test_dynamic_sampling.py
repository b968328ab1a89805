"""Dynamic sampling: which groups have reward spread, which are kept, and the GRPO stage training
on the kept groups of an over-sampled prompt batch with the real Trainer."""

import lightning as L
import pytest
import torch
from helpers.grpo import ToyRewardGRPO, grpo_data, grpo_module, grpo_trainer

from hoi_r1.advantages import group_advantages
from hoi_r1.dynamic_sampling import group_rows, has_spread, spread_groups
from hoi_r1.generation import Completions
from hoi_r1.grpo_settings import RolloutSettings
from hoi_r1.rewards import RewardBreakdown

NAN = float("nan")


def test_spread_is_a_nonzero_std_over_the_rewards_that_apply():
    rewards = torch.tensor([0.5, 0.5, 0.5,   1.0, 1.0, 1.0 + 1e-3,   2.0, NAN, 2.0,   NAN, NAN, 3.0,   0.0, 1.0, NAN])
    assert has_spread(rewards, 3).tolist() == [False, True, False, False, True]
    with pytest.raises(ValueError, match="whole groups of 3"):
        has_spread(torch.zeros(7), 3)
    with pytest.raises(ValueError, match=">= 2"):
        has_spread(torch.zeros(4), 1)


def test_kept_groups_are_the_first_with_spread_then_fillers_in_batch_order():
    spread = torch.tensor([False, True, False, True, True])
    assert spread_groups(spread, 2).tolist() == [1, 3]
    assert spread_groups(spread, 3).tolist() == [1, 3, 4]
    assert spread_groups(spread, 4).tolist() == [0, 1, 3, 4]  # one group without spread fills the step
    assert spread_groups(torch.zeros(3, dtype=torch.bool), 2).tolist() == [0, 1]
    with pytest.raises(ValueError, match="cannot keep 6 of 5"):
        spread_groups(spread, 6)
    assert group_rows(torch.tensor([0, 2]), 3).tolist() == [0, 1, 2, 6, 7, 8]


def test_completions_and_rewards_select_rows_together():
    c = Completions(["a", "b", "c"], torch.tensor([[1, 0], [2, 3], [4, 0]]), torch.tensor([[-1.0, 0], [-2, -3], [-4, 0]]),
                    torch.tensor([[1, 0], [1, 1], [1, 0]]), [False, True, False], turns=[["x"], ["y"], ["z"]])
    picked = c.select([2, 0])
    assert picked.texts == ["c", "a"] and picked.token_ids.tolist() == [[4, 0], [1, 0]]
    assert picked.token_logprobs.tolist() == [[-4.0, 0.0], [-1.0, 0.0]] and picked.mask.tolist() == [[1, 0], [1, 0]]
    assert picked.truncated == [False, False] and picked.turns == [["z"], ["x"]]
    r = RewardBreakdown({"format": [1.0, None, 0.0]}, [1.0, NAN, 0.0], ["A", "B", "C"]).select([1, 2])
    assert r.per_reward == {"format": [None, 0.0]} and r.total[1] == 0.0 and r.answers == ["B", "C"]


class _TwoFlatGroups(ToyRewardGRPO):
    """Prompts 0 and 1 of every batch earn one reward for all their completions (no spread), 2 and
    3 differ within their groups; records each batch's totals, image ids and buffer."""

    def score(self, completions, targets):
        out = super().score(completions, targets)
        G = self.rollout.num_generations
        if len(out.total) == 4 * G:  # the sampled batch (not the greedy answers)
            total = [1.0 if i < 2 * G else t + 0.01 * i for i, t in enumerate(out.total)]  # 2 and 3: spread
            out = RewardBreakdown(out.per_reward, total, out.answers)
            self.__dict__.setdefault("scored", []).append(torch.tensor(total))
        return out

    def _rollout(self, batch):
        buffer = super()._rollout(batch)
        self.__dict__.setdefault("rollouts", []).append(([s.image_id for s in batch["samples"]], buffer))
        return buffer


def test_grpo_trains_on_the_groups_with_spread_of_an_oversampled_batch(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = grpo_module(tiny_model_dir, cls=_TwoFlatGroups)
    module.rollout.train_prompts = 2
    trainer = grpo_trainer(tmp_path, max_steps=2)
    trainer.fit(module, datamodule=grpo_data(synthetic_world, batch_size=4))
    assert trainer.global_step == 2 and len(module.rollouts) == 2
    for totals, (image_ids, buffer) in zip(module.scored, module.rollouts):
        assert buffer.image_ids == image_ids and len(image_ids) == 4  # the re-served batch is still checked whole
        assert buffer.prompts == [2, 3]  # the flat groups 0 and 1 are left out
        assert buffer.prompt_rows(0).tolist() == [2, 2] and buffer.prompt_rows(1).tolist() == [3, 3]
        assert buffer.completion_ids.shape[0] == 4  # 2 groups of G = 2
        expected, _ = group_advantages(totals[4:], 2)
        assert torch.allclose(buffer.advantages, expected) and expected.abs().sum() > 0
    m = trainer.callback_metrics
    assert float(m["train/sampled_frac_reward_zero_std"]) == pytest.approx(0.5)
    assert float(m["train/frac_reward_zero_std"]) == 0.0 and torch.isfinite(m["train/loss"])


def test_train_prompts_beyond_the_batch_is_a_clear_error(tiny_model_dir, synthetic_world, tmp_path):
    module = grpo_module(tiny_model_dir)
    module.rollout.train_prompts = 3
    with pytest.raises(ValueError, match=r"train_prompts=3 must not exceed .*data.batch_size=2"):
        grpo_trainer(tmp_path, max_steps=1).fit(module, datamodule=grpo_data(synthetic_world, batch_size=2))
    with pytest.raises(ValueError, match="train_prompts must be >= 1"):
        RolloutSettings(train_prompts=0).check()
