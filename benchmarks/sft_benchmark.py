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
  :data:`~benchmarks.sft_trl.ASSISTANT_MARKED_TEMPLATE`, which renders the same text as the tiny model's template
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
from pathlib import Path

import torch

from benchmarks.bench_inputs import MODEL_SIZES, _quiet, prepare_inputs
from benchmarks.sft_runs import BenchSettings, RunResult, run_ours
from benchmarks.sft_trl import run_trl


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


if __name__ == "__main__":
    main()
