"""Bad input: every case raises BadRecordError naming the file, the record index and the
problem; on_bad_record="skip" drops the record, counts it and logs the same message."""

from __future__ import annotations

import copy
import json
import logging

import pytest
from PIL import Image

from hoi_r1.readers import BadRecordError, MissingFileError, read_annotations
from hoi_r1.readers.swig_hoi import write_swig_categories
from hoi_r1.vocab import HOIVocabulary

HICO = HOIVocabulary.hico_det()
RIDE = HICO.verb_id("ride") + 1


def hico_record(name: str = "a.jpg") -> dict:
    return {
        "file_name": name, "width": 40, "height": 30,
        "annotations": [{"bbox": [1, 2, 20, 28], "category_id": 1}, {"bbox": [15, 10, 39, 29], "category_id": 2}],
        "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": RIDE, "hoi_category_id": 19}],
    }


def swig_record(name: str = "a.jpg") -> dict:
    return {
        "file_name": name, "img_id": 3, "width": 40, "height": 30,
        "box_annotations": [
            {"bbox": [1, 2, 20, 28], "category_id": 0, "aux_category_id": []},
            {"bbox": [15, 10, 39, 29], "category_id": 1, "aux_category_id": [2]},
        ],
        "hoi_annotations": [{"subject_id": 0, "object_id": 1, "action_id": 1}],
    }


SWIG_VOCAB = HOIVocabulary(
    name="swig_hoi", verbs=("holding", "riding"), objects=("person", "horse", "cup"),
    interactions=((1, 1), (0, 2), (0, 1)), frequency=(2, 1, 0),
)


def _set(path: str, value):
    """Edit ``record`` at a dotted path (``annotations.0.bbox``); ``value=KeyError`` deletes."""

    def edit(record: dict) -> dict:
        record = copy.deepcopy(record)
        *parents, last = path.split(".")
        node = record
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        last = int(last) if last.isdigit() else last
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
        return record

    return edit


HICO_CASES = [
    (_set("file_name", KeyError), "record has no key 'file_name'"),
    (_set("annotations", "x"), "key 'annotations' must be list, found str"),
    (_set("annotations.0.bbox", [1, 2, 3]), r"annotations\[0\]\.bbox must be a list of 4 numbers"),
    (_set("annotations.0.bbox", [30, 2, 20, 28]), r"annotations\[0\]\.bbox has x2 < x1"),
    (_set("annotations.1.bbox", [1, 2, float("nan"), 28]), r"annotations\[1\]\.bbox has a non-finite value"),
    (_set("annotations.1.bbox", [1, "2", 3, 4]), r"annotations\[1\]\.bbox must hold numbers"),
    (_set("annotations.1.category_id", 12), r"annotations\[1\]\.category_id = 12 is not an object category"),
    (_set("annotations.1.category_id", True), r"key 'category_id' must be int, found bool"),
    (_set("hoi_annotation.0.object_id", 2), r"hoi_annotation\[0\]\.object_id = 2 is out of range \[0, 1\]"),
    (_set("hoi_annotation.0.subject_id", -1), r"subject_id = -1 is out of range"),
    (_set("hoi_annotation.0.category_id", 118), r"category_id = 118 is out of range \[1, 117\]"),
    (_set("hoi_annotation.0.category_id", 1.5), r"key 'category_id' must be int, found float"),
    (_set("hoi_annotation.0.hoi_category_id", 0), r"hoi_category_id = 0 is out of range \[1, 600\]"),
    (_set("hoi_annotation.0.category_id", HICO.verb_id("eat") + 1), "is not a class of 'hico_det'"),
    (_set("hoi_annotation.0", "oops"), r"hoi_annotation\[0\] must be a JSON object, found str"),
    (_set("width", "40"), "key 'width' must be int, found str"),
    (_set("height", KeyError), "record has no key 'height'"),
    (_set("width", None), "key 'width' must be int, found NoneType"),
    (_set("annotations.1.category_id", 2**70), r"annotations\[1\]\.category_id = 1180591620717411303424 is not an object category"),
    (_set("hoi_annotation.0.hoi_category_id", 20), r"hoi_category_id = 20 disagrees with \(verb, object\) class 19"),
    (_set("hoi_annotation.0.hoi_category_id", -1), r"hoi_category_id = -1 is out of range \[1, 600\]"),
    (lambda r: [r], "record must be a JSON object, found list"),
]

SWIG_CASES = [
    (_set("height", KeyError), "record has no key 'height'"),
    (_set("box_annotations.1.category_id", 3), r"box_annotations\[1\]\.category_id = 3 is out of range \[0, 2\]"),
    (_set("box_annotations.0.bbox", [1, 2, 20, float("inf")]), r"box_annotations\[0\]\.bbox has a non-finite value"),
    (_set("box_annotations.0.bbox", [1, 29, 20, 28]), r"box_annotations\[0\]\.bbox has x2 < x1 or y2 < y1"),
    (_set("hoi_annotations.0.object_id", 5), r"hoi_annotations\[0\]\.object_id = 5 is out of range"),
    (_set("hoi_annotations.0.action_id", 2), r"action_id = 2 is out of range \[0, 1\]"),
    (_set("hoi_annotations.0.action_id", KeyError), r"hoi_annotations\[0\] has no key 'action_id'"),
    (_set("box_annotations.1.category_id", 2), "action 1 with object 2 is not a SWIG-HOI interaction"),
]


def _write(tmp_path, records: list, kind: str):
    path = tmp_path / ("train.json" if kind == "hico" else "swig_train.json")
    path.write_text(json.dumps(records))
    options = {}
    if kind == "swig":
        options["categories"] = write_swig_categories(SWIG_VOCAB, tmp_path / "categories.json")
    return path, options


@pytest.mark.parametrize("kind, edit, problem", [("hico", *c) for c in HICO_CASES] + [("swig", *c) for c in SWIG_CASES])
def test_bad_record_is_named_or_skipped(tmp_path, caplog, kind, edit, problem):
    make = hico_record if kind == "hico" else swig_record
    good = make("good.jpg")
    path, options = _write(tmp_path, [good, edit(make("bad.jpg")), good], kind)
    with pytest.raises(BadRecordError, match=problem) as info:
        read_annotations(path, **options)
    error = info.value
    assert error.file == str(path) and error.index == 1
    assert str(error).startswith(f"{path}: record 1: ")

    with caplog.at_level(logging.WARNING, logger="hoi_r1.readers.records"):
        ds = read_annotations(path, on_bad_record="skip", **options)
    assert ds.skipped == 1
    assert [s.file_name for s in ds.samples] == ["good.jpg", "good.jpg"]
    assert [s.image_id for s in ds.samples] == [0, 2]
    assert [r.getMessage() for r in caplog.records] == [f"skipped {error}"]


@pytest.mark.parametrize("kind", ["hico", "swig"])
def test_good_records_read(tmp_path, kind):
    make = hico_record if kind == "hico" else swig_record
    path, options = _write(tmp_path, [make()], kind)
    s = read_annotations(path, **options).samples[0]
    assert s.num_pairs == 1 and s.human_boxes.tolist() == [[1, 2, 20, 28]]


def test_missing_annotation_file(tmp_path):
    with pytest.raises(MissingFileError, match=r"nothere\.json: annotation file does not exist") as info:
        read_annotations(tmp_path / "nothere.json")
    assert isinstance(info.value, FileNotFoundError) and info.value.index is None


@pytest.mark.parametrize("text, problem", [("{not json", "not valid JSON"), ('{"a": 1}', "expected a JSON list")])
def test_unreadable_annotation_file(tmp_path, text, problem):
    (tmp_path / "a.json").write_text(text)
    with pytest.raises(BadRecordError, match=problem):
        read_annotations(tmp_path / "a.json", on_bad_record="skip")  # whole-file problems are never skipped


def test_swig_needs_categories(tmp_path):
    path, _ = _write(tmp_path, [swig_record()], "swig")
    with pytest.raises(ValueError, match="need categories="):
        read_annotations(path)


def test_invalid_on_bad_record(tmp_path):
    path, _ = _write(tmp_path, [hico_record()], "hico")
    with pytest.raises(ValueError, match="on_bad_record must be"):
        read_annotations(path, on_bad_record="ignore")


def _images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(images / "ok.jpg")
    full = images / "full.jpg"
    Image.new("RGB", (40, 30), (10, 200, 10)).save(full, quality=95)
    (images / "truncated.jpg").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    (images / "garbage.jpg").write_bytes(b"this is no image")
    Image.new("RGB", (41, 30)).save(images / "wrong_size.jpg")
    return images


@pytest.mark.parametrize("kind", ["hico", "swig"])
@pytest.mark.parametrize(
    "name, problem, missing",
    [
        ("absent.jpg", "absent.jpg does not exist", True),
        ("truncated.jpg", "truncated.jpg is unreadable", False),
        ("garbage.jpg", "garbage.jpg is unreadable", False),
        ("wrong_size.jpg", "is 41x30, the record says 40x30", False),
    ],
)
def test_bad_images_with_check_images(tmp_path, kind, name, problem, missing):
    images = _images(tmp_path)
    make = hico_record if kind == "hico" else swig_record
    path, options = _write(tmp_path, [make("ok.jpg"), make(name)], kind)
    assert len(read_annotations(path, image_root=images, **options).samples) == 2  # sizes given: no image opened
    with pytest.raises(BadRecordError, match=rf"record 1: image file .*{problem}") as info:
        read_annotations(path, image_root=images, check_images=True, **options)
    assert isinstance(info.value, FileNotFoundError) == missing
    ds = read_annotations(path, image_root=images, check_images=True, on_bad_record="skip", **options)
    assert [s.file_name for s in ds.samples] == ["ok.jpg"] and ds.skipped == 1


def test_missing_image_needed_for_size(tmp_path):
    record = hico_record("absent.jpg")
    del record["width"], record["height"]
    path, _ = _write(tmp_path, [record], "hico")
    with pytest.raises(MissingFileError, match=r"record 0: image file .*absent\.jpg does not exist"):
        read_annotations(path)
