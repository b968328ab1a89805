"""The multi-turn driver with scripted generators: stopping, budgets, spans, call counting."""

from __future__ import annotations

import pytest
from PIL import Image

from hoi_r1.frames import Frame
from hoi_r1.ov_hoi.detection import Detection, DetectionsFile, FileDetectionBackend
from hoi_r1.ov_hoi.episode import read_episode, read_transcript
from hoi_r1.ov_hoi.episode_driver import EpisodeSettings, EpisodeState, run_episode, run_episodes
from hoi_r1.ov_hoi.protocol import ToolContext

FRAME = Frame("absolute_original", (100, 80), (100, 80))
ANSWER = ('<think>done</think><answer>[{"human": [10, 10, 30, 70], "object": [30, 40, 40, 50], '
          '"object class": "cup", "verb class": ["hold"]}]</answer>')
HUMANS = '<tool_call>{"name": "detect_humans", "arguments": {}}</tool_call>'
CROP = '<tool_call>{"name": "crop", "arguments": {"box": [30, 40, 40, 50]}}</tool_call>'


def _context() -> ToolContext:
    dets = DetectionsFile({"a.png": [Detection((10, 10, 30, 70), "person", 0.9)]})
    return ToolContext(FRAME, "a.png", Image.new("RGB", (100, 80)), FileDetectionBackend(dets))


class Script:
    """A fake model: returns its turns in order and records what it was shown."""

    def __init__(self, *turns: str) -> None:
        self.turns, self.seen = list(turns), []

    def __call__(self, messages, images):
        self.seen.append((messages, list(images)))
        return self.turns[len(self.seen) - 1]


def test_calls_then_answer():
    script = Script("<think>people?</think>" + HUMANS, "<think>zoom</think>" + CROP, ANSWER)
    first = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "find"}]}]
    episode = run_episode(script, first, _context(), max_turns=5)
    assert episode.stop_reason == "answer" and episode.final_answer == ANSWER
    assert [t.role for t in episode.turns] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert (episode.num_valid_calls, episode.num_invalid_calls, episode.num_redundant_calls) == (2, 0, 0)
    # the generator sees the prompt, then the turns so far; images added by tools so far
    messages, images = script.seen[2]
    assert messages[0] is first[0] and [m["role"] for m in messages[1:]] == ["assistant", "tool", "assistant", "tool"]
    assert messages[-1]["content"][1] == {"type": "image"} and len(images) == 1 and images[0].size == (24, 24)
    assert episode.turns[1].text == "<tool_response>person 1: [10, 10, 30, 70] 0.9</tool_response>"


def test_spans_mark_model_text_only():
    episode = run_episode(Script("<think>a</think>" + HUMANS, ANSWER), [], _context(), max_turns=3)
    transcript = episode.transcript()
    mask = transcript.model_mask()
    model_text = "".join(c for c, m in zip(transcript.text, mask) if m)
    assert model_text == "<think>a</think>" + HUMANS + ANSWER
    tool_text = "".join(c for c, m in zip(transcript.text, mask) if not m)
    assert tool_text.startswith("<tool_response>") and tool_text.endswith("</tool_response>")
    assert [role for *_, role in transcript.spans] == ["assistant", "tool", "assistant"]


def test_turn_budget_stops_without_running_the_last_calls():
    script = Script(*["<think>again</think>" + HUMANS] * 5)
    episode = run_episode(script, [], _context(), max_turns=3)
    assert episode.stop_reason == "turn_budget" and len(script.seen) == 3
    assert [t.role for t in episode.turns] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert (episode.num_valid_calls, episode.num_redundant_calls, episode.unanswered_calls) == (2, 1, 1)
    assert episode.final_answer is None


def test_stops_when_the_model_neither_calls_nor_answers():
    episode = run_episode(Script("I am not sure."), [], _context(), max_turns=4)
    assert episode.stop_reason == "no_tool_call" and len(episode.turns) == 1 and episode.final_answer is None


def test_invalid_calls_and_per_turn_limit_are_answered_with_errors():
    bad = '<tool_call>{"name": "shell", "arguments": {}}</tool_call><tool_call>{oops}</tool_call>'
    many = HUMANS * 3
    script = Script("<think>x</think>" + bad, "<think>y</think>" + many, ANSWER)
    episode = run_episode(script, [], _context(), max_turns=4, max_calls_per_turn=2)
    blocks = episode.turns[1].text.split("\n")
    assert blocks[0].startswith("<tool_response>error: unknown tool 'shell'")
    assert blocks[1].startswith("<tool_response>error: the call is not a JSON object")
    third = episode.turns[3].text.split("\n")
    assert third[2] == "<tool_response>error: at most 2 tool calls per turn; this one was not run</tool_response>"
    # turn 2: one valid call, one redundant repeat (answered from the first), one over the limit
    assert (episode.num_valid_calls, episode.num_invalid_calls, episode.num_redundant_calls) == (2, 3, 1)
    assert third[0] == third[1]


@pytest.mark.parametrize("max_turns", [1, 2, 4])
def test_transcript_reading_agrees_with_the_episode(max_turns):
    script = Script("<think>x</think>" + HUMANS + '<tool_call>{"name": "nope"}</tool_call>',
                    "<think>y</think>" + HUMANS + CROP, "<think>z</think>" + CROP, ANSWER)
    episode = run_episode(script, [], _context(), max_turns=max_turns)
    from_text = read_transcript(episode.transcript().text)
    from_episode = read_episode(episode)
    for reading in (from_text, from_episode):
        assert reading.num_valid_calls == episode.num_valid_calls
        assert reading.num_invalid_calls == episode.num_invalid_calls
        assert reading.num_redundant_calls == episode.num_redundant_calls
        assert reading.unanswered_calls == episode.unanswered_calls
    assert [r for r, _ in from_text.turns] == [t.role for t in episode.turns]
    assert from_text.model_turns == [t.text for t in episode.turns if t.role == "assistant"]


def test_bad_budget_is_refused():
    with pytest.raises(ValueError, match="max_turns"):
        run_episode(Script(ANSWER), [], _context(), max_turns=0)


# ===================================================================== the lockstep batch driver
class BatchScript:
    """A fake batched model: episode ``k`` (named in its first user message) replies with its
    own script; records the episodes asked in each round."""

    def __init__(self, scripts: dict[str, list]) -> None:
        self.scripts, self.rounds = scripts, []

    def __call__(self, conversations, images):
        names = [m[0]["content"][0]["text"] for m in conversations]
        self.rounds.append(names)
        return [self.scripts[n][sum(x["role"] == "assistant" for x in m)] for n, m in zip(names, conversations)]


def _prompt(name: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": name}]}]


def test_lockstep_driver_runs_episodes_of_different_lengths_like_one_by_one():
    scripts = {
        "quick": [ANSWER],
        "two": ["<think>people?</think>" + HUMANS, ANSWER],
        "errors": ['<think>x</think><tool_call>{"name": "shell", "arguments": {}}</tool_call>' + HUMANS,
                   "<think>y</think>" + HUMANS * 3, ANSWER],
        "budget": ["<think>z</think>" + CROP] * 5,
        "silent": ["I am not sure."],
    }
    driver = BatchScript(scripts)
    states = [EpisodeState(_prompt(n), _context(), max_turns=3, max_calls_per_turn=2) for n in scripts]
    episodes = run_episodes(driver, states)
    # every round asks only the unfinished episodes, in order, in one call
    assert driver.rounds == [list(scripts), ["two", "errors", "budget"], ["errors", "budget"]]
    assert all(s.done for s in states)
    for name, episode in zip(scripts, episodes):  # the same episodes as the one-by-one driver
        alone = run_episode(Script(*scripts[name]), _prompt(name), _context(), max_turns=3, max_calls_per_turn=2)
        assert [(t.role, t.text, len(t.images)) for t in episode.turns] == [(t.role, t.text, len(t.images)) for t in alone.turns]
        assert (episode.stop_reason, episode.num_valid_calls, episode.num_invalid_calls, episode.num_redundant_calls,
                episode.unanswered_calls) == (alone.stop_reason, alone.num_valid_calls, alone.num_invalid_calls,
                                              alone.num_redundant_calls, alone.unanswered_calls)
    quick, two, errors, budget, silent = episodes
    assert [e.stop_reason for e in episodes] == ["answer", "answer", "answer", "turn_budget", "no_tool_call"]
    assert [e.model_turns for e in episodes] == [1, 2, 3, 3, 1]
    # tool errors come back as responses while the other episodes go on
    assert errors.turns[1].text.startswith("<tool_response>error: unknown tool 'shell'")
    assert errors.turns[3].text.endswith("error: at most 2 tool calls per turn; this one was not run</tool_response>")
    assert (errors.num_valid_calls, errors.num_invalid_calls, errors.num_redundant_calls) == (3, 2, 2)
    # the budget: two crops ran (the second redundant), the third turn's call was not run
    assert (budget.num_valid_calls, budget.num_redundant_calls, budget.unanswered_calls) == (2, 1, 1)
    assert len(budget.images) == 2 and budget.final_answer is None and quick.final_answer == ANSWER


def test_lockstep_driver_reads_truncation_and_checks_the_reply_count():
    states = [EpisodeState(_prompt("a"), _context(), max_turns=2), EpisodeState(_prompt("b"), _context(), max_turns=2)]
    episodes = run_episodes(lambda messages, images: [(ANSWER, False), ("<think>cut", True)], states)
    assert [e.truncated for e in episodes] == [False, True]
    with pytest.raises(RuntimeError, match="finished"):
        states[0].advance(ANSWER)
    with pytest.raises(ValueError, match="returned 1 turns for 2"):
        run_episodes(lambda messages, images: [ANSWER], [EpisodeState([], _context(), 2), EpisodeState([], _context(), 2)])
    with pytest.raises(ValueError, match="max_turns"):
        EpisodeSettings(max_turns=0)
