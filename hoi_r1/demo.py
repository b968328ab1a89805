"""``make demo``: the main job end to end on the embedded default, on CPU.

1. ``hoi-r1 synth``: generate the synthetic HOI world in ``data/synthetic`` (HICO-DET format,
   :data:`WORLD_ARGS`; a folder holding the same world is reused);
2. the base model: the shipped grounding-pretrained tiny Qwen2.5-VL
   ``checkpoints/tiny-qwen2_5_vl-grounding`` (``make demo-base``, :mod:`hoi_r1.demo_base`, rebuilds it);
3. ``hoi-r1 test``: evaluate it on the held-out HOI scenes (the "before" numbers);
4. ``hoi-r1 fit``: SFT with ``configs/demo_sft.yaml`` (TensorBoard logs in ``runs/demo_sft``,
   checkpoints in ``checkpoints/demo_sft``);
5. ``hoi-r1 test --ckpt_path …/last.ckpt``: the "after" numbers;
6. ``hoi-r1 predict`` on held-out images: per-image JSON and drawn images in
   ``runs/demo/predictions``, and a contact sheet ``runs/demo/predictions.png``.

Every step goes through the same LightningCLI entry point users call. Extra arguments are passed
to ``fit`` (e.g. ``python -m hoi_r1.demo --trainer.max_steps 200``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

CONFIG = "configs/demo_sft.yaml"
PREDICT_CONFIG = "configs/demo_predict.yaml"
WORLD = Path("data/synthetic")
WORLD_KNOBS = ("--grid", "14", "--backgrounds", "ramp")
"""The demo's world (docs/demo.md): boxes on the vision tower's 14-pixel patch grid and the
position-telling ``ramp`` background (``hoi-r1 synth`` defaults otherwise)."""
WORLD_ARGS = ("--num-train", "8000", *WORLD_KNOBS)
MODEL = Path("checkpoints/tiny-qwen2_5_vl")
BASE = Path("checkpoints/tiny-qwen2_5_vl-grounding")
"""The base the demo starts from (shipped; ``make demo-base`` rebuilds it from :data:`MODEL`)."""
CHECKPOINTS = Path("checkpoints/demo_sft")
OUT = Path("runs/demo")
REPORTED = ("mAP_full", "mAP_rare", "mAP_non_rare", "mean_max_recall", "parse_rate", "format_rate", "pairs_per_image")


def main(argv: list[str] | None = None) -> int:
    fit_overrides = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    _step("synthetic world", lambda: ensure_world(WORLD, WORLD_ARGS))
    _step("base model", _check_base)
    before = _step("evaluate before training", lambda: _test([]))
    _step("SFT", lambda: _cli(["fit", "--config", CONFIG, *fit_overrides]))
    last = CHECKPOINTS / "last.ckpt"
    after = _step("evaluate after training", lambda: _test(["--ckpt_path", str(last)]))
    _step("predict held-out images", lambda: _predict(last))
    table = _table(before, after)
    print("\n" + table)
    (OUT / "metrics.json").write_text(json.dumps({"before": before, "after": after}, indent=1) + "\n")
    minutes = (time.perf_counter() - start) / 60
    print(f"\ndemo finished in {minutes:.1f} min; TensorBoard: tensorboard --logdir runs; "
          f"predictions: {OUT / 'predictions.png'}")
    return 0


def _step(title: str, fn):
    print(f"\n=== {title} ===", flush=True)
    t = time.perf_counter()
    out = fn()
    print(f"=== {title}: {time.perf_counter() - t:.0f} s ===", flush=True)
    return out


def ensure_world(folder: Path, knobs: tuple[str, ...]) -> None:
    """``hoi-r1 synth --out folder *knobs``, unless ``folder`` already holds that world."""
    from hoi_r1.readers.synthetic import main as synth

    args = ["--out", str(folder), *knobs]
    if _world_matches(folder, args):
        print(f"using {folder}")
        return
    synth(args)


def _world_matches(folder: Path, args: list[str]) -> bool:
    """Whether ``folder`` holds the world that ``hoi-r1 synth args`` writes (its ``world.json``)."""
    from hoi_r1.readers.synthetic import parse_world_args, world_config_dict

    stored = folder / "world.json"
    if not (stored.exists() and (folder / "train.json").exists() and (folder / "test.json").exists()):
        return False
    return json.loads(stored.read_text()) == world_config_dict(parse_world_args(args)[1])


def _check_base() -> None:
    if not (BASE / "model.safetensors").exists():
        raise SystemExit(f"{BASE} is missing: it ships with the repository; `make demo-base` rebuilds it")
    print(f"using {BASE} (grounding-pretrained tiny Qwen2.5-VL)")


def _ensure_model() -> None:
    from hoi_r1.cli import main as cli

    if (MODEL / "config.json").exists():
        print(f"using {MODEL}")
        return
    cli(["tiny-model", "--out", str(MODEL)])


def _cli(args: list[str]):
    from hoi_r1.cli import cli_main

    return cli_main(args)


def _test(extra: list[str]) -> dict[str, float]:
    cli = _cli(["test", "--config", CONFIG, "--trainer.logger", "false", "--trainer.default_root_dir", str(OUT), *extra])
    metrics = cli.trainer.callback_metrics
    return {k: float(metrics[f"test/{k}"]) for k in REPORTED if f"test/{k}" in metrics}


def _predict(checkpoint: Path) -> None:
    from PIL import Image

    _cli(["predict", "--config", CONFIG, "--config", PREDICT_CONFIG, "--ckpt_path", str(checkpoint),
          "--data.predict_limit", "8", "--trainer.default_root_dir", str(OUT)])
    drawn = sorted((OUT / "predictions").glob("*.png"))[:8]
    if not drawn:
        return
    images = [Image.open(p) for p in drawn]
    w, h = images[0].size
    sheet = Image.new("RGB", (w * 4, h * ((len(images) + 3) // 4)), "white")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % 4) * w, (i // 4) * h))
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.NEAREST).save(OUT / "predictions.png")


def _table(before: dict[str, float], after: dict[str, float]) -> str:
    rows = [f"{'held-out synthetic scenes':<26}{'before':>10}{'after':>10}"]
    for key in REPORTED:
        b, a = before.get(key, float("nan")), after.get(key, float("nan"))
        scale = 100 if key.startswith("mAP") or key.endswith("rate") or key == "mean_max_recall" else 1
        rows.append(f"{key:<26}{b * scale:>10.2f}{a * scale:>10.2f}")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
