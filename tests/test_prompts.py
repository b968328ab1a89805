"""Prompt construction: vocabulary listing, frame sentence, answer contract, chat messages."""

from __future__ import annotations

import re

import pytest

from hoi_r1.answer import parse_answer
from hoi_r1.answer_render import render_answer
from hoi_r1.frames import Frame
from hoi_r1.prompts import PromptConfig, build_instruction, build_messages
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

VOCAB = HOIVocabulary.open(
    ["hold", "ride", "sit_on", "no_interaction"],
    ["person", "bicycle", "dining_table", "kite"],
    [("hold", "bicycle"), ("ride", "bicycle"), ("sit_on", "bicycle"), ("hold", "person"), ("sit_on", "dining_table")],
)
FRAME = Frame.for_image("absolute_resized", 640, 480)


def section(text: str, title: str) -> str:
    return next(s for s in text.split("\n\n") if s.startswith(title))


def test_lists_objects_and_verbs_per_object():
    text = build_instruction(VOCAB, FRAME)
    assert section(text, "Object classes:").splitlines()[1] == "person, bicycle, dining table, kite"
    lines = section(text, "Verbs allowed").splitlines()[1:]
    assert lines == ["person: hold", "bicycle: hold, ride, sit on", "dining table: sit on"]  # kite takes no verb
    assert "<think>" in text and "</think>" in text and "<answer>" in text and "</answer>" in text
    assert "1. How many people" in text


def test_every_listed_name_resolves_in_the_vocabulary():
    vocab = HOIVocabulary.hico_det()
    text = build_instruction(vocab, FRAME)
    objects = section(text, "Object classes:").splitlines()[1].split(", ")
    assert [vocab.object_id(n) for n in objects] == list(range(len(vocab.objects)))
    pairs = set()
    for line in section(text, "Verbs allowed").splitlines()[1:]:
        obj, verbs = line.split(": ")
        pairs |= {(vocab.verb_id(v), vocab.object_id(obj)) for v in verbs.split(", ")}
    assert pairs == set(vocab.interactions)


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("absolute_resized", "pixels of this 644x476 image"),
        ("absolute_original", "pixels of this 640x480 image"),
        ("normalized_1000", "from 0 to 1000"),
    ],
)
def test_frame_sentence(kind, expected):
    assert expected in build_instruction(VOCAB, Frame.for_image(kind, 640, 480))


def test_custom_vocabulary_replaces_the_dataset():
    vocab = HOIVocabulary.open(["juggle", "walk"], ["person", "ball", "dog"], [("juggle", "ball"), ("walk", "dog")])
    text = build_instruction(vocab, FRAME)
    assert "ball: juggle" in text and "dog: walk" in text
    assert "bicycle" not in text and "airplane" not in text


def test_style_options():
    config = PromptConfig(thinking_guidance=False, show_example=False, list_verbs_per_object=False, names="vocabulary")
    text = build_instruction(VOCAB, FRAME, config)
    assert "1. How many people" not in text and "Layout:" not in text
    assert section(text, "Verbs:").splitlines()[1] == "hold, ride, sit_on, no_interaction"
    assert "dining_table" in text
    short = build_instruction(VOCAB, FRAME, PromptConfig(max_objects_listed=2, max_verbs_listed=1))
    assert "person, bicycle (and 2 more)" in short
    assert "bicycle: hold (and 2 more)" in short and "(verbs of 1 more object classes not listed)" in short
    bare = build_instruction(VOCAB, FRAME, PromptConfig(list_objects=False, list_verbs=False, task="Find pairs."))
    assert bare.startswith("Find pairs.\n\n") and "Object classes" not in bare and "Verbs" not in bare
    with pytest.raises(ValueError, match="max_objects_listed"):
        PromptConfig(max_objects_listed=0)


def test_the_contract_can_be_left_to_the_training_answers():
    config = PromptConfig(task="Find pairs.", list_objects=False, list_verbs=False, thinking_guidance=False,
                          describe_answer=False)
    text = build_instruction(VOCAB, FRAME, config)
    assert text == "Find pairs.\n\nThink it through inside <think> and </think>.\n\nThen answer inside <answer> and </answer>."
    assert len(text) < len(build_instruction(VOCAB, FRAME, PromptConfig(task="Find pairs.", list_objects=False,
                                                                        list_verbs=False, thinking_guidance=False))) / 3


def test_the_example_layout_is_the_layout_the_parser_reads():
    text = build_instruction(VOCAB, FRAME)
    layout = text.split("Layout:\n", 1)[1]
    filled = re.sub(r"x1, y1, x2, y2", "1, 2, 30, 40", layout)
    filled = filled.replace("<object class>", "bicycle").replace('"<verb>", "<verb>"', '"ride", "hold"')
    p = parse_answer(filled, VOCAB, FRAME)
    assert p.structure_ok and p.json_ok and not p.problems and p.triplets[0].verb_ids == (1, 0)


def test_messages_layout():
    sample = HOISample(0, "a.jpg", "a.jpg", 640, 480, human_boxes=[[1, 1, 50, 50]], object_boxes=[[9, 9, 99, 99]],
                       object_labels=[1], pairs=[[0, 0, 1, 1]])
    answer = render_answer(sample, VOCAB, FRAME)
    messages = build_messages("do it", answer=answer)
    assert messages == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "do it"}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    with_image = build_messages("do it", image="img.jpg")
    assert with_image == [{"role": "user", "content": [{"type": "image", "image": "img.jpg"}, {"type": "text", "text": "do it"}]}]
