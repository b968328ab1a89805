"""ToolGRPOModule: GRPO on tool-using episodes, the second stage of OV-HOI / ImagineAgent
(arXiv 2602.11499) after the cold-start SFT (``data.task: tools``; docs/ov_hoi.md).

Everything but the rollout is :class:`~hoi_r1.grpo.GRPOModule`'s: the buffer served as
micro-batches, group advantages, the clipped loss with its normalisations, KL, resume, logging.
Per generation batch:

1. **Episodes.** ``G`` episodes per prompt, all ``P·G`` of the rank in lockstep
   (:func:`~hoi_r1.ov_hoi.episode_rollout.run_policy_episodes`): each round the unfinished episodes
   sample their next turn in one padded ``generate`` of the policy (``rollout``: temperature,
   top-p / top-k, ``max_completion_length`` tokens per turn), their calls run on the tools of
   :mod:`hoi_r1.ov_hoi` (detections from ``data.train.detections``), and the responses (and crops)
   come back as a tool turn; ``episodes`` sets the turn budget and the stop strings.
2. **Rewards.** The OV-HOI rewards on the episodes (:func:`~hoi_r1.ov_hoi.rewards.score_tool_completions`:
   ``accuracy``, ``format``, ``tool_usage``, ``spatial``), weighted by ``rewards``; the total
   drives the group advantages as in the direct mode.
3. **Training sequences.** Each rollout is the prompt followed by all its turns, assistant *and*
   tool turns with their images, in the chat layout the cold-start SFT trains on
   (:func:`~hoi_r1.ov_hoi.episode_rollout.episode_sequences`). The loss and the old / reference
   log-probs count only the model-written tokens, exactly the tokens the SFT labels would cover
   (each assistant turn with its ``<|im_end|>``); tool responses, images and the prompt are
   context. The completion tensors of the buffer are these sequences from the first model token
   on, masked to the model's tokens, so ``dapo`` normalises by model tokens.
4. **Buffer.** The turns are kept as plain data (images as uint8 tensors) in the
   :class:`~hoi_r1.rollout.batch.RolloutBuffer`; every micro-batch encodes its sequences again,
   and a checkpoint taken inside a generation batch resumes with the same episodes.

The episodes of a generation batch travel in its rollout result
(:class:`~hoi_r1.ov_hoi.episode_rollout.EpisodeCompletions`) from ``_sample`` to ``score`` and
the logging; validation and test run episodes too (:class:`~hoi_r1.ov_hoi.evaluation.ToolEvaluation`)
and their answers get the same OV-HOI rewards.

Limits: the ``hf`` engine only (vLLM is not driven turn by turn; configuring ``engine: vllm`` is
an error); no FSDP / DeepSpeed ZeRO-3 (ranks run different numbers of turns, and their
parameter gathers inside ``generate`` would deadlock); each turn re-encodes the whole
conversation; what is trained is the decoded text encoded again (module docstring of
:mod:`hoi_r1.ov_hoi.episode_rollout`).
"""

from __future__ import annotations

import torch

from hoi_r1.collate import move_batch
from hoi_r1.datamodule import TrainBatchKind
from hoi_r1.grpo import GRPOModule
from hoi_r1.ov_hoi.episode_driver import EpisodeSettings
from hoi_r1.ov_hoi.episode_rollout import (
    EpisodeCompletions,
    PolicyTurnWriter,
    episode_logps,
    episode_sequences,
    plain_turns,
    run_policy_episodes,
)
from hoi_r1.ov_hoi.episode_stats import EpisodeCounts
from hoi_r1.ov_hoi.evaluation import EpisodeEvaluationHooks, ToolGenerationSettings
from hoi_r1.ov_hoi.rewards import SpatialRewardConfig, ToolRewardWeights, ToolUsageConfig, score_tool_completions
from hoi_r1.reward_target import RewardTarget
from hoi_r1.rewards import RewardBreakdown
from hoi_r1.rollout.batch import RolloutBuffer, trim_completions
from hoi_r1.rollout.engine import EngineKind, RolloutSampling
from hoi_r1.rollout.hf import gradient_checkpointing_off

torch.serialization.add_safe_globals([ToolRewardWeights, ToolUsageConfig, SpatialRewardConfig, EpisodeSettings])


class ToolGRPOModule(EpisodeEvaluationHooks, GRPOModule):
    """GRPO on tool-using episodes with the OV-HOI rewards, HOI-mAP validation of episodes.

    Every other argument is :class:`~hoi_r1.grpo.GRPOModule`'s, with these readings:
    ``rollout`` samples the training episodes (``max_completion_length`` is per model turn);
    ``loss.triplet_credit`` and ``loss.calibration`` must be 0 and ``loss.baseline`` ``group`` (all for single-turn
    answers); ``init_from_checkpoint`` is the cold-start SFT's checkpoint; ``evaluation.scores`` must be ``rank``; ``vllm`` and
    ``share_prompts`` do not apply (episodes run on ``hf`` and their log-probs are one sequence
    per row).

    Args:
        rewards: weight of each OV-HOI reward in the total.
        tool_usage: settings of the ``tool_usage`` reward.
        spatial: settings of the ``spatial`` reward (verb → spatial cues).
        episodes: turn budget, calls per turn and stop strings of the training episodes.
        generation: generation settings of validation, test and predict (``max_new_tokens`` per
            model turn; ``episodes``: their turn budget and stops).
        engine: rollout engine: ``hf`` only (tool episodes are not driven through vLLM).
    """

    train_batch_kind: TrainBatchKind = "episodes"

    def __init__(
        self,
        rewards: ToolRewardWeights = ToolRewardWeights(),
        tool_usage: ToolUsageConfig = ToolUsageConfig(),
        spatial: SpatialRewardConfig = SpatialRewardConfig(),
        episodes: EpisodeSettings = EpisodeSettings(),
        generation: ToolGenerationSettings = ToolGenerationSettings(),
        engine: EngineKind = "hf",
        **kwargs,
    ) -> None:
        if engine != "hf":
            raise ValueError(
                f"tool-using episodes run on engine 'hf' only (found engine={engine!r}): vLLM is not driven turn "
                "by turn here; set model.init_args.engine: hf"
            )
        super().__init__(rewards=rewards, generation=generation, engine=engine, **kwargs)
        if self.loss_settings.triplet_credit:
            raise ValueError("loss.triplet_credit applies to single-turn answers, not to tool-using episodes: set it to 0")
        if self.loss_settings.calibration:
            raise ValueError("loss.calibration applies to single-turn answers, not to tool-using episodes: set it to 0")
        if self.loss_settings.baseline != "group":
            raise ValueError("loss.baseline: greedy decodes one single-turn answer per prompt, not a tool-using "
                             "episode: set it to group")
        self.tool_usage, self.spatial, self.episode_settings = tool_usage, spatial, episodes

    # ------------------------------------------------------------------ set-up
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if getattr(self.engine, "synced_gpus", False):
            raise ValueError(
                "tool-using episodes cannot run under FSDP or DeepSpeed ZeRO-3: ranks run different numbers of "
                "turns, and the parameter gathers inside generate would wait for each other forever; use DDP"
            )

    # ------------------------------------------------------------------ rollout
    def turn_writer(self, sampling: RolloutSampling) -> PolicyTurnWriter:
        """Who writes the model turns of the training episodes: the policy's ``generate``."""
        return PolicyTurnWriter(self.model, self.datamodule.processor, sampling, self.episode_settings.stop_strings)

    def _sample(self, batch: dict, n: int, sampling: RolloutSampling) -> EpisodeCompletions:
        """``n`` episodes per prompt, as completions: transcripts, the model-token regions of
        their training sequences, their turns (kept in the buffer) and the episodes themselves."""
        with gradient_checkpointing_off(self.model):
            episodes = run_policy_episodes(self.turn_writer(sampling), batch, n, self.episode_settings)
        turns = [plain_turns(e) for e in episodes]
        prompts = [messages for messages in batch["tool_messages"] for _ in range(n)]
        ids, mask = episode_sequences(self.datamodule.processor, prompts, turns).region(self._pad_id)
        texts = [e.transcript().text for e in episodes]
        return EpisodeCompletions(texts, ids, torch.zeros(ids.shape), mask.long(), [e.truncated for e in episodes],
                                  turns, episodes=episodes)

    def score(self, completions: EpisodeCompletions, targets: list[RewardTarget]) -> RewardBreakdown:
        """The OV-HOI rewards of the episodes of a rollout."""
        if len(completions.episodes) != len(completions.texts):
            raise RuntimeError("ToolGRPOModule.score scores the episodes of a rollout (EpisodeCompletions); there are none")
        return score_tool_completions(completions.episodes, targets, self.reward_weights, self.tool_usage, self.spatial)

    def _logps(self, model, batch: dict, buffer: RolloutBuffer, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R, T)`` log-probs of micro-batch ``micro``'s model tokens (its sequences encoded
        again from the buffered turns) and their mask."""
        rows = buffer.rows(micro)
        prompts = [batch["tool_messages"][p] for p in buffer.prompt_rows(micro).tolist()]
        sequences = episode_sequences(self.datamodule.processor, prompts, buffer.turns[rows])
        ids, mask = trim_completions(buffer.completion_ids[rows], buffer.completion_mask[rows])
        encoded, _ = sequences.region(self._pad_id)
        width = min(ids.shape[1], encoded.shape[1])
        if ids.shape[1] > encoded.shape[1] or ((encoded[:, :width].to(ids.device) != ids) & mask.bool()).any():
            raise RuntimeError("episodes encode to other tokens than at their rollout: did the processor change?")
        sequences.inputs = move_batch(sequences.inputs, self.device)
        return episode_logps(model, sequences, width, self.rollout.temperature), mask

    @property
    def _pad_id(self) -> int:
        return self.datamodule.processor.tokenizer.pad_token_id

    def _log_rollout(self, scores, everyone, advantages, adv_stats, completions, batch, seconds: float,
                     baseline=None) -> None:
        super()._log_rollout(scores, everyone, advantages, adv_stats, completions, batch, seconds, baseline)
        counts = EpisodeCounts()
        counts.add(completions.episodes)
        self.log_dict({f"train/{k}": v for k, v in counts.means().items()}, batch_size=len(completions.texts))

    # ------------------------------------------------------------------ evaluation
    def _eval_scores(self, stage: str, batch: dict, parsed: list) -> RewardBreakdown:
        """The OV-HOI rewards of the evaluation's episodes (the ones behind ``parsed``)."""
        vocab = self.datamodule.vocab
        targets = [RewardTarget(s, f, vocab) for s, f in zip(batch["samples"], batch["frames"])]
        return score_tool_completions(self.evaluations[stage].last_episodes, targets, self.reward_weights,
                                      self.tool_usage, self.spatial)
