"""The MATLAB detection export reads back with scipy and holds what was written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import loadmat

from hoi_r1.matlab_export import coco_object_order, write_matlab_detections
from hoi_r1.vocab import HOIVocabulary


def preds():
    return [
        {"image_id": 0, "human_boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 9.0, 9.0]]),
         "object_boxes": torch.tensor([[10.0, 11.0, 50.0, 60.0], [7.0, 7.0, 20.0, 20.0]]),
         "hoi": torch.tensor([16, 16]), "scores": torch.tensor([0.9, 0.4], dtype=torch.float64),
         "object_labels": torch.tensor([0, 0])},
        {"image_id": 2, "human_boxes": torch.tensor([[3.4, 4.6, 8.5, 9.5]], dtype=torch.float64),
         "object_boxes": torch.tensor([[1.0, 1.0, 2.0, 2.0]]), "hoi": torch.tensor([599]),
         "scores": torch.tensor([0.25], dtype=torch.float64), "object_labels": torch.tensor([0])},
    ]


def test_all_layout_reads_back(tmp_path):
    vocab = HOIVocabulary.hico_det()
    [path] = write_matlab_detections(preds(), 3, vocab, tmp_path)
    all_boxes = loadmat(path)["all_boxes"]
    assert all_boxes.shape == (600, 3)
    np.testing.assert_array_equal(all_boxes[16, 0], [[0, 1, 29, 39, 9, 10, 49, 59, 0.9],
                                                     [4, 4, 8, 8, 6, 6, 19, 19, 0.4]])
    np.testing.assert_allclose(all_boxes[599, 2], [[2.4, 3.6, 7.5, 8.5, 0, 0, 1, 1, 0.25]], rtol=0, atol=1e-12)
    assert all_boxes[16, 1].size == 0 and all_boxes[0, 0].size == 0
    nonempty = sum(all_boxes[k, i].size > 0 for k in range(600) for i in range(3))
    assert nonempty == 2


def test_rounding_and_zero_based_options(tmp_path):
    vocab = HOIVocabulary.hico_det()
    [path] = write_matlab_detections(preds(), 3, vocab, tmp_path, round_boxes=True, boxes_one_based=False)
    cell = loadmat(path)["all_boxes"][599, 2]
    np.testing.assert_array_equal(cell, [[3, 5, 8, 10, 1, 1, 2, 2, 0.25]])  # numpy rounds half to even


def test_per_object_layout(tmp_path):
    vocab = HOIVocabulary.hico_det()
    paths = write_matlab_detections(preds(), 3, vocab, tmp_path, layout="per_object")
    assert len(paths) == 80
    order = coco_object_order(vocab)
    assert vocab.objects[order[0]] == "person" and vocab.objects[order[1]] == "bicycle"
    obj = vocab.interactions[16][1]  # ride bicycle -> the bicycle file
    position = order.index(obj) + 1
    cell_rows = [k for k, (_, o) in enumerate(vocab.interactions) if o == obj]
    all_boxes = loadmat(tmp_path / f"detections_{position:02d}.mat")["all_boxes"]
    assert all_boxes.shape == (len(cell_rows), 3)
    np.testing.assert_array_equal(all_boxes[cell_rows.index(16), 0][:, 8], [0.9, 0.4])


def test_bad_image_id(tmp_path):
    with pytest.raises(ValueError, match=r"preds\[1\]: image_id 2"):
        write_matlab_detections(preds(), 2, HOIVocabulary.hico_det(), tmp_path)
