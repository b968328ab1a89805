"""Tool-call protocol: parsing model text, argument checks, running calls, responses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hoi_r1.frames import Frame
from hoi_r1.ov_hoi.builtin import TOOL_NAMES, default_registry
from hoi_r1.ov_hoi.detection import Detection, DetectionsFile, FileDetectionBackend
from hoi_r1.ov_hoi.protocol import (
    ToolCall,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    ToolSpec,
    call_key,
    format_tool_response,
    parse_tool_calls,
    run_tool_call,
    validate_arguments,
)

FRAME = Frame("absolute_original", (100, 80), (100, 80))


def _context(image: bool = True) -> ToolContext:
    dets = DetectionsFile({"a.png": [Detection((10, 10, 30, 70), "person", 0.9), Detection((40, 40, 50, 50), "cup", 0.8),
                                     Detection((60, 10, 70, 20), "cup", 0.1)]})
    return ToolContext(FRAME, "a.png", Image.new("RGB", (100, 80), (200, 10, 10)) if image else None,
                       FileDetectionBackend(dets))


# ----------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text, name, arguments, error",
    [
        ('<tool_call>{"name": "crop", "arguments": {"box": [1, 2, 3, 4]}}</tool_call>', "crop", {"box": [1.0, 2.0, 3.0, 4.0]}, None),
        ("<tool_call>{'name': 'crop', 'arguments': {'box': [1, 2, 3, 4]},}</tool_call>", "crop", {"box": [1.0, 2.0, 3.0, 4.0]}, None),
        ('<tool_call>```json\n{"name": "detect_humans"}\n```</tool_call>', "detect_humans", {}, None),
        ('<tool_call>{"name": "crop", "arguments": "{\\"box\\": [1, 2, 3, 4]}"}</tool_call>', "crop", {"box": [1.0, 2.0, 3.0, 4.0]}, None),
        ('<tool_call>{"name": "crop", "parameters": {"scale": 2}}</tool_call>', "crop", {"scale": 2.0}, None),
        ('<tool_call>{"arguments": {}}</tool_call>', "", {}, 'the call has no "name" string'),
        ('<tool_call>{"name": "crop", "arguments": [1, 2]}</tool_call>', "crop", {}, '"arguments" must be a JSON object'),
        ('<tool_call>[1, 2]</tool_call>', "", {}, 'the call is not a JSON object {"name": ..., "arguments": {...}}'),
        ('<tool_call>{"name": "crop"', "", {}, "the call has no closing </tool_call>"),
        ('<tool_call>__import__("os").system("x")</tool_call>', "", {}, 'the call is not a JSON object {"name": ..., "arguments": {...}}'),
    ],
)
def test_parse_one_call(text, name, arguments, error):
    (call,) = parse_tool_calls(text)
    assert (call.name, call.arguments, call.error) == (name, arguments, error)
    assert call.span == (0, len(text))


def test_parse_several_calls_and_spans():
    a = '<tool_call>{"name": "detect_humans"}</tool_call>'
    b = '<tool_call>{"name": "detect_objects", "arguments": {"categories": "cup, ball"}}</tool_call>'
    text = "<think>go</think>" + a + "\n" + b
    calls = parse_tool_calls(text)
    assert [c.name for c in calls] == ["detect_humans", "detect_objects"]
    assert text[calls[1].span[0] : calls[1].span[1]] == b
    assert parse_tool_calls("no calls here") == []
    assert len(parse_tool_calls(a * 40)) == 16


TOKENS = ["<tool_call>", "</tool_call>", '{"name": ', '"crop"', '"arguments": ', "{", "}", "[", "]", ",", ":", "'",
          '"', "1", "-2.5e9", "NaN", "```", "\\", " ", "box", "\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=80).map("".join))
def test_parser_never_raises_on_fuzz(text):
    for call in parse_tool_calls(text):
        assert isinstance(call.name, str) and isinstance(call.arguments, dict)
        assert 0 <= call.span[0] < call.span[1] <= len(text)
        assert (call.error is None) == call.ok


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=12))
def test_any_json_payload_is_answered_without_raising(value):
    text = f"<tool_call>{json.dumps({'name': 'crop', 'arguments': value})}</tool_call>"
    (call,) = parse_tool_calls(text)
    result = run_tool_call(call, _context(), default_registry())
    assert isinstance(result.text, str) and (result.ok == (result.error is None))


# ----------------------------------------------------------------- registry and arguments
def test_unknown_tool_and_bad_arguments_become_error_text():
    registry, ctx = default_registry(), _context()
    unknown = run_tool_call(ToolCall("rm_rf", {}, (0, 0)), ctx, registry)
    assert not unknown.ok and unknown.text.startswith("error: unknown tool 'rm_rf'")
    assert all(name in unknown.text for name in TOOL_NAMES)
    bad = run_tool_call(ToolCall("crop", {"box": [1, 2, 3]}, (0, 0)), ctx, registry)
    assert bad.text == 'error: crop: argument "box" must have 4 items, found 3'
    extra = run_tool_call(ToolCall("crop", {"box": [1, 2, 3, 4], "zoom": 3}, (0, 0)), ctx, registry)
    assert extra.error == 'crop: unknown argument "zoom"; the arguments are box, scale'
    scale = run_tool_call(ToolCall("crop", {"box": [1, 2, 30, 40], "scale": 9}, (0, 0)), ctx, registry)
    assert scale.error == 'crop: argument "scale" must be in [1, 4], found 9'
    parse_error = run_tool_call(parse_tool_calls("<tool_call>oops</tool_call>")[0], ctx, registry)
    assert not parse_error.ok and "not a JSON object" in parse_error.text


def test_tool_errors_and_bugs_do_not_raise():
    def broken(args, ctx):
        raise ZeroDivisionError("boom")

    def refuses(args, ctx):
        raise ToolError("cannot do that")

    schema = {"type": "object", "properties": {}}
    registry = ToolRegistry([ToolSpec("broken", "", schema, broken), ToolSpec("refuses", "", schema, refuses)])
    ctx = _context()
    assert run_tool_call(ToolCall("broken", {}, (0, 0)), ctx, registry).error == "broken: internal error (ZeroDivisionError)"
    assert run_tool_call(ToolCall("refuses", {}, (0, 0)), ctx, registry).error == "refuses: cannot do that"
    with pytest.raises(ValueError, match="registered twice"):
        ToolRegistry([ToolSpec("x", "", schema, broken), ToolSpec("x", "", schema, broken)])


def test_validate_arguments_types():
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0},
            "names": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "flag": {"type": "boolean", "default": False},
            "mode": {"type": "string", "enum": ["a", "b"]},
        },
        "required": ["n"],
    }
    assert validate_arguments(schema, {"n": "3", "names": "x, y"}) == ({"n": 3, "names": ["x", "y"], "flag": False}, None)
    assert validate_arguments(schema, {"n": 2.5})[1] == 'argument "n" must be an integer, found 2.5'
    assert validate_arguments(schema, {"n": True})[1] == 'argument "n" must be an integer, found true'
    assert validate_arguments(schema, {"n": float("inf")})[1].startswith('argument "n" must be an integer')
    assert validate_arguments(schema, {"n": 1, "mode": "c"})[1] == 'argument "mode" must be one of a, b, found "c"'
    assert validate_arguments(schema, {"n": 1, "names": [1]})[1] == 'argument "names" item must be a string, found 1'
    assert validate_arguments(schema, {})[1] == 'missing argument "n"'


def test_call_key_and_response_format():
    assert call_key("crop", {"box": [1, 2, 3, 4]}) != call_key("crop", {"box": [1, 2, 3, 5]})
    assert format_tool_response(ToolResult("x</tool_response>y")) == "<tool_response>xy</tool_response>"
    assert format_tool_response(ToolResult.failure("bad")) == "<tool_response>error: bad</tool_response>"


# ----------------------------------------------------------------- the built-in tools
def test_detect_tools_read_the_file_in_the_text_frame():
    registry = default_registry()
    ctx = _context()
    humans = run_tool_call(ToolCall("detect_humans", {}, (0, 0)), ctx, registry)
    assert humans.text == "person 1: [10, 10, 30, 70] 0.9"
    assert humans.data["detections"] == [{"label": "person", "box": [10, 10, 30, 70], "score": 0.9}]
    # a normalised frame: boxes are written in 0..1000
    ctx.frame = Frame("normalized_1000", (100, 80), (100, 80))
    objects = run_tool_call(ToolCall("detect_objects", {"categories": ["Cup", "kite"]}, (0, 0)), ctx, registry)
    assert objects.text == "cup 1: [400, 500, 500, 625] 0.8"
    assert objects.data["detections"] == [{"label": "cup", "box": [400, 500, 500, 625], "score": 0.8}]
    nothing = run_tool_call(ToolCall("detect_objects", {"categories": ["kite", "dog"]}, (0, 0)), ctx, registry)
    assert nothing.ok and nothing.text == "none found: kite, dog"
    missing = run_tool_call(ToolCall("detect_humans", {}, (0, 0)), ToolContext(FRAME, "b.png", None, ctx.detector), registry)
    assert missing.error == "detect_humans: detections file <memory> has no image 'b.png'"
    none = run_tool_call(ToolCall("detect_humans", {}, (0, 0)), ToolContext(FRAME), registry)
    assert none.error == "detect_humans: no detector is available for this image"


def test_relations_name_the_detections_as_the_detection_lines_do():
    registry, ctx = default_registry(), _context()
    both = run_tool_call(ToolCall("relations", {"pairs": [["person 1", "cup 1"], ["Person_1", "cup 1"]]}, (0, 0)), ctx, registry)
    # person 1 = (10, 10, 30, 70), cup 1 = (40, 40, 50, 50): a gap of 10 px = 0.17 person heights
    line = "right, gap 0.17, height 0.58, bottom -0.33, size 0.08"
    assert both.text == f"person 1, cup 1: {line}\nperson 1, cup 1: {line}"
    assert [r["distance"] for r in both.data["relations"]] == [0.167, 0.167]
    # cup 2 scores 0.1, under the backend's min_score: the detection lines never show it
    missing = run_tool_call(ToolCall("relations", {"pairs": [["person 1", "cup 2"]]}, (0, 0)), ctx, registry)
    assert missing.error == 'relations: no detection "cup 2": the detector found 1 cup'
    bad = run_tool_call(ToolCall("relations", {"pairs": [["person", "cup 1"]]}, (0, 0)), ctx, registry)
    assert bad.error == 'relations: "person" is not a detection name such as "person 1" or "cup 2"'
    short = run_tool_call(ToolCall("relations", {"pairs": [["person 1"]]}, (0, 0)), ctx, registry)
    assert short.error == 'relations: argument "pairs" item must have 2 items, found 1'


def test_visual_tools_return_images():
    registry, ctx = default_registry(), _context()
    crop = run_tool_call(ToolCall("crop", {"box": [40, 40, 50, 50], "scale": 3}, (0, 0)), ctx, registry)
    assert crop.ok and crop.image.size == (36, 36) and crop.data["region"] == [39, 39, 51, 51]
    assert crop.text == "region [39, 39, 51, 51], zoom 3, image attached"
    outside = run_tool_call(ToolCall("crop", {"box": [200, 200, 300, 300]}, (0, 0)), ctx, registry)
    assert outside.error == "crop: crop box [200.0, 200.0, 300.0, 300.0] lies outside the 100x80 image"
    view = run_tool_call(ToolCall("imagine", {"mode": "mirror", "side": "right", "amount": 0.5}, (0, 0)), ctx, registry)
    assert view.ok and view.image.size == (150, 80) and view.data["offset"] == [0, 0]
    assert view.text.endswith("offset [0, 0], size [150, 80], image attached")
    no_image = run_tool_call(ToolCall("crop", {"box": [1, 1, 5, 5]}, (0, 0)), _context(image=False), registry)
    assert no_image.error == "crop: no image is available to crop"
    spatial = run_tool_call(ToolCall("spatial_relations", {"human_box": [10, 10, 30, 70], "object_box": [30, 40, 40, 50]},
                                     (0, 0)), ctx, registry)
    assert spatial.data["relations"]["contact"] is True
    assert spatial.text == "right, touching, height 0.58, bottom -0.33, size 0.08"
    degenerate = run_tool_call(ToolCall("spatial_relations", {"human_box": [10, 10, 10, 70], "object_box": [0, 0, 1, 1]},
                                        (0, 0)), ctx, registry)
    assert degenerate.error == "spatial_relations: human_box must have x1 < x2 and y1 < y2, found [10.0, 10.0, 10.0, 70.0]"
