"""The cold-start record file (``hoi-r1 cold-start`` writes it, :mod:`hoi_r1.ov_hoi.cold_start`):
reading and checking it, and turning a record back into chat messages and the images its tool
turns showed (the layout: :mod:`hoi_r1.ov_hoi.cold_start`'s docstring, docs/ov_hoi.md)."""

from __future__ import annotations

import json
from pathlib import Path

from hoi_r1.frames import FRAME_KINDS, Frame
from hoi_r1.ov_hoi.builtin import default_registry
from hoi_r1.ov_hoi.protocol import ToolCall, ToolContext, ToolRegistry, run_tool_call


def read_cold_start(path: str | Path) -> list[dict]:
    """Read a cold-start JSONL; errors name the file, the line and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cold-start file {path} does not exist")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not valid JSON ({e})") from None
        problem = _record_problem(record)
        if problem:
            raise ValueError(f"{path}, line {n}: {problem}")
        records.append(record)
    return records


def _record_problem(record: object) -> str | None:
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    for key in ("file_name", "frame", "messages"):
        if key not in record:
            return f"the record has no {key!r}"
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("assistant", "tool") or not isinstance(m.get("content"), str):
            return f"message {k} must have role assistant or tool and a string content"
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    frame = record["frame"]
    if not isinstance(frame, dict) or frame.get("kind") not in FRAME_KINDS:
        return f"'frame' must be an object with kind in {FRAME_KINDS}"
    return None


def record_frame(record: dict) -> Frame:
    """The text frame a record was written in."""
    f = record["frame"]
    return Frame(f["kind"], tuple(f["original_size"]), tuple(f["resized_size"]))


def record_images(record: dict, image, registry: ToolRegistry | None = None) -> list:
    """The images the record's tool turns showed, re-created from the original ``image`` by
    re-running the recorded visual calls (in order)."""
    registry = registry or default_registry()
    context = ToolContext(record_frame(record), record["file_name"], image)
    out = []
    for message in record["messages"]:
        for spec in message.get("images", ()):
            result = run_tool_call(ToolCall(spec["tool"], spec["arguments"], (0, 0)), context, registry)
            if result.image is None:
                raise ValueError(f"{record['file_name']}: recorded {spec['tool']} call gave no image: {result.text}")
            out.append(result.image)
    return out


def to_chat_messages(record: dict) -> list[dict]:
    """The record's messages in the chat layout (one ``{"type": "image"}`` per recorded image)."""
    out = []
    for m in record["messages"]:
        parts: list[dict] = [{"type": "text", "text": m["content"]}]
        parts += [{"type": "image"} for _ in m.get("images", ())]
        out.append({"role": m["role"], "content": parts})
    return out

