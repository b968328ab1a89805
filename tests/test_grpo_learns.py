"""GRPO moves a tiny random model towards a reward it can earn (slow, opt-in: ``make test-slow``).

A broken optimiser — a sign error in the advantages, a loss that does not reach the policy,
log-probabilities of the wrong tokens, stale rollouts — leaves the reward flat or drives it down;
this run catches it with the real Trainer, the ``hf`` engine and the shipped loss.
"""

import lightning as L
import pytest
import torch
from helpers.grpo import ToyRewardGRPO

from hoi_r1.datamodule import HOIDataModule, SplitFiles
from hoi_r1.generation import GenerationSettings
from hoi_r1.grpo_settings import GRPOLogSettings, GRPOLossSettings, RolloutSettings
from hoi_r1.models import ModelSettings
from hoi_r1.prompts import PromptConfig
from hoi_r1.rewards import RewardWeights


class RewardHistory(L.Callback):
    """The mean total reward of every generation batch."""

    def __init__(self) -> None:
        self.rewards: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        value = trainer.callback_metrics.get("train/reward")
        if value is not None and (not self.rewards or batch_idx % pl_module.train_batch_repeat == 0):
            self.rewards.append(float(value))


@pytest.mark.slow
def test_grpo_raises_a_reward_the_tiny_model_can_earn(tiny_model_dir, synthetic_world, tmp_path):
    L.seed_everything(0)
    module = ToyRewardGRPO(  # total = distinct characters / 10 only (the HOI rewards weigh 0)
        model=ModelSettings(name_or_path=str(tiny_model_dir)),
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
        rollout=RolloutSettings(num_generations=4, max_completion_length=12, temperature=1.0),
        rewards=RewardWeights(format=0.0, keys=0.0, label=0.0, iou=0.0),
        loss=GRPOLossSettings(loss_type="grpo", steps_per_generation=1),
        generation=GenerationSettings(max_new_tokens=8),
        log_examples=0,
        logging=GRPOLogSettings(completions=0),
    )
    data = HOIDataModule(train=SplitFiles(str(synthetic_world / "train.json")), batch_size=4,
                         prompt=PromptConfig(thinking_guidance=False, show_example=False, list_verbs=False))
    history = RewardHistory()
    trainer = L.Trainer(accelerator="cpu", max_steps=40, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[history],
                        log_every_n_steps=1)
    trainer.fit(module, datamodule=data)
    first, last = history.rewards[:10], history.rewards[-10:]
    assert len(history.rewards) == 40
    assert sum(last) / 10 > sum(first) / 10 + 0.2, history.rewards  # + 2 distinct characters per completion
