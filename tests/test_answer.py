"""Answer codec: rendering, lenient parsing, diagnostics and metric inputs (example-based)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from hoi_r1.answer import MAX_ELEMENTS, MAX_TEXT_CHARS, ParsedAnswer, Triplet, parse_answer
from hoi_r1.answer_render import render_answer
from hoi_r1.frames import Frame
from hoi_r1.metric_input import to_metric_preds
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

VOCAB = HOIVocabulary.open(
    ["hold", "ride", "sit_on", "no_interaction"],
    ["person", "bicycle", "dining_table"],
    [("hold", "bicycle"), ("ride", "bicycle"), ("sit_on", "bicycle"), ("hold", "person"), ("sit_on", "dining_table")],
)
FRAME = Frame("absolute_original", (200, 100), (196, 112))
BIKE = '{"human": [10, 5, 60, 95], "object": [40, 50, 150, 99], "object class": "bicycle", "verb class": ["ride", "sit on"]}'
TABLE = '{"human": [100, 5, 130, 95], "object": [90, 60, 199, 99], "object class": "dining table", "verb class": "sit_on"}'


def parse(text: str, frame: Frame = FRAME) -> ParsedAnswer:
    return parse_answer(text, VOCAB, frame)


def sample() -> HOISample:
    return HOISample(
        image_id=3, file_name="x.jpg", image_path="x.jpg", width=200, height=100,
        human_boxes=[[10, 5, 60, 95], [100, 5, 130, 95]],
        object_boxes=[[40, 50, 150, 99], [90, 60, 199, 99]],
        object_labels=[1, 2],
        pairs=[[0, 0, 1, 1], [1, 1, 2, 4], [0, 0, 2, 2], [0, 0, 1, 1]],
    )


# ------------------------------------------------------------------- rendering
def test_render_groups_pairs_and_spells_with_spaces():
    text = render_answer(sample(), VOCAB, FRAME, reasoning="r")
    assert text.startswith("<think>r</think><answer>") and text.endswith("</answer>")
    elements = json.loads(text[len("<think>r</think><answer>") : -len("</answer>")])
    assert elements == [json.loads(BIKE), {**json.loads(TABLE), "verb class": ["sit on"]}]
    as_is = render_answer(sample(), VOCAB, FRAME, reasoning="r", names="vocabulary")
    assert '"dining_table"' in as_is and '"sit_on"' in as_is


def test_render_default_reasoning_and_empty_sample():
    text = render_answer(sample(), VOCAB, FRAME)
    assert "<think>I see 2 people" in text and "Person 2 with the dining table: sit on." in text
    empty = sample().with_pairs([False] * 4)
    assert render_answer(empty, VOCAB, FRAME).endswith("<answer>[]</answer>")


def test_render_refuses_wrong_frame_and_tags_in_reasoning():
    with pytest.raises(ValueError, match="x.jpg: frame original_size"):
        render_answer(sample(), VOCAB, Frame("absolute_original", (100, 100), (112, 112)))
    with pytest.raises(ValueError, match="</answer>"):
        render_answer(sample(), VOCAB, FRAME, reasoning="a </answer> b")


def test_render_then_parse_gives_the_pairs_back():
    for kind in ("absolute_resized", "normalized_1000", "absolute_original"):
        frame = Frame.for_image(kind, 200, 100)
        p = parse(render_answer(sample(), VOCAB, frame), frame)
        assert p.structure_ok and p.json_ok and p.decoded and not p.problems and not p.repairs
        assert [(t.object_id, t.verb_ids) for t in p.triplets] == [(1, (1, 2)), (2, (2,))]
        preds = to_metric_preds(p, VOCAB, image_id=3)
        assert sorted(preds["hoi"].tolist()) == [1, 2, 4]


# ------------------------------------------------------------------- parsing: structure
@pytest.mark.parametrize(
    "text,structure_ok",
    [
        (f"<think>a</think><answer>[{BIKE}]</answer>", True),
        (f"  <think>a\nb</think>\n <answer>[{BIKE}]</answer>\n", True),
        (f"<think>a</think>then<answer>[{BIKE}]</answer>", False),
        (f"<answer>[{BIKE}]</answer>", False),
        (f"<think>a</think><answer>[{BIKE}]</answer>!", False),
        (f"<think>a</think><answer>[{BIKE}]</answer><answer>[]</answer>", False),
        (f"<think><think>a</think><answer>[{BIKE}]</answer>", False),
    ],
)
def test_structure_is_exact(text, structure_ok):
    p = parse(text)
    assert p.structure_ok is structure_ok
    assert len(p.triplets) == 1


def test_thinking_text_is_kept():
    assert parse("<think> why </think><answer>[]</answer>").thinking == " why "
    assert parse("<answer>[]</answer>").thinking is None


@pytest.mark.parametrize(
    "text,repairs",
    [
        (f"<think>a</think>[{BIKE}]", ("missing_answer_tags",)),
        (f"[{BIKE}]", ("missing_answer_tags",)),
        (f"<think>a</think><answer>```json\n[{BIKE}]\n```</answer>", ("code_fence",)),
        (f"<think>a</think>\n```json\n[{BIKE}]\n```", ("missing_answer_tags", "code_fence")),
        (f"<answer>[{BIKE},]</answer>", ("trailing_commas",)),
        (f"<answer>[{BIKE[:-1]},}}]</answer>", ("trailing_commas",)),
        (f"<answer>{BIKE}</answer>", ("bare_objects",)),
        (f"<answer>Here it is: [{BIKE}]</answer>", ("extra_text",)),
        (f"<answer>[{BIKE}] done</answer>", ("extra_text",)),
        (f"<answer>[{BIKE} {BIKE}]</answer>", ("missing_commas",)),
        ("<answer>" + BIKE.replace('"', "'") + "</answer>", ("single_quotes", "bare_objects")),
    ],
)
def test_repairs_are_applied_and_reported(text, repairs):
    p = parse(text)
    assert set(p.repairs) == set(repairs)
    assert p.decoded and p.triplets and p.triplets[0].verb_ids == (1, 2)
    if "missing_answer_tags" not in repairs or len(repairs) > 1:
        assert not p.json_ok


def test_json_ok_means_valid_json_list_as_written():
    assert parse(f"<answer>[{BIKE}]</answer>").json_ok
    assert parse("<answer> [] </answer>").json_ok
    assert not parse(f"<answer>[{BIKE},]</answer>").json_ok
    assert not parse(f"<answer>{BIKE}</answer>").json_ok  # an object, not a list
    assert not parse("<answer></answer>").json_ok and not parse("<answer></answer>").decoded


def test_single_quotes_with_apostrophes_inside():
    text = "<answer>[{'human': [10,5,60,95], 'object': [40,50,150,99], 'object class': 'bicycle', 'verb class': 'ride', 'note': 'it\\'s \"x\"'}]</answer>"
    p = parse(text)
    assert "single_quotes" in p.repairs and p.triplets[0].verb_ids == (1,)


def test_truncated_list_keeps_complete_elements():
    full = f"<think>a</think><answer>[{BIKE}, {TABLE}]</answer>"
    for cut in range(len(full)):
        p = parse(full[:cut])
        assert len(p.triplets) <= 2
        if cut < len(full) - len("</answer>"):
            assert p.truncated or not p.triplets
    p = parse(full[: full.index(TABLE) + 20])
    assert p.truncated and len(p.triplets) == 1 and not p.structure_ok and not p.json_ok
    assert parse("<think>I see a person riding").truncated


# ------------------------------------------------------------------- parsing: elements
@pytest.mark.parametrize(
    "verbs,expected",
    [
        ('["ride", "sit on"]', (1, 2)),
        ('"ride, sit on"', (1, 2)),
        ('"ride,sit_on,"', (1, 2)),
        ('["ride, sit on", "hold"]', (1, 2, 0)),
        ('["Ride", "ride", "SIT_ON"]', (1, 2)),
    ],
)
def test_verb_class_spellings(verbs, expected):
    element = BIKE.replace('["ride", "sit on"]', verbs)
    assert parse(f"<answer>[{element}]</answer>").triplets[0].verb_ids == expected


def test_key_spellings_and_string_boxes():
    element = '{"Human": "[10, 5, 60, 95]", "object": ["40", 50, 150, 99.5], "object_class": "bicycle", "verb_class": "ride"}'
    t = parse(f"<answer>[{element}]</answer>").triplets[0]
    assert t.human_box == (10.0, 5.0, 60.0, 95.0) and t.object_box == (40.0, 50.0, 150.0, 99.5)


def codes(text: str) -> list[tuple[int, str]]:
    return [(p.element, p.code) for p in parse(text).problems]


def test_element_problems_are_reported():
    no_object = '{"human": [1, 1, 5, 5], "object": [1, 1, 5, 5], "verb class": "ride"}'
    bad_box = BIKE.replace("[10, 5, 60, 95]", "[10, 5, 60]")
    nan_box = BIKE.replace("[10, 5, 60, 95]", "[NaN, 5, 60, 95]")
    flipped = BIKE.replace("[10, 5, 60, 95]", "[60, 5, 10, 95]")
    unknown_object = BIKE.replace('"bicycle"', '"unicycle"')
    unknown_verb = BIKE.replace('"sit on"', '"juggle"')
    invalid = BIKE.replace('"sit on"', '"no interaction"')
    no_verbs = BIKE.replace('["ride", "sit on"]', "[]")
    bad_label = BIKE.replace('"bicycle"', "7")
    text = "<answer>[" + ", ".join(
        [no_object, bad_box, nan_box, flipped, unknown_object, unknown_verb, invalid, no_verbs, bad_label, "3", BIKE]
    ) + "]</answer>"
    p = parse(text)
    assert [(q.element, q.code) for q in p.problems] == [
        (0, "missing_key"), (1, "bad_box"), (2, "bad_box"), (3, "degenerate_box"), (4, "unknown_object"),
        (5, "unknown_verb"), (6, "invalid_pair"), (7, "no_verbs"), (8, "bad_label"), (9, "not_an_object"),
    ]
    assert p.problems[0].detail == "object class"
    assert [t.element for t in p.triplets] == [3, 5, 6, 7, 10]
    assert p.num_elements == 11 and p.num_valid_elements == 1 and p.num_invalid_pairs == 1
    assert p.triplets[1].verb_ids == (1,)  # the unknown verb is dropped
    assert p.triplets[2].verb_ids == (1, 3)  # the invalid pair is kept, and counted


def test_triplets_are_scored_by_rank_and_boxes_are_in_original_pixels():
    frame = Frame("normalized_1000", (200, 100), (196, 112))
    element = BIKE.replace("[10, 5, 60, 95]", "[50, 50, 300, 950]")
    p = parse(f"<answer>[{element}, {element}, {element}]</answer>", frame)
    assert [t.score for t in p.triplets] == [1.0, 0.75, 0.5]
    assert p.triplets[0].human_box == (10.0, 5.0, 60.0, 95.0)


# ------------------------------------------------------------------- bounded work
def test_big_and_deep_inputs_are_fast_and_safe():
    inputs = [
        "[" * 100_000,
        "<answer>" + "[" * 50_000 + "]" * 50_000 + "</answer>",
        '[{"a":' * 20_000,
        '"\\"' * 40_000,
        "'\\'" * 40_000,
        "[" + ", " * 60_000,
        "<answer>[" + ", ".join([BIKE] * 2000) + "]</answer>",
        '[{"human": [' + "9" * 50_000 + ", 1, 2, 3]}]",
        "x" * 1_000_000,
    ]
    for text in inputs:
        start = time.perf_counter()
        p = parse(text)
        assert time.perf_counter() - start < 1.0
        assert p.num_elements <= MAX_ELEMENTS
    assert parse(inputs[6]).capped and len(parse(inputs[6]).triplets) == MAX_ELEMENTS
    assert parse("x" * (MAX_TEXT_CHARS + 1)).capped
    assert not parse(inputs[0]).decoded


def test_non_string_input_does_not_raise():
    assert parse_answer(None, VOCAB, FRAME).triplets == []  # type: ignore[arg-type]
    assert len(parse_answer(f"[{BIKE}]".encode(), VOCAB, FRAME).triplets) == 1  # type: ignore[arg-type]


# ------------------------------------------------------------------- metric input
def test_to_metric_preds_layout():
    t1 = Triplet((0.0, 0.0, 5.0, 5.0), (1.0, 1.0, 9.0, 9.0), 1, (1, 3, 2), 0.9)
    t2 = Triplet((1.0, 1.0, 6.0, 6.0), (2.0, 2.0, 9.0, 9.0), 0, (0,), 0.4)
    preds = to_metric_preds(ParsedAnswer(triplets=[t1, t2]), VOCAB, image_id=5)
    assert preds["image_id"] == 5
    assert preds["hoi"].tolist() == [1, 2, 3]  # "no interaction bicycle" is not a class: no row
    assert preds["object_labels"].tolist() == [1, 1, 0]
    assert preds["scores"].tolist() == pytest.approx([0.9, 0.9, 0.4])
    assert preds["human_boxes"].shape == (3, 4) and preds["object_boxes"][2].tolist() == [2.0, 2.0, 9.0, 9.0]
    assert preds["hoi"].dtype == torch.long and preds["human_boxes"].dtype == torch.float64
    empty = to_metric_preds(ParsedAnswer(), VOCAB, image_id=0)
    assert empty["human_boxes"].shape == (0, 4) and empty["hoi"].shape == (0,) and empty["scores"].shape == (0,)


def test_hico_vocabulary_names_parse_with_spaces_and_underscores():
    vocab = HOIVocabulary.hico_det()
    frame = Frame.for_image("absolute_resized", 640, 480)
    for name in ("sports ball", "sports_ball"):
        text = f'<answer>[{{"human": [1, 1, 50, 50], "object": [20, 20, 60, 60], "object class": "{name}", "verb class": "kick, pick up"}}]</answer>'
        p = parse_answer(text, vocab, frame)
        t = p.triplets[0]
        assert vocab.objects[t.object_id] == "sports_ball"
        assert [vocab.verbs[v] for v in t.verb_ids] == ["kick", "pick_up"]
        assert not p.problems
        assert np.allclose(t.human_box, np.array([1, 1, 50, 50]) * np.array([640 / 644, 480 / 476] * 2))


# ------------------------------------------------------------------- the lenient JSON reader
def test_read_json_list_spans_are_offsets_into_the_original_text():
    from hoi_r1.lenient_json import read_json_list

    text = "say [ {'a': 'x',}, {\"b\": [1, 2,],} ,] end"
    reading = read_json_list(text, 3, len(text) - 3)
    assert reading.elements == [{"a": "x"}, {"b": [1.0, 2.0]}]
    assert [text[a:b] for a, b in reading.spans] == ["{'a': 'x',}", '{"b": [1, 2,],}']
    assert set(reading.repairs) == {"single_quotes", "trailing_commas"}
    assert not reading.strict and reading.decoded and not reading.unclosed
    assert set(read_json_list(text).repairs) == {"single_quotes", "trailing_commas", "extra_text"}
    assert read_json_list("[1, 2]").strict and read_json_list(" [] ").strict
    assert read_json_list("[1, 2, 3]", max_elements=2).capped
