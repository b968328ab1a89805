"""A GRPO module with one extra reward that a random tiny model can earn (loaded by class path in
subprocess tests; ``tests`` is put on PYTHONPATH). The HOI rewards are all 0 for a random model, so
every advantage would be 0 and nothing would train: the extra reward gives the groups a spread."""

from hoi_r1.grpo import GRPOModule
from hoi_r1.rewards import RewardBreakdown


def distinct_characters(text: str) -> float:
    """Distinct characters of a completion, scaled: differs between almost any two random texts."""
    return len(set(text)) / 10.0


class ToyRewardGRPO(GRPOModule):
    """:class:`GRPOModule` whose total reward adds :func:`distinct_characters`."""

    def score(self, texts, targets) -> RewardBreakdown:
        real = super().score(texts, targets)
        extra = [distinct_characters(t) for t in texts]
        return RewardBreakdown(
            per_reward={**real.per_reward, "distinct_chars": extra},
            total=[a + b for a, b in zip(real.total, extra)],
            answers=real.answers,
        )
