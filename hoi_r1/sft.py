"""SFTModule: the first training stage of HOI-R1 and OV-HOI.

The model reads the prompt and the image and is trained with teacher forcing on the assistant's
answer only (``<think>…</think><answer>[…]</answer>``; labels built by
:class:`~hoi_r1.collate.SFTCollator`). "Thinking distillation" (HOI-R1) is the same loss with
reasoning texts from a teacher inside ``<think>`` (``data.reasoning_file``, written by
``hoi-r1 distill``). Validation and test generate answers, parse them with the same codec the
rewards use and report HOI-mAP (:mod:`hoi_r1.hoi_evaluation`).

Departures from a plain causal-LM fine-tune: image placeholder tokens are blocked in
generation; sequences are never truncated (too-long samples are left out and counted); the
training order is resumable mid-epoch (the consumed sampler ticket is checkpointed together with
the RNG states).
"""

from __future__ import annotations

import time

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hoi_r1.generation import GenerationSettings, model_inputs
from hoi_r1.hoi_evaluation import EvaluationSettings
from hoi_r1.hoi_module import HOIModule
from hoi_r1.models import ModelSettings


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the labelled (answer) tokens — the Hugging Face causal-LM loss —
    computing logits only at the positions that predict a labelled token.

    Only about a fifth of a batch's positions carry a label; the others' ``(B, T, V)`` logits
    are the largest tensor of the step (4.9 GB in fp32 for a batch of 4 × 2,000 tokens with
    Qwen's 151,936-token vocabulary), so they are never built.
    """
    targets = batch["labels"][:, 1:]  # (B, T-1): position p predicts token p + 1
    keep = (targets != -100).any(dim=0).nonzero().flatten()  # (K,) positions any row needs
    logits = model(**model_inputs(batch), logits_to_keep=keep).logits  # (B, K, V)
    return torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1), targets[:, keep].flatten(), ignore_index=-100
    )


class SFTModule(HOIModule):
    """Supervised fine-tuning on HOI answers, with HOI-mAP validation.

    Set-up, validation / test / predict and the checkpoint hooks come from
    :class:`~hoi_r1.hoi_module.HOIModule` (shared with GRPO).

    Args:
        model: which model to load and how (LoRA, freezing, dtype, attention kernel).
        optimizer: optimizer factory (LightningCLI ``--optimizer``); AdamW(lr=1e-5) by default.
        scheduler: learning-rate scheduler factory, stepped every optimizer step; none by default.
        generation: generation settings of validation, test and predict.
        evaluation: HOI-mAP protocol and confidence scores.
        log_examples: images with drawn predictions (and completions as text) logged per
            validation epoch.
        init_from_checkpoint: a hoi_r1 ``.ckpt`` whose model weights replace the loaded ones
            before training (fine-tuning further from an SFT checkpoint with a new schedule;
            ``--ckpt_path`` resumes a run instead); ``None`` keeps ``model``'s.
    """

    train_batch_kind = "sft"

    def __init__(
        self,
        model: ModelSettings = ModelSettings(),
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        generation: GenerationSettings = GenerationSettings(),
        evaluation: EvaluationSettings = EvaluationSettings(),
        log_examples: int = 2,
        init_from_checkpoint: str | None = None,
    ) -> None:
        super().__init__(model, optimizer, scheduler, generation, evaluation, log_examples,
                         init_from_checkpoint=init_from_checkpoint)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self._tokens = 0
        self._clock = None

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self._clock, self._tokens = time.perf_counter(), 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = answer_loss(self.model, batch)
        n = len(batch["samples"])
        self._tokens += int(batch["attention_mask"].sum())
        elapsed = time.perf_counter() - (self._clock or time.perf_counter())
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/answer_tokens", (batch["labels"] != -100).sum().float(), batch_size=n)
        if elapsed > 0:
            self.log("train/tokens_per_s", self._tokens / elapsed, batch_size=n)
        self.datamodule.mark_consumed(batch.get("ticket"))
        return loss
