"""SFT throughput: hoi_r1's SFTModule (Lightning) against TRL's SFTTrainer, in the same run.

Both trainers train the same tiny real-architecture Qwen2.5-VL (:mod:`hoi_r1.tiny`) on the same
conversations of a synthetic HOI world (:mod:`hoi_r1.synthetic.world`), in the same order, with
the same batch size, no truncation, AdamW (no weight decay, constant learning rate), gradient
norm clipping at 1.0, fp32, CPU and a fixed number of torch threads:

* ours: ``lightning.Trainer`` + :class:`~hoi_r1.sft.SFTModule` + :class:`~hoi_r1.datamodule.HOIDataModule`
  (its :class:`~hoi_r1.collate.SFTCollator`: labels on the assistant answer and its ``<|im_end|>``);
* TRL: ``trl.SFTTrainer`` on a ``datasets.Dataset`` of ``messages`` + ``images`` with TRL's own
  ``DataCollatorForVisionLanguageModeling`` and ``assistant_only_loss=True``. TRL needs
  ``{% generation %}`` markers to find the assistant turn, so its processor gets
  :data:`ASSISTANT_MARKED_TEMPLATE`, which renders the same text as the tiny model's template
  and marks the assistant content plus ``<|im_end|>``: the loss tokens are then the same as ours.

Training order: our sampler's first epoch (:class:`~hoi_r1.sampling.ResumableSampler`) over
exactly ``(warmup + steps) * batch_size`` images; TRL reads the records in that order with
``train_sampling_strategy="sequential"``. Every step records the real (attention-mask) tokens
and the answer (label) tokens of its batch, so the run checks that both sides saw identical
batches.

Timing: both frameworks fetch (and collate) a batch before their step-begin hook, so a step is
timed from the previous step's end to its own end (collation + forward + backward + optimizer +
framework overhead); the first ``warmup`` steps are left out. ``compute`` is the part between
the step-begin and step-end hooks (no data loading).

What still differs is each framework's own way of working, measured as such: TRL decodes the
images through ``datasets`` and tokenizes with ``apply_chat_template``; its loss goes through
its fused LM head (tiles of the answer positions only, plus the entropy and top-1 accuracy it
logs), where ours projects only the positions that predict an answer token
(:func:`hoi_r1.sft.answer_loss`).

Run: ``python -m benchmarks.sft_benchmark [--steps N --batch-size B --warmup W --model-size S
--threads T --repeats R --vocab-rows V --model DIR --world DIR --profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

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

ASSISTANT_MARKED_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{%- generation -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
"""The tiny model's chat template (:data:`hoi_r1.tiny.CHAT_TEMPLATE`) with ``{% generation %}``
around the assistant content and its ``<|im_end|>``, which TRL's ``assistant_only_loss`` reads."""

MAX_LENGTH = 1_000_000  # "no truncation": far above any conversation here


@dataclass(frozen=True)
class BenchSettings:
    """What both trainers run.

    Args:
        steps: measured optimizer steps (after the warm-up).
        warmup: optimizer steps run first and left out of the figures.
        batch_size: conversations per step.
        lr: AdamW learning rate (constant, no weight decay).
        threads: torch intra-op threads.
        seed: seed of the training order (and of the generated model and world).
    """

    steps: int = 20
    warmup: int = 3
    batch_size: int = 4
    lr: float = 1e-5
    threads: int = 1
    seed: int = 0

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    @property
    def num_samples(self) -> int:
        return self.total_steps * self.batch_size


@dataclass
class StepRecord:
    """One optimizer step: hook timestamps (``time.perf_counter``) and the batch's token counts."""

    begin: float
    end: float
    tokens: int
    answer_tokens: int


@dataclass
class RunResult:
    """The steps of one training run."""

    name: str
    steps: list[StepRecord] = field(default_factory=list)
    model: torch.nn.Module | None = None
    """The trained model (to compare the two runs' weights)."""

    def token_counts(self) -> list[tuple[int, int]]:
        """(real tokens, answer tokens) per step."""
        return [(s.tokens, s.answer_tokens) for s in self.steps]

    def summary(self, warmup: int) -> dict[str, float]:
        """Throughput over the steps after ``warmup`` (each timed from the previous step's end)."""
        if len(self.steps) <= warmup or warmup < 1:
            raise ValueError(f"{self.name}: need warmup >= 1 and more than {warmup} steps, found {len(self.steps)}")
        measured = self.steps[warmup:]
        wall = measured[-1].end - self.steps[warmup - 1].end
        walls = [b.end - a.end for a, b in zip(self.steps[warmup - 1 :], measured)]
        tokens = sum(s.tokens for s in measured)
        answer = sum(s.answer_tokens for s in measured)
        compute = sum(s.end - s.begin for s in measured)
        return {
            "steps": len(measured),
            "s_per_step": wall / len(measured),
            "median_s_per_step": statistics.median(walls),
            "compute_s_per_step": compute / len(measured),
            "tokens_per_s": tokens / wall,
            "answer_tokens_per_s": answer / wall,
        }


# ---------------------------------------------------------------------------------------- inputs
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


def datamodule(model_dir: Path, world_dir: Path, settings: BenchSettings):
    """Our datamodule over exactly ``settings.num_samples`` training images (one epoch = the run)."""
    from hoi_r1.datamodule import HOIDataModule, SplitFiles

    dm = HOIDataModule(
        processor=str(model_dir),
        train=SplitFiles(str(world_dir / "train.json"), limit=settings.num_samples),
        batch_size=settings.batch_size,
        max_length=MAX_LENGTH,
        seed=settings.seed,
    )
    dm.setup("fit")
    found = len(dm.datasets["train"])
    if found < settings.num_samples:
        raise ValueError(
            f"{world_dir / 'train.json'}: {found} training images, the run needs "
            f"(warmup + steps) * batch_size = {settings.num_samples}"
        )
    return dm


def trl_records(model_dir: Path, world_dir: Path, settings: BenchSettings) -> list[dict]:
    """TRL's dataset rows, in our sampler's order: the same messages our collator renders, and the
    image file (decoded by ``datasets`` when a row is read, as ours decodes it when an item is read)."""
    from hoi_r1.answer import render_answer
    from hoi_r1.prompts import build_instruction, build_messages
    from hoi_r1.sampling import ResumableSampler

    dm = datamodule(model_dir, world_dir, settings)
    collator, dataset = dm.sft_collator(), dm.datasets["train"]
    order = [index for index, _, _ in ResumableSampler(len(dataset), seed=settings.seed)]
    rows = []
    for index in order:
        sample = dataset.samples[index]
        frame = collator.frame_for(sample)
        reasoning = dataset.reasonings.get(sample.file_name)
        answer = render_answer(sample, dm.vocab, frame, reasoning=reasoning)
        messages = build_messages(build_instruction(dm.vocab, frame, dm.prompt), answer=answer)
        rows.append({"messages": messages, "images": [str(sample.image_path)]})
    return rows


# ---------------------------------------------------------------------------------------- ours
def run_ours(model_dir: Path, world_dir: Path, settings: BenchSettings) -> RunResult:
    """Train with Lightning + SFTModule + HOIDataModule; time every optimizer step."""
    import lightning as L

    from hoi_r1.models import ModelSettings
    from hoi_r1.sft import SFTModule

    result = RunResult("hoi_r1 (Lightning)")

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._begin = time.perf_counter()
            self._counts = (int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum()))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            result.steps.append(StepRecord(self._begin, time.perf_counter(), *self._counts))

    lr = settings.lr
    module = SFTModule(
        model=ModelSettings(name_or_path=str(model_dir)),
        optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=0.0),
        log_examples=0,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=settings.total_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        callbacks=[Timer()],
    )
    trainer.fit(module, datamodule=datamodule(model_dir, world_dir, settings))
    result.model = module.model
    return result


# ---------------------------------------------------------------------------------------- TRL
class _CountingCollator:
    """Wraps TRL's collator and records each batch's (real tokens, answer tokens), in order."""

    def __init__(self, collator) -> None:
        self.collator = collator
        self.counts: list[tuple[int, int]] = []

    def __call__(self, examples):
        batch = self.collator(examples)
        self.counts.append((int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())))
        return batch


def run_trl(model_dir: Path, world_dir: Path, settings: BenchSettings, output_dir: str | Path) -> RunResult:
    """Train with TRL's SFTTrainer on the same conversations; time every optimizer step."""
    import datasets
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from hoi_r1.models import ModelSettings, load_model, load_processor

    result = RunResult("TRL SFTTrainer")
    rows = trl_records(model_dir, world_dir, settings)
    dataset = datasets.Dataset.from_list(rows).cast_column("images", datasets.List(datasets.Image(mode="RGB")))
    processor = load_processor(ModelSettings(name_or_path=str(model_dir)))
    processor.chat_template = ASSISTANT_MARKED_TEMPLATE

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self._begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            result.steps.append(StepRecord(self._begin, time.perf_counter(), 0, 0))

    config = SFTConfig(
        output_dir=str(output_dir),
        max_steps=settings.total_steps,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=settings.lr,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=1.0,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        seed=settings.seed,
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        max_length=None,
        packing=False,
        padding_free=False,
        assistant_only_loss=True,
        report_to="none",
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
    )
    model = load_model(ModelSettings(name_or_path=str(model_dir)))
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=processor, callbacks=[Timer()]
    )
    counter = _CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    trainer.train()
    # Loaders fetch one batch ahead, so the collator may have run once more than there are steps.
    for step, (tokens, answer) in zip(result.steps, counter.counts):
        step.tokens, step.answer_tokens = tokens, answer
    result.model = trainer.model
    return result


# ---------------------------------------------------------------------------------------- report
def compare(ours: RunResult, trl: RunResult, warmup: int) -> dict[str, float]:
    """Ratios ours / TRL of the throughput figures, and whether every step saw the same tokens."""
    a, b = ours.summary(warmup), trl.summary(warmup)
    return {
        "tokens_per_s_ratio": a["tokens_per_s"] / b["tokens_per_s"],
        "answer_tokens_per_s_ratio": a["answer_tokens_per_s"] / b["answer_tokens_per_s"],
        "identical_batches": float(ours.token_counts() == trl.token_counts()),
    }


def format_table(runs: list[RunResult], warmup: int) -> str:
    """A Markdown table of the runs' figures."""
    lines = [
        "| trainer | steps | s/step | median s/step | compute s/step | tokens/s | answer tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        s = run.summary(warmup)
        lines.append(
            f"| {run.name} | {s['steps']} | {s['s_per_step']:.3f} | {s['median_s_per_step']:.3f} | "
            f"{s['compute_s_per_step']:.3f} | "
            f"{s['tokens_per_s']:,.0f} | {s['answer_tokens_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def _profiled(profile: bool, fn, *args):
    if not profile:
        return fn(*args)
    profiler = cProfile.Profile()
    result = profiler.runcall(fn, *args)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
    print(f"--- cProfile of {fn.__name__} (cumulative, top 30) ---\n{text.getvalue()}")
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=BenchSettings.steps)
    parser.add_argument("--warmup", type=int, default=BenchSettings.warmup)
    parser.add_argument("--batch-size", type=int, default=BenchSettings.batch_size)
    parser.add_argument("--lr", type=float, default=BenchSettings.lr)
    parser.add_argument("--threads", type=int, default=BenchSettings.threads)
    parser.add_argument("--seed", type=int, default=BenchSettings.seed)
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="small")
    parser.add_argument("--vocab-rows", type=int, help="pad the new model's vocabulary matrix to this many rows")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the trainers this many times")
    parser.add_argument("--model", help="reuse a tiny model folder (build_tiny_qwen2_5_vl)")
    parser.add_argument("--world", help="reuse a synthetic world folder (generate_world)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each run")
    args = parser.parse_args(argv)
    settings = BenchSettings(args.steps, args.warmup, args.batch_size, args.lr, args.threads, args.seed)
    _quiet()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    load_before = os.getloadavg()
    rounds: list[dict[str, RunResult]] = []
    try:
        with tempfile.TemporaryDirectory() as root:
            model_dir, world_dir = prepare_inputs(
                root, settings, MODEL_SIZES[args.model_size], args.model, args.world, args.vocab_rows
            )
            for repeat in range(args.repeats):
                runs = {"ours": _profiled(args.profile, run_ours, model_dir, world_dir, settings)}
                trl_dir = Path(root) / f"trl{repeat}"
                runs["trl"] = _profiled(args.profile, run_trl, model_dir, world_dir, settings, trl_dir)
                rounds.append(runs)
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads_before)
    load_after = os.getloadavg()
    print(
        f"model {args.model_size} (vocabulary rows: {args.vocab_rows or 'as trained'}), batch "
        f"{settings.batch_size}, {settings.steps} measured steps after {settings.warmup} warm-up, torch threads "
        f"{settings.threads} (after the runs: {threads_after}), load average {load_before[0]:.2f} before / "
        f"{load_after[0]:.2f} after ({os.cpu_count()} CPUs)"
    )
    print(format_table([run for runs in rounds for run in runs.values()], settings.warmup))
    ratios = [compare(runs["ours"], runs["trl"], settings.warmup) for runs in rounds]
    tokens = statistics.median(r["tokens_per_s_ratio"] for r in ratios)
    answer = statistics.median(r["answer_tokens_per_s_ratio"] for r in ratios)
    same = all(r["identical_batches"] for r in ratios)
    best = _best(rounds, "ours", settings.warmup) / _best(rounds, "trl", settings.warmup)
    print(f"ours / TRL: tokens/s {tokens:.2f}x, answer tokens/s {answer:.2f}x (median of {len(ratios)} "
          f"round(s)); best run / best run: {best:.2f}x; identical tokens per step: "
          f"{'yes' if same else 'NO - not an apples-to-apples comparison'}")
    figures = {"ours_tokens_per_s_ratio": tokens, "ours_answer_tokens_per_s_ratio": answer,
               "ours_best_tokens_per_s_ratio": best, "ours_identical_batches": float(same)}
    return figures


def _best(rounds: list[dict[str, RunResult]], key: str, warmup: int) -> float:
    """The highest tokens/s of one trainer over the rounds: the run least slowed by other jobs."""
    return max(runs[key].summary(warmup)["tokens_per_s"] for runs in rounds)


def _quiet() -> None:
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


if __name__ == "__main__":
    main()
