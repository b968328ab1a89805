"""``make bench``: every benchmark, one after the other, each printing its own ratios against the
baseline it measures in the same run. Pass benchmark names to run only those."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("metric_benchmark", "reward_benchmark", "sft_benchmark", "grpo_benchmark")


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or list(BENCHMARKS)
    for name in names:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError:
            print(f"\n### {name}: not available", flush=True)
            continue
        print(f"\n### {name}", flush=True)
        module.main([])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
