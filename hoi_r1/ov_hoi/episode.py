"""A tool-using episode as data: its turns (``assistant`` / ``tool``), the calls it made, its
flat transcript, and that transcript read back into turns and judged calls.

The episode keeps its turns in order with their roles, so the loss can train on model-written
text only: :meth:`Episode.messages` gives chat messages (``assistant`` / ``tool``), and
:meth:`Episode.transcript` the flat text with ``(start, end, role)`` spans. The flat transcript
is also what the OV-HOI rewards read (:mod:`hoi_r1.ov_hoi.rewards`): :func:`read_transcript`
recovers the turns from it (tool turns are the runs of ``<tool_response>`` blocks) and the call
counts, which agree with the episode's own. The driver that writes episodes is
:mod:`hoi_r1.ov_hoi.episode_driver`.

A call is *valid* when it ran (``ok``), *invalid* otherwise (malformed, unknown tool, bad
arguments, tool error, over the per-turn limit), *redundant* when it is valid and repeats an
earlier valid call of the episode (same name and canonical arguments, :func:`call_key`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from hoi_r1.answer import ANSWER_OPEN
from hoi_r1.ov_hoi.builtin import default_registry
from hoi_r1.ov_hoi.protocol import (
    ERROR_PREFIX,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    ToolCall,
    ToolRegistry,
    ToolResult,
    call_key,
    parse_tool_calls,
)

Role = Literal["assistant", "tool"]
StopReason = Literal["answer", "no_tool_call", "turn_budget"]
_BLOCK = rf"{re.escape(RESPONSE_OPEN)}(?:.*?)(?:{re.escape(RESPONSE_CLOSE)}|\Z)"
_RESPONSE_RUN = re.compile(rf"{_BLOCK}(?:\s*{_BLOCK})*", re.S)
_RESPONSE_BLOCK = re.compile(rf"{re.escape(RESPONSE_OPEN)}(.*?)(?:{re.escape(RESPONSE_CLOSE)}|\Z)", re.S)


@dataclass(frozen=True)
class CallRecord:
    """One call of an episode: the model turn it was written in (0-based), the call, its result,
    and whether it repeats an earlier valid call."""

    turn: int
    call: ToolCall
    result: ToolResult
    redundant: bool = False


@dataclass(frozen=True)
class Turn:
    """One turn: ``assistant`` (model-written) or ``tool`` (the runtime's responses).

    Args:
        role: who wrote it.
        text: the text (a tool turn: its ``<tool_response>`` blocks joined by newlines).
        images: images the tool turn adds (visual tools), in order.
        truncated: a model turn that stopped at the engine's token limit.
    """

    role: Role
    text: str
    images: tuple = ()
    truncated: bool = False


@dataclass(frozen=True)
class Transcript:
    """The flat text of an episode's turns and the ``(start, end, role)`` span of each turn."""

    text: str
    spans: tuple[tuple[int, int, Role], ...]

    def model_mask(self) -> list[bool]:
        """Per character, true where the model wrote it (the loss trains on these only)."""
        mask = [False] * len(self.text)
        for start, end, role in self.spans:
            if role == "assistant":
                mask[start:end] = [True] * (end - start)
        return mask


@dataclass
class Episode:
    """A finished multi-turn rollout.

    Args:
        turns: the turns written after the first messages, in order.
        calls: every call read from the model's turns that was answered.
        stop_reason: ``answer``, ``no_tool_call`` or ``turn_budget``.
        unanswered_calls: calls written in the last turn of the budget (not run).
    """

    turns: list[Turn] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    stop_reason: StopReason = "no_tool_call"
    unanswered_calls: int = 0

    @property
    def images(self) -> list:
        """Images added by tool turns, in order."""
        return [image for turn in self.turns for image in turn.images]

    @property
    def num_valid_calls(self) -> int:
        return sum(c.result.ok for c in self.calls)

    @property
    def num_invalid_calls(self) -> int:
        return sum(not c.result.ok for c in self.calls)

    @property
    def num_redundant_calls(self) -> int:
        return sum(c.redundant for c in self.calls)

    @property
    def model_turns(self) -> int:
        return sum(t.role == "assistant" for t in self.turns)

    @property
    def truncated(self) -> bool:
        """Some model turn stopped at the engine's token limit."""
        return any(t.truncated for t in self.turns)

    @property
    def final_answer(self) -> str | None:
        """The last model turn if it holds ``<answer>``, else ``None``."""
        last = next((t for t in reversed(self.turns) if t.role == "assistant"), None)
        return last.text if last is not None and ANSWER_OPEN in last.text else None

    def messages(self) -> list[dict]:
        """The turns as chat messages: ``assistant`` text, ``tool`` text plus one image
        placeholder ``{"type": "image"}`` per added image (the images are :attr:`images`)."""
        out = []
        for turn in self.turns:
            parts: list[dict] = [{"type": "text", "text": turn.text}]
            parts += [{"type": "image"} for _ in turn.images]
            out.append({"role": turn.role, "content": parts})
        return out

    def transcript(self) -> Transcript:
        """The turns concatenated, with each turn's span (what the OV-HOI rewards read)."""
        spans, pos, pieces = [], 0, []
        for turn in self.turns:
            pieces.append(turn.text)
            spans.append((pos, pos + len(turn.text), turn.role))
            pos += len(turn.text)
        return Transcript("".join(pieces), tuple(spans))



# ===================================================================== reading a transcript back
@dataclass(frozen=True)
class TranscriptReading:
    """A transcript split into turns, with its calls judged from the responses that follow them.

    Args:
        turns: ``(role, text)`` in order; tool turns are runs of ``<tool_response>`` blocks.
        calls: ``(model turn index, call, ok, redundant)`` of every call that got a response
            (``ok``: the response is not an ``error:`` message).
        unanswered_calls: calls with no response (the last turn of a budget, or missing blocks).
    """

    turns: tuple[tuple[Role, str], ...]
    calls: tuple[tuple[int, ToolCall, bool, bool], ...]
    unanswered_calls: int

    @property
    def model_turns(self) -> list[str]:
        return [text for role, text in self.turns if role == "assistant"]

    @property
    def num_valid_calls(self) -> int:
        return sum(ok for _, _, ok, _ in self.calls)

    @property
    def num_invalid_calls(self) -> int:
        return sum(not ok for _, _, ok, _ in self.calls)

    @property
    def num_redundant_calls(self) -> int:
        return sum(redundant for *_, redundant in self.calls)


def read_episode(episode: Episode) -> TranscriptReading:
    """The :class:`TranscriptReading` of an episode, from its own turns and call records (the
    roles are known, so a model turn that writes ``<tool_response>`` itself stays a model turn)."""
    calls = tuple((r.turn, r.call, r.result.ok, r.redundant) for r in episode.calls)
    return TranscriptReading(tuple((t.role, t.text) for t in episode.turns), calls, episode.unanswered_calls)


def read_transcript(text: str, registry: ToolRegistry | None = None) -> TranscriptReading:
    """Split a flat transcript (:meth:`Episode.transcript`) into turns and judge its calls: the
    ``k``-th call of a model turn is answered by the ``k``-th block of the tool turn after it;
    a valid call is redundant when an earlier valid call has the same checked arguments."""
    if registry is None:
        registry = default_registry()
    text = text if isinstance(text, str) else ""
    turns: list[tuple[Role, str]] = []
    pos = 0
    for m in _RESPONSE_RUN.finditer(text):
        if m.start() > pos or not turns:
            turns.append(("assistant", text[pos : m.start()]))
        turns.append(("tool", m.group()))
        pos = m.end()
    if pos < len(text) or not turns or turns[-1][0] == "tool":
        turns.append(("assistant", text[pos:]))
    calls, unanswered, seen = [], 0, set()
    model_index = -1
    for i, (role, turn_text) in enumerate(turns):
        if role != "assistant":
            continue
        model_index += 1
        found = parse_tool_calls(turn_text)
        responses = _RESPONSE_BLOCK.findall(turns[i + 1][1]) if i + 1 < len(turns) else []
        unanswered += max(0, len(found) - len(responses))
        for call, response in zip(found, responses):
            ok = not response.startswith(ERROR_PREFIX)
            redundant = False
            if ok:
                tool, arguments, error = registry.check(call)
                key = call_key(call.name, arguments) if error is None and tool is not None else None
                redundant = key is not None and key in seen
                if key is not None:
                    seen.add(key)
            calls.append((model_index, call, ok, redundant))
    return TranscriptReading(tuple(turns), tuple(calls), unanswered)
