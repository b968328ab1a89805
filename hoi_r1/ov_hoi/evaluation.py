"""Validation, test and predict of the tool-using (OV-HOI) mode: episodes → final answer → HOI-mAP.

For ``data.task: tools`` every validation / test image runs one tool-using episode with the
model (:mod:`hoi_r1.ov_hoi.episode_rollout`): the model writes a turn (``generation`` settings,
:class:`ToolGenerationSettings`: ``max_new_tokens`` per turn, greedy unless ``do_sample``), its
tool calls run and their responses (and crops) come back as a tool turn in the chat layout the
cold-start SFT trains on, until the model answers or ``generation.episodes.max_turns`` is used
up. All episodes of a batch advance in lockstep, one padded ``generate`` per round. The final
answer (the last model turn, when it holds ``<answer>``) goes through the same parser and
HOI-mAP as the direct mode; an episode that never answered counts as an empty answer. Besides
the metric and the parse rates, the evaluation reports the tool statistics of
:class:`~hoi_r1.ov_hoi.episode_stats.EpisodeCounts` (``<stage>/tools/...``). Like the parse
statistics they are kept per image in an :class:`~hoi_r1.image_counts.ImageCounts`, so under DDP
they are the statistics of every process's episodes, the duplicates a ``DistributedSampler``
pads with counted once.

The tool-mode modules (:class:`~hoi_r1.ov_hoi.sft.ToolSFTModule`,
:class:`~hoi_r1.ov_hoi.tool_grpo.ToolGRPOModule`) plug this into
:class:`~hoi_r1.hoi_module.HOIModule` through :class:`EpisodeEvaluationHooks`: the core modules
never import the tool mode's models.

Confidence scores are ``rank`` only (the ``logprob`` and ``vote`` scores read a single
completion's tokens or sampled single-turn answers).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from hoi_r1.answer import ParsedAnswer, parse_answer
from hoi_r1.generation import GenerationSettings
from hoi_r1.hoi_evaluation import EvaluationSettings, HOIEvaluation
from hoi_r1.image_counts import ImageCounts
from hoi_r1.ov_hoi.episode import Episode
from hoi_r1.ov_hoi.episode_driver import EpisodeSettings
from hoi_r1.ov_hoi.episode_rollout import PolicyTurnWriter, run_policy_episodes
from hoi_r1.ov_hoi.episode_stats import EpisodeCounts, episode_values
from hoi_r1.rollout.engine import RolloutSampling
from hoi_r1.tasks import TaskSpec
from hoi_r1.vocab import HOIVocabulary


@dataclass
class ToolGenerationSettings(GenerationSettings):
    """How the episodes of validation, test and predict are generated: the
    :class:`~hoi_r1.generation.GenerationSettings` of one model turn (``max_new_tokens`` is per
    turn), and the episodes' turn budget and stops.

    Args:
        episodes: turn budget, calls per turn and stop strings of the episodes.
    """

    episodes: EpisodeSettings = field(default_factory=EpisodeSettings)


torch.serialization.add_safe_globals([ToolGenerationSettings, EpisodeSettings])  # read back from checkpoints


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
    def step(self, model, processor, batch: dict, generation: ToolGenerationSettings) -> list[ParsedAnswer]:
        """Run one episode per image, parse the final answers, update the metric and counters."""
        episodes = run_policy_episodes(self.turn_writer(model, processor, generation), batch, 1, generation.episodes)
        parsed = [parse_answer(e.final_answer or "", self.vocab, f) for e, f in zip(episodes, batch["frames"])]
        self.update(parsed, batch, truncated=[e.truncated for e in episodes])
        self.episode_counts.update([s.image_id for s in batch["samples"]], episode_values(episodes))
        self.last_episodes = episodes
        return parsed

    def turn_writer(self, model, processor, generation: ToolGenerationSettings) -> PolicyTurnWriter:
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


def policy_turn_writer(model, processor, generation: ToolGenerationSettings) -> PolicyTurnWriter:
    """The model's ``generate`` as the turn writer of episodes, with the generation settings
    (``max_new_tokens`` per turn, greedy unless ``do_sample``, the episodes' stop strings)."""
    sampling = RolloutSampling.from_generation(generation)
    return PolicyTurnWriter(model, processor, sampling, generation.episodes.stop_strings)


class EpisodeEvaluationHooks:
    """The tool mode of a :class:`~hoi_r1.hoi_module.HOIModule` subclass (listed before it among
    the bases): ``data.task`` must be ``tools`` (:data:`hoi_r1.tasks.TASKS`); validation and test
    run episodes (:class:`ToolEvaluation`), predict keeps each episode's final answer and its
    transcript."""

    episodes = True  # HOIModule.setup: data.task must be a task of episodes

    def _evaluation(self, spec: TaskSpec) -> ToolEvaluation:
        return ToolEvaluation(self.datamodule.vocab, self.evaluation_settings)

    def _predict_texts(self, batch: dict) -> tuple[list[str], list[str]]:
        """One episode per image: its final answer (empty when it never answered) and its transcript."""
        writer = policy_turn_writer(self.model, self.datamodule.processor, self.generation)
        episodes = run_policy_episodes(writer, batch, 1, self.generation.episodes)
        return [e.final_answer or "" for e in episodes], [e.transcript().text for e in episodes]
