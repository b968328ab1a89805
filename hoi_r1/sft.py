"""SFTModule: the first training stage of HOI-R1 and OV-HOI.

The model reads the prompt and the image and is trained with teacher forcing on the assistant's
answer only (``<think>…</think><answer>[…]</answer>``; labels built by
:class:`~hoi_r1.collate.SFTCollator`). "Thinking distillation" (HOI-R1) is the same loss with
reasoning texts from a teacher inside ``<think>`` (``data.reasoning_file``, written by
``hoi-r1 distill``). Validation and test generate answers, parse them with the same codec the
rewards use and report HOI-mAP (:mod:`hoi_r1.detection_eval`).

Departures from a plain causal-LM fine-tune: image placeholder tokens are blocked in
generation; sequences are never truncated (too-long samples are left out and counted); the
training order is resumable mid-epoch (the consumed sampler ticket is checkpointed together with
the RNG states).
"""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hoi_r1.collate import move_batch
from hoi_r1.detection_eval import EvaluationSettings, GroundingEvaluation, HOIEvaluation
from hoi_r1.generation import GenerationSettings, model_inputs
from hoi_r1.models import ModelSettings, count_parameters, load_model
from hoi_r1.module_logging import log_examples, predictions_record


class SFTModule(L.LightningModule):
    """Supervised fine-tuning on HOI answers, with HOI-mAP validation.

    Args:
        model: which model to load and how (LoRA, freezing, dtype, attention kernel).
        optimizer: optimizer factory (LightningCLI ``--optimizer``); AdamW(lr=1e-5) by default.
        scheduler: learning-rate scheduler factory, stepped every optimizer step; none by default.
        generation: generation settings of validation, test and predict.
        evaluation: HOI-mAP protocol and confidence scores.
        log_examples: images with drawn predictions (and completions as text) logged per
            validation epoch.
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.settings = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.generation = generation
        self.evaluation_settings = evaluation
        self.num_log_examples = log_examples
        self.model = None
        self.evaluations = torch.nn.ModuleDict()
        self._tokens = 0
        self._clock = None

    # ------------------------------------------------------------------ set-up
    def configure_model(self) -> None:
        if self.model is None:
            self.model = load_model(self.settings)
            self.model.train()  # from_pretrained returns eval mode; Lightning switches modes from here on
            trainable, total = count_parameters(self.model)
            print(f"model {self.settings.name_or_path}: {trainable:,} trainable of {total:,} parameters")

    def setup(self, stage: str) -> None:
        self.datamodule.default_processor(self.settings.name_or_path)
        vocab = self.datamodule.vocab
        kind = GroundingEvaluation if self.datamodule.hparams.task == "grounding" else HOIEvaluation
        for split in ("val", "test"):
            if split not in self.evaluations:
                self.evaluations[split] = kind(vocab, self.evaluation_settings)

    @property
    def datamodule(self):
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise RuntimeError("the project's modules need an HOIDataModule (trainer.fit(module, datamodule=...))")
        return dm

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params) if self.optimizer_factory else torch.optim.AdamW(params, lr=1e-5)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        return move_batch(batch, device)

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self._clock, self._tokens = time.perf_counter(), 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.model(**model_inputs(batch), labels=batch["labels"])
        n = len(batch["samples"])
        self._tokens += int(batch["attention_mask"].sum())
        elapsed = time.perf_counter() - (self._clock or time.perf_counter())
        self.log("train/loss", out.loss, prog_bar=True, batch_size=n)
        self.log("train/answer_tokens", (batch["labels"] != -100).sum().float(), batch_size=n)
        if elapsed > 0:
            self.log("train/tokens_per_s", self._tokens / elapsed, batch_size=n)
        self.datamodule.mark_consumed(batch.get("ticket"))
        return out.loss

    def on_before_optimizer_step(self, optimizer) -> None:
        norms = [p.grad.detach().norm(2) for p in self.parameters() if p.grad is not None]
        if norms:
            self.log("train/grad_norm", torch.stack(norms).norm(2))

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def _eval_step(self, stage: str, batch: dict, batch_idx: int) -> None:
        processor = self.datamodule.processor
        parsed = self.evaluations[stage].step(self.model, processor, batch, self.generation)
        if batch_idx == 0 and self.num_log_examples > 0 and isinstance(self.evaluations[stage], HOIEvaluation):
            log_examples(self, stage, batch, parsed, self.num_log_examples)

    def _eval_epoch_end(self, stage: str) -> None:
        evaluation = self.evaluations[stage]
        values = evaluation.compute()
        evaluation.metric.reset()
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=False, sync_dist=False)
        self.last_metrics = {stage: values}

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        from hoi_r1.answer import parse_answer
        from hoi_r1.generation import generate

        completions = generate(self.model, self.datamodule.processor, batch, self.generation)
        vocab = self.datamodule.vocab
        return [
            predictions_record(sample, parse_answer(text, vocab, frame), text, vocab)
            for sample, frame, text in zip(batch["samples"], batch["frames"], completions.texts)
        ]

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
