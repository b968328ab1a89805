"""``hoi-r1 predict`` output: one JSON file per image (boxes in original pixels, labels, scores,
the raw completion) and, optionally, the image with its detections drawn.

Add it to a predict run in YAML (``configs/demo_predict.yaml`` does)::

    trainer:
      callbacks:
        - class_path: hoi_r1.prediction_writer.HOIPredictionWriter
          init_args: {output_dir: runs/predictions}
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from hoi_r1.image_dataset import load_image
from hoi_r1.visualize import draw_record


class HOIPredictionWriter(BasePredictionWriter):
    """Write per-image prediction JSON (and drawn images) as predict batches finish.

    Args:
        output_dir: folder for ``<image stem>.json`` (and ``<image stem>.png``) files.
        draw: also save each image with its predicted pairs drawn.
    """

    def __init__(self, output_dir: str = "predictions", draw: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.draw = draw

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for record, sample in zip(prediction, batch["samples"]):
            stem = Path(sample.file_name).stem
            (self.output_dir / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
            if self.draw:
                draw_record(load_image(sample.image_path), record).save(self.output_dir / f"{stem}.png")
