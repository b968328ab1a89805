"""hoi_r1: teach multimodal LLMs to detect human-object interactions by reasoning in text
(README.md). The command line is :mod:`hoi_r1.cli`."""

PROG = "hoi-r1"
"""The command's name."""

ABOUT = (
    "Train and evaluate multimodal LLMs (Qwen2.5-VL and kin) that detect human-object interactions "
    "by writing every (human, object, verbs) triplet as JSON (HOI-R1; OV-HOI tool use), with PyTorch Lightning."
)
"""What the tool is: the first paragraph of ``hoi-r1 --help``."""
