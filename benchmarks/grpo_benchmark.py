"""GRPO step time: hoi_r1's GRPOModule (Lightning) against TRL's GRPOTrainer, in the same run.

Both trainers run GRPO on the same tiny real-architecture Qwen2.5-VL (:mod:`hoi_r1.tiny`) and the
same prompts of a synthetic HOI world, in the same order, with the same group size ``G``, prompts
per generation batch, micro-batch size, gradient accumulation, completion length, sampling
temperature, HF ``generate`` for the rollouts (image tokens suppressed on both sides), the same
rewards (:func:`hoi_r1.rewards.score_completions`), ``loss_type="dapo"``, ``β = 0``, AdamW
(constant learning rate, no weight decay), gradient clipping at 1.0, fp32, CPU and a fixed number
of torch threads:

* ours: ``lightning.Trainer`` + :class:`~hoi_r1.grpo.GRPOModule` + :class:`~hoi_r1.datamodule.HOIDataModule`;
* TRL: ``trl.GRPOTrainer`` on a ``datasets.Dataset`` of ``prompt`` (the same chat messages our
  collator renders) + ``image``, ``steps_per_generation = gradient_accumulation_steps``,
  ``shuffle_dataset=False`` over rows written in our sampler's order.

A step is one optimizer step (generation + scoring + ``accumulate`` micro-batches of forward and
backward + optimizer), timed from the previous step's end to its own end; the first ``warmup``
steps are left out. Completion lengths are recorded per step on both sides, since a step's cost
depends on them (a random tiny model rarely stops early, so both usually run to the limit).

Run: ``python -m benchmarks.grpo_benchmark [--steps N --warmup W --prompts P --group G
--accumulate A --max-completion M --model-size S --threads T --repeats R]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.bench_inputs import MODEL_SIZES, _quiet, prepare_inputs
from hoi_r1.sampling import serve_of


@dataclass(frozen=True)
class GRPOBenchSettings:
    """What both trainers run.

    Args:
        steps: measured optimizer steps (after the warm-up).
        warmup: optimizer steps run first and left out of the figures.
        prompts: prompts per generation batch (one generation batch per optimizer step).
        group: ``G``, completions per prompt.
        accumulate: micro-batches per optimizer step (= steps per generation).
        max_completion: longest completion in tokens.
        temperature: sampling temperature.
        lr: AdamW learning rate.
        threads: torch intra-op threads.
        seed: seed of the training order, the model and the world.
        share_prompts: ours runs each distinct prompt once per micro-batch (GRPOModule's default);
            ``False`` runs one prompt + completion sequence per row, as TRL does.
    """

    steps: int = 6
    warmup: int = 2
    prompts: int = 2
    group: int = 4
    accumulate: int = 2
    max_completion: int = 32
    temperature: float = 1.0
    lr: float = 1e-5
    threads: int = 1
    seed: int = 0
    share_prompts: bool = True

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    @property
    def num_samples(self) -> int:
        return self.total_steps * self.prompts

    @property
    def micro_batch(self) -> int:
        return self.prompts * self.group // self.accumulate


@dataclass
class GRPORun:
    """Optimizer-step end times and the completion tokens each step generated."""

    name: str
    ends: list[float] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    start: float = 0.0

    def summary(self, warmup: int) -> dict[str, float]:
        if len(self.ends) <= warmup or warmup < 1:
            raise ValueError(f"{self.name}: need warmup >= 1 and more than {warmup} steps, found {len(self.ends)}")
        walls = [b - a for a, b in zip(self.ends[warmup - 1 :], self.ends[warmup:])]
        return {
            "steps": len(walls),
            "s_per_step": sum(walls) / len(walls),
            "median_s_per_step": statistics.median(walls),
            "completion_tokens_per_step": statistics.mean(self.completion_tokens[warmup:]) if self.completion_tokens else 0.0,
        }


def _datamodule(model_dir: Path, world_dir: Path, settings: GRPOBenchSettings):
    from hoi_r1.datamodule import HOIDataModule, SplitFiles

    dm = HOIDataModule(
        processor=str(model_dir),
        train=SplitFiles(str(world_dir / "train.json"), limit=settings.num_samples),
        batch_size=settings.prompts,
        seed=settings.seed,
    )
    dm.setup("fit")
    if len(dm.datasets["train"]) < settings.num_samples:
        raise ValueError(f"{world_dir / 'train.json'}: {len(dm.datasets['train'])} images, the run needs {settings.num_samples}")
    return dm


# ---------------------------------------------------------------------------------------- ours
def run_ours(model_dir: Path, world_dir: Path, settings: GRPOBenchSettings) -> GRPORun:
    """GRPO with Lightning + GRPOModule; record the end of every optimizer step."""
    import lightning as L

    from hoi_r1.grpo import GRPOModule
    from hoi_r1.grpo_settings import GRPOLogSettings, GRPOLossSettings, RolloutSettings
    from hoi_r1.models import ModelSettings

    run = GRPORun("hoi_r1 GRPOModule (Lightning)")

    class Timer(L.Callback):
        def on_train_start(self, trainer, pl_module):
            run.start, self._step, self._tokens = time.perf_counter(), 0, 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            buffer = pl_module._buffer
            if buffer is not None and serve_of(batch.get("ticket")) == 0:
                self._tokens = int(buffer.completion_mask.sum())
            if trainer.global_step != self._step:
                self._step = trainer.global_step
                run.ends.append(time.perf_counter())
                run.completion_tokens.append(self._tokens)

    lr = settings.lr
    module = GRPOModule(
        model=ModelSettings(name_or_path=str(model_dir)),
        optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=0.0),
        rollout=RolloutSettings(num_generations=settings.group, max_completion_length=settings.max_completion,
                                temperature=settings.temperature),
        loss=GRPOLossSettings(loss_type="dapo", steps_per_generation=settings.accumulate),
        log_examples=0,
        logging=GRPOLogSettings(completions=0),
        share_prompts=settings.share_prompts,
    )
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=settings.total_steps, accumulate_grad_batches=settings.accumulate,
        gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Timer()],
    )
    trainer.fit(module, datamodule=_datamodule(model_dir, world_dir, settings))
    return run


# ---------------------------------------------------------------------------------------- TRL
def trl_rows(model_dir: Path, world_dir: Path, settings: GRPOBenchSettings) -> list[dict]:
    """TRL's rows in our sampler's order: our prompt messages, the image file, the sample index."""
    from hoi_r1.prompts import build_instruction, build_messages
    from hoi_r1.sampling import ResumableSampler

    dm = _datamodule(model_dir, world_dir, settings)
    collator, dataset = dm.generation_collator(), dm.datasets["train"]
    sampler = ResumableSampler(len(dataset), seed=settings.seed, repeat=settings.accumulate, batch_size=settings.prompts)
    order = [t[0] for t in sampler if serve_of(t) == 0]
    return [
        {"prompt": build_messages(build_instruction(dm.vocab, collator.frame_for(dataset.samples[i]), dm.prompt)),
         "image": str(dataset.samples[i].image_path), "index": i}
        for i in order
    ]


def run_trl(model_dir: Path, world_dir: Path, settings: GRPOBenchSettings, output_dir: str | Path) -> GRPORun:
    """GRPO with TRL's GRPOTrainer on the same prompts and rewards; record every optimizer step's end."""
    import datasets
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from hoi_r1.generation import IMAGE_TOKENS
    from hoi_r1.models import ModelSettings, load_model, load_processor
    from hoi_r1.reward_target import RewardTarget
    from hoi_r1.rewards import score_completions

    run = GRPORun("TRL GRPOTrainer")
    dm = _datamodule(model_dir, world_dir, settings)
    collator, samples, vocab = dm.generation_collator(), dm.datasets["train"].samples, dm.vocab
    rows = trl_rows(model_dir, world_dir, settings)
    dataset = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image(mode="RGB"))
    processor = load_processor(str(model_dir))
    tok = processor.tokenizer
    holder = {}

    def hoi_reward(completions, index, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        targets = [RewardTarget(samples[i], collator.frame_for(samples[i]), vocab) for i in index]
        return score_completions(texts, targets).total

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            run.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            run.ends.append(time.perf_counter())
            lengths = holder["trainer"]._metrics["train"]["completions/mean_length"]  # one entry per generation
            run.completion_tokens.append(round(lengths[-1] * settings.prompts * settings.group) if lengths else 0)

    end_ids = sorted({tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")})
    config = GRPOConfig(
        output_dir=str(output_dir), max_steps=settings.total_steps, per_device_train_batch_size=settings.micro_batch,
        gradient_accumulation_steps=settings.accumulate, steps_per_generation=settings.accumulate,
        num_generations=settings.group, max_completion_length=settings.max_completion,
        temperature=settings.temperature, top_p=1.0, top_k=0, beta=0.0, loss_type="dapo", epsilon=0.2,
        scale_rewards="group", num_iterations=1, learning_rate=settings.lr, lr_scheduler_type="constant",
        weight_decay=0.0, optim="adamw_torch", max_grad_norm=1.0, bf16=False, fp16=False,
        gradient_checkpointing=False, use_cpu=True, seed=settings.seed, shuffle_dataset=False,
        dataloader_num_workers=0, dataloader_pin_memory=False, report_to="none", logging_strategy="no",
        save_strategy="no", eval_strategy="no", disable_tqdm=True, log_completions=False,
        generation_kwargs={"suppress_tokens": [tok.convert_tokens_to_ids(t) for t in IMAGE_TOKENS],
                           "eos_token_id": end_ids},
    )
    model = load_model(ModelSettings(name_or_path=str(model_dir)))
    trainer = GRPOTrainer(model=model, reward_funcs=[hoi_reward], args=config, train_dataset=dataset,
                          processing_class=processor, callbacks=[Timer()])
    holder["trainer"] = trainer
    trainer.train()
    return run


# ---------------------------------------------------------------------------------------- report
def format_table(runs: list[GRPORun], warmup: int) -> str:
    lines = ["| trainer | steps | s/step | median s/step | completion tokens/step |", "|---|---|---|---|---|"]
    for run in runs:
        s = run.summary(warmup)
        lines.append(f"| {run.name} | {s['steps']} | {s['s_per_step']:.3f} | {s['median_s_per_step']:.3f} | "
                     f"{s['completion_tokens_per_step']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = GRPOBenchSettings()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--prompts", type=int, default=defaults.prompts)
    parser.add_argument("--group", type=int, default=defaults.group)
    parser.add_argument("--accumulate", type=int, default=defaults.accumulate)
    parser.add_argument("--max-completion", type=int, default=defaults.max_completion)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="small")
    parser.add_argument("--no-share-prompts", action="store_true", help="ours: one prompt + completion row each")
    parser.add_argument("--repeats", type=int, default=1, help="alternate ours/TRL this many times")
    parser.add_argument("--model", help="reuse a tiny model folder (build_tiny_qwen2_5_vl)")
    parser.add_argument("--world", help="reuse a synthetic world folder (generate_world)")
    args = parser.parse_args(argv)
    settings = GRPOBenchSettings(args.steps, args.warmup, args.prompts, args.group, args.accumulate,
                                 args.max_completion, threads=args.threads, seed=args.seed,
                                 share_prompts=not args.no_share_prompts)
    if (settings.prompts * settings.group) % settings.accumulate:
        parser.error("--prompts x --group must be a multiple of --accumulate")
    _quiet()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    load_before = os.getloadavg()
    runs: list[GRPORun] = []
    try:
        with tempfile.TemporaryDirectory() as root:
            model_dir, world_dir = prepare_inputs(root, settings, MODEL_SIZES[args.model_size], args.model, args.world)
            for repeat in range(args.repeats):
                torch.manual_seed(settings.seed)
                runs.append(run_ours(model_dir, world_dir, settings))
                torch.manual_seed(settings.seed)
                runs.append(run_trl(model_dir, world_dir, settings, Path(root) / f"trl{repeat}"))
    finally:
        torch.set_num_threads(threads_before)
    load_after = os.getloadavg()
    print(
        f"model {args.model_size}, {settings.prompts} prompts x G={settings.group} per step, micro-batch "
        f"{settings.micro_batch} x {settings.accumulate}, max completion {settings.max_completion} tokens, "
        f"{settings.steps} measured steps after {settings.warmup} warm-up, torch threads {settings.threads}, "
        f"ours with share_prompts={settings.share_prompts}, "
        f"load average {load_before[0]:.2f} before / {load_after[0]:.2f} after ({os.cpu_count()} CPUs)"
    )
    print(format_table(runs, settings.warmup))
    pairs = [(runs[i].summary(settings.warmup), runs[i + 1].summary(settings.warmup)) for i in range(0, len(runs), 2)]
    ratio = statistics.median(a["median_s_per_step"] / b["median_s_per_step"] for a, b in pairs)
    print(f"ours / TRL time per optimizer step: {ratio:.2f}x (median of {len(pairs)} pair(s); goal <= 0.70)")
    return {"time_ratio": ratio, "ours_s_per_step": pairs[0][0]["median_s_per_step"],
            "trl_s_per_step": pairs[0][1]["median_s_per_step"]}


if __name__ == "__main__":
    main()
