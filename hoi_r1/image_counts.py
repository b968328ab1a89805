"""Per-image counters of an evaluation, summed over the distinct images of every process.

Validation and test report more than HOI-mAP: how many answers parsed, how many pairs an image
got, how many tool calls an episode made. Under DDP each process sees its own share of the
images, so these counts are a :class:`torchmetrics.Metric` like the mAP itself
(:class:`~hoi_r1.metric.HOIMeanAveragePrecision`): ``update`` keeps one row of counter values
per image, the states are gathered from every process when ``compute`` runs, and the sums (and
the number of images) are global. Rates computed from them are the rates of the whole split.

Rows are kept per image (states reduced with ``cat``), not as running sums, for one reason:
Lightning's ``DistributedSampler`` pads an uneven split with duplicates of the first images, and
a sum cannot take them out again. ``compute`` drops repeated image ids (first occurrence kept),
the rule the mAP uses (:func:`~hoi_r1.average_precision.first_occurrences`), so 1 or N processes
count every image once. A row is a few numbers per image; a split of 10,000 images keeps well
under a megabyte.

>>> counts = ImageCounts(("parsed", "pairs"))
>>> counts.update([7, 8], {"parsed": [1, 0], "pairs": [3, 0]})
>>> counts.update([7], {"parsed": [1], "pairs": [3]})  # a padded duplicate of image 7
>>> {k: float(v) for k, v in counts.compute().items()}
{'images': 2.0, 'parsed': 1.0, 'pairs': 3.0}
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torchmetrics import Metric

from hoi_r1.average_precision import first_occurrences


class ImageCounts(Metric):
    """Counters with one value per image, summed over the distinct images of all processes.

    Args:
        keys: the counters' names; ``update`` takes one value per image for each (integers or
            booleans in practice: they are summed in float64, exact up to 2**53).
        kwargs: passed to ``torchmetrics.Metric``.

    ``compute`` returns ``images`` (distinct image ids seen) and the sum of every counter over
    those images, as 0-d float64 tensors.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    image_ids: list[torch.Tensor]
    rows: list[torch.Tensor]

    def __init__(self, keys: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keys = tuple(keys)
        if "images" in self.keys or len(set(self.keys)) != len(self.keys):
            raise ValueError(f"counter names must be distinct and not 'images', got {self.keys}")
        self.add_state("image_ids", default=[], dist_reduce_fx="cat")
        self.add_state("rows", default=[], dist_reduce_fx="cat")  # flat: one row of len(keys) per image

    def update(self, image_ids: Sequence[int], values: Mapping[str, Sequence[float]]) -> None:
        """Add one row per image.

        Args:
            image_ids: the images' ids (:attr:`hoi_r1.sample.HOISample.image_id`), unique per
                image of the split.
            values: for every counter of ``keys``, one value per image, in ``image_ids`` order.
        """
        ids = torch.as_tensor([int(i) for i in image_ids], dtype=torch.long)
        if set(values) != set(self.keys):
            raise KeyError(f"values for {sorted(values)}, expected {sorted(self.keys)}")
        rows = torch.tensor([[float(v) for v in values[k]] for k in self.keys], dtype=torch.float64)
        rows = rows.reshape(len(self.keys), -1)
        if rows.shape[1] != len(ids):
            raise ValueError(f"{len(ids)} image ids but {rows.shape[1]} values per counter")
        self.image_ids.append(ids.to(self.device))
        self.rows.append(rows.T.reshape(-1).to(self.device))  # flat, so an empty rank's default cats with it

    def compute(self) -> dict[str, torch.Tensor]:
        ids = _cat(self.image_ids).long()
        rows = _cat(self.rows).double().reshape(-1, len(self.keys))
        kept = rows[first_occurrences(ids)] if len(ids) else rows
        sums = kept.sum(dim=0)
        out = {"images": torch.tensor(float(len(kept)), dtype=torch.float64)}
        out.update({k: sums[i] for i, k in enumerate(self.keys)})
        return out


def _cat(value: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """States after a distributed sync are one tensor; before it, a (possibly empty) list."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    return torch.cat([v.cpu() for v in value]) if value else torch.zeros(0)
