"""HICO-DET readers: PPDM/QPIC JSON, the official .mat layout, and their agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from hoi_r1.readers import BadRecordError, read_annotations
from hoi_r1.readers.hico_det import read_validity_npy, write_hico_json, write_validity_npy
from hoi_r1.readers.hico_mat import read_hico_mat, write_hico_mat
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

HICO = HOIVocabulary.hico_det()


def cls(verb: str, obj: str) -> tuple[int, int, int]:
    v, o = HICO.verb_id(verb), HICO.object_id(obj)
    return v, o, HICO.interaction_id(v, o)


def hico_samples() -> list[HOISample]:
    """Canonical samples: distinct boxes, every box used, numbered in order of first use."""
    ride_v, bike, ride = cls("ride", "bicycle")
    hold_v, _, hold = cls("hold", "bicycle")
    hug_v, person, hug = cls("hug", "person")
    eat_v, pizza, eat = cls("eat", "pizza")
    a = HOISample(
        image_id=0, file_name="HICO_a.jpg", image_path="", width=640, height=480,
        human_boxes=[[10, 20, 200, 400], [300, 30, 420, 410]],
        object_boxes=[[50, 200, 260, 470], [305, 35, 418, 400]],
        object_labels=[bike, person],
        pairs=[[0, 0, ride_v, ride], [0, 0, hold_v, hold], [1, 0, ride_v, ride], [0, 1, hug_v, hug]],
    )
    b = HOISample(
        image_id=1, file_name="HICO_b.jpg", image_path="", width=320, height=240,
        human_boxes=[[0, 0, 99.5, 120]], object_boxes=[[40, 60, 80, 100]], object_labels=[pizza],
        pairs=[[0, 0, eat_v, eat]],
    )
    empty = HOISample(image_id=2, file_name="HICO_c.jpg", image_path="", width=50, height=60)
    return [a, b, empty]


def assert_same(got: list[HOISample], want: list[HOISample]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g.file_name, g.width, g.height) == (w.file_name, w.width, w.height)
        np.testing.assert_array_equal(g.human_boxes, w.human_boxes)
        np.testing.assert_array_equal(g.object_boxes, w.object_boxes)
        np.testing.assert_array_equal(g.object_labels, w.object_labels)
        np.testing.assert_array_equal(g.pairs, w.pairs)


# --------------------------------------------------------------------- PPDM/QPIC JSON
@pytest.mark.parametrize("with_hoi_category", [True, False])
def test_json_round_trip(tmp_path, with_hoi_category):
    samples = hico_samples()
    path = write_hico_json(samples, HICO, tmp_path / "train.json", with_hoi_category=with_hoi_category)
    ds = read_annotations(path)
    assert_same(ds.samples, samples)
    assert ds.vocab == HICO and ds.skipped == 0
    assert [s.image_id for s in ds.samples] == [0, 1, 2]
    assert ds.samples[0].image_path == str(tmp_path / "HICO_a.jpg")
    assert not (tmp_path / "vocabulary.json").exists()
    rows = json.loads(path.read_text())[0]
    assert rows["annotations"][0]["category_id"] == 1  # person
    assert rows["annotations"][2]["category_id"] == 2  # bicycle, COCO-91 id
    assert ("hoi_category_id" in rows["hoi_annotation"][0]) == with_hoi_category


def test_typed_and_per_record_roads_read_the_same_samples(tmp_path, monkeypatch):
    """A well-formed file takes the typed road (no per-record checks run) and gives exactly the
    per-record road's samples: the canonical samples, with and without sizes and class ids."""
    import hoi_r1.readers.hico_det as hico_det

    samples = hico_samples()
    for with_hoi_category in (True, False):
        path = write_hico_json(samples, HICO, tmp_path / "train.json", with_hoi_category=with_hoi_category)
        per_record = hico_det.read_hico_json(path, records=json.loads(path.read_text()))
        with monkeypatch.context() as m:
            m.setattr(hico_det, "_read_record", lambda *a, **k: pytest.fail("the typed road was not taken"))
            typed = read_annotations(path)
        assert_same(typed.samples, per_record.samples)
        assert [(s.image_id, s.image_path) for s in typed.samples] == [(s.image_id, s.image_path) for s in per_record.samples]
    records = json.loads(path.read_text())
    for r in records:
        r.pop("width"), r.pop("height")
    path.write_text(json.dumps(records))
    unsized = read_annotations(path, read_image_sizes=False)  # no image files here: sizes unknown
    assert [(s.width, s.height) for s in unsized.samples] == [(0, 0)] * 3
    for got, want in zip(unsized.samples, samples):
        np.testing.assert_array_equal(got.human_boxes, want.human_boxes)
        np.testing.assert_array_equal(got.pairs, want.pairs)


def test_json_keeps_coordinates_as_written(tmp_path):
    # test_hico.json holds 1-based values: the reader must not shift them
    record = {
        "file_name": "t.jpg", "width": 9, "height": 9,
        "annotations": [{"bbox": [1, 1, 5, 6], "category_id": 1}, {"bbox": [2.5, 3, 9, 9], "category_id": 2}],
        "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": HICO.verb_id("ride") + 1}],
    }
    (tmp_path / "test.json").write_text(json.dumps([record]))
    s = read_annotations(tmp_path / "test.json").samples[0]
    assert s.human_boxes.tolist() == [[1, 1, 5, 6]] and s.object_boxes.tolist() == [[2.5, 3, 9, 9]]
    assert s.pairs.tolist() == [[0, 0, HICO.verb_id("ride"), cls("ride", "bicycle")[2]]]


def test_json_annotation_both_subject_and_object_and_unreferenced(tmp_path):
    hug = HICO.verb_id("hug")
    record = {
        "file_name": "t.jpg", "width": 9, "height": 9,
        "annotations": [
            {"bbox": [0, 0, 4, 4], "category_id": 1},
            {"bbox": [5, 5, 8, 8], "category_id": 1},
            {"bbox": [1, 1, 2, 2], "category_id": 1},  # a person nobody references
            {"bbox": [3, 3, 4, 4], "category_id": 2},  # a bicycle nobody references
        ],
        "hoi_annotation": [
            {"subject_id": 0, "object_id": 1, "category_id": hug + 1},
            {"subject_id": 1, "object_id": 0, "category_id": hug + 1},
        ],
    }
    (tmp_path / "a.json").write_text(json.dumps([record]))
    s = read_annotations(tmp_path / "a.json").samples[0]
    person, bike = HICO.object_id("person"), HICO.object_id("bicycle")
    assert s.human_boxes.tolist() == [[0, 0, 4, 4], [5, 5, 8, 8], [1, 1, 2, 2]]
    assert s.object_boxes.tolist() == [[0, 0, 4, 4], [5, 5, 8, 8], [3, 3, 4, 4]]
    assert s.object_labels.tolist() == [person, person, bike]
    hug_person = HICO.interaction_id(hug, person)
    assert s.pairs.tolist() == [[0, 1, hug, hug_person], [1, 0, hug, hug_person]]


def test_json_size_from_image_header(tmp_path):
    Image.new("RGB", (37, 21)).save(tmp_path / "img.png")
    (tmp_path / "a.json").write_text(json.dumps([{"file_name": "img.png", "annotations": [], "hoi_annotation": []}]))
    s = read_annotations(tmp_path / "a.json").samples[0]
    assert (s.width, s.height) == (37, 21)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (5, 7)).save(images / "img.png")
    s = read_annotations(tmp_path / "a.json", image_root=images).samples[0]
    assert (s.width, s.height, s.image_path) == (5, 7, str(images / "img.png"))


def test_json_non_hico_vocabulary_travels(tmp_path):
    vocab = HOIVocabulary(
        name="toy", verbs=("ride", "hold"), objects=("person", "horse", "cup"),
        interactions=((0, 1), (1, 1), (1, 2)), rare=frozenset({2}),
    )
    sample = HOISample(
        image_id=0, file_name="x.jpg", image_path="", width=10, height=10,
        human_boxes=[[0, 0, 5, 5]], object_boxes=[[1, 1, 9, 9], [2, 2, 3, 3]], object_labels=[1, 2],
        pairs=[[0, 0, 0, 0], [0, 1, 1, 2]],
    )
    write_hico_json([sample], vocab, tmp_path / "train.json")
    assert json.loads((tmp_path / "train.json").read_text())[0]["annotations"][2]["category_id"] == 3  # obj + 1
    ds = read_annotations(tmp_path / "train.json")
    assert ds.vocab == vocab
    assert_same(ds.samples, [sample])


def test_json_hoi_category_must_agree_with_verb_and_object(tmp_path):
    samples = hico_samples()[1:2]
    path = write_hico_json(samples, HICO, tmp_path / "a.json")
    data = json.loads(path.read_text())
    data[0]["hoi_annotation"][0]["hoi_category_id"] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(BadRecordError, match=r"a\.json: record 0: hoi_annotation\[0\]\.hoi_category_id .* disagrees"):
        read_annotations(path)


def test_validity_npy(tmp_path):
    write_validity_npy(HICO, tmp_path / "corre_hico.npy")
    raw = np.load(tmp_path / "corre_hico.npy")
    assert raw.shape == (117, 80) and raw.sum() == 600
    # columns are in COCO-80 order: column 0 is person (COCO-91 id 1), column 1 bicycle
    assert raw[HICO.verb_id("hug"), 0] == 1 and raw[HICO.verb_id("ride"), 1] == 1
    assert raw[HICO.verb_id("ride"), 0] == 0
    valid = read_validity_npy(tmp_path / "corre_hico.npy", HICO)
    assert {(int(v), int(o)) for v, o in zip(*np.nonzero(valid))} == set(HICO.interactions)


# --------------------------------------------------------------------- official .mat
@pytest.mark.parametrize("split", ["train", "test"])
def test_mat_and_json_written_from_same_samples_read_the_same(tmp_path, split):
    samples = hico_samples()
    write_hico_json(samples, HICO, tmp_path / "a.json")
    write_hico_mat(samples, HICO, tmp_path / "anno_bbox.mat", split)
    from_json = read_annotations(tmp_path / "a.json")
    from_mat = read_annotations(tmp_path / "anno_bbox.mat", split=split)
    assert_same(from_mat.samples, from_json.samples)
    assert_same(from_mat.samples, samples)
    assert [s.image_path for s in from_mat.samples] == [s.image_path for s in from_json.samples]


def test_mat_coordinates_are_one_based_in_the_file(tmp_path):
    samples = hico_samples()[1:2]
    write_hico_mat(samples, HICO, tmp_path / "anno_bbox.mat", "test")
    from scipy.io import loadmat

    raw = loadmat(tmp_path / "anno_bbox.mat", squeeze_me=True, struct_as_record=False)["bbox_test"]
    human = raw.hoi.bboxhuman
    assert (human.x1, human.y1, human.x2, human.y2) == (1, 1, 100.5, 121)
    kept = read_hico_mat(tmp_path / "anno_bbox.mat", "test", zero_based=False).samples[0]
    assert kept.human_boxes.tolist() == [[1, 1, 100.5, 121]]


def _box(x1, y1, x2, y2):
    return {"x1": float(x1), "x2": float(x2), "y1": float(y1), "y2": float(y2)}


def _struct_array(rows: list[dict]) -> np.ndarray:
    keys = list(rows[0]) if rows else ["x1", "x2", "y1", "y2"]
    out = np.empty((1, len(rows)), dtype=[(k, "O") for k in keys])
    for i, row in enumerate(rows):
        out[0, i] = tuple(row[k] for k in keys)
    return out


def _official_mat(path, hois: list[dict], extra: dict | None = None) -> None:
    size = _struct_array([{"width": 100.0, "height": 80.0, "depth": 3.0}])
    hoi = _struct_array(hois)
    image = _struct_array([{"filename": "HICO_test2015_00000001.jpg", "size": size, "hoi": hoi}])
    savemat(path, {"bbox_test": image, **(extra or {})})


def test_mat_shared_boxes_are_merged_and_invisible_hois_skipped(tmp_path):
    ride_v, bike, ride = cls("ride", "bicycle")
    hold_v, _, hold = cls("hold", "bicycle")
    _, _, no_int = cls("no_interaction", "bicycle")
    h1, h2, o1 = _box(11, 21, 51, 71), _box(61, 21, 91, 71), _box(31, 41, 81, 79)
    hois = [
        {"id": float(ride + 1), "bboxhuman": _struct_array([h1, h2]), "bboxobject": _struct_array([o1]),
         "connection": np.array([[1.0, 1.0], [2.0, 1.0]]), "invis": 0.0},
        # the same human and bicycle again, listed under another class
        {"id": float(hold + 1), "bboxhuman": _struct_array([h1]), "bboxobject": _struct_array([o1]),
         "connection": np.array([[1.0, 1.0]]), "invis": 0.0},
        {"id": float(no_int + 1), "bboxhuman": np.zeros((0, 0)), "bboxobject": np.zeros((0, 0)),
         "connection": np.zeros((0, 0)), "invis": 1.0},
    ]
    _official_mat(tmp_path / "anno_bbox.mat", hois)
    s = read_annotations(tmp_path / "anno_bbox.mat", split="test").samples[0]
    assert (s.width, s.height, s.file_name) == (100, 80, "HICO_test2015_00000001.jpg")
    assert s.human_boxes.tolist() == [[10, 20, 50, 70], [60, 20, 90, 70]]
    assert s.object_boxes.tolist() == [[30, 40, 80, 78]] and s.object_labels.tolist() == [bike]
    assert s.pairs.tolist() == [[0, 0, ride_v, ride], [1, 0, ride_v, ride], [0, 0, hold_v, hold]]


def test_mat_list_action_must_match_vocabulary(tmp_path):
    samples = hico_samples()[1:2]
    write_hico_mat(samples, HICO, tmp_path / "anno_bbox.mat", "train")
    other = HOIVocabulary(name="toy", verbs=HICO.verbs, objects=HICO.objects, interactions=HICO.interactions[:5])
    with pytest.raises(BadRecordError, match="list_action has 600 classes, the vocabulary 5"):
        read_hico_mat(tmp_path / "anno_bbox.mat", "train", vocab=other)


@pytest.mark.parametrize(
    "hoi, problem",
    [
        ({"id": 601.0}, r"hoi\[0\]\.id = 601 is out of range \[1, 600\]"),
        ({"connection": np.array([[2.0, 1.0]])}, r"hoi\[0\]\.connection\[0\] human index = 2 is out of range"),
        ({"bboxhuman": _struct_array([_box(50, 1, 10, 9)])}, r"hoi\[0\]\.bboxhuman\[0\] has x2 < x1"),
        ({"bboxobject": _struct_array([_box(1, 1, np.inf, 9)])}, r"hoi\[0\]\.bboxobject\[0\] has a non-finite value"),
        ({"connection": np.array([[1.0, 1.0, 1.0]])}, r"hoi\[0\]\.connection must have shape \(K, 2\)"),
    ],
)
def test_mat_bad_records(tmp_path, hoi, problem):
    row = {"id": 1.0, "bboxhuman": _struct_array([_box(1, 1, 9, 9)]), "bboxobject": _struct_array([_box(2, 2, 8, 8)]),
           "connection": np.array([[1.0, 1.0]]), "invis": 0.0}
    _official_mat(tmp_path / "anno_bbox.mat", [{**row, **hoi}])
    with pytest.raises(BadRecordError, match=r"anno_bbox\.mat: record 0: " + problem):
        read_annotations(tmp_path / "anno_bbox.mat", split="test")
    ds = read_annotations(tmp_path / "anno_bbox.mat", split="test", on_bad_record="skip")
    assert ds.samples == [] and ds.skipped == 1


def test_mat_whole_file_problems(tmp_path):
    with pytest.raises(BadRecordError, match="does not exist"):
        read_annotations(tmp_path / "missing.mat", split="test")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(BadRecordError, match=r"junk\.mat: not a readable MATLAB file"):
        read_annotations(tmp_path / "junk.mat", split="test")
    write_hico_mat(hico_samples(), HICO, tmp_path / "anno_bbox.mat", "train")
    with pytest.raises(BadRecordError, match="has no variable 'bbox_test'"):
        read_annotations(tmp_path / "anno_bbox.mat", split="test")
    with pytest.raises(ValueError, match="needs split="):
        read_annotations(tmp_path / "anno_bbox.mat")


def test_mat_list_action_names_must_match_vocabulary(tmp_path):
    write_hico_mat(hico_samples()[1:2], HICO, tmp_path / "anno_bbox.mat", "train")
    verbs = tuple("embark" if v == "board" else v for v in HICO.verbs)
    renamed = HOIVocabulary(name="toy", verbs=verbs, objects=HICO.objects, interactions=HICO.interactions)
    with pytest.raises(BadRecordError, match=r"list_action\[0\] is 'board airplane', the vocabulary says 'embark"):
        read_hico_mat(tmp_path / "anno_bbox.mat", "train", vocab=renamed)
