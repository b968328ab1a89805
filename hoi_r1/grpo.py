"""GRPOModule: the reinforcement-learning stage of HOI-R1 (SFT first, then GRPO with HOI rewards).

The training loop, per rank (sources in brackets; the maths is in :mod:`hoi_r1.grpo_loss`):

1. **Prompts.** A training batch holds ``P = data.batch_size`` prompts (images + instructions).
   The sampler serves each prompt batch ``R = steps_per_generation × num_iterations`` times in
   a row and says which serve ``s`` a batch is (:class:`~hoi_r1.sampling.ResumableSampler`)
   [TRL's ``RepeatSampler``]. Each rank owns whole groups: its prompts and all their completions.
2. **Serve 0: rollout.** The engine (:mod:`hoi_r1.rollout`: ``hf`` or ``vllm``) samples ``G``
   completions per prompt at temperature ``τ``; the rewards (:mod:`hoi_r1.rewards`) score them;
   with ``rollout.train_prompts`` only that many groups are kept, those with reward spread first
   [DAPO's dynamic sampling; :mod:`hoi_r1.dynamic_sampling`]; the rewards of all ranks are
   gathered and the group-relative advantages computed [DeepSeekMath, Shao et al. 2024]; the
   rank keeps its own slice. When the update goes
   off-policy (``num_iterations > 1``, more optimizer steps than one per generation batch, or
   vLLM importance correction) the sampling policy's log-probs ``old`` are computed now; with
   ``β > 0`` the reference policy's too. All of it goes into a :class:`~hoi_r1.rollout.batch.RolloutBuffer`.
3. **Every serve: one micro-batch.** Serve ``s`` trains on micro-batch ``s mod
   steps_per_generation`` of the buffer's ``P·G`` rows: prompt + completion rows (images split
   and repeated per row), log-probs from logits ÷ ``τ``, the clipped objective with KL, normalised
   by ``loss_type`` (TRL's conventions) [PPO; DAPO; Dr. GRPO]. The loss is returned to Lightning's
   automatic optimisation, so ``accumulate_grad_batches`` (must divide ``steps_per_generation``),
   gradient clipping, precision and every strategy (DDP, FSDP, DeepSpeed) apply unchanged; no
   manual backward (Lightning's FSDP rejects manual optimisation).

Departures from TRL's ``GRPOTrainer``: the micro-batches are contiguous slices of the generation
batch (TRL shuffles them); the prompt batch is collated once per serve (cheap next to
generation) so a resumed run needs no stored prompts; sampling uses a random stream of its own,
saved in checkpoints, so a resumed run samples exactly what the uninterrupted run would have
sampled (``hf`` engine; vLLM's sampler is seeded per rank but not resumable).

Reference policy: the model with its LoRA adapters disabled (no second copy), a frozen deep copy
for full fine-tuning (kept in checkpoints), none when ``β = 0``. Start from a Hub / exported
model (``model.name_or_path``) or from a hoi_r1 checkpoint (``init_from_checkpoint``). Tool-using
episodes (``data.task: tools``): :mod:`hoi_r1.ov_hoi.tool_grpo`, which overrides ``_sample``, ``score``, ``_logps``
and ``_eval_scores``.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import contextmanager, nullcontext

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hoi_r1.advantages import group_advantages
from hoi_r1.calibration import batch_score_targets, calibration_loss
from hoi_r1.datamodule import TrainBatchKind
from hoi_r1.dynamic_sampling import group_rows, has_spread, spread_groups
from hoi_r1.generation import Completions, GenerationSettings
from hoi_r1.grpo_loss import clipped_policy_loss, truncated_importance_weights
from hoi_r1.grpo_settings import GRPOLogSettings, GRPOLossSettings, RolloutSettings
from hoi_r1.hoi_evaluation import EvaluationSettings, HOIEvaluation
from hoi_r1.hoi_module import HOIModule
from hoi_r1.judged_answer import JudgedAnswer, judged_rows
from hoi_r1.models import ModelSettings
from hoi_r1.rank_state import gather_per_rank, own_rank
from hoi_r1.reward_target import RewardTarget
from hoi_r1.rewards import RewardBreakdown, RewardWeights, score_answers, score_completions
from hoi_r1.rollout import build_engine
from hoi_r1.rollout.batch import RolloutBuffer
from hoi_r1.rollout.engine import EngineKind, RolloutSampling
from hoi_r1.rollout.logprobs import completion_logps
from hoi_r1.rollout.policy_weights import policy_weights
from hoi_r1.rollout.sampling_stream import SamplingStream
from hoi_r1.rollout.stats import RewardAverages, completions_markdown, policy_loss_logs, rollout_stats
from hoi_r1.rollout.vllm import VLLMSettings, check_importance_sampling
from hoi_r1.sampling import serve_of
from hoi_r1.triplet_credit import batch_triplet_advantages

log = logging.getLogger(__name__)

torch.serialization.add_safe_globals([RewardWeights])  # hyper-parameters inside checkpoints


class GRPOModule(HOIModule):
    """GRPO with HOI rewards, HOI-mAP validation and the rewards of greedy answers.

    Args:
        model: which model to load and how (LoRA, freezing, dtype, attention kernel).
        optimizer: optimizer factory; AdamW(lr=1e-5) by default.
        scheduler: learning-rate scheduler factory, stepped every optimizer step.
        rollout: sampling of the training completions (``G``, length, temperature).
        rewards: weight of each reward in the total.
        loss: the objective (loss type, clipping, KL, reward scaling, iterations, micro-batches).
        engine: rollout engine: ``hf`` (the model's ``generate``) or ``vllm`` (colocated vLLM, GPU).
        vllm: settings of the ``vllm`` engine.
        init_from_checkpoint: a hoi_r1 ``.ckpt`` (e.g. the SFT stage's) whose model weights start
            the policy (and the reference); ``None`` starts from ``model.name_or_path``.
        disable_dropout: set every dropout to 0 (sampling and training see the same policy; TRL's default).
        share_prompts: run each distinct prompt once per micro-batch and its ``G`` completions on
            its cached keys and values (same log-probs and gradients, much less compute;
            :mod:`hoi_r1.rollout.logprobs`); off: one prompt + completion sequence per row.
        generation: generation settings of validation, test and predict (greedy by default).
        evaluation: HOI-mAP protocol and confidence scores.
        log_examples: validation images with drawn predictions logged per epoch.
        logging: completions shown as text.
    """

    train_batch_kind: TrainBatchKind = "generation"

    def __init__(
        self,
        model: ModelSettings = ModelSettings(),
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        rollout: RolloutSettings = RolloutSettings(),
        rewards: RewardWeights = RewardWeights(),
        loss: GRPOLossSettings = GRPOLossSettings(),
        engine: EngineKind = "hf",
        vllm: VLLMSettings = VLLMSettings(),
        init_from_checkpoint: str | None = None,
        disable_dropout: bool = True,
        share_prompts: bool = True,
        generation: GenerationSettings = GenerationSettings(),
        evaluation: EvaluationSettings = EvaluationSettings(),
        log_examples: int = 2,
        logging: GRPOLogSettings = GRPOLogSettings(),
    ) -> None:
        super().__init__(model, optimizer, scheduler, generation, evaluation, log_examples, init_from_checkpoint)
        rollout.check()
        loss.check()
        self.rollout = rollout
        self.reward_weights = rewards
        self.loss_settings = loss
        self.engine_kind = engine
        self.vllm_settings = vllm
        self.disable_dropout = disable_dropout
        self.share_prompts = share_prompts
        self.log_settings = logging
        self.reference: torch.nn.Module | None = None
        self.engine = None
        self._buffer: RolloutBuffer | None = None
        self.sampling_stream: SamplingStream | None = None
        self._synced_step: int | None = None
        self._generations = 0
        self._times = {"generate": 0.0, "score": 0.0, "train": 0.0}
        self._clock = (0.0, 0.0)
        self._eval_rewards: dict[str, RewardAverages] = {}

    # ------------------------------------------------------------------ set-up
    def configure_model(self) -> None:
        super().configure_model()
        if self.disable_dropout:
            for m in self.model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
        if self.loss_settings.beta > 0 and self.settings.lora is None and self.reference is None:
            self.reference = copy.deepcopy(self.model).requires_grad_(False)

    @property
    def steps_per_generation(self) -> int:
        return self.loss_settings.micro_batches(self.trainer.accumulate_grad_batches)

    @property
    def train_batch_repeat(self) -> int:
        """How many times the sampler serves each prompt batch (read by the datamodule)."""
        return self.steps_per_generation * self.loss_settings.num_iterations

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        prompts = self.rollout.trained_prompts(self.datamodule.hparams.batch_size)
        self.loss_settings.check_micro_batches(self.trainer.accumulate_grad_batches, prompts * self.rollout.num_generations)
        if self.engine_kind == "vllm":  # before the engine starts, not at the first generation
            check_importance_sampling(self.vllm_settings.importance_correction, self.rollout.sampling())

    def on_fit_start(self) -> None:
        if self.engine is None:
            self.engine = build_engine(self.engine_kind, self.model, self.datamodule.processor, self.trainer,
                                       self.settings.name_or_path, self.vllm_settings, self.settings.trust_remote_code)
        if self.sampling_stream is None:
            self.sampling_stream = SamplingStream((torch.initial_seed() + 7919 * self.global_rank) % 2**63)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._clock = time.perf_counter(), self._times["generate"] + self._times["score"]
        ticket = batch.get("ticket")
        serve = serve_of(ticket)
        if self._buffer is not None and self._buffer.completion_ids.device != self.device:
            self._buffer = self._buffer.to(self.device)  # restored from a checkpoint before the move
        if self._buffer is not None and self._buffer.image_ids != [s.image_id for s in batch["samples"]]:
            if serve:
                raise RuntimeError(
                    f"serve {serve} of a generation batch does not hold the buffered prompts "
                    f"({self._buffer.image_ids[:4]}…): the training order and the GRPO buffer disagree"
                )
            self._buffer = None
        if serve == 0 or self._buffer is None:
            if serve:
                log.warning("no buffered generation batch for serve %d (resumed without one?): generating again", serve)
            self._buffer = self._rollout(batch)
        loss = self._micro_batch_loss(batch, self._buffer, serve % self.steps_per_generation)
        self.datamodule.mark_consumed(ticket)
        return loss

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        start, rollout_before = self._clock
        rollout_now = self._times["generate"] + self._times["score"]
        self._times["train"] += time.perf_counter() - start - (rollout_now - rollout_before)
        if serve_of(batch.get("ticket")) == self.train_batch_repeat - 1:  # the generation batch is done
            times = {f"train/time/{k}_s": v for k, v in self._times.items()}
            times["train/time/step_s"] = sum(self._times.values())
            self.log_dict(times, batch_size=1)
            self._times = {k: 0.0 for k in self._times}

    def _rollout(self, batch: dict) -> RolloutBuffer:
        """Generate, score and prepare one generation batch (serve 0)."""
        start, engine, G = time.perf_counter(), self.engine, self.rollout.num_generations
        processor = self.datamodule.processor
        engine.wake()  # (after sleep level 2 the engine's weights are stale)
        if engine.weights_stale or (self.engine_kind == "vllm" and self._synced_step != self.global_step):
            engine.sync_weights(policy_weights(self.model))  # after every optimizer step, lazily
            self._synced_step = self.global_step
        if self.engine_kind == "vllm" and not engine.checked:
            engine.check_agreement(self.model, processor, batch)
        sampling = self.rollout.sampling()
        with self.sampling_stream.active(self.device):
            completions = self._sample(batch, G, sampling)
        greedy = None
        if self.loss_settings.baseline == "greedy":  # no random draws: the sampling stream is untouched
            greedy = self.engine.generate(batch, 1, RolloutSampling(self.rollout.max_completion_length, greedy=True))
        engine.sleep()
        generated = time.perf_counter()
        self._times["generate"] += generated - start

        vocab = self.datamodule.vocab
        prompts = [RewardTarget(s, f, vocab) for s, f in zip(batch["samples"], batch["frames"])]
        targets = [t for t in prompts for _ in range(G)]  # one target per prompt: its ground truth is prepared once
        scores = self.score(completions, targets)
        kept = torch.arange(len(prompts))
        if self.rollout.train_prompts is not None:  # dynamic sampling: the groups with reward spread
            spread = has_spread(torch.tensor(scores.total), G)
            self.log("train/sampled_frac_reward_zero_std", 1 - spread.float().mean(), batch_size=len(spread))
            kept = spread_groups(spread, self.rollout.train_prompts)
            rows = group_rows(kept, G).tolist()
            completions, scores, prompts = completions.select(rows), scores.select(rows), [prompts[i] for i in kept]
            greedy = greedy.select(kept.tolist()) if greedy is not None else None
        total = torch.tensor(scores.total, dtype=torch.float32, device=self.device)
        everyone = self.all_gather(total).reshape(-1)  # (world · P·G,): whole groups per rank
        baseline = None
        if greedy is not None:  # the reward of each prompt's greedy answer, all ranks' prompts
            greedy_scores = self.score(greedy, prompts)
            baseline = self.all_gather(torch.tensor(greedy_scores.total, dtype=torch.float32,
                                                    device=self.device)).reshape(-1)
        advantages, adv_stats = group_advantages(
            everyone, G, self.loss_settings.scale_rewards, baseline, self.loss_settings.positive_only)
        n = total.numel()
        advantages = advantages[self.global_rank * n : (self.global_rank + 1) * n]
        token_advantages = advantages
        shape = tuple(completions.token_ids.shape)
        per_token = self.loss_settings.triplet_credit > 0 or self.loss_settings.calibration > 0
        rows = judged_rows(self.datamodule.processor.tokenizer, completions.texts, scores.answers,
                           completions.token_ids, completions.mask) if per_token else []  # token offsets: read once
        if self.loss_settings.triplet_credit > 0:  # per token: A_i + λ · triplet advantage
            triplet = batch_triplet_advantages(rows, shape, G).to(self.device)
            token_advantages = advantages[:, None] + self.loss_settings.triplet_credit * triplet
            credited = triplet != 0
            self.log("train/triplet_advantage/abs_mean", triplet.abs().sum() / credited.sum().clamp(min=1),
                     batch_size=len(completions.texts))
        ids, mask = completions.token_ids.to(self.device), completions.mask.to(self.device)
        tokens = self.trainer.strategy.reduce(mask.sum().float(), reduce_op="sum")  # over all ranks
        num_items = float(tokens) / self.trainer.world_size
        self._times["score"] += time.perf_counter() - generated

        buffer = RolloutBuffer(
            image_ids=[s.image_id for s in batch["samples"]], group_size=G, micro_batches=self.steps_per_generation,
            completion_ids=ids, completion_mask=mask, advantages=token_advantages, num_items=num_items,
            sampler_logp=completions.token_logprobs.to(self.device) if self.engine_kind == "vllm" else None,
            turns=completions.turns, prompts=kept.tolist() if self.rollout.train_prompts is not None else None,
        )
        if self.loss_settings.calibration > 0:  # per token its triplet, per triplet its verdict and weight
            index, targets, weights = batch_score_targets(rows, shape, self.evaluation_settings.scores)
            total = self.trainer.strategy.reduce(weights.sum().to(self.device), reduce_op="sum")
            buffer.score_index, buffer.score_targets = index.to(self.device), targets.to(self.device)
            buffer.score_weights, buffer.score_total = weights.to(self.device), float(total) / self.trainer.world_size
        with torch.no_grad():
            if self._needs_old_logps():
                buffer.old_logp = self._buffer_logps(batch, buffer, self.model)
            if self.loss_settings.beta > 0:
                buffer.ref_logp = self._buffer_logps(batch, buffer, None)
        names = [batch["samples"][i].file_name for i in kept.tolist()]
        self._log_rollout(scores, everyone, advantages, adv_stats, completions, names, generated - start, baseline)
        self._generations += 1
        return buffer

    def _sample(self, batch: dict, n: int, sampling: RolloutSampling) -> Completions:
        """``n`` completions per prompt (:class:`~hoi_r1.ov_hoi.tool_grpo.ToolGRPOModule`: whole episodes)."""
        return self.engine.generate(batch, n, sampling)

    def score(self, completions: Completions, targets: list[RewardTarget]) -> RewardBreakdown:
        """Rewards of a generation batch's completions (``completions.texts``; override to add
        rewards; the total drives the advantages)."""
        return score_completions(completions.texts, targets, self.reward_weights)

    def _needs_old_logps(self) -> bool:
        loss = self.loss_settings
        off_policy = loss.num_iterations > 1 or self.steps_per_generation > self.trainer.accumulate_grad_batches
        return off_policy or (self.engine_kind == "vllm" and self.vllm_settings.importance_correction != "none")

    def _buffer_logps(self, batch: dict, buffer: RolloutBuffer, model) -> torch.Tensor:
        """Log-probs of every buffered completion under ``model`` (``None``: the reference policy)."""
        out = torch.zeros(buffer.completion_ids.shape, dtype=torch.float32, device=self.device)
        for micro in range(buffer.micro_batches):
            with self._reference_policy() if model is None else nullcontext(model) as policy:
                logp, _ = self._logps(policy, batch, buffer, micro)
            out[buffer.rows(micro), : logp.shape[1]] = logp
        return out

    @contextmanager
    def _reference_policy(self):
        if self.reference is not None:
            yield self.reference.eval()  # (Lightning switches every submodule back to train mode)
        else:  # LoRA: the base model is the reference
            with self.model.disable_adapter():
                yield self.model

    def _logps(self, model, batch: dict, buffer: RolloutBuffer, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R, T)`` log-probs of micro-batch ``micro``'s completion tokens (trimmed to its longest) and the mask."""
        rows = buffer.rows(micro)
        return completion_logps(model, batch, buffer.prompt_rows(micro), buffer.completion_ids[rows],
                                buffer.completion_mask[rows], self.rollout.temperature, self.share_prompts)

    def _micro_batch_loss(self, batch: dict, buffer: RolloutBuffer, micro: int) -> torch.Tensor:
        settings, rows = self.loss_settings, buffer.rows(micro)
        logp, mask = self._logps(self.model, batch, buffer, micro)
        width = logp.shape[1]
        old = buffer.old_logp[rows, :width] if buffer.old_logp is not None else None
        ref = buffer.ref_logp[rows, :width] if buffer.ref_logp is not None else None
        advantages = buffer.advantages[rows]
        advantages = advantages[:, :width] if advantages.ndim == 2 else advantages  # per token: trimmed too
        weights = None
        if buffer.sampler_logp is not None and self.vllm_settings.importance_correction != "none":
            weights = truncated_importance_weights(
                old if old is not None else logp.detach(), buffer.sampler_logp[rows, :width],
                self.vllm_settings.importance_cap, mask, self.vllm_settings.importance_correction,
            )
        loss, stats = clipped_policy_loss(
            logp, old, ref, advantages, mask, epsilon_low=settings.epsilon_low,
            epsilon_high=settings.epsilon_high, beta=settings.beta, loss_type=settings.loss_type,
            max_completion_length=self.rollout.max_completion_length, num_items_in_batch=buffer.num_items,
            steps_per_generation=self.steps_per_generation, importance_weights=weights,
            kl_ratio_correction=settings.kl_ratio_correction,
        )
        n = logp.shape[0]
        if settings.calibration > 0 and buffer.score_index is not None:
            calibration, _ = calibration_loss(logp, buffer.score_index[rows, :width], buffer.score_targets[rows],
                                              buffer.score_weights[rows], buffer.score_total, settings.calibration_loss)
            calibration = calibration * self.steps_per_generation  # as `dapo`: Lightning divides by the accumulation
            self.log("train/calibration/loss", calibration, batch_size=n)
            loss = loss + settings.calibration * calibration
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict(policy_loss_logs(stats, weights, mask), batch_size=n)
        return loss

    def _log_rollout(self, scores, everyone, advantages, adv_stats, completions, names: list[str], seconds: float,
                     baseline: torch.Tensor | None = None) -> None:
        stats = rollout_stats(scores.per_reward, everyone.cpu(), advantages.cpu(), adv_stats, completions.mask.cpu(),
                              completions.truncated, seconds, baseline.cpu() if baseline is not None else None)
        self.log_dict({f"train/{k}": v for k, v in stats.items()}, batch_size=len(completions.texts))
        every = max(self.log_settings.every_n_generations, 1)
        if self.log_settings.completions > 0 and self._generations % every == 0 and self.global_rank == 0:
            names = [n for n in names for _ in range(self.rollout.num_generations)]
            text = completions_markdown(completions.texts, scores.total, scores.per_reward, names,
                                        self.log_settings.completions)
            for logger in self.loggers:
                if hasattr(logger.experiment, "add_text"):
                    logger.experiment.add_text("train/completions", text, global_step=self.global_step)

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, stage: str, batch: dict, batch_idx: int) -> list:
        parsed = super()._eval_step(stage, batch, batch_idx)
        scores = self._eval_scores(stage, batch, parsed)
        if scores is not None:
            if stage not in self._eval_rewards:
                self._eval_rewards[stage] = RewardAverages(self.reward_weights.as_dict()).to(self.device)
            self._eval_rewards[stage].add([s.image_id for s in batch["samples"]], scores.per_reward, scores.total)
        return parsed

    def _eval_scores(self, stage: str, batch: dict, parsed: list) -> RewardBreakdown | None:
        """The rewards of the answers just evaluated (the same greedy answers as the metric);
        ``None`` where there are none to reward (grounding)."""
        if not isinstance(self.evaluations[stage], HOIEvaluation):
            return None
        vocab = self.datamodule.vocab
        answers = [JudgedAnswer(p, RewardTarget(s, f, vocab)) for p, s, f in zip(parsed, batch["samples"], batch["frames"])]
        return score_answers(answers, self.reward_weights)

    def _eval_epoch_end(self, stage: str) -> None:
        super()._eval_epoch_end(stage)
        averages = self._eval_rewards.pop(stage, None)
        if averages is not None and (means := averages.means(stage)):
            self.log_dict(means, sync_dist=False)  # global already: the rows of every process

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        mine = {  # differs per rank: every rank's is kept (Lightning writes rank 0's checkpoint)
            "buffer": self._buffer.state_dict() if self._buffer is not None else None,
            "rollout_rng": self.sampling_stream.state if self.sampling_stream is not None else None,
        }
        checkpoint["grpo"] = {**mine, "ranks": gather_per_rank(mine), "generations": self._generations}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        weights = checkpoint.get("state_dict") or {}
        frozen_copy = [k for k in weights if k.startswith("reference.")]
        if self.reference is None and frozen_copy:  # a β > 0 run's frozen reference: only training with β > 0 needs it
            for k in frozen_copy:
                del weights[k]
            log.info("left out the checkpoint's frozen reference policy (%d tensors): this module has β = 0", len(frozen_copy))
        state = checkpoint.get("grpo") or {}
        state = {**state, **(own_rank(state.get("ranks"), self.global_rank, self.trainer.world_size) or {})}
        if state.get("buffer") is not None:
            self._buffer = RolloutBuffer.from_state_dict(state["buffer"])
        if state.get("rollout_rng") is not None:
            self.sampling_stream = SamplingStream(0)
            self.sampling_stream.state = state["rollout_rng"]
        self._generations = int(state.get("generations", 0))

