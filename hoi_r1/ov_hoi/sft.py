"""ToolSFTModule: the cold-start SFT of OV-HOI / ImagineAgent (arXiv 2602.11499), the first stage
of the tool-using mode (``data.task: tools``; docs/ov_hoi.md).

Training is :class:`~hoi_r1.sft.SFTModule`'s unchanged: teacher forcing on the tool-using
conversations of the cold-start file (``data.cold_start_file``, written by ``hoi-r1
cold-start``), every assistant turn labelled, tool turns and images as context
(:class:`~hoi_r1.collate.SFTCollator`). What this module adds is the tool mode's validation,
test and predict: one episode per image with the model and the tools, its final answer scored by
HOI-mAP, plus the tool statistics (:mod:`hoi_r1.ov_hoi.evaluation`).
"""

from __future__ import annotations

from hoi_r1.ov_hoi.evaluation import EpisodeEvaluationHooks, ToolGenerationSettings
from hoi_r1.sft import SFTModule


class ToolSFTModule(EpisodeEvaluationHooks, SFTModule):
    """Cold-start SFT on tool-using conversations, with HOI-mAP validation of episodes.

    Every other argument is :class:`~hoi_r1.sft.SFTModule`'s (``evaluation.scores`` must be
    ``rank``).

    Args:
        generation: generation settings of validation, test and predict (``max_new_tokens`` per
            model turn; ``episodes``: their turn budget and stops).
    """

    def __init__(self, generation: ToolGenerationSettings = ToolGenerationSettings(), **kwargs) -> None:
        super().__init__(generation=generation, **kwargs)
