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
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
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

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=g).tolist()
        else:
            order = list(range(self.dataset_size))
        order += order[: self.total_size - len(order)]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        order, epoch = self._order(), self.epoch
        for i in range(self.position, len(order)):
            yield order[i], epoch, i + 1
        self.position = 0
        self.epoch = epoch + 1

    def __len__(self) -> int:
        # The whole epoch, also when resuming mid-epoch: Lightning restores how many batches of
        # the epoch are done and stops the epoch at len(loader), so the length must not shrink.
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at each epoch start; a resumed position in the same epoch is kept."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0

    def state_dict(self) -> dict:
        """Where the next iteration starts (the datamodule saves the *consumed* ticket instead)."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "size": self.dataset_size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("size", self.dataset_size) != self.dataset_size:
            raise ValueError(
                f"cannot resume the training order: checkpoint has {state['size']} samples, dataset has "
                f"{self.dataset_size}"
            )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.seed = int(state.get("seed", self.seed))
