"""The multi-turn tool-use driver: generate, run the tool calls, append their responses, repeat.

:func:`run_episode` is pure: the text generator is injected (``generate_fn(messages, images) ->
str``; the GRPO / HF engines pass the policy, tests pass scripted fakes). One episode:

1. the model writes a turn (``generate_fn`` on the conversation so far);
2. the turn holds ``<answer>`` → stop (``answer``); it holds no ``<tool_call>`` → stop
   (``no_tool_call``); it is the last of ``max_turns`` → stop (``turn_budget``; its calls are
   not run, as nothing would read them);
3. otherwise every call of the turn is checked and run (at most ``max_calls_per_turn``; the
   others get an error), and one tool turn is appended: one ``<tool_response>`` block per call,
   plus the images of visual tools; then back to 1.

:class:`EpisodeState` is the same loop one model turn at a time (``advance(text)``), and
:func:`run_episodes` drives many states in lockstep: each round, every unfinished episode writes
its next turn in one batched call (``generate_batch(messages per episode, images per episode)``;
:mod:`hoi_r1.rollout.episodes` wraps a Hugging Face policy into it), so episodes of different
lengths share padded generations until the last one ends.

A call is *valid* when it ran (``ok``), *invalid* otherwise (malformed, unknown tool, bad
arguments, tool error, over the per-turn limit), *redundant* when it is valid and repeats an
earlier valid call of the episode (same name and canonical arguments, :func:`call_key`); a
redundant call is answered from the first call's result.

The episode keeps its turns in order with their roles, so the loss can train on model-written
text only: :meth:`Episode.messages` gives chat messages (``assistant`` / ``tool``), and
:meth:`Episode.transcript` the flat text with ``(start, end, role)`` spans. The flat transcript
is also what the OV-HOI rewards read (:mod:`hoi_r1.tools.rewards`): :func:`read_transcript`
recovers the turns from it (tool turns are the runs of ``<tool_response>`` blocks) and the call
counts, which agree with the episode's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, Sequence

from hoi_r1.answer import ANSWER_OPEN
from hoi_r1.tools.protocol import (
    ERROR_PREFIX,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    ToolCall,
    ToolContext,
    ToolRegistry,
    ToolResult,
    call_key,
    format_tool_response,
    parse_tool_calls,
    run_tool_call,
)

if TYPE_CHECKING:
    from PIL import Image

Role = Literal["assistant", "tool"]
StopReason = Literal["answer", "no_tool_call", "turn_budget"]
GenerateFn = Callable[[list[dict], list["Image.Image"]], str]
BatchGenerateFn = Callable[[list[list[dict]], list[list["Image.Image"]]], Sequence["str | tuple[str, bool]"]]
DEFAULT_MAX_CALLS_PER_TURN = 4
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


@dataclass(frozen=True)
class EpisodeSettings:
    """How tool-using episodes run (``data.task: tools``: validation, test, predict, GRPO rollouts).

    Args:
        max_turns: most model turns (generations) per episode, at least 1; the calls of the last
            one are not run.
        max_calls_per_turn: calls run per model turn; later calls of the turn get an error.
        stop_strings: the engine ends a model turn at the first of these (or at the end-of-turn
            token). The default lets one turn hold several calls (as the cold-start traces do) and
            stops a turn that starts writing a tool response itself; add ``</tool_call>`` for one
            call per turn.
    """

    max_turns: int = 5
    max_calls_per_turn: int = DEFAULT_MAX_CALLS_PER_TURN
    stop_strings: tuple[str, ...] = ("</answer>", RESPONSE_OPEN)

    def __post_init__(self) -> None:
        if self.max_turns < 1 or self.max_calls_per_turn < 1:
            raise ValueError(
                f"max_turns and max_calls_per_turn must be >= 1, found {self.max_turns}, {self.max_calls_per_turn}"
            )


class EpisodeState:
    """One episode in progress: :func:`run_episode` one model turn at a time, so that a batch
    driver (:func:`run_episodes`) can advance many episodes together.

    Args:
        first_messages: the prompt (system and user messages, in the chat layout).
        context: what the tools may use (image, frame, detector, imagine backend).
        max_turns: the most model turns (generations), at least 1.
        registry: the tools (default: :func:`hoi_r1.tools.builtin.default_registry`).
        max_calls_per_turn: calls run per model turn; later calls of the turn get an error.
    """

    def __init__(
        self,
        first_messages: Sequence[dict],
        context: ToolContext,
        max_turns: int,
        registry: ToolRegistry | None = None,
        max_calls_per_turn: int = DEFAULT_MAX_CALLS_PER_TURN,
    ) -> None:
        if max_turns < 1 or max_calls_per_turn < 1:
            raise ValueError(f"max_turns and max_calls_per_turn must be >= 1, found {max_turns}, {max_calls_per_turn}")
        if registry is None:
            from hoi_r1.tools.builtin import default_registry

            registry = default_registry()
        self.first_messages = list(first_messages)
        self.context, self.registry = context, registry
        self.max_turns, self.max_calls_per_turn = max_turns, max_calls_per_turn
        self.episode = Episode()
        self.done = False
        self._answered: dict[str, ToolResult] = {}
        self._model_turns = 0

    def messages(self) -> list[dict]:
        """The prompt followed by the episode's turns (what the next model turn continues)."""
        return [*self.first_messages, *self.episode.messages()]

    @property
    def images(self) -> list:
        """Images the tool turns added so far (the prompt's own images are the engine's to supply)."""
        return self.episode.images

    def advance(self, text: str, truncated: bool = False) -> None:
        """Add the model's next turn; run its calls and add the tool turn, or finish the episode.

        Args:
            text: the model turn (anything else than a string counts as empty).
            truncated: the turn stopped at the engine's token limit.
        """
        if self.done:
            raise RuntimeError("the episode is finished; it takes no more turns")
        episode, index = self.episode, self._model_turns
        text = text if isinstance(text, str) else ""
        self._model_turns += 1
        episode.turns.append(Turn("assistant", text, truncated=bool(truncated)))
        calls = parse_tool_calls(text)
        if ANSWER_OPEN in text:
            episode.stop_reason, self.done = "answer", True
        elif not calls:
            episode.stop_reason, self.done = "no_tool_call", True
        elif index == self.max_turns - 1:
            episode.stop_reason, episode.unanswered_calls, self.done = "turn_budget", len(calls), True
        if self.done:
            return
        records = [
            _answer(call, n, index, self.context, self.registry, self._answered, self.max_calls_per_turn)
            for n, call in enumerate(calls)
        ]
        episode.calls += records
        blocks = "\n".join(format_tool_response(r.result) for r in records)
        images = tuple(r.result.image for r in records if r.result.image is not None)
        episode.turns.append(Turn("tool", blocks, images))


def run_episode(
    generate_fn: GenerateFn,
    first_messages: Sequence[dict],
    context: ToolContext,
    max_turns: int,
    registry: ToolRegistry | None = None,
    max_calls_per_turn: int = DEFAULT_MAX_CALLS_PER_TURN,
) -> Episode:
    """Run one tool-using conversation (algorithm in the module docstring).

    Args:
        generate_fn: ``(messages, images) -> text`` of the next model turn; ``messages`` is
            ``first_messages`` followed by the episode's turns (:meth:`Episode.messages`),
            ``images`` the images the tool turns added so far (the prompt's own images are the
            engine's to supply).
        first_messages: the prompt (system and user messages, in the chat layout).
        context: what the tools may use (image, frame, detector, imagine backend).
        max_turns: the most model turns (generations), at least 1.
        registry: the tools (default: :func:`hoi_r1.tools.builtin.default_registry`).
        max_calls_per_turn: calls run per model turn; later calls of the turn get an error.
    """
    state = EpisodeState(first_messages, context, max_turns, registry, max_calls_per_turn)
    while not state.done:
        state.advance(generate_fn(state.messages(), state.images))
    return state.episode


def run_episodes(generate_batch: BatchGenerateFn, states: Sequence[EpisodeState]) -> list[Episode]:
    """Run many episodes in lockstep: every round, all unfinished episodes write their next turn
    in one ``generate_batch`` call (one padded generation), then their tools run.

    Args:
        generate_batch: ``(messages per episode, images per episode) -> one text per episode``
            for the unfinished episodes, in the order of ``states`` (the arguments as for
            :func:`run_episode`'s ``generate_fn``); an item may also be ``(text, truncated)``.
        states: the episodes, fresh or under way.

    Returns:
        The episodes of ``states``, in order, each finished.
    """
    while active := [s for s in states if not s.done]:
        outputs = list(generate_batch([s.messages() for s in active], [s.images for s in active]))
        if len(outputs) != len(active):
            raise ValueError(f"generate_batch returned {len(outputs)} turns for {len(active)} unfinished episodes")
        for state, output in zip(active, outputs):
            text, truncated = output if isinstance(output, tuple) else (output, False)
            state.advance(text, truncated)
    return [s.episode for s in states]


def _answer(call, n, turn, context, registry, answered, max_calls) -> CallRecord:
    if n >= max_calls:
        return CallRecord(turn, call, ToolResult.failure(f"at most {max_calls} tool calls per turn; this one was not run"))
    tool, arguments, error = registry.check(call)
    if error is None and tool is not None:
        key = call_key(tool.name, arguments)
        if key in answered:
            return CallRecord(turn, call, answered[key], redundant=True)
    result = run_tool_call(call, context, registry)
    if result.ok and tool is not None:
        answered[call_key(tool.name, arguments)] = result
    return CallRecord(turn, call, result)


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
        from hoi_r1.tools.builtin import default_registry

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
