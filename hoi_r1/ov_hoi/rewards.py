"""OV-HOI rewards: ``accuracy``, ``format``, ``tool_usage`` and ``spatial`` (ImagineAgent, arXiv
2602.11499, names these four; it publishes no formulas, so these are ours;
docs/ov_hoi.md).

Each reward is a plain callable ``(completions, targets) -> list[float | None]`` (the project's
contract, :mod:`hoi_r1.rewards`): a completion is an episode's flat transcript
(:meth:`~hoi_r1.ov_hoi.episode.Episode.transcript`) or the :class:`~hoi_r1.ov_hoi.episode.Episode`
itself; a target is a :class:`~hoi_r1.reward_target.RewardTarget`. The transcript is split into model
and tool turns by :func:`~hoi_r1.ov_hoi.episode.read_transcript`; the *answer* is the last model
turn when it holds ``<answer>``, read by the one answer parser the metric uses. Values lie in
``[0, 1]``; ``None`` where a reward needs ground truth and the target has none.

* ``accuracy`` — triplet F1 under the metric's own hit rule: a predicted triplet is one (answer
  element, verb), a ground-truth triplet one row of the sample's pairs, and the hits are those the
  main ``recall`` / ``precision`` rewards count (:attr:`hoi_r1.judged_answer.JudgedAnswer.hits`, matched
  by :func:`hoi_r1.matching.greedy_match`, both IoUs ``≥ 0.5``). ``F1 = 2 hits / (written + truth)``.
  No answer: 0. Both empty: 1 when the answer was read as a list, else 0.
* ``format`` — 1 when every model turn but the last is ``<think>…</think>`` followed by one or more
  well-formed ``<tool_call>{"name": …, "arguments": {…}}</tool_call>`` (whitespace between, nothing
  else), the last is exactly ``<think>…</think><answer>…</answer>`` with no tool call, and no model
  turn writes ``<tool_response>`` itself (checked on episodes; a transcript cannot tell); else 0.
* ``tool_usage`` — 0 unless ``accuracy > 0``; then ``clip(min(u, S) / S − c_r·r − c_i·i, 0, 1)`` with
  ``u`` the valid non-redundant calls, ``r`` the redundant ones, ``i`` the invalid ones and
  ``S, c_r, c_i`` from :class:`ToolUsageConfig` (valid, invalid and redundant as in
  :mod:`hoi_r1.ov_hoi.episode`).
* ``spatial`` — for every answer element and each of its verbs ``v``, the element's boxes are
  measured with :func:`~hoi_r1.ov_hoi.spatial.spatial_relations`, and each *cue* ``c`` that the
  verb's table lists with weight ``w_vc`` (how telling the relation is for the verb) is tested:
  ``spatial = Σ w_vc · [c holds] / Σ w_vc`` over all (element, verb, cue). Verbs missing from the
  table use the default cues; verbs with no cues are left out; 0 when nothing is left to judge
  (there is no agreement to reward; in HICO-DET and the synthetic world every image has pairs).

The cue table (:data:`SYNTHETIC_VERB_CUES`) follows the relation rules of the synthetic world
(:func:`hoi_r1.synthetic.relations.classify_relation`), so ground-truth answers score 1 there;
:data:`DEFAULT_CUES` (``near``) serves any other verb. Both are settings of
:class:`SpatialRewardConfig`, so a YAML file can give a table for another vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Sequence

from hoi_r1.answer import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, ParsedAnswer, parse_answer
from hoi_r1.judged_answer import JudgedAnswer
from hoi_r1.ov_hoi.episode import Episode, TranscriptReading, read_episode, read_transcript
from hoi_r1.ov_hoi.protocol import CALL_OPEN, RESPONSE_CLOSE, RESPONSE_OPEN, ToolRegistry, parse_tool_calls
from hoi_r1.ov_hoi.spatial import spatial_relations
from hoi_r1.reward_target import RewardTarget
from hoi_r1.rewards import NamedWeights, RewardBreakdown

CUES: dict[str, Callable[[dict], bool]] = {
    "contact": lambda r: r["contact"],
    "no_contact": lambda r: not r["contact"],
    "overlapping": lambda r: r["position"] == "overlapping",
    "beside": lambda r: r["position"] in ("left", "right")
    or (r["position"] == "overlapping" and r["object_inside_human"] < 0.5),
    "near": lambda r: r["distance"] <= 0.75,
    "far": lambda r: r["distance"] >= 0.33,
    "above": lambda r: r["vertical_position"] < 0,
    "below": lambda r: r["vertical_position"] > 0.75,
    "head_height": lambda r: -0.2 <= r["vertical_position"] <= 0.4,
    "hand_height": lambda r: 0.35 <= r["vertical_position"] <= 0.8,
    "feet_level": lambda r: abs(r["bottom_offset"]) <= 0.1,
    "outside_gaze": lambda r: not (-0.25 <= r["vertical_position"] <= 0.46 and r["distance"] <= 1.0),
}
"""Named tests on :func:`~hoi_r1.ov_hoi.spatial.spatial_relations` output (lengths in person
heights): ``contact`` / ``no_contact``; ``overlapping`` (the boxes share area); ``beside`` (left or
right, or overlapping with less than half the object inside the person); ``near`` (gap ≤ 0.75);
``far`` (gap ≥ 0.33); ``above`` (object centre above the head); ``below`` (object centre in the
lowest quarter of the person or lower); ``head_height`` (centre within [−0.2, 0.4]);
``hand_height`` ([0.35, 0.8]); ``feet_level`` (object bottom within 0.1 of the feet);
``outside_gaze`` (not both within [−0.25, 0.46] and a gap ≤ 1: where nobody would look at it)."""

SYNTHETIC_VERB_CUES: dict[str, dict[str, float]] = {
    "ride": {"overlapping": 1.0, "below": 1.0},
    "carry": {"contact": 1.0, "above": 1.0},
    "kick": {"contact": 1.0, "feet_level": 1.0, "beside": 0.5},
    "hold": {"contact": 1.0, "hand_height": 1.0, "beside": 0.5},
    "look_at": {"no_contact": 1.0, "head_height": 1.0, "near": 0.5},
    "no_interaction": {"far": 1.0, "outside_gaze": 1.0, "no_contact": 0.5},
}
"""Verb → {cue: weight} for the synthetic world's verbs (weights: 1 for a relation the verb's
rule requires, 0.5 for one it implies less sharply)."""

DEFAULT_CUES: dict[str, float] = {"near": 1.0}
"""Cues of a verb absent from the table: most interactions happen within reach."""


# ===================================================================== settings
@dataclass(frozen=True)
class ToolUsageConfig:
    """The ``tool_usage`` reward.

    Args:
        saturation: distinct valid calls that earn full credit (``S``).
        redundant_cost: subtracted per redundant call (``c_r``).
        invalid_cost: subtracted per invalid call (``c_i``).
    """

    saturation: int = 2
    redundant_cost: float = 0.25
    invalid_cost: float = 0.25

    def __post_init__(self) -> None:
        if self.saturation < 1 or self.redundant_cost < 0 or self.invalid_cost < 0:
            raise ValueError(f"ToolUsageConfig needs saturation >= 1 and costs >= 0, found {self}")


@dataclass(frozen=True)
class SpatialRewardConfig:
    """The ``spatial`` reward.

    Args:
        verb_cues: verb name → {cue name: weight} (names compare ignoring case, spaces and
            underscores); ``None`` uses :data:`SYNTHETIC_VERB_CUES`.
        default_cues: cues of verbs absent from ``verb_cues`` (empty: such verbs are not judged).
        contact_tolerance: gap, in person heights, that still counts as contact.
    """

    verb_cues: dict[str, dict[str, float]] | None = None
    default_cues: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CUES))
    contact_tolerance: float = 0.02

    def __post_init__(self) -> None:
        tables = [*(self.verb_cues or {}).values(), self.default_cues]
        for table in tables:
            for cue, weight in table.items():
                if cue not in CUES:
                    raise ValueError(f"unknown spatial cue {cue!r}; the cues are {sorted(CUES)}")
                if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                    raise ValueError(f"spatial cue {cue!r} needs a finite weight >= 0, found {weight!r}")

    @cached_property
    def table(self) -> dict[str, dict[str, float]]:
        source = SYNTHETIC_VERB_CUES if self.verb_cues is None else self.verb_cues
        return {_norm(verb): dict(cues) for verb, cues in source.items()}

    def cues_for(self, verb: str) -> dict[str, float]:
        return self.table.get(_norm(verb), self.default_cues)


@dataclass(frozen=True)
class ToolRewardWeights(NamedWeights):
    """Weight of each OV-HOI reward in the total ``Σ w_i r_i`` (YAML: ``rewards: {accuracy: 1.0, ...}``).

    Args:
        accuracy: weight of ``accuracy`` (triplet F1).
        format: weight of ``format`` (tool-call and answer structure).
        tool_usage: weight of ``tool_usage`` (valid calls, when the answer is right).
        spatial: weight of ``spatial`` (verbs agree with the measured relations).
    """

    accuracy: float = 1.0
    format: float = 0.5
    tool_usage: float = 0.25
    spatial: float = 0.25



# ===================================================================== one judged episode
@dataclass(frozen=True, eq=False)
class JudgedEpisode:
    """One completion read against its target: its turns and calls, and its final answer."""

    reading: TranscriptReading
    answer: ParsedAnswer | None
    target: RewardTarget
    from_episode: bool = False

    @classmethod
    def read(cls, completion: "str | Episode", target: RewardTarget, registry: ToolRegistry | None = None) -> "JudgedEpisode":
        if isinstance(completion, Episode):
            reading, from_episode = read_episode(completion), True
        else:
            reading, from_episode = read_transcript(completion if isinstance(completion, str) else "", registry), False
        turns = reading.model_turns
        last = turns[-1] if turns else ""
        answer = parse_answer(last, target.vocab, target.frame) if ANSWER_OPEN in last else None
        return cls(reading, answer, target, from_episode)

    @property
    def parsed(self) -> ParsedAnswer:
        """The final answer, or an empty reading when there is none (for logging)."""
        return self.answer if self.answer is not None else ParsedAnswer()

    @cached_property
    def accuracy(self) -> float | None:
        if self.target.sample is None:
            return None
        return 0.0 if self.answer is None else triplet_f1(self.answer, self.target)


def triplet_f1(answer: ParsedAnswer, target: RewardTarget) -> float:
    """``2 hits / (written + truth)`` over (pair, verb) triplets, the hits counted by the main
    rewards' matcher (definition in the module docstring)."""
    hits = JudgedAnswer(answer, target).hits
    if not hits.written and not hits.truth:
        return float(answer.decoded)
    return 2.0 * hits.hits / (hits.written + hits.truth)


def accuracy_score(judged: JudgedEpisode) -> float | None:
    """Triplet F1 of the final answer at pair-IoU ≥ 0.5; ``None`` without ground truth."""
    return judged.accuracy


def format_score(judged: JudgedEpisode) -> float:
    """1 for well-formed tool-call turns followed by a well-formed answer turn, else 0."""
    turns = judged.reading.model_turns
    if not turns or judged.answer is None or not judged.answer.structure_ok or CALL_OPEN in turns[-1]:
        return 0.0
    if judged.from_episode and any(RESPONSE_OPEN in t or RESPONSE_CLOSE in t for t in turns):
        return 0.0
    return float(all(_is_call_turn(t) for t in turns[:-1]))


def _is_call_turn(text: str) -> bool:
    s = text.strip()
    if not s.startswith(THINK_OPEN) or s.count(THINK_OPEN) != 1 or s.count(THINK_CLOSE) != 1:
        return False
    if ANSWER_OPEN in s or ANSWER_CLOSE in s:
        return False
    rest = s[s.find(THINK_CLOSE) + len(THINK_CLOSE) :]
    calls = parse_tool_calls(rest)
    if not calls or not all(c.ok for c in calls):
        return False
    pos, leftover = 0, []
    for c in calls:
        leftover.append(rest[pos : c.span[0]])
        pos = c.span[1]
    leftover.append(rest[pos:])
    return not "".join(leftover).strip()


def tool_usage_score(judged: JudgedEpisode, config: ToolUsageConfig = ToolUsageConfig()) -> float | None:
    """Credit for valid calls when the answer is (partly) right, minus the costs of redundant and
    invalid calls; ``None`` without ground truth."""
    accuracy = judged.accuracy
    if accuracy is None:
        return None
    if accuracy <= 0:
        return 0.0
    r = judged.reading
    distinct = r.num_valid_calls - r.num_redundant_calls
    value = min(distinct, config.saturation) / config.saturation
    value -= config.redundant_cost * r.num_redundant_calls + config.invalid_cost * r.num_invalid_calls
    return float(min(1.0, max(0.0, value)))


def spatial_score(judged: JudgedEpisode, config: SpatialRewardConfig = SpatialRewardConfig()) -> float:
    """Weighted agreement of the answer's verbs with the relations measured on its own boxes."""
    if judged.answer is None:
        return 0.0
    vocab = judged.target.vocab
    hit = total = 0.0
    for t in judged.answer.triplets:
        relations = None
        for verb in t.verb_ids:
            cues = config.cues_for(vocab.verbs[verb])
            if not cues:
                continue
            if relations is None:
                try:
                    relations = spatial_relations(t.human_box, t.object_box, config.contact_tolerance)
                except ValueError:  # a degenerate box: no relation holds
                    relations = {}
            for cue, weight in cues.items():
                total += weight
                hit += weight * bool(relations and CUES[cue](relations))
    return hit / total if total > 0 else 0.0


# ===================================================================== the plain callables
EpisodeReward = Callable[[JudgedEpisode], "float | None"]


class ToolReward:
    """An OV-HOI reward as a plain callable ``(completions, targets) -> list[float | None]``.

    Args:
        name: ``accuracy``, ``format``, ``tool_usage`` or ``spatial``.
        usage: settings of ``tool_usage``.
        spatial: settings of ``spatial``.
        registry: the tools (judges redundancy); default: the built-in five.
    """

    def __init__(
        self,
        name: str,
        usage: ToolUsageConfig | None = None,
        spatial: SpatialRewardConfig | None = None,
        registry: ToolRegistry | None = None,
    ) -> None:
        self.usage, self.spatial = usage or ToolUsageConfig(), spatial or SpatialRewardConfig()
        functions: dict[str, EpisodeReward] = {
            "accuracy": accuracy_score,
            "format": format_score,
            "tool_usage": lambda j: tool_usage_score(j, self.usage),
            "spatial": lambda j: spatial_score(j, self.spatial),
        }
        if name not in functions:
            raise ValueError(f"unknown OV-HOI reward {name!r}; known rewards: {sorted(functions)}")
        self.name = self.__name__ = name
        self.registry = registry
        self._fn = functions[name]

    def judge(self, judged: JudgedEpisode) -> float | None:
        return self._fn(judged)

    def __call__(self, completions: Sequence["str | Episode"], targets: Sequence[RewardTarget]) -> list[float | None]:
        _check_lengths(completions, targets)
        return [self._fn(JudgedEpisode.read(c, t, self.registry)) for c, t in zip(completions, targets)]

    def __repr__(self) -> str:
        return f"ToolReward({self.name!r})"


TOOL_REWARD_NAMES = ("accuracy", "format", "tool_usage", "spatial")
TOOL_REWARDS: dict[str, ToolReward] = {name: ToolReward(name) for name in TOOL_REWARD_NAMES}
"""Reward name → plain callable with default settings."""


def score_tool_completions(
    completions: Sequence["str | Episode"],
    targets: Sequence[RewardTarget],
    weights: ToolRewardWeights | None = None,
    usage: ToolUsageConfig | None = None,
    spatial: SpatialRewardConfig | None = None,
    registry: ToolRegistry | None = None,
) -> RewardBreakdown:
    """Read every completion once and evaluate the four weighted rewards on that reading; the
    total is ``Σ w_i r_i`` over the rewards that apply (NaN when none does). ``answers`` holds
    the :class:`JudgedEpisode` s (``.parsed`` is the final answer)."""
    _check_lengths(completions, targets)
    weights = weights or ToolRewardWeights()
    rewards = {name: ToolReward(name, usage, spatial, registry) for name in weights.as_dict()}
    judged = [JudgedEpisode.read(c, t, registry) for c, t in zip(completions, targets)]
    per_reward = {name: [reward.judge(j) for j in judged] for name, reward in rewards.items()}
    total = []
    for i in range(len(judged)):
        terms = [w * per_reward[n][i] for n, w in weights.as_dict().items() if per_reward[n][i] is not None]
        total.append(float(sum(terms)) if terms else math.nan)
    return RewardBreakdown(per_reward, total, judged)  # type: ignore[arg-type]


def _check_lengths(completions: Sequence, targets: Sequence) -> None:
    if len(completions) != len(targets):
        raise ValueError(f"OV-HOI rewards: {len(completions)} completions but {len(targets)} targets")


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())
