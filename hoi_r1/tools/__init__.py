"""OV-HOI / ImagineAgent mode: the model calls tools inside its reasoning, reads their results,
then answers (docs/ov_hoi.md).

* :mod:`hoi_r1.tools.protocol` — reading ``<tool_call>`` s, the tool registry, running a call,
  writing ``<tool_response>`` s;
* :mod:`hoi_r1.tools.episode` — the multi-turn driver :func:`run_episode` and transcripts;
* :mod:`hoi_r1.tools.builtin` — the six tools (``detect_humans``, ``detect_objects``,
  ``spatial_relations``, ``relations``, ``crop``, ``imagine``) and their response lines;
* :mod:`hoi_r1.tools.detection`, :mod:`hoi_r1.tools.spatial`, :mod:`hoi_r1.tools.image_ops` —
  their pure implementations;
* :mod:`hoi_r1.tools.rewards` — ``accuracy``, ``format``, ``tool_usage``, ``spatial``;
* :mod:`hoi_r1.tools.prompts` — the system prompt and the open-vocabulary query;
* :mod:`hoi_r1.tools.cold_start` — SFT traces from ground truth.
"""

from hoi_r1.tools.builtin import TOOL_NAMES, default_registry
from hoi_r1.tools.detection import (
    Detection,
    DetectionBackend,
    DetectionsFile,
    FileDetectionBackend,
    ModelGroundingBackend,
    noisy_detections,
)
from hoi_r1.tools.episode import Episode, Transcript, Turn, read_episode, read_transcript, run_episode
from hoi_r1.tools.image_ops import ImagineBackend, ImaginedView, PlainImagineBackend, crop, imagine
from hoi_r1.tools.protocol import (
    ToolCall,
    ToolContext,
    ToolError,
    ToolRegistry,
    ToolResult,
    ToolSpec,
    format_tool_response,
    parse_tool_calls,
    run_tool_call,
)
from hoi_r1.tools.spatial import spatial_relations

__all__ = [
    "TOOL_NAMES", "Detection", "DetectionBackend", "DetectionsFile", "Episode", "FileDetectionBackend",
    "ImagineBackend", "ImaginedView", "ModelGroundingBackend", "PlainImagineBackend", "ToolCall", "ToolContext",
    "ToolError", "ToolRegistry", "ToolResult", "ToolSpec", "Transcript", "Turn", "crop", "default_registry",
    "format_tool_response", "imagine", "noisy_detections", "parse_tool_calls", "read_episode", "read_transcript",
    "run_episode", "run_tool_call", "spatial_relations",
]
