"""Peak memory of one ``hf`` generation with Qwen's vocabulary (151,936 tokens): the old way (every
step's scores kept, stacked and log-softmaxed afterwards: ``full_scores``, reproduced here as the
baseline) against :func:`hoi_r1.generation.generate`, which gathers the chosen token's log-prob
step by step (``chosen``) or keeps no scores at all (``none``, the ``hf`` rollout engine's default).

The model is the tiny Qwen2.5-VL of :mod:`hoi_r1.tiny` (real architecture, random weights) with its
embeddings and head resized to ``--vocab`` rows, so the vocabulary-sized tensors weigh what they do
for Qwen2.5-VL while the layers stay small. Each way runs in its own process, on the same prompts
(one image each) and seed: the peak resident set size (``getrusage`` ``ru_maxrss``, its high-water
mark reset through ``/proc/self/clear_refs`` just before the call) minus the resident size just
before is the generation's own peak. The run also checks that ``chosen`` samples the same tokens as
``full_scores`` with the same log-probs.

The three processes run at the same time (their resident sets are their own); with ``--malloc
live`` (default) glibc maps every block of 1 MiB or more on its own, so the peak counts the tensors
alive together; ``--malloc default`` keeps glibc's adaptive heap, whose reuse of freed blocks adds
fragmentation that depends on the order of allocations.

Run: ``python -m benchmarks.generation_memory_benchmark [--prompts P --group G --max-new-tokens T
--vocab V --sample --temperature τ --threads N --malloc live|default]`` (defaults: 8 prompts × 1 =
8 rows × 256 tokens, V = 151,936, greedy: about a minute on two busy CPU cores; ``--sample`` adds
a ``torch.multinomial`` over the vocabulary per step, about a minute more); docs/benchmarks.md
has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

QWEN_VOCAB = 151_936
MODES = ("full_scores", "chosen", "none")


@dataclass(frozen=True)
class GenerationMemorySettings:
    """What every way generates.

    Args:
        prompts: prompts of the batch (one image each).
        group: completions per prompt (rows = prompts × group; more than 1 needs ``sample``).
        max_new_tokens: completion length (random weights rarely write an end token).
        vocab: rows of the resized embeddings and head.
        sample: sample at ``temperature`` (the shipped GRPO configs: 1.0, top-p 1) instead of
            decoding greedily; the scores kept per step are the same size either way, sampling
            only costs time (``torch.multinomial`` over the vocabulary, each step).
        temperature: sampling temperature.
        threads: torch intra-op threads.
        seed: sampling seed.
    """

    prompts: int = 8
    group: int = 1
    max_new_tokens: int = 256
    vocab: int = QWEN_VOCAB
    sample: bool = False
    temperature: float = 1.0
    threads: int = 1
    seed: int = 0


def full_scores_generate(model, processor, batch: dict, settings):
    """The old :func:`hoi_r1.generation.generate`: ``output_scores=True``, every step's
    ``(rows, vocabulary)`` scores kept, stacked and log-softmaxed after the call."""
    import torch

    from hoi_r1.generation import Completions, completion_mask, end_token_ids, model_inputs, sampling_kwargs

    tok = processor.tokenizer
    inputs = model_inputs(batch)
    end_ids = end_token_ids(model, tok)
    out = model.generate(
        **inputs,
        **sampling_kwargs(settings, tok, end_ids),
        return_dict_in_generate=True,
        output_scores=True,
    )
    prompt_len = inputs["input_ids"].shape[1]
    ids = out.sequences[:, prompt_len:]
    mask = completion_mask(ids, end_ids)
    logprobs = torch.stack(out.scores, dim=1).float().log_softmax(-1) if out.scores else None
    if logprobs is None:
        token_lp = torch.zeros(ids.shape, dtype=torch.float32)
    else:
        token_lp = logprobs.gather(-1, ids[:, : logprobs.shape[1], None]).squeeze(-1)
        token_lp = torch.nan_to_num(token_lp, neginf=-1e4) * mask
    texts = tok.batch_decode(ids * mask + tok.pad_token_id * (1 - mask), skip_special_tokens=True)
    truncated = [not bool(torch.isin(row, torch.tensor(end_ids, device=row.device)).any()) for row in ids]
    return Completions(texts, ids, token_lp, mask, truncated)


def build_model(out_dir: Path, vocab: int) -> Path:
    """The tiny Qwen2.5-VL with ``vocab`` embedding and head rows, saved with its processor."""
    import torch

    from hoi_r1.models import ModelSettings, load_model, load_processor
    from hoi_r1.tiny import TinyModelSize, build_tiny_qwen2_5_vl

    small = build_tiny_qwen2_5_vl(out_dir / "small", TinyModelSize(text_hidden=64, vision_hidden=32))
    torch.manual_seed(0)
    model = load_model(ModelSettings(name_or_path=str(small)))
    model.resize_token_embeddings(vocab)
    path = out_dir / "wide"
    model.save_pretrained(path)
    load_processor(str(small)).save_pretrained(path)
    return path


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark of the resident set to its current size
        return True
    except OSError:
        return False


def child(mode: str, model_dir: Path, settings: GenerationMemorySettings, out_file: Path) -> dict:
    """Generate once the ``mode`` way; the memory figures (MiB), and the tokens saved to ``out_file``."""
    import torch
    from PIL import Image

    from hoi_r1.generation import GenerationSettings, generate
    from hoi_r1.models import ModelSettings, load_model, load_processor
    from hoi_r1.prompts import build_messages

    torch.set_num_threads(settings.threads)
    processor = load_processor(str(model_dir))
    model = load_model(ModelSettings(name_or_path=str(model_dir))).eval()
    assert model.config.get_text_config().vocab_size == settings.vocab
    images = [Image.new("RGB", (112, 84 + 7 * i), color=(30 * i, 90, 160)) for i in range(settings.prompts)]
    texts = [processor.apply_chat_template(build_messages("Find every human-object interaction."), tokenize=False,
                                           add_generation_prompt=True)] * settings.prompts
    tok = processor.tokenizer
    tok.padding_side = "left"
    batch = dict(processor(text=texts, images=images, padding=True, return_tensors="pt"))
    generation = GenerationSettings(max_new_tokens=settings.max_new_tokens, do_sample=settings.sample,
                                    temperature=settings.temperature, num_samples=settings.group)
    with torch.no_grad():  # warm-up: first-call allocations are not the generation's
        generate(model, processor, batch, GenerationSettings(max_new_tokens=2), logprobs=False)
    torch.manual_seed(settings.seed)
    before = _rss_mib()
    reset = _reset_peak()
    start = time.perf_counter()
    if mode == "full_scores":
        out = full_scores_generate(model, processor, batch, generation)
    else:
        out = generate(model, processor, batch, generation, logprobs=mode == "chosen")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.save({"ids": out.token_ids, "logprobs": out.token_logprobs, "mask": out.mask}, out_file)
    return {"mode": mode, "rss_before_mib": before, "peak_mib": peak, "generation_peak_mib": peak - before,
            "peak_reset": reset, "seconds": seconds, "rows": int(out.token_ids.shape[0]),
            "mean_length": float(out.mask.sum(dim=1).float().mean())}


def run(settings: GenerationMemorySettings, malloc: str = "live") -> dict:
    """Build the model, run every way in its own process (all at once); the figures of each and the checks.

    ``malloc="live"`` has glibc map every block of 1 MiB or more on its own (``MALLOC_MMAP_THRESHOLD_``),
    so that a freed vocabulary-sized block leaves the resident set at once and the peak counts the
    tensors alive together; ``"default"`` keeps glibc's adaptive threshold, under which freed blocks
    stay in the heap for reuse and the peak also counts its fragmentation.
    """
    import torch

    env = {**os.environ, "OMP_NUM_THREADS": str(settings.threads)}
    if malloc == "live":
        env["MALLOC_MMAP_THRESHOLD_"] = str(2**20)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_model(tmp, settings.vocab)
        procs = {}
        for mode in MODES:
            cmd = [sys.executable, "-m", "benchmarks.generation_memory_benchmark", "--child", mode,
                   "--model-dir", str(model_dir), "--out", str(tmp / f"{mode}.pt"),
                   "--settings", json.dumps(asdict(settings))]
            procs[mode] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                           cwd=Path(__file__).parents[1])
        results = {}
        for mode, proc in procs.items():
            stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{mode} failed:\n{stderr[-4000:]}")
            results[mode] = json.loads(stdout.strip().splitlines()[-1])
        tensors = {mode: torch.load(tmp / f"{mode}.pt") for mode in MODES}
    old, new = tensors["full_scores"], tensors["chosen"]
    checks = {
        "same_tokens": all(torch.equal(old["ids"], t["ids"]) for t in tensors.values()),
        "max_abs_logprob_diff": float((old["logprobs"] - new["logprobs"]).abs().max()),
        "none_has_logprobs": tensors["none"]["logprobs"] is not None,
    }
    return {"settings": asdict(settings), "malloc": malloc, "results": results, "checks": checks}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = GenerationMemorySettings()
    parser.add_argument("--prompts", type=int, default=defaults.prompts)
    parser.add_argument("--group", type=int, default=defaults.group)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--vocab", type=int, default=defaults.vocab)
    parser.add_argument("--sample", action="store_true", help="sample at --temperature (default: greedy)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--malloc", choices=("live", "default"), default="live",
                        help="live: blocks of 1 MiB or more mapped on their own (the peak counts live tensors); "
                             "default: glibc's adaptive heap (the peak also counts its fragmentation)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        settings = GenerationMemorySettings(**json.loads(args.settings))
        print(json.dumps(child(args.child, Path(args.model_dir), settings, Path(args.out))))
        return
    settings = GenerationMemorySettings(args.prompts, args.group, args.max_new_tokens, args.vocab, args.sample,
                                        args.temperature, args.threads, args.seed)
    start = time.perf_counter()
    report = run(settings, args.malloc)
    res, rows = report["results"], settings.prompts * settings.group
    copy_gib = rows * settings.max_new_tokens * settings.vocab * 4 / 2**30
    print(f"{rows} rows x {settings.max_new_tokens} tokens x {settings.vocab}-token vocabulary "
          f"(one fp32 copy of all scores: {copy_gib:.2f} GiB), {'sampled' if settings.sample else 'greedy'}, "
          f"malloc: {args.malloc}, the ways run at once")
    print(f"{'way':<12} {'peak RSS':>10} {'generation peak':>16} {'mean length':>12}")
    for mode in MODES:
        r = res[mode]
        print(f"{mode:<12} {r['peak_mib']:>7.0f} MiB {r['generation_peak_mib']:>12.0f} MiB {r['mean_length']:>12.1f}")
    base = res["full_scores"]["generation_peak_mib"]
    for mode in ("chosen", "none"):
        print(f"generation peak, full_scores / {mode}: {base / max(res[mode]['generation_peak_mib'], 1e-9):.0f}x")
    checks = report["checks"]
    print(f"same tokens in every way: {checks['same_tokens']}; max |Δ log-prob| full_scores vs chosen: "
          f"{checks['max_abs_logprob_diff']:.3g}; peak reset: {all(r['peak_reset'] for r in res.values())}; "
          f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
