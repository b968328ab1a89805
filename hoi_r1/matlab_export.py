"""Write detections for the official HICO-DET MATLAB evaluation.

Layout, as the official evaluation reads it (``evaluation/eval_one.m`` and
``VOCevaldet_bboxpair.m`` of ywchao/ho-rcnn, the code released with HICO-DET):

* ``format = 'all'``: one ``detections.mat`` holding ``all_boxes``, a cell array of size
  ``num_classes x num_images`` (classes in ``list_action`` order, images in ``bbox_test`` order);
* ``format = 'obj'``: one ``detections_XX.mat`` per object (``XX`` = 2-digit, 1-based position
  of the object in the COCO category order), its ``all_boxes`` holding only that object's
  classes (rows in ``list_action`` order);
* every cell is an ``N x 9`` double matrix, one detection per row:
  ``[human x1 y1 x2 y2, object x1 y1 x2 y2, score]``; empty cells are ``0 x 9``;
* boxes are **0-based**: the evaluation adds 1 on load (``det_bb = det_bb + 1``) and compares
  with the 1-based ``anno_bbox.mat`` boxes. With ``boxes_one_based=True`` (boxes read from
  ``anno_bbox.mat`` or the 1-based ``test_hico.json``) 1 is subtracted here, so MATLAB sees the
  same numbers as :class:`~hoi_r1.metric.HOIMeanAveragePrecision`'s ``hico_official`` protocol.

``round_boxes`` rounds coordinates to whole pixels (as detectors on the MATLAB side produce);
left off, the numbers are written unchanged and both evaluations compare the same boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from hoi_r1.vocab import HOIVocabulary

Layout = Literal["all", "per_object"]


def write_matlab_detections(
    preds: Sequence[Mapping[str, Any]],
    num_images: int,
    vocab: HOIVocabulary,
    out_dir: str | Path,
    *,
    layout: Layout = "all",
    boxes_one_based: bool = True,
    round_boxes: bool = False,
) -> list[Path]:
    """Write the ``all_boxes`` file(s) and return their paths.

    Args:
        preds: metric-input prediction dicts; ``image_id`` is the image's 0-based position in
            the test list (``bbox_test`` order; the readers number images this way).
        num_images: number of test images (columns of ``all_boxes``).
        vocab: the vocabulary (class order = ``list_action`` order).
        out_dir: folder to write into (created if needed).
        layout: ``all`` (``detections.mat``) or ``per_object`` (``detections_XX.mat``).
        boxes_one_based: the boxes are 1-based pixels; subtract 1 before writing.
        round_boxes: round coordinates to whole pixels.
    """
    from scipy.io import savemat

    if layout not in ("all", "per_object"):
        raise ValueError(f"layout must be 'all' or 'per_object', found {layout!r}")
    cells = _cells(preds, num_images, vocab.num_classes, boxes_one_based, round_boxes)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if layout == "all":
        path = out_dir / "detections.mat"
        savemat(path, {"all_boxes": cells})
        return [path]
    paths = []
    class_objects = [o for _, o in vocab.interactions]
    for position, obj in enumerate(coco_object_order(vocab), start=1):
        rows = [k for k, o in enumerate(class_objects) if o == obj]
        if not rows:
            continue
        path = out_dir / f"detections_{position:02d}.mat"
        savemat(path, {"all_boxes": cells[rows]})
        paths.append(path)
    return paths


def coco_object_order(vocab: HOIVocabulary) -> list[int]:
    """Object ids in COCO category order (ascending COCO-91 id); the vocabulary order when it
    has no COCO ids."""
    if vocab.coco91_ids:
        return sorted(range(len(vocab.objects)), key=lambda o: vocab.coco91_ids[o])
    return list(range(len(vocab.objects)))


def _cells(
    preds: Sequence[Mapping[str, Any]], num_images: int, num_classes: int, one_based: bool, rounded: bool
) -> np.ndarray:
    """``(num_classes, num_images)`` object array of ``(N, 9)`` float64 matrices."""
    cells = np.empty((num_classes, num_images), dtype=object)
    empty = np.zeros((0, 9))
    for k in range(num_classes):
        for i in range(num_images):
            cells[k, i] = empty
    for index, p in enumerate(preds):
        image = int(p["image_id"])
        if not 0 <= image < num_images:
            raise ValueError(f"preds[{index}]: image_id {image} is outside [0, {num_images})")
        rows = np.concatenate([
            np.asarray(p["human_boxes"], dtype=np.float64).reshape(-1, 4),
            np.asarray(p["object_boxes"], dtype=np.float64).reshape(-1, 4),
            np.asarray(p["scores"], dtype=np.float64).reshape(-1, 1),
        ], axis=1)
        if rounded:
            rows[:, :8] = np.round(rows[:, :8])
        if one_based:
            rows[:, :8] -= 1.0
        classes = np.asarray(p["hoi"], dtype=np.int64).reshape(-1)
        if len(classes) != len(rows):
            raise ValueError(f"preds[{index}]: {len(classes)} classes for {len(rows)} detections")
        if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"preds[{index}]: class ids must lie in [0, {num_classes})")
        for k in np.unique(classes):
            cells[k, image] = np.concatenate([cells[k, image], rows[classes == k]])
    return cells
