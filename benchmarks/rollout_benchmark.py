"""Rollout throughput: the ``hf`` engine (the training model's ``generate``) against the ``vllm``
engine, on the same prompts, images and sampling, in the same run.

Both engines sample ``group`` completions for each of ``prompts`` prompts of a synthetic HOI world
(images from disk, left-padded prompts from our collator) with the shipped tiny Qwen2.5-VL
(``checkpoints/tiny-qwen2_5_vl-grounding``), ``temperature``, at most ``max_completion`` tokens,
image tokens blocked on both sides. A repeat is one ``generate`` call of a whole batch; the first
``warmup`` repeats are left out. Tokens/s counts each engine's own completion tokens (up to and
including the end token), so early stops do not flatter either side. The vllm engine's start-up
(building ``vllm.LLM``) and one weight push are timed apart.

Needs vLLM (``make install-vllm`` builds ``.venv-vllm`` with the CPU build), so it is not part of
``make bench``. Run: ``.venv-vllm/bin/python -m benchmarks.rollout_benchmark [--prompts P --group G
--max-completion M --repeats R --warmup W --threads T --dtype D]``; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
MODEL = ROOT / "checkpoints" / "tiny-qwen2_5_vl-grounding"


@dataclass(frozen=True)
class RolloutBenchSettings:
    """What both engines sample.

    Args:
        prompts: prompts per batch.
        group: completions per prompt (``n``).
        max_completion: longest completion in tokens.
        temperature: sampling temperature.
        repeats: measured ``generate`` calls.
        warmup: calls run first and left out.
        threads: torch / OpenMP threads (both engines).
        dtype: weights and activations of both engines.
        seed: seed of the world and of the samplers.
    """

    prompts: int = 4
    group: int = 4
    max_completion: int = 64
    temperature: float = 1.0
    repeats: int = 3
    warmup: int = 1
    threads: int = 1
    dtype: str = "float32"
    seed: int = 0


def run(settings: RolloutBenchSettings) -> dict[str, float]:
    """Time both engines; returns tokens/s of each, their ratio and the vllm engine's start-up."""
    os.environ["OMP_NUM_THREADS"] = str(settings.threads)
    import torch

    torch.set_num_threads(settings.threads)  # before vLLM's CPU worker disables set_num_threads
    from hoi_r1.datamodule import HOIDataModule, SplitFiles
    from hoi_r1.models import ModelSettings, load_model
    from hoi_r1.prompts import PromptConfig
    from hoi_r1.synthetic.scene import SyntheticWorldConfig
    from hoi_r1.synthetic.world import generate_world
    from hoi_r1.rollout.engine import RolloutSampling
    from hoi_r1.rollout.hf import HFRolloutEngine
    from hoi_r1.rollout.policy_weights import policy_weights
    from hoi_r1.rollout.vllm import VLLMRolloutEngine, VLLMSettings

    with tempfile.TemporaryDirectory() as tmp:
        world = generate_world(Path(tmp), SyntheticWorldConfig(num_train=settings.prompts, num_test=settings.prompts,
                                                               seed=settings.seed))
        data = HOIDataModule(processor=str(MODEL), train=SplitFiles(str(world / "train.json")),
                             val=SplitFiles(str(world / "test.json")), batch_size=settings.prompts,
                             eval_batch_size=settings.prompts,
                             prompt=PromptConfig(thinking_guidance=False, show_example=False, list_verbs=False))
        data.setup("fit")
        batch = next(iter(data.val_dataloader()))
        model = load_model(ModelSettings(name_or_path=str(MODEL), dtype=settings.dtype, attn_implementation="sdpa")).eval()
        sampling = RolloutSampling(settings.max_completion, settings.temperature)
        hf = HFRolloutEngine(model, data.processor)
        torch.manual_seed(settings.seed)
        hf_rate = _rate(lambda: hf.generate(batch, settings.group, sampling), settings)

        start = time.perf_counter()
        vllm = VLLMRolloutEngine(str(MODEL), data.processor, VLLMSettings(dtype=settings.dtype, enforce_eager=True,
                                                                          seed=settings.seed, check_agreement=False))
        startup = time.perf_counter() - start
        start = time.perf_counter()
        vllm.sync_weights(policy_weights(model))
        push = time.perf_counter() - start
        vllm_rate = _rate(lambda: vllm.generate(batch, settings.group, sampling), settings)
    return {"hf_tokens_per_s": hf_rate, "vllm_tokens_per_s": vllm_rate, "ratio": vllm_rate / hf_rate,
            "vllm_startup_s": startup, "vllm_push_s": push}


def _rate(generate, settings: RolloutBenchSettings) -> float:
    """Median tokens/s of the measured calls."""
    rates = []
    for i in range(settings.warmup + settings.repeats):
        start = time.perf_counter()
        out = generate()
        seconds = time.perf_counter() - start
        if i >= settings.warmup:
            rates.append(float(out.mask.sum()) / seconds)
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = RolloutBenchSettings()
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    settings = RolloutBenchSettings(**vars(parser.parse_args(argv)))
    result = run(settings)
    print(f"rollout: {settings.prompts} prompts x G={settings.group}, <= {settings.max_completion} tokens, "
          f"T={settings.temperature}, {settings.dtype}, {settings.threads} thread(s)")
    print(f"  hf   generate: {result['hf_tokens_per_s']:8.1f} tokens/s")
    print(f"  vllm engine:   {result['vllm_tokens_per_s']:8.1f} tokens/s   (start-up {result['vllm_startup_s']:.1f} s, "
          f"weight push {result['vllm_push_s']:.3f} s)")
    print(f"  ratio vllm / hf: {result['ratio']:.2f}")


if __name__ == "__main__":  # vLLM may start worker processes: keep the guard
    main()
