"""A seeded, sharded, resumable training order.

:class:`ResumableSampler` draws a fresh permutation per epoch from ``(seed, epoch)``, gives each
process every ``world_size``-th index (padding with the first indices so all ranks see the same
count, as ``DistributedSampler`` does). It yields ``(index, epoch, position)`` tickets:
the dataset returns the ticket with the item, the batch carries the last ticket, and the
training step records it as *consumed*. Loaders fetch ahead of training, so the sampler's own
progress would overshoot; the consumed ticket is what the datamodule saves in checkpoints, and
a run killed mid-epoch resumes with the very next sample instead of replaying or skipping part
of the epoch.

It subclasses ``DistributedSampler`` so Lightning leaves it in place under DDP instead of
wrapping it again.

GRPO serves each prompt batch several times (``repeat``): the module generates completions on
the first serve and trains on one micro-batch of its buffer per serve (:mod:`hoi_r1.grpo`). With
``repeat > 1`` the rank's order is cut into full batches of ``batch_size`` (an incomplete last
batch is left out, as TRL's ``RepeatSampler`` does), each batch is yielded ``repeat`` times in a
row, and tickets gain a fourth field, the serve ``(index, epoch, position, serve)``; positions
count the repeated stream, so resuming stays exact. ``repeat = 1`` is the plain order above.

>>> r = ResumableSampler(5, seed=0, repeat=2, batch_size=2, shuffle=False)
>>> [(index, serve) for index, _, _, serve in r]
[(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (3, 0), (2, 1), (3, 1)]

>>> s = ResumableSampler(5, seed=0)
>>> first = [index for index, epoch, position in s]
>>> sorted(first)
[0, 1, 2, 3, 4]
>>> list(s)[:2]  # the next epoch: another permutation
[(0, 1, 1), (4, 1, 2)]
>>> t = ResumableSampler(5, seed=0)
>>> t.load_state_dict({"epoch": 0, "position": 2})
>>> [index for index, _, _ in t] == first[2:]
True
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data.distributed import DistributedSampler


class ResumableSampler(DistributedSampler):
    """Seeded per-epoch permutation, sharded by rank, resumable mid-epoch.

    Args:
        size: number of samples in the dataset.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        rank: this process's rank.
        world_size: number of processes.
        shuffle: permute (``False`` keeps file order).
        repeat: serve each batch of ``batch_size`` indices this many times in a row (GRPO
            micro-batches); 1 serves every index once.
        batch_size: the loader's batch size (only used when ``repeat > 1``).
    """

    def __init__(
        self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True,
        repeat: int = 1, batch_size: int = 1,
    ) -> None:
        if repeat < 1 or batch_size < 1:
            raise ValueError(f"ResumableSampler: repeat and batch_size must be >= 1, found {repeat} and {batch_size}")
        # DistributedSampler's constructor only stores these fields; no process group is needed.
        self.dataset_size = size
        self.seed = seed
        self.rank = rank
        self.num_replicas = world_size
        self.shuffle = shuffle
        self.drop_last = False
        self.epoch = 0
        self.position = 0  # where the next iteration of this epoch starts on this rank
        self.num_samples = -(-size // world_size)
        self.total_size = self.num_samples * world_size
        self.repeat = repeat
        self.batch_size = batch_size
        self.full_batches = self.num_samples // batch_size
        if repeat > 1 and self.full_batches == 0:
            raise ValueError(
                f"ResumableSampler: {self.num_samples} samples per rank make no full batch of {batch_size} "
                "(repeated batches must be full): lower the batch size or add data"
            )

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=g).tolist()
        else:
            order = list(range(self.dataset_size))
        order += order[: self.total_size - len(order)]
        return order[self.rank : self.total_size : self.num_replicas]

    def _stream(self) -> list[tuple[int, int]]:
        """``(index, serve)`` of this rank's epoch, batches repeated ``repeat`` times."""
        order = self._order()
        if self.repeat == 1:
            return [(i, 0) for i in order]
        b = self.batch_size
        return [
            (i, serve)
            for start in range(0, self.full_batches * b, b)
            for serve in range(self.repeat)
            for i in order[start : start + b]
        ]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        stream, epoch = self._stream(), self.epoch
        for i in range(self.position, len(stream)):
            index, serve = stream[i]
            yield (index, epoch, i + 1) if self.repeat == 1 else (index, epoch, i + 1, serve)
        self.position = 0
        self.epoch = epoch + 1

    def __len__(self) -> int:
        # The whole epoch, also when resuming mid-epoch: Lightning restores how many batches of
        # the epoch are done and stops the epoch at len(loader), so the length must not shrink.
        if self.repeat == 1:
            return self.num_samples
        return self.full_batches * self.batch_size * self.repeat

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at each epoch start; a resumed position in the same epoch is kept."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0

    def state_dict(self) -> dict:
        """Where the next iteration starts (the datamodule saves the *consumed* ticket instead)."""
        return {
            "epoch": self.epoch, "position": self.position, "seed": self.seed, "size": self.dataset_size,
            "repeat": self.repeat, "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("size", self.dataset_size) != self.dataset_size:
            raise ValueError(
                f"cannot resume the training order: checkpoint has {state['size']} samples, dataset has "
                f"{self.dataset_size}"
            )
        if self.repeat > 1 or state.get("repeat", 1) > 1:
            saved = (state.get("repeat", 1), state.get("batch_size", self.batch_size))
            if saved != (self.repeat, self.batch_size):
                raise ValueError(
                    f"cannot resume the training order: checkpoint serves batches of {saved[1]} {saved[0]} time(s) "
                    f"each, this run {self.batch_size} {self.repeat} time(s) (batch size, steps_per_generation "
                    "or num_iterations changed)"
                )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.seed = int(state.get("seed", self.seed))


def serve_of(ticket: tuple[int, ...] | None) -> int:
    """Which serve of its batch a ticket belongs to (0 for plain tickets and ``None``).

    >>> serve_of((4, 0, 7)), serve_of((4, 0, 7, 2)), serve_of(None)
    (0, 2, 0)
    """
    return int(ticket[3]) if ticket is not None and len(ticket) > 3 else 0
