"""Zero-shot splits and the rare/non-rare split computed from training data.

Zero-shot training (GEN-VLKT, HOICLIP protocol): the model never sees a class of the
``unseen`` list during training, and is tested on all classes. :func:`apply_zero_shot`:

* ``split="train"``: drops every pair of an unseen class, then every box that only those pairs
  used (so an unseen object's boxes do not leak into training samples); an image left without
  pairs that had some before is dropped, counted in :attr:`HOIDataset.skipped` and logged.
  Images that had no pairs to begin with are kept.
* ``split="test"``: the samples are unchanged.

In both cases the unseen list travels with the dataset (:attr:`HOIDataset.unseen`), so the
metric can report Unseen / Seen.

Rare classes: HICO-DET calls a class rare when it has fewer than 10 training pairs;
:func:`rare_from_training` recomputes that set from any training split.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Iterable, Literal

import numpy as np

from hoi_r1.readers.records import HOIDataset
from hoi_r1.sample import HOISample
from hoi_r1.vocab import RARE_THRESHOLD, HOIVocabulary

logger = logging.getLogger(__name__)


def apply_zero_shot(
    dataset: HOIDataset, setting_or_ids: str | Iterable[int], split: Literal["train", "test"]
) -> HOIDataset:
    """Hold out the unseen classes of a zero-shot setting.

    Args:
        dataset: the split as read.
        setting_or_ids: a setting name of ``dataset.vocab.zero_shot`` (HICO-DET: ``rare_first``,
            ``non_rare_first``, ``unseen_object``, ``unseen_verb``) or the unseen class ids.
        split: ``"train"`` removes the unseen classes; ``"test"`` keeps every sample.

    Returns:
        A new dataset with ``unseen`` set (and, for training, the filtered samples).
    """
    unseen = _unseen_ids(dataset.vocab, setting_or_ids)
    if split == "test":
        return replace(dataset, unseen=unseen)
    if split != "train":
        raise ValueError(f"split must be 'train' or 'test', found {split!r}")
    held_out = np.asarray(unseen, dtype=np.int64)
    samples, dropped = [], 0
    for sample in dataset.samples:
        keep = ~np.isin(sample.hoi_ids, held_out)
        if keep.all():
            samples.append(sample)
        elif keep.any():
            samples.append(_drop_unused_boxes(sample, keep))
        else:
            dropped += 1
    logger.info(
        "zero-shot %s: %d unseen classes removed from %s; %d images left without pairs were dropped",
        setting_or_ids if isinstance(setting_or_ids, str) else "custom",
        len(unseen),
        dataset.source,
        dropped,
    )
    return replace(dataset, samples=samples, skipped=dataset.skipped + dropped, unseen=unseen)


def rare_from_training(train: HOIDataset, threshold: int = RARE_THRESHOLD) -> HOIVocabulary:
    """The vocabulary with its rare set recomputed from a training split: every class with
    fewer than ``threshold`` annotated pairs (classes without pairs included)."""
    return train.vocab.with_rare_from_counts(train.pair_counts(), threshold)


def _unseen_ids(vocab: HOIVocabulary, setting_or_ids: str | Iterable[int]) -> tuple[int, ...]:
    if isinstance(setting_or_ids, str):
        return tuple(sorted(vocab.unseen(setting_or_ids)))
    ids = sorted({int(i) for i in setting_or_ids})
    bad = [i for i in ids if not 0 <= i < vocab.num_classes]
    if bad:
        raise ValueError(f"unseen class ids {bad[:5]} are out of range [0, {vocab.num_classes - 1}]")
    return tuple(ids)


def _drop_unused_boxes(sample: HOISample, keep: np.ndarray) -> HOISample:
    """Keep the pairs in ``keep``; drop the boxes that only the removed pairs used."""
    removed = sample.pairs[~keep]
    kept = sample.pairs[keep]
    keep_h = ~np.isin(np.arange(len(sample.human_boxes)), np.setdiff1d(removed[:, 0], kept[:, 0]))
    keep_o = ~np.isin(np.arange(len(sample.object_boxes)), np.setdiff1d(removed[:, 1], kept[:, 1]))
    new_h = np.cumsum(keep_h) - 1
    new_o = np.cumsum(keep_o) - 1
    pairs = kept.copy()
    pairs[:, 0] = new_h[kept[:, 0]]
    pairs[:, 1] = new_o[kept[:, 1]]
    return replace(
        sample,
        human_boxes=sample.human_boxes[keep_h],
        object_boxes=sample.object_boxes[keep_o],
        object_labels=sample.object_labels[keep_o],
        pairs=pairs,
    )
