"""GRPO helpers: modules with one extra reward that a random tiny model can earn (also loaded by
class path in subprocess tests), and the small module / trainer / data builders of the in-process
GRPO tests.

The HOI rewards are all 0 for a random model, so every advantage would be 0 and nothing would
train: the extra reward of :class:`ToyRewardGRPO` gives the groups a spread.
"""

from dataclasses import replace

import lightning as L
import torch

from hoi_r1.datamodule import HOIDataModule, SplitFiles
from hoi_r1.generation import GenerationSettings
from hoi_r1.grpo import GRPOModule
from hoi_r1.grpo_settings import GRPOLogSettings, GRPOLossSettings, RolloutSettings
from hoi_r1.models import ModelSettings
from hoi_r1.prompts import PromptConfig
from hoi_r1.rewards import RewardBreakdown

SHORT_PROMPT = PromptConfig(thinking_guidance=False, show_example=False, list_verbs=False)
EXTRA_TOKENS_PER_RANK = 4


def distinct_characters(text: str) -> float:
    """Distinct characters of a completion, scaled: differs between almost any two random texts."""
    return len(set(text)) / 10.0


class ToyRewardGRPO(GRPOModule):
    """:class:`GRPOModule` whose total reward adds :func:`distinct_characters`."""

    def score(self, completions, targets) -> RewardBreakdown:
        real = super().score(completions, targets)
        extra = [distinct_characters(t) for t in completions.texts]
        return RewardBreakdown(
            per_reward={**real.per_reward, "distinct_chars": extra},
            total=[a + b for a, b in zip(real.total, extra)],
            answers=real.answers,
        )


class RankLengthGRPO(ToyRewardGRPO):
    """Rank ``r`` samples up to ``EXTRA_TOKENS_PER_RANK · r`` more tokens than the others: the ranks'
    generations stop at different lengths. Records each generation's completions (token ids) and
    longest completion."""

    def _sample(self, batch, n, sampling):
        sampling = replace(sampling, max_new_tokens=sampling.max_new_tokens + EXTRA_TOKENS_PER_RANK * self.global_rank)
        completions = super()._sample(batch, n, sampling)
        self.__dict__.setdefault("sampled", []).append({"length": int(completions.mask.sum(dim=1).max()),
                                                         "ids": completions.token_ids.tolist(),
                                                         "step": self.global_step})
        return completions


def grpo_data(world, batch_size=2):
    """The synthetic world's splits (validation and test: 2 images each) with short prompts."""
    return HOIDataModule(
        train=SplitFiles(str(world / "train.json")),
        val=SplitFiles(str(world / "test.json"), limit=2),
        test=SplitFiles(str(world / "test.json"), limit=2),
        batch_size=batch_size,
        eval_batch_size=2,
        prompt=SHORT_PROMPT,
    )


def grpo_module(model_dir, cls=ToyRewardGRPO, lora=None, beta=0.0, spg=2, **kwargs):
    """A small ``cls`` on the tiny model: frozen vision, G = 2, 8-token completions and generations."""
    return cls(
        model=ModelSettings(name_or_path=str(model_dir), freeze_vision=True, lora=lora),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
        rollout=RolloutSettings(num_generations=2, max_completion_length=8),
        loss=GRPOLossSettings(beta=beta, steps_per_generation=spg),
        generation=GenerationSettings(max_new_tokens=8),
        log_examples=0,
        logging=GRPOLogSettings(completions=2, every_n_generations=1),
        **kwargs,
    )


def grpo_trainer(tmp_path, **kwargs):
    """A deterministic CPU Trainer (2 steps, accumulating 2, no validation) logging to TensorBoard;
    ``kwargs`` override its options."""
    options = dict(accelerator="cpu", max_steps=2, accumulate_grad_batches=2, limit_val_batches=0, log_every_n_steps=1)
    options.update(kwargs)
    return L.Trainer(
        default_root_dir=tmp_path,
        logger=L.pytorch.loggers.TensorBoardLogger(tmp_path, name="tb"),
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        **options,
    )
