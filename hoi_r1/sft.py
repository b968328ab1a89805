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

from hoi_r1.generation import model_inputs
from hoi_r1.hoi_module import HOIModule


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

    Its constructor arguments are :class:`~hoi_r1.hoi_module.HOIModule`'s (``hoi-r1 fit
    --model.help hoi_r1.sft.SFTModule`` lists them).
    """

    train_batch_kind = "sft"
    _tokens = 0
    _clock: float | None = None

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
