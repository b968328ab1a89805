"""SWIG-HOI reader: THID annotation JSON + category metadata (.py read as literals, or JSON)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hoi_r1.readers import BadRecordError, read_annotations
from hoi_r1.readers.swig_hoi import load_swig_categories, write_swig_categories, write_swig_json
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

VOCAB = HOIVocabulary(
    name="swig_hoi",
    verbs=("holding", "riding", "washing"),
    objects=("person", "horse", "cup", "small hard fruit"),
    interactions=((1, 1), (0, 2), (0, 1), (2, 0), (0, 3)),
    rare=frozenset({1}),
    zero_shot={"unseen": (2,)},
    unevaluated=frozenset({4}),
    frequency=(2, 1, 0, 2, 2),
)


def samples() -> list[HOISample]:
    a = HOISample(
        image_id=0, file_name="s0.jpg", image_path="", width=64, height=48,
        human_boxes=[[1, 2, 30, 40], [40, 2, 60, 40]], object_boxes=[[5, 20, 50, 47], [41, 3, 59, 39]],
        object_labels=[1, 0], pairs=[[0, 0, 1, 0], [1, 0, 0, 2], [0, 1, 2, 3]],
    )
    b = HOISample(
        image_id=1, file_name="s1.jpg", image_path="", width=20, height=20,
        human_boxes=[[0, 0, 10, 10]], object_boxes=[[9, 9, 12.5, 12]], object_labels=[3], pairs=[[0, 0, 0, 4]],
    )
    return [a, b]


@pytest.mark.parametrize("suffix", [".py", ".json"])
def test_round_trip(tmp_path, suffix):
    categories = write_swig_categories(VOCAB, tmp_path / f"swig_v1_categories{suffix}")
    path = write_swig_json(samples(), VOCAB, tmp_path / "swig_test_1000.json")
    ds = read_annotations(path, categories=categories)
    assert ds.vocab == VOCAB
    for got, want in zip(ds.samples, samples(), strict=True):
        assert (got.file_name, got.width, got.height) == (want.file_name, want.width, want.height)
        for name in ("human_boxes", "object_boxes", "object_labels", "pairs"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_vocabulary_fields_from_metadata(tmp_path):
    vocab = load_swig_categories(write_swig_categories(VOCAB, tmp_path / "c.json"))
    assert vocab.rare == {1} and vocab.unseen("unseen") == (2,) and vocab.unevaluated == {4}
    assert vocab.frequency == (2, 1, 0, 2, 2) and vocab.person == 0 and vocab.coco91_ids == ()


def test_interaction_looked_up_from_action_and_object(tmp_path):
    record = {
        "file_name": "x.jpg", "img_id": 9, "height": 10, "width": 10,
        "box_annotations": [{"bbox": [0, 0, 5, 5], "category_id": 0, "aux_category_id": [1, 2]},
                            {"bbox": [4, 4, 9, 9], "category_id": 1, "aux_category_id": []}],
        "hoi_annotations": [{"subject_id": 0, "object_id": 1, "action_id": 0}],
    }
    (tmp_path / "a.json").write_text(json.dumps([record]))
    categories = write_swig_categories(VOCAB, tmp_path / "c.json")
    s = read_annotations(tmp_path / "a.json", categories=categories).samples[0]
    assert s.pairs.tolist() == [[0, 0, 0, 2]]  # holding horse = interaction 2


def test_categories_python_file_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    text = write_swig_categories(VOCAB, tmp_path / "c.py").read_text()
    (tmp_path / "c.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n__all__ = ['SWIG_INTERACTIONS']\n{text}"
    )
    assert load_swig_categories(tmp_path / "c.py") == VOCAB
    assert not marker.exists()


def test_categories_python_file_with_code_in_the_list_is_rejected(tmp_path):
    (tmp_path / "c.py").write_text("SWIG_INTERACTIONS = [dict(id=0)]\n")
    with pytest.raises(BadRecordError, match=r"c\.py: SWIG_INTERACTIONS is not a literal"):
        load_swig_categories(tmp_path / "c.py")


def test_categories_plain_interaction_list_names_from_interactions(tmp_path):
    rows = json.loads(write_swig_categories(VOCAB, tmp_path / "c.json").read_text())["SWIG_INTERACTIONS"]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    assert load_swig_categories(tmp_path / "list.json") == VOCAB
    rows[4]["name"] = "grasping small hard fruit"  # action 0 is "holding" in rows 1 and 2
    (tmp_path / "list.json").write_text(json.dumps(rows))
    with pytest.raises(BadRecordError, match=r"record 4: action_id 0 is named both 'holding' and 'grasping'"):
        load_swig_categories(tmp_path / "list.json")


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda d: d["SWIG_INTERACTIONS"][1].pop("action_id"), r"record 1: interaction has no key 'action_id'"),
        (lambda d: d["SWIG_INTERACTIONS"][2].update(frequency=5), r"record 2: frequency = 5 is not 0, 1 or 2"),
        (lambda d: d["SWIG_INTERACTIONS"][2].update(object_id=4), r"record 2: object_id = 4 is out of range"),
        (lambda d: d["SWIG_INTERACTIONS"][4].update(action_id=1, object_id=1), r"record 4: .* repeats interaction 0"),
        (lambda d: d["SWIG_INTERACTIONS"][0].update(id=7), "interaction ids must be 0..4"),
        (lambda d: d.pop("SWIG_ACTIONS"), "has no list 'SWIG_ACTIONS'"),
    ],
)
def test_bad_categories(tmp_path, edit, problem):
    data = json.loads(write_swig_categories(VOCAB, tmp_path / "c.json").read_text())
    edit(data)
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(BadRecordError, match=problem):
        load_swig_categories(tmp_path / "c.json")


def test_missing_categories_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="category metadata file does not exist"):
        load_swig_categories(tmp_path / "none.py")
