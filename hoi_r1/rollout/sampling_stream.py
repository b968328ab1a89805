"""The random stream GRPO samples its rollouts from, saved in checkpoints (so a resumed run
samples what the uninterrupted run sampled).

>>> import torch
>>> stream = SamplingStream(seed=3)
>>> with stream.active(torch.device("cpu")):
...     first = torch.rand(1)
>>> _ = torch.rand(1)  # other draws from torch's generator do not move the stream
>>> replay = SamplingStream(seed=3)
>>> with replay.active(torch.device("cpu")):
...     bool(torch.rand(1) == first)
True
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class SamplingStream:
    """A random stream of its own for sampling rollouts, saved in checkpoints.

    Whatever else draws from torch's global generator (data loading, a resumed run's set-up)
    cannot change what is sampled, so a resumed run samples what the uninterrupted run sampled.

    Args:
        seed: seed of the stream (the first time it is used).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.state: dict | None = None

    @contextmanager
    def active(self, device: torch.device):
        """Within the block, torch's generators (CPU, and ``device`` if CUDA) follow this stream."""
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            if self.state is None:
                torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self.state["cpu"])
                if cuda and self.state.get("cuda") is not None:
                    torch.cuda.set_rng_state(self.state["cuda"], device)
            yield
            self.state = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if cuda else None}
