"""A timed SFT run of the SFT benchmark (:mod:`benchmarks.sft_benchmark`): what both trainers run
(:class:`BenchSettings`), one optimizer step's record, a run's steps and throughput summary, and
our side of the comparison — ``lightning.Trainer`` + :class:`~hoi_r1.sft.SFTModule` +
:class:`~hoi_r1.datamodule.HOIDataModule`, each step timed by a callback.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

MAX_LENGTH = 1_000_000  # "no truncation": far above any conversation here


@dataclass(frozen=True)
class BenchSettings:
    """What both trainers run.

    Args:
        steps: measured optimizer steps (after the warm-up).
        warmup: optimizer steps run first and left out of the figures.
        batch_size: conversations per step.
        lr: AdamW learning rate (constant, no weight decay).
        threads: torch intra-op threads.
        seed: seed of the training order (and of the generated model and world).
    """

    steps: int = 20
    warmup: int = 3
    batch_size: int = 4
    lr: float = 1e-5
    threads: int = 1
    seed: int = 0

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    @property
    def num_samples(self) -> int:
        return self.total_steps * self.batch_size


@dataclass
class StepRecord:
    """One optimizer step: hook timestamps (``time.perf_counter``) and the batch's token counts."""

    begin: float
    end: float
    tokens: int
    answer_tokens: int


@dataclass
class RunResult:
    """The steps of one training run."""

    name: str
    steps: list[StepRecord] = field(default_factory=list)
    model: torch.nn.Module | None = None
    """The trained model (to compare the two runs' weights)."""

    def token_counts(self) -> list[tuple[int, int]]:
        """(real tokens, answer tokens) per step."""
        return [(s.tokens, s.answer_tokens) for s in self.steps]

    def summary(self, warmup: int) -> dict[str, float]:
        """Throughput over the steps after ``warmup`` (each timed from the previous step's end)."""
        if len(self.steps) <= warmup or warmup < 1:
            raise ValueError(f"{self.name}: need warmup >= 1 and more than {warmup} steps, found {len(self.steps)}")
        measured = self.steps[warmup:]
        wall = measured[-1].end - self.steps[warmup - 1].end
        walls = [b.end - a.end for a, b in zip(self.steps[warmup - 1 :], measured)]
        tokens = sum(s.tokens for s in measured)
        answer = sum(s.answer_tokens for s in measured)
        compute = sum(s.end - s.begin for s in measured)
        return {
            "steps": len(measured),
            "s_per_step": wall / len(measured),
            "median_s_per_step": statistics.median(walls),
            "compute_s_per_step": compute / len(measured),
            "tokens_per_s": tokens / wall,
            "answer_tokens_per_s": answer / wall,
        }



def datamodule(model_dir: Path, world_dir: Path, settings: BenchSettings):
    """Our datamodule over exactly ``settings.num_samples`` training images (one epoch = the run)."""
    from hoi_r1.datamodule import HOIDataModule, SplitFiles

    dm = HOIDataModule(
        processor=str(model_dir),
        train=SplitFiles(str(world_dir / "train.json"), limit=settings.num_samples),
        batch_size=settings.batch_size,
        max_length=MAX_LENGTH,
        seed=settings.seed,
    )
    dm.setup("fit")
    found = len(dm.datasets["train"])
    if found < settings.num_samples:
        raise ValueError(
            f"{world_dir / 'train.json'}: {found} training images, the run needs "
            f"(warmup + steps) * batch_size = {settings.num_samples}"
        )
    return dm



def run_ours(model_dir: Path, world_dir: Path, settings: BenchSettings) -> RunResult:
    """Train with Lightning + SFTModule + HOIDataModule; time every optimizer step."""
    import lightning as L

    from hoi_r1.models import ModelSettings
    from hoi_r1.sft import SFTModule

    result = RunResult("hoi_r1 (Lightning)")

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._begin = time.perf_counter()
            self._counts = (int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum()))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            result.steps.append(StepRecord(self._begin, time.perf_counter(), *self._counts))

    lr = settings.lr
    module = SFTModule(
        model=ModelSettings(name_or_path=str(model_dir)),
        optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=0.0),
        log_examples=0,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=settings.total_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        callbacks=[Timer()],
    )
    trainer.fit(module, datamodule=datamodule(model_dir, world_dir, settings))
    result.model = module.model
    return result
