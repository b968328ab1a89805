"""``make demo-base``: the grounding-pretrained tiny model the demo starts from.

The real recipe starts HOI SFT from a vision-language model that can already ground things; the
demo mirrors it at toy scale. This command rebuilds the shipped base
``checkpoints/tiny-qwen2_5_vl-grounding`` from nothing, on CPU:

1. ``hoi-r1 tiny-model``: the tiny random Qwen2.5-VL (``checkpoints/tiny-qwen2_5_vl``);
2. ``hoi-r1 synth``: a grounding world (``data/synthetic_grounding``: another seed than the
   demo's world, so the demo's held-out scenes stay unseen);
3. ``hoi-r1 fit`` with ``configs/demo_grounding.yaml``: SFT on "box every person and object";
4. ``hoi-r1 export``: the last checkpoint as a Hugging Face directory, the shipped base.

About 25 minutes on 2 cores (docs/demo.md). Extra arguments go to ``fit``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hoi_r1.cli import main as cli
from hoi_r1.export import main as export
from hoi_r1.synthetic.demo import BASE, WORLD_KNOBS, _cli, _step, ensure_world

MODEL = Path("checkpoints/tiny-qwen2_5_vl")
"""The tiny random Qwen2.5-VL the base is trained from (``hoi-r1 tiny-model``)."""
CONFIG = ("configs/demo_sft.yaml", "configs/demo_grounding.yaml")
WORLD = Path("data/synthetic_grounding")
GROUNDING_WORLD_ARGS = (*WORLD_KNOBS, "--num-train", "6000", "--num-test", "64", "--seed", "1")
"""The demo world's knobs with 6,000 training scenes of seed 1 (the demo's world uses seed 0)."""
CHECKPOINTS = Path("checkpoints/demo_grounding")


def main(argv: list[str] | None = None) -> int:
    fit_overrides = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    _step("tiny model", _ensure_model)
    _step("grounding world", lambda: ensure_world(WORLD, GROUNDING_WORLD_ARGS))
    configs = [arg for path in CONFIG for arg in ("--config", path)]
    _step("grounding SFT", lambda: _cli(["fit", *configs, *fit_overrides]))
    _step("export", _export)
    print(f"\nbase model in {BASE} after {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def _ensure_model() -> None:
    if (MODEL / "config.json").exists():
        print(f"using {MODEL}")
        return
    cli(["tiny-model", "--out", str(MODEL)])


def _export() -> None:
    export(["--checkpoint", str(CHECKPOINTS / "last.ckpt"), "--out", str(BASE)])


if __name__ == "__main__":
    raise SystemExit(main())
