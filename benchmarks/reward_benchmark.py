"""GRPO reward throughput: completions scored per second by :func:`hoi_r1.rewards.score_completions`.

Builds HICO-DET-like prompts (the HICO-DET vocabulary; 640x480 images, Qwen2.5-VL
``absolute_resized`` frame; five (human, object) pairs per image with one to three verbs each)
and, per prompt, a group of ``G`` completions of the kinds a policy writes during GRPO: the
rendered answer with a reasoning paragraph of about 120 words, then copies with jittered boxes,
a missed pair, an extra pair, a wrong verb, trailing commas (repaired JSON) and a truncated
answer. Times the four rewards (parse once, match once, four scores, weighted total) over all
completions, several repeats, and prints the median throughput; also the parser alone, to show
where the time goes.

Run: ``python -m benchmarks.reward_benchmark [--prompts 64 --group 8 --repeats 5 --threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from hoi_r1.answer import parse_answer
from hoi_r1.answer_render import render_answer
from hoi_r1.frames import Frame
from hoi_r1.reward_target import RewardTarget
from hoi_r1.rewards import RewardWeights, score_completions
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

WIDTH, HEIGHT = 640, 480
REASONING_WORDS = ("person", "holds", "the", "left", "near", "bicycle", "looks", "at", "table", "and", "rides",
                   "while", "another", "sits", "on", "chair", "behind", "them", "so", "likely")


def make_sample(rng: np.random.Generator, vocab: HOIVocabulary, image_id: int, num_pairs: int = 5) -> HOISample:
    """An image with ``num_pairs`` distinct (human, object) pairs of valid HICO-DET classes."""
    humans = _boxes(rng, 3)
    objects = _boxes(rng, num_pairs)
    object_ids = rng.choice(vocab.objects_with_interactions(), num_pairs)
    pairs = []
    for o, obj in enumerate(object_ids):
        verbs = vocab.verbs_for_object(int(obj))
        for v in rng.choice(verbs, min(len(verbs), int(rng.integers(1, 4))), replace=False):
            pairs.append([o % 3, o, int(v), vocab.interaction_id(int(v), int(obj))])
    return HOISample(image_id, f"{image_id}.jpg", f"{image_id}.jpg", WIDTH, HEIGHT, human_boxes=humans,
                     object_boxes=objects, object_labels=object_ids, pairs=pairs)


def make_group(rng: np.random.Generator, sample: HOISample, vocab: HOIVocabulary, frame: Frame, size: int) -> list[str]:
    """``size`` completions for one prompt, cycling through the kinds listed in the module doc."""
    reasoning = " ".join(rng.choice(REASONING_WORDS, 120)) + "."
    perfect = render_answer(sample, vocab, frame, reasoning=reasoning)
    head, payload = perfect.split("<answer>")
    elements = json.loads(payload.removesuffix("</answer>"))

    def write(items: list[dict]) -> str:
        return f"{head}<answer>{json.dumps(items)}</answer>"

    def jittered() -> list[dict]:
        return [{**e, "human": [int(c + rng.integers(-15, 16)) for c in e["human"]],
                 "object": [int(c + rng.integers(-15, 16)) for c in e["object"]]} for e in elements]

    wrong_verb = [dict(e) for e in elements]
    wrong_verb[0]["verb class"] = ["hold"]
    kinds = [
        perfect,
        write(jittered()),
        write(jittered()[1:]),  # a missed pair
        write(jittered() + [elements[0]]),  # an extra pair
        write(wrong_verb),
        write(jittered()).replace("}]", "},]"),  # trailing comma: repaired JSON
        perfect[: len(perfect) * 3 // 4],  # cut off inside the answer
        write(jittered()),
    ]
    return [kinds[i % len(kinds)] for i in range(size)]


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, [WIDTH - 80, HEIGHT - 80], (n, 2))
    wh = rng.uniform(30, 300, (n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, [WIDTH, HEIGHT])], axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64, help="prompts (images) per batch")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    vocab = HOIVocabulary.hico_det()
    frame = Frame.for_image("absolute_resized", WIDTH, HEIGHT)
    completions, targets = [], []
    for i in range(args.prompts):
        sample = make_sample(rng, vocab, i)
        target = RewardTarget(sample, frame, vocab)
        completions += make_group(rng, sample, vocab, frame, args.group)
        targets += [target] * args.group
    n = len(completions)
    chars = statistics.mean(len(c) for c in completions)
    weights = RewardWeights()

    score_completions(completions[: args.group], targets[: args.group], weights)  # warm-up
    parse_times, score_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for c, t in zip(completions, targets):
            parse_answer(c, t.vocab, t.frame)
        parse_times.append(time.perf_counter() - start)
        fresh = [RewardTarget(t.sample, t.frame, t.vocab) for t in targets[:: args.group] for _ in range(args.group)]
        start = time.perf_counter()
        out = score_completions(completions, fresh, weights)
        score_times.append(time.perf_counter() - start)
    means = {k: round(v, 3) for k, v in out.means().items()}
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"python {platform.python_version()}, torch {torch.__version__}")
    print(f"{n} completions ({args.prompts} prompts x G={args.group}), mean {chars:.0f} characters, "
          f"mean rewards {means}")
    parse_s, score_s = statistics.median(parse_times), statistics.median(score_times)
    print(f"parse only:             {n / parse_s:8.0f} completions/s  ({1e6 * parse_s / n:.0f} us each)")
    print(f"score_completions (4):  {n / score_s:8.0f} completions/s  ({1e6 * score_s / n:.0f} us each; "
          f"repeats {', '.join(f'{n / s:.0f}' for s in score_times)})")


if __name__ == "__main__":
    main()
