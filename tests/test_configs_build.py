"""Every shipped config builds, not only parses: its model, data module, trainer and callbacks are
instantiated through the CLI and ``fit`` is started up to the first training step, so a wrong
argument, class path or module/data pairing fails here.

Swapped for the test (a last ``--config`` written per config): the model for the tiny one, every
data path for one tiny synthetic world (with detections files and cold-start traces for the tool
configs), the zero-shot setting for the world's own, the hardware for one CPU (the configured
strategy is built on its own), ``init_from_checkpoint`` for none, ``max_steps`` for 0. No
training step runs; one batch of every configured loader is collated.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml
from helpers.tool_world import make_tool_world
from lightning.pytorch.strategies import Strategy, StrategyRegistry

import hoi_r1.grpo
from hoi_r1.lightning_cli import cli_main, config_chain, overlay_base
from hoi_r1.readers import read_annotations
from hoi_r1.readers.swig_hoi import write_swig_categories, write_swig_json

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SPLIT_FILES = {"train": "train", "val": "test", "test": "test"}  # the world's annotation file (and detections) per split


@dataclass(frozen=True)
class TinyWorld:
    """One tiny synthetic world, in HICO-DET's files and in SWIG-HOI's (THID JSON + categories
    ``.py``, frequencies from the rare set), with detections files and cold-start traces."""

    root: Path  # the images (file names are relative to it)
    annotations: dict  # (format, split) -> annotation file; format "hico" or "swig"
    categories: Path  # the SWIG-HOI category metadata
    detections: dict  # split -> detections file
    cold_start: Path


@pytest.fixture(scope="module")
def tiny_world(synthetic_world, tmp_path_factory) -> TinyWorld:
    out = tmp_path_factory.mktemp("tiny_world")
    tools = make_tool_world(synthetic_world, out)
    annotations = {}
    for split in ("train", "test"):
        dataset = read_annotations(synthetic_world / f"{split}.json")
        vocab = replace(dataset.vocab, frequency=tuple(1 if c in dataset.vocab.rare else 2 for c in range(len(dataset.vocab.interactions))))
        annotations["hico", split] = synthetic_world / f"{split}.json"
        annotations["swig", split] = write_swig_json(dataset.samples, vocab, out / f"swig_{split}.json")
    categories = write_swig_categories(vocab, out / "swig_categories.py")
    return TinyWorld(synthetic_world, annotations, categories, tools.detections, tools.cold_start)


def merged_config(config: Path) -> dict:
    """``config`` on top of its bases as plain YAML (mappings merged, anything else replaced): what
    the swaps and checks need to know, without a parse (``test_cli`` parses every config)."""
    def merge(base: dict, top: dict) -> dict:
        out = dict(base)
        for key, value in top.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    merged: dict = {}
    for path in config_chain(config):
        merged = merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def chain_args(config: Path) -> list[str]:
    return [arg for path in config_chain(config) for arg in ("--config", str(path))]


def tiny_swaps(resolved: dict, model_dir: Path, world) -> dict:
    """The last config of the build: what a CPU test machine and the tiny world can serve."""
    data = resolved.get("data") or {}
    swig = bool(data.get("categories"))
    swaps: dict = {"num_workers": 0, "pin_memory": False, "persistent_workers": False,
                   "categories": str(world.categories) if swig else None}
    for split, name in SPLIT_FILES.items():
        files = data.get(split)
        if files:
            annotations = world.annotations["swig" if swig else "hico", name]
            swaps[split] = {"annotations": str(annotations), "images": str(world.root), "mat_split": None}
            if files.get("detections"):
                swaps[split]["detections"] = str(world.detections[name])
    if data.get("cold_start_file"):
        swaps["cold_start_file"] = str(world.cold_start)
    if data.get("predict_images"):
        swaps["predict_images"] = str(world.root / "images" / "test")
        swaps["predict_limit"] = 2
    if data.get("vocabulary"):
        swaps["vocabulary"] = str(world.root / "vocabulary.json")
    if data.get("zero_shot"):
        swaps["zero_shot"] = "unseen_composition"  # the synthetic world's (HICO-DET's settings need HICO-DET's classes)
    model: dict = {"model": {"name_or_path": str(model_dir)}}
    if resolved["model"]["init_args"].get("init_from_checkpoint"):
        model["init_from_checkpoint"] = None  # the stage before's checkpoint: the tiny model's own weights instead
    if (resolved["model"]["init_args"].get("evaluation") or {}).get("zero_shot"):
        model["evaluation"] = {"zero_shot": "unseen_composition"}
    trainer = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "max_steps": 0, "val_check_interval": 1,
               "num_sanity_val_steps": 0, "enable_progress_bar": False, "enable_model_summary": False}
    return {"trainer": trainer, "model": {"init_args": model}, "data": swaps}


def build_strategy(strategy) -> None:
    """The configured strategy, built on its own (the run itself uses one CPU)."""
    if isinstance(strategy, str):
        assert strategy == "auto" or strategy in StrategyRegistry, f"unknown trainer.strategy {strategy!r}"
        return
    module, _, name = strategy["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls(**(strategy.get("init_args") or {})), Strategy)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_builds(config, tiny_model_dir, tiny_world, tmp_path, monkeypatch):
    resolved = merged_config(config)
    build_strategy(resolved["trainer"].get("strategy", "auto"))
    swaps = tmp_path / "tiny.yaml"
    swaps.write_text(yaml.safe_dump(tiny_swaps(resolved, tiny_model_dir, tiny_world)))
    engines = []
    monkeypatch.setattr(hoi_r1.grpo, "build_engine", lambda kind, *args: engines.append(kind))  # no rollout engine
    monkeypatch.chdir(tmp_path)  # runs/ and checkpoints/ of the config land here

    cli = cli_main([*chain_args(config), "--config", str(swaps)], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)  # set-up, model, hooks, training loader; no step

    assert cli.model.model is not None and type(cli.model).__name__ == resolved["model"]["class_path"].rpartition(".")[2]
    engine = resolved["model"]["init_args"].get("engine", "hf")
    assert engines == ([engine] if isinstance(cli.model, hoi_r1.grpo.GRPOModule) else [])  # on_fit_start ran
    data = cli.datamodule
    loaders = {"train": data.train_dataloader}
    for split in ("val", "test"):
        if resolved["data"].get(split):
            data.setup(split if split == "test" else "validate")
            loaders[split] = getattr(data, f"{split}_dataloader")
    if resolved["data"].get("predict_images"):
        data.setup("predict")
        loaders["predict"] = data.predict_dataloader
    for split, loader in loaders.items():
        batch = next(iter(loader()))
        assert batch["samples"], f"{config.name}: an empty {split} batch"


def test_every_overlay_names_a_shipped_base():
    for config in CONFIGS:
        base = overlay_base(config)
        assert base is None or base in CONFIGS, f"{config.name}: overlay-of {base}"


IN_STEP = {
    "demo_ov_hoi_grpo.yaml": "demo_ov_hoi_sft.yaml",
    "hico_ov_hoi_grpo_qwen2_5_vl_3b.yaml": "hico_ov_hoi_sft_qwen2_5_vl_3b.yaml",
    "swig_grpo_qwen2_5_vl_3b.yaml": "swig_sft_qwen2_5_vl_3b.yaml",
    "swig_grpo_qwen2_5_vl_3b_vllm.yaml": "swig_sft_qwen2_5_vl_3b.yaml",
    "swig_ov_hoi_grpo_qwen2_5_vl_3b.yaml": "swig_ov_hoi_sft_qwen2_5_vl_3b.yaml",
}
"""GRPO overlays that carry their SFT stage's data settings themselves (a config names one base,
and that stage is itself an overlay): GRPO config -> the SFT config it continues."""

TRAINING_ONLY = {"batch_size", "eval_batch_size", "cold_start_file", "max_length", "reasoning_file", "reasoning_style"}
"""Data settings a stage may choose for itself (SFT conversations only: traces, reasoning, length)."""


@pytest.mark.parametrize("grpo", sorted(IN_STEP))
def test_copied_data_settings_stay_in_step_with_the_sft_stage(grpo):
    """The data (splits, images, vocabulary, zero-shot setting, prompt) and the evaluation of a GRPO
    stage are those of the SFT stage it continues (what the copies' "keep in step" comments ask)."""
    mine, theirs = merged_config(ROOT / "configs" / grpo), merged_config(ROOT / "configs" / IN_STEP[grpo])
    assert overlay_base(ROOT / "configs" / grpo) == overlay_base(ROOT / "configs" / IN_STEP[grpo])  # one base for both
    for key in sorted((set(mine["data"]) | set(theirs["data"])) - TRAINING_ONLY - set(SPLIT_FILES)):
        assert mine["data"].get(key) == theirs["data"].get(key), f"data.{key}"
    for split in SPLIT_FILES:
        a, b = mine["data"].get(split) or {}, theirs["data"].get(split) or {}
        for key in sorted(set(a) & set(b) | {"annotations", "images", "limit"}):
            assert a.get(key) == b.get(key), f"data.{split}.{key}"
    assert mine["model"]["init_args"].get("evaluation") == theirs["model"]["init_args"].get("evaluation")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_step_budgets_end_on_a_checkpoint(config):
    """Lightning's ``ModelCheckpoint`` with ``every_n_train_steps`` writes ``last.ckpt`` only at a
    periodic save: a ``max_steps`` that is not a multiple of it leaves the last steps out of
    ``last.ckpt`` (which the next stage and ``--ckpt_path last`` read)."""
    merged: dict = {}
    for path in config_chain(config):
        layer = yaml.safe_load(path.read_text()) or {}
        merged = {**merged, **{k: ({**merged.get(k, {}), **v} if isinstance(v, dict) else v) for k, v in layer.items()}}
    trainer = merged.get("trainer", {})
    steps = trainer.get("max_steps")
    for callback in trainer.get("callbacks") or []:
        every = (callback.get("init_args") or {}).get("every_n_train_steps")
        if steps and steps > 0 and every and callback["class_path"].endswith("ModelCheckpoint"):
            assert steps % every == 0, f"{config.name}: max_steps {steps} is no multiple of every_n_train_steps {every}"
