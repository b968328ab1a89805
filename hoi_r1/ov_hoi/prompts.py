"""Prompts of the tool-using (OV-HOI) mode: a system text that lists the tools with their argument
schemas and the call protocol, and a user query naming the verbs and objects of interest.

Open vocabulary: the verbs and objects are whatever the query lists — a dataset's vocabulary
during training, any user list at inference — and the answer may use only those. The answer
contract is the HOI-R1 one (:mod:`hoi_r1.answer`), so the same parser, metric and rewards read it.

>>> from hoi_r1.frames import Frame
>>> from hoi_r1.ov_hoi.builtin import default_registry
>>> frame = Frame("absolute_original", (640, 480), (640, 480))
>>> messages = build_tool_messages(default_registry(), ["ride", "sit_on"], ["person", "bicycle"], frame)
>>> [m["role"] for m in messages]
['system', 'user']
>>> print(messages[1]["content"][1]["text"].splitlines()[1])
Objects of interest: person, bicycle
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from hoi_r1.frames import Frame
from hoi_r1.ov_hoi.protocol import CALL_CLOSE, CALL_OPEN, RESPONSE_CLOSE, RESPONSE_OPEN, ToolRegistry

TOOL_TASK = "You detect human-object interactions, calling tools as you reason."
ANSWER_LAYOUT = '<answer>[{"human": [x1, y1, x2, y2], "object": [x1, y1, x2, y2], "object class": "<object>", "verb class": ["<verb>"]}]</answer>'


def build_tool_system_prompt(registry: ToolRegistry, task: str = TOOL_TASK) -> str:
    """The system text: the task, one line per tool (its signature and what it answers), and how
    to call tools and answer. Compact on purpose: every turn of an episode encodes it again.

    >>> from hoi_r1.ov_hoi.builtin import default_registry
    >>> text = build_tool_system_prompt(default_registry())
    >>> print(text.splitlines()[2])
    detect_humans(): the people's boxes and scores.
    >>> "<tool_call>" in text, len(text) < 1100
    (True, True)
    """
    tools = "\n".join(f"{tool_signature(schema)}: {schema['description']}" for schema in registry.schemas())
    return (
        f"{task}\nTools:\n{tools}\n"
        f'Think in <think></think>, then call tools as {CALL_OPEN}{{"name": ..., "arguments": {{...}}}}{CALL_CLOSE} '
        f"and stop; each call is answered in {RESPONSE_OPEN}{RESPONSE_CLOSE}. Finally answer:\n"
        f"<think>reasoning</think>{ANSWER_LAYOUT}"
    )


def tool_signature(schema: dict) -> str:
    """``name(argument, argument=default)`` of a tool schema (:meth:`ToolSpec.schema`).

    >>> tool_signature({"name": "crop", "parameters": {"properties": {"box": {}, "scale": {"default": 2.0}},
    ...                 "required": ["box"]}})
    'crop(box, scale=2.0)'
    """
    params = schema.get("parameters", {})
    args = []
    for name, prop in params.get("properties", {}).items():
        if name in params.get("required", ()):
            args.append(name)
        elif "enum" in prop:
            args.append(f"{name}={'|'.join(map(str, prop['enum']))}")
        else:
            args.append(f"{name}={json.dumps(prop.get('default'))}")
    return f"{schema['name']}({', '.join(args)})"


def build_tool_query(verbs: Sequence[str], objects: Sequence[str], frame: Frame) -> str:
    """The user text: the verbs and objects of interest (any names) and the box frame.

    >>> print(build_tool_query(["hold"], ["cup"], Frame("normalized_1000", (64, 48), (64, 48))))
    Find every person who interacts with an object, and how.
    Objects of interest: cup
    Verbs of interest: hold
    Give every box as [x1, y1, x2, y2] with integer coordinates from 0 to 1000, where 0 is the left or top edge of the image and 1000 the right or bottom edge. Use only the objects and verbs listed; answer [] if no person interacts with them.
    """
    if not verbs or not objects:
        raise ValueError(f"the query needs at least one verb and one object, found {list(verbs)}, {list(objects)}")
    return (
        "Find every person who interacts with an object, and how.\n"
        f"Objects of interest: {', '.join(_spaced(o) for o in objects)}\n"
        f"Verbs of interest: {', '.join(_spaced(v) for v in verbs)}\n"
        f"{frame.describe()} Use only the objects and verbs listed; answer [] if no person interacts with them."
    )


def build_tool_messages(
    registry: ToolRegistry, verbs: Sequence[str], objects: Sequence[str], frame: Frame, image: Any = None
) -> list[dict]:
    """``[system, user]`` chat messages for one image (the user turn carries the image first;
    ``None`` leaves a bare ``{"type": "image"}`` placeholder, as :func:`hoi_r1.prompts.build_messages`)."""
    image_part: dict = {"type": "image"} if image is None else {"type": "image", "image": image}
    return [
        {"role": "system", "content": [{"type": "text", "text": build_tool_system_prompt(registry)}]},
        {"role": "user", "content": [image_part, {"type": "text", "text": build_tool_query(verbs, objects, frame)}]},
    ]


def _spaced(name: str) -> str:
    return name.replace("_", " ")
