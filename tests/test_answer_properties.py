"""Property-based tests of the answer codec (hypothesis, derandomized, no example database).

* Robustness: over 10,000 random and adversarial strings per run (unicode text, fragment soups
  of tags, brackets, quotes, code fences and odd numbers, mutated rendered answers, arbitrary
  JSON values, 10,000-200,000-character and deeply nested strings) the parser never raises and
  its result always satisfies the invariants in :func:`check_invariants`.
* Round trip: rendering a random sample in any frame and parsing it back gives the same pairs,
  with boxes equal up to the frame's rounding.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoi_r1.answer import MAX_ELEMENTS, MAX_TEXT_CHARS, ParsedAnswer, parse_answer
from hoi_r1.answer_render import render_answer
from hoi_r1.frames import FRAME_KINDS, Frame
from hoi_r1.metric_input import to_metric_preds
from hoi_r1.sample import HOISample
from hoi_r1.scores import label_spans
from hoi_r1.vocab import HOIVocabulary

SMALL = HOIVocabulary.open(
    ["hold", "ride", "sit_on", "no_interaction"],
    ["person", "bicycle", "dining_table"],
    [("hold", "bicycle"), ("ride", "bicycle"), ("sit_on", "bicycle"), ("hold", "person"), ("sit_on", "dining_table"),
     ("no_interaction", "bicycle")],
)
HICO = HOIVocabulary.hico_det()


def _settings(n: int):
    return settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


ELEMENT = '{"human": [10, 5, 60, 95], "object": [40, 50, 150, 99], "object class": "bicycle", "verb class": ["ride", "sit on"]}'
FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "```", "```json\n", "[", "]", "{", "}", ",", ":", '"', "'", "\\",
    " ", "\n", '"human": ', '"object": ', '"object class": ', '"verb class": ', '"human"', "human", "'human': ",
    "[10, 5, 60, 95]", "[1e308, -1e308, 1e999, 5]", "[NaN, Infinity, -Infinity, 1]", "9" * 400, "-0", "1.5e-7",
    "[1, 2, 3]", '"1, 2, 3, 4"', "true", "null", '"bicycle"', '"dining table"', '"dining_table"', '"unicycle"',
    '"ride, sit on"', '["ride", "sit_on"]', '["hold", 3]', '"no interaction"', "\\u0000", "\\ud800", "é", "🚲",
    "\u2028", "\x00", ELEMENT, ELEMENT[:37], ",]", ",}", "[[[[", "]]]]", "{{{{", '"\\"', "'\\'",
]
_KEYS = st.sampled_from(["human", "object", "object class", "verb class", "Object_Class", "verb"]) | st.text(max_size=6)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["bicycle", "person", "ride, hold", "sit on", "dining table"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=30,
)
FRAMES = st.builds(
    Frame.for_image,
    st.sampled_from(FRAME_KINDS),
    st.integers(16, 2000),
    st.integers(16, 2000),
)
VOCABS = st.sampled_from([SMALL, HICO])


def check_invariants(text, vocab: HOIVocabulary, frame: Frame) -> ParsedAnswer:
    """Parse ``text`` (must not raise) and check what every parse result promises."""
    p = parse_answer(text, vocab, frame)
    assert isinstance(p, ParsedAnswer)
    assert 0 <= p.num_elements <= MAX_ELEMENTS and len(p.element_spans) == p.num_elements
    n = min(len(text), MAX_TEXT_CHARS) if isinstance(text, str) else None
    for start, end in p.element_spans:
        assert 0 <= start < end and (n is None or end <= n)
    assert not p.json_ok or p.decoded
    assert not p.structure_ok or (isinstance(text, str) and text.strip().startswith("<think>"))
    assert all(0 <= q.element < p.num_elements for q in p.problems)
    assert p.num_valid_elements <= p.num_elements
    assert 0.5 <= min((t.score for t in p.triplets), default=1.0) and max((t.score for t in p.triplets), default=1.0) <= 1.0
    for t in p.triplets:
        assert len(t.human_box) == len(t.object_box) == 4
        assert np.isfinite(t.human_box).all() and np.isfinite(t.object_box).all()
        assert 0 <= t.object_id < len(vocab.objects)
        assert len(set(t.verb_ids)) == len(t.verb_ids) and all(0 <= v < len(vocab.verbs) for v in t.verb_ids)
        assert 0 <= t.element < p.num_elements
    preds = to_metric_preds(p, vocab, image_id=1)
    rows = len(preds["hoi"])
    assert preds["human_boxes"].shape == (rows, 4) and preds["scores"].shape == (rows,)
    for hoi, obj in zip(preds["hoi"].tolist(), preds["object_labels"].tolist()):
        assert vocab.interactions[hoi][1] == obj
    if isinstance(text, str):
        spans = label_spans(text[:MAX_TEXT_CHARS], p)
        assert [len(s.verb_spans) for s in spans] == [len(t.verb_ids) for t in p.triplets]
        for t, s in zip(p.triplets, spans):
            for name, span in zip(t.verb_names, s.verb_spans):
                assert span is None or _norm(text[slice(*span)]) == _norm(name)
    return p


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


# ------------------------------------------------------------------- robustness: >= 10,000 inputs per run
@_settings(3000)
@given(text=st.text(max_size=300))
def test_random_unicode_never_raises(text):
    check_invariants(text, SMALL, Frame.for_image("absolute_resized", 640, 480))


@_settings(3500)
@given(parts=st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40), frame=FRAMES, vocab=VOCABS)
def test_fragment_soup_never_raises(parts, frame, vocab):
    check_invariants("".join(parts), vocab, frame)


@st.composite
def mutated_answers(draw):
    n = draw(st.integers(0, 4))
    elements = [
        {
            "human": draw(st.lists(st.integers(-5, 300) | st.floats(), min_size=4, max_size=4)),
            "object": [10, 10, 90, 90],
            "object class": draw(st.sampled_from(["bicycle", "dining table", "person", "cup"])),
            "verb class": draw(st.sampled_from([["ride", "sit on"], "hold, ride", [], "hold", ["ride, sit_on"]])),
        }
        for _ in range(n)
    ]
    text = f"<think>{draw(st.text(max_size=20))}</think><answer>{json.dumps(elements)}</answer>"
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["cut", "delete", "insert", "quotes", "fence", "trailing"]))
        i = draw(st.integers(0, len(text)))
        if op == "cut":
            text = text[:i]
        elif op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 10)) :]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[i:]
        elif op == "quotes":
            text = text.replace('"', "'")
        elif op == "fence":
            text = text.replace("<answer>", "<answer>```json\n").replace("</answer>", "\n```</answer>")
        else:
            text = text.replace("]", ",]").replace("}", ",}")
    return text


@_settings(2500)
@given(text=mutated_answers(), frame=FRAMES)
def test_mutated_answers_never_raise(text, frame):
    check_invariants(text, SMALL, frame)


@_settings(1500)
@given(value=JSON_VALUES, wrap=st.sampled_from(["<answer>{}</answer>", "<think>x</think><answer>[{}]</answer>", "{}"]))
def test_arbitrary_json_values_never_raise(value, wrap):
    text = wrap.format(json.dumps(value))
    check_invariants(text, SMALL, Frame.for_image("normalized_1000", 300, 200))


@_settings(120)
@given(
    unit=st.sampled_from(FRAGMENTS + ["[", "{\"a\": ", "[{", "'", "x", ", "]),
    length=st.sampled_from([1_000, 30_000, 100_000, 150_000]),
    prefix=st.sampled_from(["", "<answer>", "<think>a</think><answer>", "<think>"]),
)
def test_huge_and_deeply_nested_inputs_never_raise(unit, length, prefix):
    text = prefix + (unit * (length // len(unit) + 1))[:length]
    check_invariants(text, HICO, Frame.for_image("absolute_resized", 640, 480))


def test_non_string_inputs_never_raise():
    for value in (None, b"[1, 2]", bytearray(b"\xff\xfe"), 12, 3.5, ["<answer>"], {"human": 1}):
        check_invariants(value, SMALL, Frame.for_image("absolute_original", 10, 10))


# ------------------------------------------------------------------- round trip
@st.composite
def samples_and_frames(draw):
    vocab = draw(VOCABS)
    width, height = draw(st.integers(32, 3000)), draw(st.integers(32, 3000))
    frame = Frame.for_image(draw(st.sampled_from(FRAME_KINDS)), width, height)

    def box():
        fw, fh = draw(st.floats(0.1, 1.0)), draw(st.floats(0.1, 1.0))
        x1, y1 = draw(st.floats(0, 1 - fw)) * width, draw(st.floats(0, 1 - fh)) * height
        return [x1, y1, min(x1 + fw * width, width), min(y1 + fh * height, height)]

    n_h, n_o = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pairs = []
    for _ in range(draw(st.integers(0, 8))):
        hoi = draw(st.integers(0, vocab.num_classes - 1))
        pairs.append((draw(st.integers(0, n_h - 1)), draw(st.integers(0, n_o - 1)), hoi))
    object_labels = [draw(st.integers(0, len(vocab.objects) - 1)) for _ in range(n_o)]
    for h, o, hoi in pairs:  # the object box takes the object class of its (last) interaction
        object_labels[o] = vocab.interactions[hoi][1]
    kept = [(h, o, hoi) for h, o, hoi in pairs if vocab.interactions[hoi][1] == object_labels[o]]
    rows = [(h, o, vocab.interactions[hoi][0], hoi) for h, o, hoi in kept]
    sample = HOISample(
        image_id=0, file_name="r.jpg", image_path="r.jpg", width=width, height=height,
        human_boxes=[box() for _ in range(n_h)], object_boxes=[box() for _ in range(n_o)],
        object_labels=object_labels, pairs=rows or np.zeros((0, 4), dtype=np.int64),
    )
    return sample, vocab, frame, draw(st.sampled_from(["spaces", "vocabulary"]))


@_settings(400)
@given(case=samples_and_frames())
def test_render_parse_round_trip(case):
    sample, vocab, frame, names = case
    text = render_answer(sample, vocab, frame, names=names)
    p = check_invariants(text, vocab, frame)
    assert p.structure_ok and p.json_ok and p.decoded and not p.repairs and not p.problems and not p.truncated
    groups = sample.grouped_pairs()
    assert [(t.object_id, list(t.verb_ids)) for t in p.triplets] == [
        (int(sample.object_labels[o]), verbs) for _, o, verbs in groups
    ]
    sx, sy = frame.scale
    tolerance = np.array([0.5 / sx, 0.5 / sy] * 2) + 1e-9
    for t, (h, o, _) in zip(p.triplets, groups):
        assert (np.abs(np.array(t.human_box) - sample.human_boxes[h]) <= tolerance).all()
        assert (np.abs(np.array(t.object_box) - sample.object_boxes[o]) <= tolerance).all()
    for t, s in zip(p.triplets, label_spans(text, p)):
        assert text[slice(*s.object_span)] == render_name(vocab.objects[t.object_id], names)
        assert [text[slice(*v)] for v in s.verb_spans] == [render_name(vocab.verbs[v], names) for v in t.verb_ids]
    preds = to_metric_preds(p, vocab, image_id=0)
    distinct = {(h, o, hoi) for h, o, _, hoi in sample.pairs.tolist()}
    assert sorted(preds["hoi"].tolist()) == sorted(hoi for _, _, hoi in distinct)


def render_name(name: str, names: str) -> str:
    return name.replace("_", " ") if names == "spaces" else name
