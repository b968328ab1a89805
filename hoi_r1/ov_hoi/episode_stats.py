"""Tool statistics of tool-using episodes: calls (valid, invalid, redundant), model turns, and
how the episodes ended, summed over episodes (GRPO logs their means per rollout,
``train/tools/...``) or one value per episode (the evaluation keeps them per image,
``<stage>/tools/...``)."""

from __future__ import annotations

from typing import Sequence

from hoi_r1.ov_hoi.episode import Episode


class EpisodeCounts:
    """Tool statistics of tool-using episodes (:class:`~hoi_r1.ov_hoi.episode.Episode`), summed
    over the episodes added.

    >>> from hoi_r1.ov_hoi.episode import Episode, Turn
    >>> counts = EpisodeCounts()
    >>> counts.add([Episode([Turn("assistant", "<answer>[]</answer>")], stop_reason="answer"), Episode([Turn("assistant", "?")])])
    >>> counts.means()["tools/answered"], counts.means()["tools/turns_per_episode"]
    (0.5, 1.0)
    """

    KEYS = ("valid_calls_per_episode", "invalid_calls_per_episode", "redundant_calls_per_episode",
            "turns_per_episode", "answered", "turn_budget", "truncated")

    def __init__(self) -> None:
        self.episodes = 0
        self.sums = dict.fromkeys(self.KEYS, 0.0)

    def add(self, episodes: Sequence[Episode]) -> None:
        for e in episodes:
            self.episodes += 1
            for key, value in zip(self.KEYS, (e.num_valid_calls, e.num_invalid_calls, e.num_redundant_calls,
                                              e.model_turns, e.final_answer is not None,
                                              e.stop_reason == "turn_budget", e.truncated)):
                self.sums[key] += float(value)

    def means(self, prefix: str = "tools/") -> dict[str, float]:
        """Per episode (one episode per image in evaluation): valid / invalid / redundant calls and
        model turns; the share of episodes that answered, that used up the turn budget, and that
        had a turn cut at the token limit. Empty before any episode was added."""
        if not self.episodes:
            return {}
        return {f"{prefix}{k}": v / self.episodes for k, v in self.sums.items()}


def episode_values(episodes: Sequence[Episode]) -> dict[str, list[float]]:
    """Per counter of :attr:`EpisodeCounts.KEYS`, one value per episode (what
    :meth:`EpisodeCounts.add` would add for it alone).

    >>> from hoi_r1.ov_hoi.episode import Episode, Turn
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
