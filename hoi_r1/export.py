"""``hoi-r1 export``: a training checkpoint → a Hugging Face model directory that transformers
(``from_pretrained``) and vLLM load directly.

The checkpoint's hyper-parameters say which base model and LoRA settings were trained; the model
is rebuilt from them, the trained weights are loaded (``torch.load(weights_only=True)``), and
the result is written with ``save_pretrained`` (safetensors) together with the processor, whose
image-size limits are the ones the run trained with (the checkpoint's ``data.min_pixels`` /
``data.max_pixels``; ``--min-pixels`` / ``--max-pixels`` override them), so that transformers
and vLLM resize images, and so read box coordinates, as in training. LoRA
runs are merged into the base weights by default (``--adapter`` keeps only the adapter, which
``peft.PeftModel.from_pretrained`` loads on top of the base model).

    hoi-r1 export --checkpoint checkpoints/demo_sft/last.ckpt --out exported/demo_sft
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from hoi_r1.models import load_model, load_processor, model_settings_from


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, merge_lora: bool = True,
                      min_pixels: int | None = None, max_pixels: int | None = None) -> Path:
    """Write the model of a LightningModule checkpoint as a Hugging Face directory; return it.

    Args:
        checkpoint: a ``.ckpt`` written by ``hoi-r1 fit``.
        out_dir: output directory (``save_pretrained`` layout).
        merge_lora: merge LoRA adapters into the base weights (else save the adapter only).
        min_pixels: the exported processor's smallest image area; ``None`` takes the
            checkpoint's ``data.min_pixels`` (and, where that is unset, the base processor's).
        max_pixels: the same for the largest image area (``data.max_pixels``).
    """
    checkpoint, out = Path(checkpoint), Path(out_dir)
    if not checkpoint.exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    try:
        settings = model_settings_from(state.get("hyper_parameters", {}).get("model"))
    except TypeError:
        raise ValueError(f"{checkpoint}: no model settings under hyper_parameters['model']; was it written by hoi_r1?") from None
    model = load_model(settings)
    weights = {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ValueError(f"{checkpoint}: weights do not fit {settings.name_or_path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if settings.lora is not None and merge_lora:
        model = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    data = state.get("datamodule_hyper_parameters") or {}
    load_processor(settings.name_or_path, trust_remote_code=settings.trust_remote_code,
                   min_pixels=data.get("min_pixels") if min_pixels is None else min_pixels,
                   max_pixels=data.get("max_pixels") if max_pixels is None else max_pixels).save_pretrained(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hoi-r1 export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by hoi-r1 fit")
    parser.add_argument("--out", required=True, help="output directory (save_pretrained layout)")
    parser.add_argument("--adapter", action="store_true", help="LoRA runs: save the adapter only, unmerged")
    parser.add_argument("--min-pixels", type=int, default=None,
                        help="the exported processor's smallest image area (default: the run's data.min_pixels)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="the exported processor's largest image area (default: the run's data.max_pixels)")
    args = parser.parse_args(argv)
    out = export_checkpoint(args.checkpoint, args.out, merge_lora=not args.adapter,
                            min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    print(f"exported {args.checkpoint} to {out}")
    return 0
