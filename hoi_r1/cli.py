"""The ``hoi-r1`` command: LightningCLI's ``fit / validate / test / predict`` plus the project's
own commands.

    hoi-r1 fit --config configs/demo_sft.yaml
    hoi-r1 fit --config configs/hico_sft_qwen2_5_vl_3b.yaml --ckpt_path last
    hoi-r1 synth --out data/synthetic
    hoi-r1 eval --annotations test_hico.json --predictions preds.json --protocol qpic
    hoi-r1 distill --annotations data/synthetic/train.json --out reasoning.jsonl --base-url http://127.0.0.1:8000/v1
    hoi-r1 tiny-model --out checkpoints/tiny-qwen2_5_vl
    hoi-r1 export --checkpoint checkpoints/demo_sft/last.ckpt --out exported/demo_sft

The model class is chosen in YAML (``model.class_path``: :class:`~hoi_r1.sft.SFTModule` or
:class:`~hoi_r1.grpo.GRPOModule`); the data is always :class:`~hoi_r1.datamodule.HOIDataModule`.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import asdict, is_dataclass
from typing import Callable

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI


def _tiny_model(argv: list[str]) -> int:
    import argparse

    from hoi_r1.tiny import TinyModelSize, build_tiny_qwen2_5_vl

    parser = argparse.ArgumentParser(prog="hoi-r1 tiny-model", description="Build the tiny random Qwen2.5-VL.")
    parser.add_argument("--out", required=True, help="output directory (save_pretrained layout)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--image-size", type=int, default=TinyModelSize.image_size, help="largest image side in pixels")
    args = parser.parse_args(argv)
    path = build_tiny_qwen2_5_vl(args.out, TinyModelSize(image_size=args.image_size), seed=args.seed)
    print(f"tiny Qwen2.5-VL written to {path}")
    return 0


COMMANDS: dict[str, str | Callable[[list[str]], int]] = {
    "synth": "hoi_r1.readers.synthetic",
    "eval": "hoi_r1.evaluate",
    "distill": "hoi_r1.distill",
    "export": "hoi_r1.export",
    "detections": "hoi_r1.tools.detection",
    "cold-start": "hoi_r1.tools.cold_start",
    "tiny-model": _tiny_model,
}
"""The project's own sub-commands (everything else goes to LightningCLI): a module whose
``main(argv)`` runs the command, or the function itself."""


class HOICLI(LightningCLI):
    """LightningCLI with the project's defaults: checkpoints in a fixed folder with ``last.ckpt``
    (so ``--ckpt_path last`` finds them after a relaunch) and an overwritable saved config.

    Precedence with ``--ckpt_path FILE``: Lightning 2.6 puts the hyper-parameters saved in the
    checkpoint *over* the given config, so ``test --ckpt_path x.ckpt
    --model.init_args.evaluation.scores vote`` would silently keep the training-time value. Here
    the command line and its config files win and the checkpoint fills in only what they leave
    at its default (the order Lightning PR #21455 proposes).
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults(
            {
                "trainer.callbacks": [
                    {
                        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                        "init_args": {"dirpath": "checkpoints/run", "save_last": True},
                    },
                    {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"},
                ],
            }
        )

    def _parse_ckpt_path(self) -> None:
        path = _checkpoint_path(self.config)
        if path is None:
            return
        import torch

        hparams = dict(torch.load(path, weights_only=True, map_location="cpu").get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None)
        if not hparams or class_path is None:
            return super()._parse_ckpt_path()
        init_args = {k: asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for k, v in hparams.items()}
        subcommand = self.config["subcommand"]
        self.parser._subcommands_action._name_parser_map[subcommand].set_defaults(
            {"model": {"class_path": class_path, "init_args": init_args}}
        )
        args = self._given_args  # parsed again: the checkpoint's values are now the defaults
        self.config = self.parser.parse_object(args) if isinstance(args, (dict, Namespace)) else self.parser.parse_args(args)

    def parse_arguments(self, parser, args) -> None:
        self._given_args = args  # (None: sys.argv, as LightningCLI reads it)
        super().parse_arguments(parser, args)


def _checkpoint_path(config) -> str | None:
    """The ``ckpt_path`` of the subcommand when it names an existing file."""
    from pathlib import Path

    subcommand = config.get("subcommand")
    path = config[subcommand].get("ckpt_path") if subcommand else None
    return path if path and Path(path).is_file() else None


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Run LightningCLI (importable for tests)."""
    from hoi_r1.datamodule import HOIDataModule

    return HOICLI(
        model_class=None,
        datamodule_class=HOIDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in COMMANDS:
        command = COMMANDS[words[0]]
        if isinstance(command, str):  # a module with main(argv), imported only when used
            command = importlib.import_module(command).main
        return command(words[1:])
    cli_main(argv)  # None: LightningCLI reads sys.argv itself
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
