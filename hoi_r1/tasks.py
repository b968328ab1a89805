"""The ``data.task`` switch, in one place: the batches and the evaluation of each task (SFT
batches, prompt batches for GRPO and evaluation, the validation / test evaluation):

* ``hoi``: :class:`~hoi_r1.collate.SFTCollator`, :class:`~hoi_r1.collate.GenerationCollator`,
  :class:`~hoi_r1.hoi_evaluation.HOIEvaluation`;
* ``grounding``: :class:`~hoi_r1.collate.GroundingSFTCollator`,
  :class:`~hoi_r1.collate.GroundingGenerationCollator`, :class:`~hoi_r1.hoi_evaluation.GroundingEvaluation`;
* ``tools``: :class:`~hoi_r1.ov_hoi.collate.ToolSFTCollator`,
  :class:`~hoi_r1.ov_hoi.collate.ToolGenerationCollator`, and the tool-mode modules' own
  evaluation (:class:`~hoi_r1.ov_hoi.evaluation.ToolEvaluation`).

``tools`` runs tool-using episodes, so it needs the tool-mode modules
(:class:`~hoi_r1.ov_hoi.sft.ToolSFTModule`, :class:`~hoi_r1.ov_hoi.tool_grpo.ToolGRPOModule`), and
they need it (:attr:`TaskSpec.episodes`). This module imports only the tool mode's data side
(its collators), never its models.

>>> TASKS["grounding"].evaluation.__name__, TASKS["tools"].episodes, TASKS["tools"].evaluation
('GroundingEvaluation', True, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hoi_r1.collate import (GenerationCollator, GroundingGenerationCollator, GroundingSFTCollator,
                            SFTCollator)
from hoi_r1.hoi_evaluation import GroundingEvaluation, HOIEvaluation
from hoi_r1.ov_hoi.collate import ToolGenerationCollator, ToolSFTCollator

Task = Literal["hoi", "grounding", "tools"]


@dataclass(frozen=True)
class TaskSpec:
    """What one task's data and evaluation are.

    Args:
        sft_collator: the collator of SFT batches.
        generation_collator: the collator of prompt batches.
        evaluation: the validation / test evaluation; ``None`` for tool-using episodes, which the
            tool-mode modules evaluate themselves.
    """

    sft_collator: type[SFTCollator]
    generation_collator: type[GenerationCollator]
    evaluation: type[HOIEvaluation | GroundingEvaluation] | None

    @property
    def episodes(self) -> bool:
        """Whether its answers come from tool-using episodes (the tool-mode modules)."""
        return self.evaluation is None


TASKS: dict[Task, TaskSpec] = {
    "hoi": TaskSpec(SFTCollator, GenerationCollator, HOIEvaluation),
    "grounding": TaskSpec(GroundingSFTCollator, GroundingGenerationCollator, GroundingEvaluation),
    "tools": TaskSpec(ToolSFTCollator, ToolGenerationCollator, None),
}
