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
:mod:`hoi_r1.ov_hoi.episode_rollout` wraps a Hugging Face policy into it), so episodes of different
lengths share padded generations until the last one ends.

A *redundant* call (valid, and a repeat of an earlier valid call of the episode: same name and
canonical arguments, :func:`~hoi_r1.ov_hoi.protocol.call_key`) is answered from the first call's
result. What an episode holds: :mod:`hoi_r1.ov_hoi.episode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from PIL import Image

from hoi_r1.answer import ANSWER_OPEN
from hoi_r1.ov_hoi.builtin import default_registry
from hoi_r1.ov_hoi.episode import CallRecord, Episode, Turn
from hoi_r1.ov_hoi.protocol import (
    RESPONSE_OPEN,
    ToolContext,
    ToolRegistry,
    ToolResult,
    call_key,
    format_tool_response,
    parse_tool_calls,
    run_tool_call,
)

GenerateFn = Callable[[list[dict], list[Image.Image]], str]
BatchGenerateFn = Callable[[list[list[dict]], list[list[Image.Image]]], Sequence[str | tuple[str, bool]]]
DEFAULT_MAX_CALLS_PER_TURN = 4


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
        registry: the tools (default: :func:`hoi_r1.ov_hoi.builtin.default_registry`).
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
        registry: the tools (default: :func:`hoi_r1.ov_hoi.builtin.default_registry`).
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

