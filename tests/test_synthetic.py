"""The synthetic HOI world: relation rules, exact boxes, knobs, determinism, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoi_r1.readers import read_annotations
from hoi_r1.readers.hico_det import read_validity_npy
from hoi_r1.synthetic.relations import AMBIGUOUS, FAR, classify_relation, overlap_share
from hoi_r1.synthetic.render import COLORS, RAMP_RANGE, render_scene, shape_mask
from hoi_r1.synthetic.scene import (
    OBJECTS,
    VALID_VERBS,
    VERBS,
    Background,
    Scene,
    SyntheticWorldConfig,
    synthetic_vocabulary,
)
from hoi_r1.synthetic.scene_sampler import sample_scene
from hoi_r1.synthetic.world import generate_split, generate_world, main

PERSON = (40, 40, 64, 88)  # H = 48, W = 24, centre x = 52
SMALL = dict(num_train=10, num_test=6, num_val=3)


def _scenes(config: SyntheticWorldConfig, n: int, seed: int = 0) -> list[Scene]:
    vocab = synthetic_vocabulary()
    return [sample_scene(np.random.default_rng([seed, i]), config, range(vocab.num_classes)) for i in range(n)]


# --------------------------------------------------------------------- the relation rules
@pytest.mark.parametrize(
    "obj, expected",
    [
        ((32, 80, 72, 104), "ride"),  # feet in the object's upper part, centre line crosses it
        ((40, 24, 56, 40), "carry"),  # on top of the head, straddles the centre line
        ((32, 16, 56, 40), "carry"),  # a bigger object, off-centre but straddling the centre line
        ((64, 72, 80, 88), "kick"),  # right side, bottom level with the feet
        ((24, 72, 40, 88), "kick"),  # left side
        ((64, 56, 80, 72), "hold"),  # right side, hand height, off the ground
        ((16, 56, 40, 72), "hold"),  # left side, wider object
        ((80, 40, 96, 56), "look_at"),  # head height, 16 px gap
        ((8, 32, 24, 48), "look_at"),  # left, 16 px gap, slightly above the head top
        ((96, 40, 112, 56), "look_at"),  # 32 px gap (<= 3H/4 = 36)
        ((100, 100, 120, 120), FAR),
        ((0, 0, 16, 16), FAR),  # above-left, 24 px away
        ((40, 0, 56, 16), FAR),  # far above the head
        ((64, 24, 80, 40), AMBIGUOUS),  # touches a corner only
        ((72, 72, 88, 88), AMBIGUOUS),  # near the feet but not touching, not far
        ((64, 66, 80, 82), AMBIGUOUS),  # touching the side, bottom between off-ground and feet
        ((44, 56, 60, 72), AMBIGUOUS),  # on the torso
        ((104, 40, 120, 56), AMBIGUOUS),  # head height, 40 px gap: between look_at and far
        ((40, 20, 56, 36), AMBIGUOUS),  # floats just above the head
        ((56, 24, 72, 40), AMBIGUOUS),  # on the head top but beside the centre line
        ((48, 88, 64, 104), AMBIGUOUS),  # below the feet, touching
    ],
)
def test_relation_rules(obj, expected):
    assert classify_relation(PERSON, obj) == expected


def test_relation_is_invariant_to_a_common_shift_and_mirror():
    for obj in [(32, 80, 72, 104), (64, 56, 80, 72), (80, 40, 96, 56), (64, 72, 80, 88), (40, 24, 56, 40)]:
        expected = classify_relation(PERSON, obj)
        shift = lambda b, d: tuple(v + d for v in b)
        assert classify_relation(shift(PERSON, 8), shift(obj, 8)) == expected
        mirror = lambda b: (200 - b[2], b[1], 200 - b[0], b[3])
        assert classify_relation(mirror(PERSON), mirror(obj)) == expected


def test_overlap_share():
    assert overlap_share((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert overlap_share((0, 0, 10, 10), (5, 0, 25, 10)) == 0.5


# --------------------------------------------------------------------- vocabulary
def test_vocabulary_layout():
    v = synthetic_vocabulary()
    assert v.objects[0] == "person" and v.person == 0
    assert v.coco91_ids == tuple(range(1, len(OBJECTS) + 1))
    assert len(v.verbs) == 6 and len(v.objects) == 7
    names = {v.interaction_name(i) for i in range(v.num_classes)}
    for obj, verbs in VALID_VERBS.items():
        assert {f"{verb} {obj}" for verb in verbs} <= names
    assert len(names) == sum(len(vs) for vs in VALID_VERBS.values())
    assert all(o != 0 for _, o in v.interactions)  # no class uses person as the object
    for hoi in v.zero_shot["unseen_composition"]:
        verb, obj = v.interactions[hoi]
        others = [p for i, p in enumerate(v.interactions) if i not in v.zero_shot["unseen_composition"]]
        assert any(pv == verb for pv, _ in others) and any(po == obj for _, po in others)


# --------------------------------------------------------------------- drawing
@pytest.mark.parametrize("name", OBJECTS)
def test_every_shape_touches_all_sides_of_its_box(name):
    for w in range(4, 61, 3):
        for h in range(4, 61, 5):
            for mirrored in (False, True):
                assert shape_mask(name, w, h, mirrored).getbbox() == (0, 0, w, h), (name, w, h, mirrored)


def test_rendered_boxes_are_the_drawn_extent():
    config = SyntheticWorldConfig(occlusion=False, backgrounds=("flat",), max_people=3, max_objects=3, image_size=168)
    for scene in _scenes(config, 25):
        pixels = np.asarray(render_scene(scene))
        entities = list(scene.people) + list(scene.objects)
        covered = np.zeros(pixels.shape[:2], bool)
        for e in entities:
            x1, y1, x2, y2 = e.box
            assert 0 <= x1 < x2 <= scene.width and 0 <= y1 < y2 <= scene.height
            covered[y1:y2, x1:x2] = True
        drawn = np.any(pixels != np.asarray(scene.background.color_a, np.uint8), axis=-1)
        assert not np.any(drawn & ~covered), "a shape pixel lies outside every box"
        ridden = {o for _, o, v in scene.pairs if VERBS[v] == "ride"}
        for k, e in enumerate(entities):
            if k >= len(scene.people) and k - len(scene.people) in ridden:
                continue  # partly covered by its rider
            x1, y1, x2, y2 = e.box
            mine = np.all(pixels[y1:y2, x1:x2] == COLORS[OBJECTS[e.label]], axis=-1)
            assert mine[0].any() and mine[-1].any() and mine[:, 0].any() and mine[:, -1].any(), e


def test_backgrounds_are_deterministic_and_light():
    for style in ("flat", "noise", "gradient", "ramp"):
        bg = Background(style, (200, 210, 220), (240, 230, 190), angle=1.0, noise_seed=3)
        scene = Scene(64, 48, (), (), (), bg)
        a, b = np.asarray(render_scene(scene)), np.asarray(render_scene(scene))
        assert a.shape == (48, 64, 3) and np.array_equal(a, b)
        assert a.min() >= 150


def test_the_ramp_background_encodes_the_pixel_position():
    """Red grows from left to right and green from top to bottom, the same in every image."""
    scene = Scene(112, 84, (), (), (), Background("ramp", (0, 0, 0), (0, 0, 0)))
    a = np.asarray(render_scene(scene)).astype(int)
    assert (np.diff(a[..., 0], axis=1) >= 0).all() and (np.diff(a[..., 1], axis=0) >= 0).all()
    assert (a[:, 0, 0] == RAMP_RANGE[0]).all() and (a[:, -1, 0] == RAMP_RANGE[1]).all()
    assert (a[0, :, 1] == RAMP_RANGE[0]).all() and (a[-1, :, 1] == RAMP_RANGE[1]).all()
    assert (a[..., 0] == a[:1, :, 0]).all() and (a[..., 1] == a[:, :1, 1]).all()  # red: x only; green: y only


# --------------------------------------------------------------------- sampling and knobs
@pytest.mark.parametrize(
    "knobs",
    [
        dict(),
        dict(grid=14, image_size=140),
        dict(grid=1, occlusion=False),
        dict(image_size=168, max_people=3, max_objects=3, min_objects=2),
        dict(image_size=128, image_height=96, backgrounds=("noise",)),
    ],
)
def test_scenes_follow_the_rules_and_knobs(knobs):
    config = SyntheticWorldConfig(**knobs)
    vocab = synthetic_vocabulary()
    scenes = _scenes(config, 60)
    offgrid = 0
    for scene in scenes:
        assert (scene.width, scene.height) == (config.width, config.height)
        assert config.min_people <= len(scene.people) <= config.max_people
        assert config.min_objects <= len(scene.objects) <= config.max_objects
        assert scene.background.style in config.backgrounds
        boxes = [e.box for e in scene.people + scene.objects]
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= scene.width and 0 <= y1 < y2 <= scene.height
        coords = np.asarray(boxes)
        assert np.all(coords % config.grid == 0)
        offgrid += int(np.any(coords % 8 != 0))
        pairs = set(scene.pairs)
        for o, obj in enumerate(scene.objects):
            relations = [classify_relation(p.box, obj.box) for p in scene.people]
            assert AMBIGUOUS not in relations
            if all(r == FAR for r in relations):
                expected = {(h, o, VERBS.index("no_interaction")) for h in range(len(scene.people))}
            else:
                expected = {(h, o, VERBS.index(r)) for h, r in enumerate(relations) if r != FAR}
            assert {p for p in pairs if p[1] == o} == expected
        for h, o, verb in scene.pairs:
            assert vocab.interaction_id(verb, scene.objects[o].label) is not None
        allowed = config.max_occlusion if config.occlusion else 0.0
        for group in (scene.people, scene.objects):
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    assert overlap_share(a.box, b.box) <= allowed
        for h, person in enumerate(scene.people):
            for o, obj in enumerate(scene.objects):
                if (h, o, VERBS.index("ride")) not in pairs:
                    assert overlap_share(person.box, obj.box) <= allowed
    if config.grid == 1:
        assert offgrid > 0, "grid=1 should give coordinates off the 8-pixel grid"
    verbs = {VERBS[v] for s in scenes for _, _, v in s.pairs}
    assert len(verbs) >= 5, verbs  # the mix covers (almost) every verb even in 60 images


def test_config_rejects_bad_knobs():
    with pytest.raises(ValueError, match="min_people"):
        SyntheticWorldConfig(min_people=3, max_people=2)
    with pytest.raises(ValueError, match="grid"):
        SyntheticWorldConfig(grid=0)
    with pytest.raises(ValueError, match="backgrounds"):
        SyntheticWorldConfig(backgrounds=("stripes",))
    with pytest.raises(ValueError, match="image size"):
        SyntheticWorldConfig(image_size=32)


def test_impossible_crowd_fails_loudly():
    config = SyntheticWorldConfig(image_size=56, grid=7, min_people=3, max_people=3, min_objects=12,
                                  max_objects=12, occlusion=False, max_attempts=3)
    with pytest.raises(RuntimeError, match="no valid synthetic scene"):
        _scenes(config, 3)


# --------------------------------------------------------------------- the dataset on disk
def test_round_trip_through_read_annotations(tmp_path):
    config = SyntheticWorldConfig(**SMALL, seed=3)
    out = generate_world(tmp_path / "world", config)
    expected = {split: generate_split(tmp_path / "again", split, config) for split in ("train", "test")}
    for split in ("train", "test"):
        data = read_annotations(out / f"{split}.json", check_images=True)
        assert data.vocab.name == "synthetic" and data.skipped == 0
        assert len(data.samples) == len(expected[split]) == getattr(config, f"num_{split}")
        for got, want in zip(data.samples, expected[split]):
            assert (got.image_id, got.file_name, got.width, got.height) == (
                want.image_id, want.file_name, want.width, want.height)
            assert got.image_path == str(out / want.file_name)
            np.testing.assert_array_equal(got.human_boxes, want.human_boxes)
            np.testing.assert_array_equal(got.object_boxes, want.object_boxes)
            np.testing.assert_array_equal(got.object_labels, want.object_labels)
            np.testing.assert_array_equal(got.pairs, want.pairs)
            with Image.open(got.image_path) as image:
                assert image.size == (got.width, got.height)
            for verb, obj in zip(got.verb_ids, got.pair_object_labels()):
                assert data.vocab.interaction_id(int(verb), int(obj)) is not None
    vocab = read_annotations(out / "train.json").vocab
    assert vocab.to_dict() == json.loads((out / "vocabulary.json").read_text())
    assert SyntheticWorldConfig(**{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in json.loads((out / "world.json").read_text()).items()}) == config
    validity = read_validity_npy(out / "corre.npy", vocab)
    assert validity.sum() == vocab.num_classes
    assert all(validity[v, o] for v, o in vocab.interactions)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    config = SyntheticWorldConfig(**SMALL, seed=11)
    a = _tree(generate_world(tmp_path / "a", config))
    b = _tree(generate_world(tmp_path / "b", config))
    assert a.keys() == b.keys() and len(a) == 10 + 6 + 3 + 6  # images, 6 files (train/val/test json, ...)
    assert a == b
    c = _tree(generate_world(tmp_path / "c", SyntheticWorldConfig(**SMALL, seed=12)))
    assert c["train.json"] != a["train.json"]


def test_the_validation_split_leaves_training_and_test_scenes_alone(tmp_path):
    a = _tree(generate_world(tmp_path / "a", SyntheticWorldConfig(**{**SMALL, "num_val": 0}, seed=11)))
    b = _tree(generate_world(tmp_path / "b", SyntheticWorldConfig(**SMALL, seed=11)))
    assert {k for k in b if k.startswith("images/val/")} and not {k for k in a if k.startswith("images/val/")}
    for name in [k for k in a if k.startswith(("images/train/", "images/test/"))] + ["train.json", "test.json"]:
        assert a[name] == b[name], name
    val, test = (read_annotations(tmp_path / "b" / f"{s}.json") for s in ("val", "test"))
    assert len(val.samples) == 3 and val.samples[0].file_name.startswith("images/val/")
    assert [s.human_boxes.tolist() for s in val.samples] != [s.human_boxes.tolist() for s in test.samples[:3]]


def test_zero_shot_holdout(tmp_path):
    config = SyntheticWorldConfig(num_train=60, num_test=60, zero_shot_holdout=True, seed=5)
    out = generate_world(tmp_path, config)
    train, test = (read_annotations(out / f"{s}.json") for s in ("train", "test"))
    unseen = set(train.vocab.zero_shot["unseen_composition"])
    assert not unseen & {int(c) for s in train.samples for c in s.hoi_ids}
    assert unseen & {int(c) for s in test.samples for c in s.hoi_ids}
    assert unseen <= train.vocab.rare  # no training pair: rare by HICO-DET's definition


def test_cli_writes_a_jpeg_world(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--num-train", "4", "--num-test", "2", "--image-size", "140", "--grid", "14",
            "--seed", "2", "--image-format", "jpg", "--no-occlusion", "--backgrounds", "flat", "gradient"]
    assert main(argv) == 0
    assert "wrote 4 train + 64 val + 2 test images" in capsys.readouterr().out
    data = read_annotations(out / "train.json", check_images=True)
    assert len(data.samples) == 4 and data.samples[0].file_name.endswith(".jpg")
    assert all(np.all(s.human_boxes % 14 == 0) for s in data.samples)
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--min-people", "3", "--max-people", "1"])
