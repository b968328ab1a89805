"""Helpers the subprocess tests load by class path (``tests`` is put on PYTHONPATH)."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    """SIGKILL the training process when ``global_step`` reaches ``step`` (after that step's
    checkpoint callbacks ran): a crash with no chance to clean up or save."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordSamples(Callback):
    """Append each training batch's file names to ``<path>.rank<N>`` (which rank saw what)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as f:
            for sample in batch["samples"]:
                f.write(sample.file_name + "\n")
