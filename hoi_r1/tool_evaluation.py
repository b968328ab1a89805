"""Validation and test of the tool-using (OV-HOI) mode: episodes → final answer → HOI-mAP.

For ``data.task: tools`` every validation / test image runs one tool-using episode with the
model (:mod:`hoi_r1.rollout.episodes`): the model writes a turn (``generation`` settings:
``max_new_tokens`` per turn, greedy unless ``do_sample``), its tool calls run and their
responses (and crops) come back as a tool turn in the chat layout the cold-start SFT trains on,
until the model answers or ``generation.episodes.max_turns`` is used up. All episodes of a batch
advance in lockstep, one padded ``generate`` per round. The final answer (the last model turn,
when it holds ``<answer>``) goes through the same parser and HOI-mAP as the direct mode; an
episode that never answered counts as an empty answer. Besides the metric and the parse rates,
the evaluation reports the tool statistics of :class:`~hoi_r1.rollout.stats.EpisodeCounts`
(``<stage>/tools/...``).

Confidence scores are ``rank`` only (the ``logprob`` and ``vote`` scores read a single
completion's tokens or sampled single-turn answers).
"""

from __future__ import annotations

import torch

from hoi_r1.answer import ParsedAnswer, parse_answer
from hoi_r1.detection_eval import EvaluationSettings, HOIEvaluation
from hoi_r1.generation import GenerationSettings
from hoi_r1.rollout import RolloutSampling
from hoi_r1.rollout.episodes import PolicyTurnWriter, run_policy_episodes
from hoi_r1.rollout.stats import EpisodeCounts
from hoi_r1.tools.episode import Episode
from hoi_r1.vocab import HOIVocabulary


class ToolEvaluation(HOIEvaluation):
    """HOI-mAP, parse statistics and tool statistics of tool-using episodes (``val`` or ``test``)."""

    def __init__(self, vocab: HOIVocabulary, settings: EvaluationSettings) -> None:
        if settings.scores != "rank":
            raise ValueError(f"data.task 'tools' scores detections by rank only, found evaluation.scores={settings.scores!r}")
        super().__init__(vocab, settings)
        self.last_episodes: list[Episode] = []

    def reset_counts(self) -> None:
        super().reset_counts()
        self.episode_counts = EpisodeCounts()

    @torch.no_grad()
    def step(self, model, processor, batch: dict, generation: GenerationSettings) -> list[ParsedAnswer]:
        """Run one episode per image, parse the final answers, update the metric and counters."""
        episodes = run_policy_episodes(self.turn_writer(model, processor, generation), batch, 1, generation.episodes)
        parsed = [parse_answer(e.final_answer or "", self.vocab, f) for e, f in zip(episodes, batch["frames"])]
        self.update(parsed, batch)
        self.counts["truncated"] += sum(e.truncated for e in episodes)
        self.episode_counts.add(episodes)
        self.last_episodes = episodes
        return parsed

    def turn_writer(self, model, processor, generation: GenerationSettings) -> PolicyTurnWriter:
        """Who writes the model turns (:func:`policy_turn_writer`)."""
        return policy_turn_writer(model, processor, generation)

    def compute(self) -> dict[str, float]:
        """The metric, the parse statistics and ``tools/...``; resets the counters."""
        tools = self.episode_counts.means()
        out = super().compute()
        out.update(tools)
        return out


def policy_turn_writer(model, processor, generation: GenerationSettings) -> PolicyTurnWriter:
    """The model's ``generate`` as the turn writer of episodes, with the generation settings
    (``max_new_tokens`` per turn, greedy unless ``do_sample``, the episodes' stop strings)."""
    sampling = RolloutSampling(generation.max_new_tokens, generation.temperature, generation.top_p,
                               generation.top_k, greedy=not generation.do_sample)
    return PolicyTurnWriter(model, processor, sampling, generation.episodes.stop_strings)
