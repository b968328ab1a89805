"""HOIVocabulary: the carried HICO-DET facts (checked against the reference copies in
/work/shared/data when that folder exists) and the class's own behaviour."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from hoi_r1.vocab import ZERO_SHOT_SETTINGS, HOIVocabulary, count_pairs

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")
HICO = HOIVocabulary.hico_det()


# --------------------------------------------------------------------- carried HICO-DET facts
@needs_shared
def test_hico_vocabulary_matches_reference():
    ref = json.loads((SHARED_DATA / "hico_vocab.json").read_text())
    assert list(HICO.verbs) == ref["verbs"]
    assert list(HICO.objects) == ref["objects_hico_alphabetical"]
    assert list(HICO.interactions) == list(zip(ref["hoi_verb"], ref["hoi_object_hico_alphabetical"]))
    coco91 = [ref["coco80_to_coco91_id"][ref["hico_alphabetical_to_coco80"][o]] for o in range(80)]
    assert list(HICO.coco91_ids) == coco91
    assert HICO.coco91_ids[HICO.person] == ref["person"]["coco91_id"] == 1
    assert HICO.person == ref["person"]["hico_alphabetical"]
    assert sorted(HICO.rare) == ref["rare_hois"]
    assert sorted(HICO.non_rare()) == ref["non_rare_hois"]
    for row in ref["hois"]:
        assert HICO.interaction_name(row["hoi"]) == row["name"]
        assert HICO.coco91_ids[HICO.interactions[row["hoi"]][1]] == row["object_coco91_id"]
        assert (row["hoi"] in HICO.rare) == row["rare"]


@needs_shared
def test_hico_zero_shot_lists_match_reference():
    ref = json.loads((SHARED_DATA / "hico_zero_shot_splits.json").read_text())
    assert ref["index_base"] == 0
    assert set(HICO.zero_shot) == set(ZERO_SHOT_SETTINGS)
    for setting in ZERO_SHOT_SETTINGS:
        assert sorted(HICO.unseen(setting)) == sorted(ref[setting])
        assert len(HICO.unseen(setting)) == ref["sizes"][setting]


def test_hico_facts_without_reference():
    assert (len(HICO.verbs), len(HICO.objects), HICO.num_classes) == (117, 80, 600)
    assert (len(HICO.rare), len(HICO.non_rare())) == (138, 462)
    assert {len(HICO.unseen(s)) for s in ("rare_first", "non_rare_first")} == {120}
    assert set(HICO.unseen("rare_first")) <= HICO.rare
    assert not set(HICO.unseen("non_rare_first")) & HICO.rare
    # unseen_object: every class of 12 objects; unseen_verb: every class of 20 verbs
    objects = {HICO.interactions[c][1] for c in HICO.unseen("unseen_object")}
    assert len(objects) == 12 and {c for c, (_, o) in enumerate(HICO.interactions) if o in objects} == set(
        HICO.unseen("unseen_object")
    )
    verbs = {HICO.interactions[c][0] for c in HICO.unseen("unseen_verb")}
    assert len(verbs) == 20 and {c for c, (v, _) in enumerate(HICO.interactions) if v in verbs} == set(
        HICO.unseen("unseen_verb")
    )
    # classes grouped by object (the official order puts the 20 PASCAL VOC objects first);
    # and 'no_interaction' closes each group (verbs are not strictly alphabetical: 'jump bicycle'
    # precedes 'hop_on bicycle' in the official list)
    groups = [o for k, (_, o) in enumerate(HICO.interactions) if k == 0 or HICO.interactions[k - 1][1] != o]
    assert sorted(groups) == list(range(80))
    no_interaction = HICO.verb_id("no_interaction")
    for o in groups:
        verbs = HICO.verbs_for_object(o)
        assert verbs[-1] == no_interaction and verbs.count(no_interaction) == 1
    assert len(set(HICO.coco91_ids)) == 80


# --------------------------------------------------------------------- the class itself
def test_json_round_trip(tmp_path):
    vocab = HOIVocabulary(
        name="toy", verbs=("ride", "hold"), objects=("person", "horse"), interactions=((0, 1), (1, 1), (1, 0)),
        rare=frozenset({2}), zero_shot={"unseen": (1,)}, coco91_ids=(1, 19), unevaluated=frozenset({0}),
        frequency=(2, 0, 1),
    )
    vocab.to_json(tmp_path / "v.json")
    assert HOIVocabulary.from_json(tmp_path / "v.json") == vocab
    assert HOIVocabulary.from_dict(HICO.to_dict()) == HICO


def test_from_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HOIVocabulary.from_json(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        HOIVocabulary.from_json(tmp_path / "bad.json")
    (tmp_path / "short.json").write_text(json.dumps({"name": "x", "verbs": []}))
    with pytest.raises(ValueError, match=r"short\.json: 'objects'"):
        HOIVocabulary.from_json(tmp_path / "short.json")


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"interactions": ((0, 2),)}, r"interaction 0 = \(0, 2\) is out of range"),
        ({"interactions": ((0, 1), (0, 1))}, "repeat a \\(verb, object\\) pair"),
        ({"interactions": ((0, 1),), "rare": frozenset({1})}, r"class ids \[1\] are out of range"),
        ({"interactions": ((0, 1),), "zero_shot": {"u": (5,)}}, r"class ids \[5\] are out of range"),
    ],
)
def test_bad_interactions_and_class_ids_are_refused(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        HOIVocabulary(name="bad", verbs=("ride",), objects=("person", "horse"), **kwargs)


def test_hico_lookups_by_name_interaction_and_object():
    assert HICO.verb_id("Sit On") == HICO.verb_id("sit_on") == HICO.verbs.index("sit_on")
    assert HICO.object_id("dining table") == HICO.objects.index("dining_table")
    assert HICO.verb_id("fly away") is None and HICO.object_id("unicorn") is None
    bike = HICO.object_id("bicycle")
    assert HICO.interaction_id(HICO.verb_id("ride"), bike) == 18
    assert HICO.interaction_id(HICO.verb_id("eat"), bike) is None
    assert HICO.verbs_for_object(bike)[-1] == HICO.verb_id("no_interaction")
    assert len(HICO.verbs_for_object(bike)) == 14
    assert HICO.objects_with_interactions() == list(range(80))


def test_open_vocabulary():
    v = HOIVocabulary.open(["ride", "hold"], ["person", "horse"])
    assert v.num_classes == 4 and v.interaction_id(1, 1) == 3 and v.person == 0
    assert HOIVocabulary.open(["ride"], ["horse"]).person is None


def test_rare_from_counts_and_unseen():
    counts = count_pairs([0, 0, 1] + [2] * 10)
    assert counts == Counter({2: 10, 0: 2, 1: 1})
    v = HOIVocabulary.open(["a"], ["x", "y", "z", "w"]).with_rare_from_counts(counts)
    assert v.rare == {0, 1, 3} and v.non_rare() == {2}
    with pytest.raises(KeyError, match="no zero-shot setting 'rare_first'"):
        v.unseen("rare_first")
