"""The ``hoi-r1`` command: LightningCLI's ``fit / validate / test / predict`` plus the project's
own commands (``hoi-r1 --help`` lists them, :data:`SUMMARIES` holds their one-line help)::

    hoi-r1 fit      --config configs/demo_sft.yaml                     # train (SFT, GRPO, OV-HOI)
    hoi-r1 fit      --config configs/hico_sft_qwen2_5_vl_3b.yaml --ckpt_path last   # resume
    hoi-r1 validate --config configs/demo_sft.yaml --ckpt_path last    # HOI-mAP on data.val
    hoi-r1 test     --config configs/demo_sft.yaml --ckpt_path last    # HOI-mAP on data.test
    hoi-r1 predict  --config configs/demo_sft.yaml --config configs/demo_predict.yaml --ckpt_path last
    hoi-r1 synth --out data/synthetic                                  # the synthetic HOI world
    hoi-r1 eval --annotations test_hico.json --predictions preds.json --protocol qpic
    hoi-r1 distill --annotations data/synthetic/train.json --out reasoning.jsonl --base-url http://127.0.0.1:8000/v1
    hoi-r1 export --checkpoint checkpoints/demo_sft/last.ckpt --out exported/demo_sft
    hoi-r1 detections --annotations data/synthetic/train.json --out data/synthetic/detections_train.json
    hoi-r1 cold-start --annotations data/synthetic/train.json --detections data/synthetic/detections_train.json --out cold_start.jsonl
    hoi-r1 tiny-model --out checkpoints/tiny-qwen2_5_vl

This module only dispatches and starts without importing torch or Lightning; LightningCLI's
commands, the overlay and checkpoint-folder rules live in :mod:`hoi_r1.lightning_cli`.

The model class is chosen in YAML (``model.class_path``: :class:`~hoi_r1.sft.SFTModule`,
:class:`~hoi_r1.grpo.GRPOModule`, and the tool mode's :class:`~hoi_r1.ov_hoi.sft.ToolSFTModule` and
:class:`~hoi_r1.ov_hoi.tool_grpo.ToolGRPOModule`); the data is always
:class:`~hoi_r1.datamodule.HOIDataModule`.
"""


from __future__ import annotations

import gc
import importlib
import sys
import textwrap

from hoi_r1 import ABOUT, PROG

LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a model (SFT, GRPO, OV-HOI) from --config files; resume with --ckpt_path last",
    "validate": "HOI-mAP of a model or checkpoint on data.val",
    "test": "HOI-mAP of a model or checkpoint on data.test",
    "predict": "HOIs of a folder of images (data.predict_images): one JSON and one drawn image each",
}
"""LightningCLI's sub-commands, configured by YAML (``hoi-r1 fit --help`` lists every argument)."""


COMMANDS: dict[str, str] = {
    "synth": "hoi_r1.synthetic.world",
    "eval": "hoi_r1.eval_command",
    "distill": "hoi_r1.distill",
    "export": "hoi_r1.export",
    "detections": "hoi_r1.ov_hoi.detection",
    "cold-start": "hoi_r1.ov_hoi.cold_start",
    "tiny-model": "hoi_r1.tiny",
}
"""The project's own sub-commands (everything else goes to LightningCLI): the module whose
``main(argv)`` runs the command, imported only when it runs."""

SUMMARIES: dict[str, str] = {
    **LIGHTNING_COMMANDS,
    "synth": "generate the synthetic HOI world (HICO-DET file format, with images)",
    "eval": "HOI-mAP of a predictions file against annotations, under any evaluator's protocol",
    "distill": "teacher reasoning for SFT (thinking distillation) from an OpenAI-compatible server",
    "export": "a training checkpoint as a Hugging Face save_pretrained directory (LoRA merged)",
    "detections": "a detections file for the OV-HOI detection tools (ground truth with noise)",
    "cold-start": "tool-using SFT conversations (OV-HOI cold start) from ground truth",
    "tiny-model": "build the tiny random Qwen2.5-VL (tests, demo)",
}
"""One line of help per command, in the order ``hoi-r1 --help`` lists them."""


def usage() -> str:
    """The top-level help: what the tool is and every command with its line.

    >>> text = usage()
    >>> text.splitlines()[0]
    'usage: hoi-r1 COMMAND [ARGS...]   (hoi-r1 COMMAND --help: the arguments of COMMAND)'
    >>> all(f"  {name} " in text for name in SUMMARIES)
    True
    """
    width = max(map(len, SUMMARIES)) + 2
    lines = [f"usage: {PROG} COMMAND [ARGS...]   ({PROG} COMMAND --help: the arguments of COMMAND)", "", textwrap.fill(ABOUT, 100), ""]
    lines.append("training and evaluation (LightningCLI, configured by --config configs/*.yaml):")
    lines += [f"  {name:<{width}}{SUMMARIES[name]}" for name in LIGHTNING_COMMANDS]
    lines.append("")
    lines.append("data, evaluation files and models:")
    lines += [f"  {name:<{width}}{SUMMARIES[name]}" for name in COMMANDS]
    lines += ["", "Configs: configs/*.yaml (README.md); training, resuming, checkpoints: docs/training.md."]
    return "\n".join(lines)


def unknown_command(word: str) -> str:
    """The one-line answer to a command that does not exist.

    >>> unknown_command("fitt").split(";")[0]
    "hoi-r1: unknown command 'fitt'"
    """
    return f"{PROG}: unknown command {word!r}; choose from {', '.join(SUMMARIES)} ({PROG} --help says what each does)"


LIGHTNING_MODULE = "hoi_r1.lightning_cli"
"""Where LightningCLI's commands live (imported only for them: ``hoi-r1 eval`` and the other
commands start without Lightning)."""


def main(argv: list[str] | None = None) -> int:
    """``hoi-r1``: the project's commands, LightningCLI's, or the top-level help; returns the exit code.

    Run as the process's own command (``argv`` is ``None``), a project command ends by freezing
    the garbage collector's objects (:func:`gc.freeze`): the process is about to exit, and its
    collections at exit then skip the millions of objects of torch and the command's data
    (measured: about 0.3 s of the exit of ``hoi-r1 eval``, docs/benchmarks.md).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if words else sys.stderr)
        return 0 if words else 2
    if words[0] in COMMANDS:
        code = importlib.import_module(COMMANDS[words[0]]).main(words[1:])
        if argv is None:
            gc.freeze()
        return code
    if not words[0].startswith("-") and words[0] not in LIGHTNING_COMMANDS:
        print(unknown_command(words[0]), file=sys.stderr)
        return 2
    return importlib.import_module(LIGHTNING_MODULE).main(argv)  # None: LightningCLI reads sys.argv itself


if __name__ == "__main__":
    raise SystemExit(main())
