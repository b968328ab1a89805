"""The one internal per-image format every reader produces and every consumer reads.

Boxes are ``xyxy`` float64 in pixels of the original image; object
labels, verbs and interaction (HOI class) ids index a :class:`~hoi_r1.vocab.HOIVocabulary`.
A person that is the *object* of an interaction (``hug person``) appears in ``object_boxes``
with the ``person`` object id.

>>> s = HOISample(
...     image_id=0, file_name="a.jpg", image_path="imgs/a.jpg", width=64, height=48,
...     human_boxes=[[1, 2, 20, 40]], object_boxes=[[25, 30, 40, 45]], object_labels=[3],
...     pairs=[[0, 0, 5, 17]])
>>> s.num_pairs, s.hoi_ids.tolist()
(1, [17])
>>> s.pair_boxes()[0].tolist()
[[1.0, 2.0, 20.0, 40.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

PAIR_FIELDS = ("human", "object", "verb", "hoi")
"""Columns of :attr:`HOISample.pairs`: human index, object index, verb id, interaction id."""


@dataclass(frozen=True, eq=False)
class HOISample:
    """Annotations of one image.

    Args:
        image_id: index of the image in its split (stable, used by the metric to drop duplicates).
        file_name: name of the image file as the annotation file gives it.
        image_path: path of the image file on disk (``image_root / file_name``).
        width: original image width in pixels (0: unknown, read without image sizes).
        height: original image height in pixels (0: unknown).
        human_boxes: ``(H, 4)`` human boxes, xyxy, original pixels.
        object_boxes: ``(O, 4)`` object boxes, xyxy, original pixels.
        object_labels: ``(O,)`` object id of each object box.
        pairs: ``(P, 4)`` rows ``(human index, object index, verb id, interaction id)``.
    """

    image_id: int
    file_name: str
    image_path: str
    width: int
    height: int
    human_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    object_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    object_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "human_boxes", _as_array(self.human_boxes, np.float64, (4,)))
        set_(self, "object_boxes", _as_array(self.object_boxes, np.float64, (4,)))
        set_(self, "object_labels", _as_array(self.object_labels, np.int64, ()))
        set_(self, "pairs", _as_array(self.pairs, np.int64, (4,)))
        if len(self.object_labels) != len(self.object_boxes):
            raise ValueError(
                f"{self.file_name}: {len(self.object_boxes)} object boxes but {len(self.object_labels)} labels"
            )

    @property
    def num_pairs(self) -> int:
        return len(self.pairs)

    @property
    def hoi_ids(self) -> np.ndarray:
        return self.pairs[:, 3]

    @property
    def verb_ids(self) -> np.ndarray:
        return self.pairs[:, 2]

    def pair_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(P, 4)`` human boxes and ``(P, 4)`` object boxes of each pair."""
        return self.human_boxes[self.pairs[:, 0]], self.object_boxes[self.pairs[:, 1]]

    def pair_object_labels(self) -> np.ndarray:
        """``(P,)`` object id of each pair."""
        return self.object_labels[self.pairs[:, 1]]

    def grouped_pairs(self) -> list[tuple[int, int, list[int]]]:
        """Distinct (human, object) pairs with their verb ids, in first-seen order — the unit of
        one answer element (one human box, one object box, a list of verbs)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for h, o, v, _ in self.pairs.tolist():
            verbs = groups.setdefault((h, o), [])
            if v not in verbs:
                verbs.append(v)
        return [(h, o, verbs) for (h, o), verbs in groups.items()]

    def with_pairs(self, keep: Sequence[bool] | np.ndarray) -> "HOISample":
        """A copy keeping only the pairs where ``keep`` is true (boxes are kept as they are)."""
        return replace(self, pairs=self.pairs[np.asarray(keep, dtype=bool)])


def _as_array(value, dtype, tail: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.size == 0:
        return arr.reshape((0, *tail))
    if arr.shape[1:] != tail:
        raise ValueError(f"expected shape (N, {', '.join(map(str, tail))}), found {arr.shape}")
    return arr
