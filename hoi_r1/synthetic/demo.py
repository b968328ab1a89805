"""``make demo``: the whole recipe end to end on the embedded default, on CPU: base → SFT → GRPO.

1. ``hoi-r1 synth``: generate the synthetic HOI world in ``data/synthetic`` (HICO-DET format,
   :data:`WORLD_ARGS`: training, validation and test scenes; a folder holding the same world is
   reused);
2. the base model: the shipped grounding-pretrained tiny Qwen2.5-VL
   ``checkpoints/tiny-qwen2_5_vl-grounding`` (``make demo-base``, :mod:`hoi_r1.synthetic.demo_base`, rebuilds it);
3. ``hoi-r1 test``: evaluate the base on the held-out HOI scenes;
4. ``hoi-r1 fit``: SFT with ``configs/demo_sft.yaml`` (TensorBoard ``runs/demo_sft``, checkpoints
   ``checkpoints/demo_sft``), then ``hoi-r1 test`` of its last checkpoint;
5. ``hoi-r1 fit``: GRPO from that checkpoint with ``configs/demo_grpo.yaml`` (TensorBoard
   ``runs/demo_grpo``, checkpoints ``checkpoints/demo_grpo``), then ``hoi-r1 test``;
6. ``hoi-r1 predict`` with the GRPO model on held-out images: per-image JSON and drawn images in
   ``runs/demo/predictions``, and a contact sheet ``runs/demo/predictions.png``.

Every step goes through the same LightningCLI entry point users call. The three evaluations are
one and the same (:func:`evaluate`): ``hoi-r1 test`` with the GRPO config on the 200 held-out
scenes, greedy answers, the demo's ``logprob`` scores, and again with HOI-R1's ``rank`` scores;
the GRPO module also logs the rewards of the greedy answers. One table with a column per stage
is printed and written to ``runs/demo/metrics.json`` as ``{"base": {...}, "sft": {...},
"grpo": {...}}``. Extra arguments reach the two ``fit`` runs::

    python -m hoi_r1.synthetic.demo --sft "--trainer.max_steps 300" --grpo "--trainer.max_steps 20"
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path
from typing import Sequence

from PIL import Image

from hoi_r1.lightning_cli import cli_main
from hoi_r1.synthetic.world import main as synth
from hoi_r1.synthetic.world import parse_world_args, world_config_dict

SFT_CONFIG = "configs/demo_sft.yaml"
GRPO_CONFIG = "configs/demo_grpo.yaml"
PREDICT_CONFIG = "configs/demo_predict.yaml"
WORLD = Path("data/synthetic")
WORLD_KNOBS = ("--grid", "14", "--backgrounds", "ramp")
"""The demo's world (docs/demo.md): boxes on the vision tower's 14-pixel patch grid and the
position-telling ``ramp`` background (``hoi-r1 synth`` defaults otherwise)."""
WORLD_ARGS = ("--num-train", "8000", "--num-val", "200", *WORLD_KNOBS)
"""8,000 training scenes; 200 validation scenes (settings are chosen on them; SFT validates on the
first 64) and 200 test scenes (the reported figures)."""
BASE = Path("checkpoints/tiny-qwen2_5_vl-grounding")
"""The base the demo starts from (shipped; ``make demo-base`` rebuilds it, :mod:`hoi_r1.synthetic.demo_base`)."""
SFT_LAST = Path("checkpoints/demo_sft/last.ckpt")
GRPO_LAST = Path("checkpoints/demo_grpo/last.ckpt")
OUT = Path("runs/demo")
REPORTED = ("mAP_full", "mAP_full_rank", "mAP_rare", "mAP_non_rare", "mean_max_recall", "parse_rate", "format_rate",
            "pairs_per_image", "truncation_rate", "reward", "reward/recall", "reward/precision")
"""Rows of the table and keys of each stage in ``metrics.json`` (``mAP_full_rank``: Full mAP of the
same answers ranked by HOI-R1's ``rank`` scores; ``reward``: mean total reward of the greedy answers)."""
STAGES = ("base", "sft", "grpo")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    start = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    _step("synthetic world", lambda: ensure_world(WORLD, tuple(args.world) or WORLD_ARGS))
    _step("base model", _check_base)
    results = {"base": _step("evaluate the base", lambda: evaluate(["--model.init_args.init_from_checkpoint", "null"]))}
    _step("SFT", lambda: _cli(["fit", "--config", SFT_CONFIG, *shlex.split(args.sft)]))
    results["sft"] = _step("evaluate after SFT", lambda: evaluate([
        "--model.init_args.init_from_checkpoint", str(SFT_LAST)]))
    _step("GRPO", lambda: _cli(["fit", "--config", SFT_CONFIG, "--config", GRPO_CONFIG,
                                "--model.init_args.init_from_checkpoint", str(SFT_LAST), *shlex.split(args.grpo)]))
    results["grpo"] = _step("evaluate after GRPO", lambda: evaluate(["--ckpt_path", str(GRPO_LAST)]))
    _step("predict held-out images", lambda: _predict(GRPO_LAST))
    table = format_table(results)
    print("\n" + table)
    (OUT / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    minutes = (time.perf_counter() - start) / 60
    print(f"\ndemo finished in {minutes:.1f} min; TensorBoard: tensorboard --logdir runs; "
          f"metrics: {OUT / 'metrics.json'}; predictions: {OUT / 'predictions.png'}")
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hoi_r1.synthetic.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--sft", default="", help="extra arguments of the SFT `hoi-r1 fit` (one quoted string)")
    parser.add_argument("--grpo", default="", help="extra arguments of the GRPO `hoi-r1 fit` (one quoted string)")
    parser.add_argument("--world", nargs=argparse.REMAINDER, default=[],
                        help=f"`hoi-r1 synth` arguments instead of {' '.join(WORLD_ARGS)} (last option)")
    return parser.parse_args(argv)


def _step(title: str, fn):
    print(f"\n=== {title} ===", flush=True)
    t = time.perf_counter()
    out = fn()
    print(f"=== {title}: {time.perf_counter() - t:.0f} s ===", flush=True)
    return out


def ensure_world(folder: Path, knobs: tuple[str, ...]) -> None:
    """``hoi-r1 synth --out folder *knobs``, unless ``folder`` already holds that world."""
    args = ["--out", str(folder), *knobs]
    if _world_matches(folder, args):
        print(f"using {folder}")
        return
    synth(args)


def _world_matches(folder: Path, args: list[str]) -> bool:
    """Whether ``folder`` holds the world that ``hoi-r1 synth args`` writes (its ``world.json``)."""
    stored = folder / "world.json"
    if not (stored.exists() and all((folder / f"{split}.json").exists() for split in ("train", "val", "test"))):
        return False
    return json.loads(stored.read_text()) == world_config_dict(parse_world_args(args)[1])


def _check_base() -> None:
    if not (BASE / "model.safetensors").exists():
        raise SystemExit(f"{BASE} is missing: it ships with the repository; `make demo-base` rebuilds it")
    print(f"using {BASE} (grounding-pretrained tiny Qwen2.5-VL)")


def _cli(args: list[str]):
    return cli_main(args)


def evaluate(model_args: list[str]) -> dict[str, float]:
    """``hoi-r1 test`` with the GRPO config (so the rewards of the greedy answers are logged) on the
    held-out scenes, once with the configured scores and once with ``rank`` scores."""
    common = ["test", "--config", SFT_CONFIG, "--config", GRPO_CONFIG, "--trainer.logger", "false",
              "--trainer.default_root_dir", str(OUT), *model_args]
    out = _metrics(_cli(common))
    out["mAP_full_rank"] = _metrics(_cli([*common, "--model.init_args.evaluation.scores", "rank"]))["mAP_full"]
    return {k: out[k] for k in REPORTED if k in out}


def _metrics(cli) -> dict[str, float]:
    return {k.removeprefix("test/"): float(v) for k, v in cli.trainer.callback_metrics.items()
            if k.startswith("test/") and v.numel() == 1}


def _predict(checkpoint: Path) -> None:
    _cli(["predict", "--config", SFT_CONFIG, "--config", GRPO_CONFIG, "--config", PREDICT_CONFIG,
          "--ckpt_path", str(checkpoint), "--data.predict_limit", "8", "--trainer.default_root_dir", str(OUT)])
    drawn = sorted((OUT / "predictions").glob("*.png"))[:8]
    if not drawn:
        return
    images = [Image.open(p) for p in drawn]
    w, h = images[0].size
    sheet = Image.new("RGB", (w * 4, h * ((len(images) + 3) // 4)), "white")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % 4) * w, (i // 4) * h))
    sheet.save(OUT / "predictions.png")  # the drawn images are enlarged already (hoi_r1.visualize)


def format_table(results: dict[str, dict[str, float]]) -> str:
    """One row per reported figure, one column per stage (rates, recall and mAP in percent).

    >>> print(format_table({"base": {"mAP_full": 0.0}, "sft": {"mAP_full": 0.389}, "grpo": {"mAP_full": 0.42}}))
    held-out synthetic scenes       base       sft      grpo
    mAP_full                        0.00     38.90     42.00
    """
    stages = [s for s in STAGES if s in results]
    rows = [f"{'held-out synthetic scenes':<26}" + "".join(f"{s:>10}" for s in stages)]
    for key in REPORTED:
        if not any(key in results[s] for s in stages):
            continue
        percent = key.startswith(("mAP", "mean_max_recall")) or key.endswith("rate")
        values = [results[s].get(key, float("nan")) * (100 if percent else 1) for s in stages]
        rows.append(f"{key:<26}" + "".join(f"{v:>10.2f}" for v in values))
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
