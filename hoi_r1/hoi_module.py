"""HOIModule: what every LightningModule of the project shares.

Loading the model (:func:`~hoi_r1.models.load_model`, or weights of an earlier hoi_r1 checkpoint
with :func:`load_initial_weights`), the optimizer and scheduler factories, the batch transfer,
validation / test (generate → parse → HOI-mAP with :mod:`hoi_r1.hoi_evaluation`; each task's
evaluation from :data:`hoi_r1.tasks.TASKS`), predict, and the random-number states in
checkpoints. The tool-using mode (``data.task: tools``) lives in :mod:`hoi_r1.ov_hoi`: its
modules set :attr:`HOIModule.episodes` and override :meth:`HOIModule._evaluation` and
:meth:`HOIModule._predict_texts` (this module never imports it). Every validation / test number
is a torchmetrics state gathered from all processes at the epoch's end, so under DDP each rank
logs the values of the whole split (docs/training.md, "Numbers under DDP"). :class:`~hoi_r1.sft.SFTModule` and
:class:`~hoi_r1.grpo.GRPOModule` add their training step on top, so both stages report the very
same metric.

Random states travel as tensors and plain Python values, so ``torch.load(weights_only=True)``
still reads the checkpoints.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hoi_r1.answer import parse_answer
from hoi_r1.collate import move_batch
from hoi_r1.datamodule import TrainBatchKind
from hoi_r1.generation import GenerationSettings, generate
from hoi_r1.hoi_evaluation import EvaluationSettings, HOIEvaluation
from hoi_r1.models import LoraSettings, ModelSettings, add_lora, apply_freezing, count_parameters, load_model
from hoi_r1.module_logging import log_examples, predictions_record
from hoi_r1.tasks import TASKS, TaskSpec


class HOIModule(L.LightningModule):
    """Shared set-up, evaluation, prediction and checkpoint hooks (subclasses add training).

    Args:
        model: which model to load and how (LoRA, freezing, dtype, attention kernel).
        optimizer: optimizer factory (LightningCLI ``--optimizer``); AdamW(lr=1e-5) by default.
        scheduler: learning-rate scheduler factory, stepped every optimizer step; none by default.
        generation: generation settings of validation, test and predict.
        evaluation: HOI-mAP protocol and confidence scores.
        log_examples: images with drawn predictions (and completions as text) logged per
            validation epoch.
        init_from_checkpoint: a hoi_r1 ``.ckpt`` whose model weights replace the loaded ones
            before training (the SFT stage's ``last.ckpt`` for GRPO, or an SFT checkpoint to
            fine-tune further with a new schedule; ``--ckpt_path`` resumes a run instead);
            ``None`` keeps ``model``'s.

    The constructor saves the arguments of the whole subclass chain as hyper-parameters (the
    optimizer and scheduler factories aside).
    """

    train_batch_kind: TrainBatchKind = "sft"
    train_batch_repeat: int = 1
    episodes: bool = False
    """Whether the module runs tool-using episodes (the tool mode's modules); ``data.task`` must
    agree (:attr:`hoi_r1.tasks.TaskSpec.episodes`)."""

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
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])  # a subclass's arguments too
        self.settings = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.generation = generation
        self.evaluation_settings = evaluation
        self.num_log_examples = log_examples
        self.init_from_checkpoint = init_from_checkpoint
        self.model = None
        self.evaluations = torch.nn.ModuleDict()

    # ------------------------------------------------------------------ set-up
    def configure_model(self) -> None:
        if self.model is None:
            if self.init_from_checkpoint:
                self.model = load_initial_weights(self.settings, self.init_from_checkpoint)
            else:
                self.model = load_model(self.settings)
            self.model.train()  # from_pretrained returns eval mode; Lightning switches modes from here on
            trainable, total = count_parameters(self.model)
            print(f"model {self.settings.name_or_path}: {trainable:,} trainable of {total:,} parameters")

    def setup(self, stage: str) -> None:
        self.datamodule.default_processor(self.settings.name_or_path)
        task = self.datamodule.hparams.task
        spec, name = TASKS[task], type(self).__name__
        if spec.episodes and not self.episodes:
            raise ValueError(
                f"data.task {task!r} runs tool-using episodes, which {name} does not: use "
                "hoi_r1.ov_hoi.sft.ToolSFTModule (cold-start SFT) or hoi_r1.ov_hoi.tool_grpo.ToolGRPOModule (GRPO)"
            )
        if self.episodes and not spec.episodes:
            wanted = " or ".join(repr(t) for t, s in TASKS.items() if s.episodes)
            raise ValueError(f"{name} needs data.task {wanted}, found {task!r}")
        for split in ("val", "test"):
            if split not in self.evaluations:
                self.evaluations[split] = self._evaluation(spec)

    def _evaluation(self, spec: TaskSpec):
        """A fresh validation / test evaluation of the task (the tool mode's modules override it)."""
        return spec.evaluation(self.datamodule.vocab, self.evaluation_settings)

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
    def on_before_optimizer_step(self, optimizer) -> None:
        """Log the global gradient norm (before clipping) of every training module."""
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

    def _eval_step(self, stage: str, batch: dict, batch_idx: int) -> list:
        processor = self.datamodule.processor
        parsed = self.evaluations[stage].step(self.model, processor, batch, self.generation)
        if batch_idx == 0 and self.num_log_examples > 0 and isinstance(self.evaluations[stage], HOIEvaluation):
            log_examples(self, stage, batch, parsed, self.num_log_examples)
        return parsed

    def _eval_epoch_end(self, stage: str) -> None:
        evaluation = self.evaluations[stage]
        values = evaluation.compute()  # torchmetrics states gathered from every process: global values
        evaluation.reset()
        # every rank holds the same numbers already; sync_dist would only average equal values
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=False, sync_dist=False)
        self.last_metrics = {stage: values}

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        vocab = self.datamodule.vocab
        answers, texts = self._predict_texts(batch)
        return [
            predictions_record(sample, parse_answer(answer, vocab, frame), text, vocab)
            for sample, frame, answer, text in zip(batch["samples"], batch["frames"], answers, texts)
        ]

    def _predict_texts(self, batch: dict) -> tuple[list[str], list[str]]:
        """Per image, the text to parse as the answer and the text to keep as the completion
        (one generated completion for both; the tool mode's modules: an episode's final answer
        and its transcript)."""
        texts = generate(self.model, self.datamodule.processor, batch, self.generation, logprobs=False).texts
        return texts, texts

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states:
            set_rng_states(states)


def rng_states() -> dict:
    """torch, Python ``random`` and NumPy generator states, in ``weights_only``-loadable types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
    }


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` saved (older checkpoints hold only ``torch``)."""
    torch.set_rng_state(states["torch"])
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in states:
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def load_initial_weights(settings: ModelSettings, checkpoint: str | Path):
    """The model of ``settings`` with the model weights of a hoi_r1 checkpoint.

    The checkpoint is read with ``torch.load(weights_only=True, mmap=True)`` (its tensors stay in the
    file until the model takes them: a 3B checkpoint is not held twice). A LoRA checkpoint (SFT with
    adapters) is rebuilt with its own adapter settings, merged into the base weights, and then
    ``settings.lora`` (if any) adds fresh adapters: the merged model is the starting policy, and
    the reference policy of a LoRA GRPO run (adapters disabled) is that merged model.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"init_from_checkpoint: {path} does not exist")
    state = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    if "state_dict" not in state:
        raise ValueError(f"init_from_checkpoint: {path} holds no 'state_dict'; is it a hoi_r1 training checkpoint?")
    weights = {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    if not weights:
        raise ValueError(f"init_from_checkpoint: {path} holds no 'model.*' weights")
    saved_lora = _saved_lora(state.get("hyper_parameters", {}).get("model"))
    if saved_lora is None and any("lora_" in k for k in weights):
        raise ValueError(f"init_from_checkpoint: {path} holds LoRA weights but no LoRA settings in its hyper-parameters")
    model = load_model(replace(settings, lora=saved_lora))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings in small Qwen models
    if missing or unexpected:
        raise ValueError(
            f"init_from_checkpoint: weights of {path} do not fit {settings.name_or_path}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if saved_lora is not None:
        model = model.merge_and_unload()
        model.requires_grad_(True)
        apply_freezing(model, settings)
    if settings.lora is not None:
        model = add_lora(model, settings.lora)
    return model


def _saved_lora(saved) -> LoraSettings | None:
    """The LoRA settings of a checkpoint's ``model`` hyper-parameter: a :class:`ModelSettings`
    (a module built in Python) or its dict (LightningCLI stores the parsed config as plain values)."""
    lora = saved.lora if isinstance(saved, ModelSettings) else saved.get("lora") if isinstance(saved, dict) else None
    return LoraSettings(**lora) if isinstance(lora, dict) else lora
