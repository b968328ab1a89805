"""The tool-call protocol: read calls out of model text, check their arguments, run them, and
write the response the model reads next (OV-HOI / ImagineAgent, arXiv 2602.11499; Qwen2.5's
``<tool_call>`` tags).

The model writes, inside its turn::

    <think>…</think><tool_call>{"name": "detect_objects", "arguments": {"categories": ["cup"]}}</tool_call>

and the runtime answers with one ``<tool_response>…</tool_response>`` block per call: the tool's
JSON result, or ``error: …`` text. Model output is data: :func:`parse_tool_calls` never raises
and never evaluates anything; the payload is read with the codec's lenient JSON reader
(:func:`hoi_r1.lenient_json.read_json_list`: code fences, single quotes, trailing commas) and only
tools named in a :class:`ToolRegistry` can run. :func:`run_tool_call` never raises either: an
unknown tool, a bad argument or a failing tool becomes a :class:`ToolResult` with ``ok=False``
and an error the model can read.

Arguments are checked against a small JSON-schema subset (the same schema is shown to the model
in the system prompt): an ``object`` with ``properties`` of type ``number``, ``integer``,
``string`` (optional ``enum``), ``boolean`` or ``array`` (``items``, ``minItems``,
``maxItems``), ``required`` keys, defaults, and no unknown keys. Numbers may be written as numeric
strings; an array of strings may be written as one comma-separated string.

Boxes in arguments and results are in the conversation's text :class:`~hoi_r1.frames.Frame`
(the answer's frame); tools work in original pixels.

>>> calls = parse_tool_calls('<think>find people</think><tool_call>{"name": "detect_humans", '
...                          '"arguments": {},}</tool_call>')
>>> calls[0].name, calls[0].arguments, calls[0].error
('detect_humans', {}, None)
>>> parse_tool_calls("<tool_call>detect_humans()</tool_call>")[0].error
'the call is not a JSON object {"name": ..., "arguments": {...}}'
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from PIL import Image

from hoi_r1.frames import Frame
from hoi_r1.lenient_json import read_json_list
from hoi_r1.ov_hoi.detection import DetectionBackend
from hoi_r1.ov_hoi.image_ops import ImagineBackend

logger = logging.getLogger(__name__)

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
ERROR_PREFIX = "error: "
MAX_CALL_CHARS = 4_000
"""Characters of one call payload that are read (a longer one is an error)."""
MAX_CALLS_READ = 16
"""Calls read from one turn; later ones are ignored."""


# ===================================================================== calls
@dataclass(frozen=True)
class ToolCall:
    """One ``<tool_call>`` read from model text.

    Args:
        name: the tool name written (``""`` when none could be read).
        arguments: the arguments object written (``{}`` when none could be read).
        span: ``(start, end)`` of the whole ``<tool_call>…</tool_call>`` in the text.
        error: why the call cannot run (``None`` when it was read).
    """

    name: str
    arguments: dict
    span: tuple[int, int]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_tool_calls(text: str, max_calls: int = MAX_CALLS_READ) -> list[ToolCall]:
    """Every ``<tool_call>…</tool_call>`` in ``text``, in order (an unclosed last one is read to
    the end of the text and marked unclosed); never raises."""
    if not isinstance(text, str):
        return []
    calls: list[ToolCall] = []
    pos = 0
    while len(calls) < max_calls and (start := text.find(CALL_OPEN, pos)) >= 0:
        body = start + len(CALL_OPEN)
        end = text.find(CALL_CLOSE, body)
        closed = end >= 0
        stop = end + len(CALL_CLOSE) if closed else len(text)
        payload_end = end if closed else len(text)
        calls.append(_read_call(text, body, payload_end, (start, stop), closed))
        pos = stop
    return calls


def _read_call(text: str, start: int, end: int, span: tuple[int, int], closed: bool) -> ToolCall:
    if not closed:
        return ToolCall("", {}, span, f"the call has no closing {CALL_CLOSE}")
    if end - start > MAX_CALL_CHARS:
        return ToolCall("", {}, span, f"the call is longer than {MAX_CALL_CHARS} characters")
    reading = read_json_list(text, start, end, max_elements=2)
    value = reading.elements[0] if len(reading.elements) == 1 else None
    if not isinstance(value, dict):
        return ToolCall("", {}, span, 'the call is not a JSON object {"name": ..., "arguments": {...}}')
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        return ToolCall("", {}, span, 'the call has no "name" string')
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # OpenAI style: arguments as a JSON string
        inner = read_json_list(arguments, max_elements=2).elements
        arguments = inner[0] if len(inner) == 1 else arguments
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return ToolCall(name.strip()[:80], {}, span, '"arguments" must be a JSON object')
    return ToolCall(name.strip()[:80], arguments, span)


def call_key(name: str, arguments: Mapping) -> str:
    """A canonical string of a checked call: equal keys mean a redundant (repeated) call.

    >>> call_key("crop", {"scale": 2.0, "box": [1.0, 2.0, 3.0, 4.0]}) == call_key("crop", {"box": [1, 2, 3, 4], "scale": 2})
    True
    """
    return name + json.dumps(_canonical(arguments), sort_keys=True)


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


# ===================================================================== tools and results
@dataclass(frozen=True)
class ToolResult:
    """What a tool call gave back.

    Args:
        text: the response body the model reads (JSON, or the error message).
        image: an image for the next turn (visual tools), else ``None``.
        ok: the call ran.
        error: why it did not (``None`` when ``ok``).
        data: the structured result (for builders and logging; not shown to the model).
    """

    text: str
    image: "Image.Image | None" = None
    ok: bool = True
    error: str | None = None
    data: dict | None = None

    @classmethod
    def failure(cls, error: str) -> "ToolResult":
        return cls(ERROR_PREFIX + error, None, False, error)


class ToolError(ValueError):
    """Raised by a tool for a request it cannot serve; the message goes back to the model."""


@dataclass
class ToolContext:
    """What the tools of one episode may use.

    Args:
        frame: the conversation's text frame (boxes in arguments and results).
        file_name: the image's ``file_name`` (the detections file key).
        image: the original image (visual tools need it).
        detector: who answers ``detect_humans`` / ``detect_objects``.
        imagine_backend: who answers ``imagine``.
    """

    frame: Frame
    file_name: str = ""
    image: "Image.Image | None" = None
    detector: "DetectionBackend | None" = None
    imagine_backend: "ImagineBackend | None" = None


ToolFunction = Callable[[dict, ToolContext], ToolResult]


@dataclass(frozen=True)
class ToolSpec:
    """A tool: its name, one-line description, argument schema and implementation.

    Args:
        name: the name the model calls it by.
        description: what it does, for the system prompt.
        parameters: JSON-schema-like ``{"type": "object", "properties": {...}, "required": [...]}``.
        function: ``(checked arguments, context) -> ToolResult``; may raise :class:`ToolError`.
    """

    name: str
    description: str
    parameters: dict
    function: ToolFunction = field(repr=False)

    def schema(self) -> dict:
        """The JSON description shown to the model."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


class ToolRegistry:
    """Tools by name; only these can run.

    >>> registry = ToolRegistry([ToolSpec("echo", "Repeat a word.", {"type": "object", "properties":
    ...     {"word": {"type": "string"}}, "required": ["word"]}, lambda args, ctx: ToolResult(args["word"]))])
    >>> ctx = ToolContext(Frame("absolute_original", (10, 10), (10, 10)))
    >>> run_tool_call(ToolCall("echo", {"word": "hi"}, (0, 0)), ctx, registry).text
    'hi'
    >>> run_tool_call(ToolCall("echo", {}, (0, 0)), ctx, registry).text
    'error: echo: missing argument "word"'
    """

    def __init__(self, tools: list[ToolSpec]) -> None:
        self._tools: dict[str, ToolSpec] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"tool {tool.name!r} is registered twice")
            self._tools[tool.name] = tool

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def schemas(self) -> list[dict]:
        return [tool.schema() for tool in self._tools.values()]

    def check(self, call: ToolCall) -> tuple[ToolSpec | None, dict, str | None]:
        """``(tool, checked arguments, error)`` of a parsed call, without running it."""
        if call.error is not None:
            return None, {}, call.error
        tool = self._tools.get(call.name)
        if tool is None:
            return None, {}, f"unknown tool {call.name[:40]!r}; the tools are {', '.join(self.names)}"
        arguments, error = validate_arguments(tool.parameters, call.arguments)
        return tool, arguments, (f"{tool.name}: {error}" if error else None)


def run_tool_call(call: ToolCall, context: ToolContext, registry: ToolRegistry) -> ToolResult:
    """Check and run one call; never raises (errors come back as ``ok=False`` results)."""
    tool, arguments, error = registry.check(call)
    if error is not None or tool is None:
        return ToolResult.failure(error or "unknown tool")
    try:
        result = tool.function(arguments, context)
    except (ToolError, ValueError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        return ToolResult.failure(f"{tool.name}: {message}")
    except Exception as e:  # a bug in a tool must not end the rollout; it is logged loudly
        logger.exception("tool %s failed on arguments %r", tool.name, arguments)
        return ToolResult.failure(f"{tool.name}: internal error ({type(e).__name__})")
    return result


def format_tool_response(result: ToolResult) -> str:
    """The text block appended to the conversation for one call.

    >>> format_tool_response(ToolResult('{"detections": []}'))
    '<tool_response>{"detections": []}</tool_response>'
    """
    body = result.text.replace(RESPONSE_CLOSE, "").replace(RESPONSE_OPEN, "")
    return f"{RESPONSE_OPEN}{body}{RESPONSE_CLOSE}"


# ===================================================================== argument checks
def validate_arguments(schema: Mapping, arguments: Mapping) -> tuple[dict, str | None]:
    """Check ``arguments`` against an object schema; ``(checked arguments with defaults, error)``.

    >>> schema = {"type": "object", "properties": {"box": {"type": "array", "items": {"type": "number"},
    ...           "minItems": 4, "maxItems": 4}, "scale": {"type": "number", "default": 2}}, "required": ["box"]}
    >>> validate_arguments(schema, {"box": [1, 2, "3", 4]})
    ({'box': [1.0, 2.0, 3.0, 4.0], 'scale': 2}, None)
    >>> validate_arguments(schema, {"box": [1, 2], "zoom": 3})[1]
    'unknown argument "zoom"; the arguments are box, scale'
    """
    properties: Mapping = schema.get("properties", {})
    unknown = [k for k in arguments if k not in properties]
    if unknown:
        return {}, f'unknown argument "{str(unknown[0])[:40]}"; the arguments are {", ".join(properties) or "none"}'
    out: dict = {}
    for name, prop in properties.items():
        if name not in arguments:
            if name in schema.get("required", ()):
                return {}, f'missing argument "{name}"'
            if "default" in prop:
                out[name] = prop["default"]
            continue
        value, error = _check_value(prop, arguments[name])
        if error is not None:
            return {}, f'argument "{name}" {error}'
        out[name] = value
    return out, None


def _check_value(prop: Mapping, value: Any) -> tuple[Any, str | None]:
    kind = prop.get("type")
    if kind in ("number", "integer"):
        number = _as_number(value)
        if number is None or (kind == "integer" and not number.is_integer()):
            return None, f"must be {'an integer' if kind == 'integer' else 'a number'}, found {_show(value)}"
        low, high = prop.get("minimum", -math.inf), prop.get("maximum", math.inf)
        if not low <= number <= high:
            return None, f"must be in [{low}, {high}], found {_show(value)}"
        return (int(number) if kind == "integer" else number), None
    if kind == "string":
        if not isinstance(value, str):
            return None, f"must be a string, found {_show(value)}"
        if "enum" in prop and value not in prop["enum"]:
            return None, f"must be one of {', '.join(prop['enum'])}, found {_show(value)}"
        return value[: prop.get("maxLength", 500)], None
    if kind == "boolean":
        if not isinstance(value, bool):
            return None, f"must be true or false, found {_show(value)}"
        return value, None
    if kind == "array":
        items = prop.get("items", {})
        if isinstance(value, str) and items.get("type") == "string":
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            return None, f"must be a list, found {_show(value)}"
        low, high = prop.get("minItems", 0), prop.get("maxItems", 64)
        if not low <= len(value) <= high:
            size = str(low) if low == high else f"{low} to {high}"
            return None, f"must have {size} items, found {len(value)}"
        out = []
        for item in value:
            checked, error = _check_value(items, item)
            if error is not None:
                return None, f"item {error}"
            out.append(checked)
        return out, None
    return value, None  # untyped: passed through (the tool checks it)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and len(value) <= 40:
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def _show(value: Any) -> str:
    return json.dumps(value)[:40] if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
