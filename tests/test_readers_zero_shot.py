"""Zero-shot filtering of training splits and the rare split computed from training counts."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hoi_r1.readers import HOIDataset, apply_zero_shot, rare_from_training
from hoi_r1.sample import HOISample
from hoi_r1.vocab import ZERO_SHOT_SETTINGS, HOIVocabulary

HICO = HOIVocabulary.hico_det()


def _pair(verb: str, obj: str) -> tuple[int, int]:
    v, o = HICO.verb_id(verb), HICO.object_id(obj)
    return v, HICO.interaction_id(v, o)


def dataset() -> HOIDataset:
    ride_v, ride = _pair("ride", "bicycle")
    hold_v, hold = _pair("hold", "bicycle")
    walk_v, walk = _pair("walk", "dog")
    bike, dog = HICO.object_id("bicycle"), HICO.object_id("dog")
    a = HOISample(
        image_id=0, file_name="a.jpg", image_path="", width=99, height=99,
        human_boxes=[[0, 0, 10, 10], [20, 0, 30, 10]], object_boxes=[[0, 5, 15, 20], [20, 5, 40, 30]],
        object_labels=[bike, dog], pairs=[[0, 0, ride_v, ride], [1, 1, walk_v, walk], [0, 0, hold_v, hold]],
    )
    only_dog = HOISample(
        image_id=1, file_name="b.jpg", image_path="", width=99, height=99,
        human_boxes=[[0, 0, 10, 10]], object_boxes=[[1, 1, 5, 5]], object_labels=[dog], pairs=[[0, 0, walk_v, walk]],
    )
    no_pairs = HOISample(image_id=2, file_name="c.jpg", image_path="", width=9, height=9)
    return HOIDataset(samples=[a, only_dog, no_pairs], vocab=HICO, source="test", skipped=1)


def test_train_split_drops_unseen_pairs_boxes_and_emptied_images(caplog):
    walk = _pair("walk", "dog")[1]
    with caplog.at_level(logging.INFO, logger="hoi_r1.readers.zero_shot"):
        out = apply_zero_shot(dataset(), [walk], "train")
    assert out.unseen == (walk,)
    assert [s.file_name for s in out.samples] == ["a.jpg", "c.jpg"]
    assert out.skipped == 1 + 1  # the earlier skip plus the emptied image
    a = out.samples[0]
    assert walk not in a.hoi_ids.tolist() and a.num_pairs == 2
    assert a.human_boxes.tolist() == [[0, 0, 10, 10]]  # the dog walker only took part in 'walk dog'
    assert a.object_boxes.tolist() == [[0, 5, 15, 20]] and a.object_labels.tolist() == [HICO.object_id("bicycle")]
    assert a.pairs[:, :2].tolist() == [[0, 0], [0, 0]]
    assert "1 images left without pairs were dropped" in caplog.text


def test_box_shared_with_a_seen_pair_is_kept():
    hold = _pair("hold", "bicycle")[1]
    a = apply_zero_shot(dataset(), [hold], "train").samples[0]
    assert len(a.human_boxes) == 2 and len(a.object_boxes) == 2
    np.testing.assert_array_equal(a.pair_boxes()[1], dataset().samples[0].pair_boxes()[1][:2])


def test_test_split_is_unchanged_but_carries_the_unseen_list():
    ds = dataset()
    out = apply_zero_shot(ds, "unseen_object", "test")
    assert out.samples == ds.samples and out.skipped == ds.skipped
    assert out.unseen == tuple(sorted(HICO.zero_shot["unseen_object"]))


@pytest.mark.parametrize("setting", ZERO_SHOT_SETTINGS)
def test_named_settings_remove_exactly_their_classes(setting):
    ds = dataset()
    unseen = set(HICO.zero_shot[setting])
    out = apply_zero_shot(ds, setting, "train")
    before = {int(c) for s in ds.samples for c in s.hoi_ids}
    after = {int(c) for s in out.samples for c in s.hoi_ids}
    assert after == before - unseen


def test_bad_ids_and_settings():
    with pytest.raises(ValueError, match="out of range"):
        apply_zero_shot(dataset(), [600], "train")
    with pytest.raises(KeyError, match="no zero-shot setting 'nope'"):
        apply_zero_shot(dataset(), "nope", "train")
    with pytest.raises(ValueError, match="split must be"):
        apply_zero_shot(dataset(), [1], "val")


def test_rare_from_training_counts():
    ride_v, ride = _pair("ride", "bicycle")
    bike = HICO.object_id("bicycle")
    sample = HOISample(
        image_id=0, file_name="a.jpg", image_path="", width=9, height=9,
        human_boxes=[[0, 0, 1, 1]], object_boxes=[[0, 0, 2, 2]], object_labels=[bike],
        pairs=[[0, 0, ride_v, ride]] * 10,
    )
    nine = sample.with_pairs([True] * 9 + [False])
    assert HOIDataset([sample], HICO, "t").pair_counts() == {ride: 10}
    assert ride not in rare_from_training(HOIDataset([sample], HICO, "t")).rare
    vocab = rare_from_training(HOIDataset([nine], HICO, "t"))
    assert ride in vocab.rare and len(vocab.rare) == 600
    assert len(rare_from_training(HOIDataset([sample], HICO, "t"), threshold=11).rare) == 600
