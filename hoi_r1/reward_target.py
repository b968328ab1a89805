"""The reward target: what the rewards compare one completion with — the image's ground truth,
the answer's coordinate frame and the vocabulary its names are read with — and the ground-truth
pairs grouped as answer elements (a distinct (human, object) pair with its verb set, the unit
of one answer element; computed once per target).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from hoi_r1.frames import Frame
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary


@dataclass(frozen=True, eq=False)
class RewardTarget:
    """What the rewards compare one completion with.

    Args:
        sample: ground truth of the image (``None``: only ``format`` and ``keys`` apply).
        frame: coordinate frame of the answer text for this image.
        vocab: vocabulary the answer's names are read with.
    """

    sample: HOISample | None
    frame: Frame
    vocab: HOIVocabulary

    def __post_init__(self) -> None:
        s = self.sample
        if s is not None and tuple(self.frame.original_size) != (s.width, s.height):
            raise ValueError(
                f"{s.file_name}: frame original_size {tuple(self.frame.original_size)} is not the image size "
                f"{(s.width, s.height)}"
            )

    @cached_property
    def ground_truth(self) -> "GroundTruthPairs":
        """The ground-truth pairs, grouped as answer elements (computed once per target)."""
        return GroundTruthPairs.of(self.sample)


@dataclass(frozen=True)
class GroundTruthPairs:
    """Distinct (human, object) pairs of a sample with their verb sets (``G`` of them)."""

    humans: torch.Tensor  # (G, 4) original pixels
    objects: torch.Tensor  # (G, 4)
    object_labels: tuple[int, ...]
    verbs: tuple[frozenset[int], ...]

    @classmethod
    def of(cls, sample: HOISample | None) -> "GroundTruthPairs":
        groups = sample.grouped_pairs() if sample is not None else []
        humans = np.asarray([sample.human_boxes[h] for h, _, _ in groups], dtype=np.float64).reshape(-1, 4)
        objects = np.asarray([sample.object_boxes[o] for _, o, _ in groups], dtype=np.float64).reshape(-1, 4)
        return cls(
            humans=torch.from_numpy(humans),
            objects=torch.from_numpy(objects),
            object_labels=tuple(int(sample.object_labels[o]) for _, o, _ in groups),
            verbs=tuple(frozenset(v) for _, _, v in groups),
        )

    def __len__(self) -> int:
        return len(self.object_labels)
