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
(``<stage>/tools/...``). Like the parse statistics they are kept per image in an
:class:`~hoi_r1.image_counts.ImageCounts`, so under DDP they are the statistics of every
process's episodes, the duplicates a ``DistributedSampler`` pads with counted once.

Confidence scores are ``rank`` only (the ``logprob`` and ``vote`` scores read a single
completion's tokens or sampled single-turn answers).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch

from hoi_r1.answer import ParsedAnswer, parse_answer
from hoi_r1.generation import GenerationSettings
from hoi_r1.hoi_evaluation import EvaluationSettings, HOIEvaluation
from hoi_r1.image_counts import ImageCounts
from hoi_r1.rollout.engine import RolloutSampling
from hoi_r1.rollout.episodes import PolicyTurnWriter, run_policy_episodes
from hoi_r1.rollout.stats import EpisodeCounts
from hoi_r1.tools.episode import Episode
from hoi_r1.vocab import HOIVocabulary


class ToolEvaluation(HOIEvaluation):
    """HOI-mAP, parse statistics and tool statistics of tool-using episodes (``val`` or ``test``).

    Args:
        vocab: the split's vocabulary.
        settings: protocol and extra settings of the mAP (confidence scores: ``rank`` only).
    """

    def __init__(self, vocab: HOIVocabulary, settings: EvaluationSettings) -> None:
        if settings.scores != "rank":
            raise ValueError(f"data.task 'tools' scores detections by rank only, found evaluation.scores={settings.scores!r}")
        super().__init__(vocab, settings)
        self.episode_counts = ImageCounts(EpisodeCounts.KEYS)
        self.last_episodes: list[Episode] = []

    def reset(self) -> None:
        """Forget the epoch: the metric, the parse and the tool counters."""
        super().reset()
        self.episode_counts.reset()

    @torch.no_grad()
    def step(self, model, processor, batch: dict, generation: GenerationSettings) -> list[ParsedAnswer]:
        """Run one episode per image, parse the final answers, update the metric and counters."""
        episodes = run_policy_episodes(self.turn_writer(model, processor, generation), batch, 1, generation.episodes)
        parsed = [parse_answer(e.final_answer or "", self.vocab, f) for e, f in zip(episodes, batch["frames"])]
        self.update(parsed, batch, truncated=[e.truncated for e in episodes])
        self.episode_counts.update([s.image_id for s in batch["samples"]], episode_values(episodes))
        self.last_episodes = episodes
        return parsed

    def turn_writer(self, model, processor, generation: GenerationSettings) -> PolicyTurnWriter:
        """Who writes the model turns (:func:`policy_turn_writer`)."""
        return policy_turn_writer(model, processor, generation)

    def compute(self) -> dict[str, float]:
        """The metric, the parse statistics and ``tools/...`` over every process (the caller resets)."""
        out = super().compute()
        with warnings.catch_warnings():  # answers fed through ``update`` alone have no episodes: no tools/ keys
            warnings.filterwarnings("ignore", message=".*called before the ``update`` method")
            counts = self.episode_counts.compute()  # on every rank: the gather needs all of them
        total = EpisodeCounts()  # the global sums, averaged by EpisodeCounts' own rule
        total.episodes = int(counts["images"])
        total.sums = {k: float(counts[k]) for k in EpisodeCounts.KEYS}
        out.update(total.means())
        return out


def episode_values(episodes: Sequence[Episode]) -> dict[str, list[float]]:
    """Per counter of :attr:`EpisodeCounts.KEYS <hoi_r1.rollout.stats.EpisodeCounts.KEYS>`, one
    value per episode (what :meth:`EpisodeCounts.add <hoi_r1.rollout.stats.EpisodeCounts.add>`
    would add for it alone).

    >>> from hoi_r1.tools.episode import Episode, Turn
    >>> values = episode_values([Episode([Turn("assistant", "<answer>[]</answer>")], stop_reason="answer")])
    >>> values["answered"], values["turns_per_episode"], values["turn_budget"]
    ([1.0], [1.0], [0.0])
    """
    out: dict[str, list[float]] = {k: [] for k in EpisodeCounts.KEYS}
    for episode in episodes:
        one = EpisodeCounts()
        one.add([episode])
        for k in EpisodeCounts.KEYS:
            out[k].append(one.sums[k])
    return out


def policy_turn_writer(model, processor, generation: GenerationSettings) -> PolicyTurnWriter:
    """The model's ``generate`` as the turn writer of episodes, with the generation settings
    (``max_new_tokens`` per turn, greedy unless ``do_sample``, the episodes' stop strings)."""
    sampling = RolloutSampling(generation.max_new_tokens, generation.temperature, generation.top_p,
                               generation.top_k, greedy=not generation.do_sample)
    return PolicyTurnWriter(model, processor, sampling, generation.episodes.stop_strings)
