"""The inputs of the training benchmarks (:mod:`benchmarks.sft_benchmark`,
:mod:`benchmarks.grpo_benchmark`): a tiny real-architecture Qwen2.5-VL (:mod:`hoi_r1.tiny`) of a
named size, optionally with its vocabulary matrix padded to a real checkpoint's rows, and a
synthetic HOI world (:mod:`hoi_r1.synthetic.world`) large enough for the run; and the quieting of
the frameworks' loggers so that only the figures are printed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.sft_runs import BenchSettings
from hoi_r1.tiny import TinyModelSize

MODEL_SIZES: dict[str, TinyModelSize] = {
    "tiny": TinyModelSize(text_hidden=64, vision_hidden=32),  # the tests' model
    "small": TinyModelSize(),  # hoi_r1.tiny's default
    "medium": TinyModelSize(
        text_hidden=256, text_layers=4, text_heads=8, text_kv_heads=4, text_intermediate=768,
        vision_hidden=128, vision_depth=4, vision_intermediate=512,
    ),
}
"""Named tiny-model sizes of ``--model-size``."""


def prepare_inputs(
    root: str | Path, settings: BenchSettings, size: TinyModelSize, model_dir: str | None = None,
    world_dir: str | None = None, vocab_rows: int | None = None,
) -> tuple[Path, Path]:
    """The tiny model and the synthetic world: the given folders, or new ones under ``root``.

    ``vocab_rows`` pads the new model's (tied) embedding / LM-head matrix to that many rows, as
    in real checkpoints (Qwen2.5-VL: 151,936 rows, most unused by any one batch): the LM head's
    share of the work then grows, as it does in real models. The tokenizer is unchanged.
    """
    from hoi_r1.synthetic.scene import SyntheticWorldConfig
    from hoi_r1.synthetic.world import generate_world
    from hoi_r1.tiny import build_tiny_qwen2_5_vl

    model = Path(model_dir) if model_dir else build_tiny_qwen2_5_vl(Path(root) / "model", size, seed=settings.seed)
    if vocab_rows is not None and not model_dir:
        _pad_vocabulary(model, vocab_rows)
    if world_dir:
        world = Path(world_dir)
    else:
        config = SyntheticWorldConfig(num_train=settings.num_samples, num_test=1, seed=settings.seed)
        world = generate_world(Path(root) / "world", config)
    return model, world


def _pad_vocabulary(model_dir: Path, rows: int) -> None:
    from hoi_r1.models import ModelSettings, load_model

    model = load_model(ModelSettings(name_or_path=str(model_dir)))
    have = model.get_input_embeddings().num_embeddings
    if rows < have:
        raise ValueError(f"--vocab-rows {rows} is below the model's {have} tokens")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.resize_token_embeddings(rows, mean_resizing=False)
    model.save_pretrained(model_dir)


def _quiet() -> None:
    """Lower the frameworks' log levels and turn their progress bars off, so that only the figures print."""
    import logging
    import warnings

    import datasets
    import lightning  # noqa: F401  (sets its loggers' levels on import: import before lowering them)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    for name in ("lightning", "lightning.pytorch", "datasets", "hoi_r1"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
