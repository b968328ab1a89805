"""LightningCLI's ``fit / validate / test / predict`` with the project's defaults and rules
(:mod:`hoi_r1.cli` dispatches these commands to :func:`main`).

Two project rules on top of LightningCLI (:class:`HOICLI`):

* **Overlays.** A config whose first line is ``# overlay-of: base.yaml`` only changes its base
  (beside it); passed without that base before it, the command stops with one line saying which
  ``--config`` to pass first (:func:`check_overlays`).
* **Checkpoint folders.** A ``ModelCheckpoint`` without ``dirpath`` writes to
  ``checkpoints/<run>``, the run named by :func:`run_name` (the logger's name and version, else
  the last config file's stem); a new ``fit`` into a default folder that already holds
  checkpoints stops instead of overwriting them (``--ckpt_path last`` resumes them).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from hoi_r1.datamodule import HOIDataModule
from hoi_r1 import ABOUT, PROG

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- overlays
OVERLAY_MARK = "# overlay-of:"
"""The first line of an overlay config: ``# overlay-of: base.yaml`` (a file beside it)."""


def overlay_base(config: str | Path) -> Path | None:
    """The base that ``config`` names on its first line, as a path beside ``config``; ``None``
    when ``config`` is no overlay (or no file).

    >>> overlay_base("configs/demo_grpo.yaml").as_posix()
    'configs/demo_sft.yaml'
    >>> overlay_base("configs/demo_sft.yaml") is None
    True
    """
    path = Path(config)
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        first = f.readline().strip()
    if not first.startswith(OVERLAY_MARK):
        return None
    return Path(os.path.normpath(path.parent / first[len(OVERLAY_MARK):].strip()))


def config_chain(config: str | Path) -> list[Path]:
    """``config`` after every base it needs, the first base first: the ``--config`` files to pass.

    >>> [p.name for p in config_chain("configs/hico_grpo_qwen2_5_vl_3b.yaml")]
    ['hico_sft_qwen2_5_vl_3b.yaml', 'hico_grpo_qwen2_5_vl_3b.yaml']
    """
    chain = [Path(config)]
    while (base := overlay_base(chain[0])) is not None:
        if any(_same(base, p) for p in chain):
            raise ValueError(f"{config}: the overlay-of lines form a loop through {base}")
        chain.insert(0, base)
    return chain


def config_files(args: Sequence[str]) -> list[str]:
    """The values of ``--config`` / ``-c`` in ``args`` that name files, in order.

    >>> config_files(["fit", "--config", "configs/demo_sft.yaml", "--config=configs/demo_grpo.yaml", "--trainer.max_steps", "1"])
    ['configs/demo_sft.yaml', 'configs/demo_grpo.yaml']
    """
    found = []
    for i, word in enumerate(args):
        if word in ("--config", "-c") and i + 1 < len(args):
            value = args[i + 1]
        elif word.startswith("--config="):
            value = word.split("=", 1)[1]
        else:
            continue
        if Path(value).is_file():  # (a YAML string is a config too; it has no base)
            found.append(value)
    return found


def check_overlays(args: Sequence[str]) -> None:
    """Stop (exit status 2, one line on stderr) when an overlay config comes without its bases
    before it.

    >>> check_overlays(["fit", "--config", "configs/demo_sft.yaml", "--config", "configs/demo_grpo.yaml"])
    >>> check_overlays(["fit", "--config", "configs/demo_grpo.yaml"])
    Traceback (most recent call last):
    SystemExit: 2
    """
    given = config_files(args)
    for i, config in reversed(list(enumerate(given))):  # the last overlay's chain names every file to pass
        chain = config_chain(config)
        if all(any(_same(base, earlier) for earlier in given[:i]) for base in chain[:-1]):
            continue
        needed = " ".join(f"--config {p.as_posix()}" for p in chain)
        print(f"{PROG}: error: {config} is an overlay of {chain[-2].as_posix()}: pass {needed}", file=sys.stderr)
        raise SystemExit(2)


def _same(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


# ---------------------------------------------------------------------- checkpoint folders
CHECKPOINT_ROOT = "checkpoints"
"""Where :class:`HOICLI` puts the folder of a run whose ``ModelCheckpoint`` has no ``dirpath``."""

_UNNAMED = (None, "", "lightning_logs")  # Lightning's loggers call every unnamed run "lightning_logs"


def run_name(logger: Any, configs: Sequence[str | Path] = ()) -> str:
    """The name of a run: its checkpoints go to ``checkpoints/<run_name>``.

    The first logger's ``name`` (TensorBoard: ``runs/<name>``), followed by its ``version`` when
    one is set; without a named logger, the stem of the last config file; else ``run``.

    Args:
        logger: ``trainer.logger`` as parsed: ``{"class_path", "init_args"}``, a list of them,
            ``True`` / ``False`` / ``None``.
        configs: the ``--config`` files, in order.

    >>> tensorboard = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"name": "demo_sft"}}
    >>> run_name(tensorboard, ["configs/demo_sft.yaml"])
    'demo_sft'
    >>> run_name({"init_args": {"name": "sft", "version": 3}}), run_name({"init_args": {"name": "sft", "version": "seed1"}})
    ('sft/version_3', 'sft/seed1')
    >>> run_name(False, ["configs/hico_sft_qwen2_5_vl_3b.yaml", "my_run.yaml"]), run_name(None)
    ('my_run', 'run')
    """
    loggers = logger if isinstance(logger, (list, tuple)) else [logger]
    for entry in loggers:
        entry = entry.as_dict() if isinstance(entry, Namespace) else entry
        if not isinstance(entry, dict):
            continue
        init_args = entry.get("init_args") or {}
        name = init_args.get("name")
        if name in _UNNAMED:
            continue
        version = init_args.get("version")
        if version is None or version == "":
            return str(name)
        return f"{name}/{'version_' + str(version) if isinstance(version, int) else version}"
    if configs:
        return Path(str(configs[-1])).stem
    return "run"


def _is_model_checkpoint(class_path: str | None) -> bool:
    """Whether ``class_path`` names :class:`~lightning.pytorch.callbacks.ModelCheckpoint` or a subclass."""
    module, _, name = (class_path or "").rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and issubclass(cls, ModelCheckpoint)


def name_checkpoint_folders(config: Namespace) -> list[str]:
    """Give every ``ModelCheckpoint`` of ``config`` (one sub-command's) without ``dirpath`` the
    folder ``checkpoints/<run_name>``, in place; returns the folders so given.

    >>> config = Namespace(config=["configs/my_run.yaml"], trainer=Namespace(logger=None, callbacks=[
    ...     Namespace(class_path="lightning.pytorch.callbacks.ModelCheckpoint", init_args=Namespace(dirpath=None))]))
    >>> name_checkpoint_folders(config), config.trainer.callbacks[0].init_args.dirpath
    (['checkpoints/my_run'], 'checkpoints/my_run')
    """
    trainer = config.get("trainer") or Namespace()
    callbacks = trainer.get("callbacks") or []
    folders = []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        if not isinstance(callback, Namespace) or not _is_model_checkpoint(callback.get("class_path")):
            continue
        init_args = callback.get("init_args")
        if init_args is None:
            init_args = callback["init_args"] = Namespace()
        if init_args.get("dirpath") is None:
            init_args["dirpath"] = f"{CHECKPOINT_ROOT}/{run_name(trainer.get('logger'), config.get('config') or [])}"
            folders.append(init_args["dirpath"])
    return folders


def check_fresh_folders(folders: Sequence[str]) -> None:
    """Stop (exit status 2, one line on stderr) when a new ``fit`` would write into a default
    checkpoint folder that already holds another run's checkpoints."""
    for folder in folders:
        found = sorted(Path(folder).glob("*.ckpt"))
        if found:
            print(
                f"{PROG}: error: {folder} already holds checkpoints of a run of that name ({found[0].name}, ...): "
                "resume it with --ckpt_path last, or name this run differently (trainer.logger's name or version, "
                "or ModelCheckpoint's dirpath)",
                file=sys.stderr,
            )
            raise SystemExit(2)


def checkpoint_folders(config: Namespace) -> list[str]:
    """The ``dirpath`` of every ``ModelCheckpoint`` of ``config`` (one sub-command's)."""
    callbacks = (config.get("trainer") or Namespace()).get("callbacks") or []
    return [
        callback.init_args.dirpath
        for callback in (callbacks if isinstance(callbacks, list) else [callbacks])
        if isinstance(callback, Namespace) and _is_model_checkpoint(callback.get("class_path"))
        and callback.get("init_args") is not None and callback.init_args.get("dirpath")
    ]


def check_last_exists(folders: Sequence[str]) -> None:
    """Stop (exit status 2, one line on stderr) when ``--ckpt_path last`` of an evaluation finds
    no ``last.ckpt`` (Lightning would only warn and evaluate the model's initial weights)."""
    if not any(next(Path(folder).glob("last*.ckpt"), None) for folder in folders):
        where = ", ".join(folders) if folders else "no ModelCheckpoint folder (trainer.callbacks has none)"
        print(f"{PROG}: error: --ckpt_path last: no last.ckpt in {where}; pass the checkpoint file instead", file=sys.stderr)
        raise SystemExit(2)


class HOICLI(LightningCLI):
    """LightningCLI with the project's defaults: ``ModelCheckpoint(save_last=True)`` and a
    ``LearningRateMonitor``, checkpoints in the run's own folder ``checkpoints/<run>`` (so
    ``--ckpt_path last`` finds ``last.ckpt`` after a relaunch; :func:`name_checkpoint_folders`), an
    overwritable saved config, and overlays checked against their bases (:func:`check_overlays`).

    A ``fit`` without ``--ckpt_path`` into a default folder that already holds checkpoints stops
    (:func:`check_fresh_folders`): two runs of one name never overwrite each other silently. A
    job that SLURM requeued (``SLURM_RESTART_COUNT`` set) is let through: Lightning resumes it.
    ``validate`` / ``test`` / ``predict`` with ``--ckpt_path last`` stop when no ``last.ckpt`` is
    there (:func:`check_last_exists`) instead of evaluating the untrained model.

    Precedence with ``--ckpt_path FILE``: Lightning 2.6 puts the hyper-parameters saved in the
    checkpoint *over* the given config, so ``test --ckpt_path x.ckpt
    --model.init_args.evaluation.scores vote`` would silently keep the training-time value. Here
    the command line and its config files win and the checkpoint fills in only what they leave
    at its default (the order Lightning PR #21455 proposes). Hyper-parameters the model class no
    longer takes are left out with a warning (:func:`still_accepted`); a checkpoint whose model
    class no longer exists gives none (the config names the model).
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults(
            {
                "trainer.callbacks": [
                    {
                        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                        "init_args": {"save_last": True},  # dirpath: checkpoints/<run> (name_checkpoint_folders)
                    },
                    {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"},
                ],
            }
        )

    def _parse_ckpt_path(self) -> None:
        path = _checkpoint_path(self.config)
        if path is None:
            return
        hparams = dict(torch.load(path, weights_only=True, map_location="cpu", mmap=True).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None)
        if not hparams or class_path is None:
            return super()._parse_ckpt_path()
        init_args = {k: asdict(v) if is_dataclass(v) and not isinstance(v, type) else v for k, v in hparams.items()}
        init_args = still_accepted(class_path, init_args)
        if init_args is None:  # a model class this version does not have: the config must name the model
            log.warning("the checkpoint's model class %s does not exist (any more): its hyper-parameters are "
                        "not used, the config's model is", class_path)
            return
        subcommand = self.config["subcommand"]
        self.parser._subcommands_action._name_parser_map[subcommand].set_defaults(
            {"model": {"class_path": class_path, "init_args": init_args}}
        )
        args = self._given_args  # parsed again: the checkpoint's values are now the defaults
        self.config = self.parser.parse_object(args) if isinstance(args, (dict, Namespace)) else self.parser.parse_args(args)

    def parse_arguments(self, parser, args) -> None:
        if not isinstance(args, (dict, Namespace)):
            check_overlays(sys.argv[1:] if args is None else list(args))
        self._given_args = args  # (None: sys.argv, as LightningCLI reads it)
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        folders = name_checkpoint_folders(config)
        if self.subcommand == "fit" and config.get("ckpt_path") is None and not os.environ.get("SLURM_RESTART_COUNT"):
            check_fresh_folders(folders)
        if self.subcommand in ("validate", "test", "predict") and config.get("ckpt_path") == "last":
            check_last_exists(checkpoint_folders(config))


def still_accepted(class_path: str, init_args: dict) -> dict | None:
    """The hyper-parameters of a checkpoint that ``class_path`` still takes, nested settings key
    by key; a key it no longer takes (a setting of an older version, e.g. ``generation.episodes``
    of a direct-mode module) is left out with a warning naming it. ``None`` when the class cannot
    be imported (an older version's class path)."""
    from jsonargparse import ArgumentParser

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, fail_untyped=False)
    accepted = parser.get_defaults()
    dropped: list[str] = []

    def keep(values: dict, prefix: str) -> dict:
        out = {}
        for key, value in values.items():
            dotted = prefix + key
            if dotted not in accepted:
                dropped.append(dotted)
            elif isinstance(value, dict) and isinstance(accepted.get(dotted), Namespace):
                out[key] = keep(value, dotted + ".")
            else:
                out[key] = value
        return out

    kept = keep(init_args, "")
    if dropped:
        log.warning("the checkpoint's hyper-parameters %s are not arguments of %s (an older version's?): left out",
                    ", ".join(dropped), class_path)
    return kept


def _checkpoint_path(config) -> str | None:
    """The ``ckpt_path`` of the subcommand when it names an existing file."""
    subcommand = config.get("subcommand")
    path = config[subcommand].get("ckpt_path") if subcommand else None
    return path if path and Path(path).is_file() else None


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Run LightningCLI (importable for tests)."""
    return HOICLI(
        model_class=None,
        datamodule_class=HOIDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": PROG, "description": ABOUT + f" ({PROG} --help lists every command.)"},
        args=args,
        run=run,
    )


def main(argv: list[str] | None = None) -> int:
    """Run one LightningCLI command (``argv`` None: LightningCLI reads ``sys.argv``); exit code 0."""
    cli_main(argv)
    return 0
