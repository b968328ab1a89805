"""The hoi-r1 command: the top-level help names every command, every shipped YAML parses (an
overlay only on top of its base), --help documents the arguments, sub-commands dispatch,
checkpoints land in the run's own folder."""

import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.cli import LightningCLI

import hoi_r1.cli
import hoi_r1.lightning_cli
from hoi_r1.cli import COMMANDS, SUMMARIES, main
from hoi_r1.lightning_cli import HOICLI, cli_main, config_chain, overlay_base

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
OVERLAYS = [c for c in CONFIGS if overlay_base(c) is not None]


def test_configs_exist():
    assert CONFIGS, "configs/ holds no YAML"
    assert OVERLAYS and all(overlay_base(c).is_file() for c in OVERLAYS), "an overlay names a base that is not there"


def _config_args(config: Path) -> list[str]:
    """An overlay (first line ``# overlay-of: base.yaml``) is parsed on top of its bases."""
    return [arg for path in config_chain(config) for arg in ("--config", str(path))]


# ---------------------------------------------------------------------- the commands
EVERY_COMMAND = [*LightningCLI.subcommands(), *COMMANDS]


def test_help_says_what_the_tool_is_and_names_every_command(capsys):
    assert list(SUMMARIES) == EVERY_COMMAND  # one line for each, LightningCLI's first
    assert main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("usage: hoi-r1 COMMAND")
    assert "human-object interactions" in " ".join(lines)
    for name in EVERY_COMMAND:
        assert [line for line in lines if line.split()[:1] == [name]] == [f"  {name:<12}{SUMMARIES[name]}"], name


def test_module_header_lists_every_command():
    for name in EVERY_COMMAND:
        assert f"hoi-r1 {name} " in hoi_r1.cli.__doc__, name


@pytest.mark.parametrize("words", [["fitt"], ["train", "--config", "configs/demo_sft.yaml"], ["evaluate"]])
def test_an_unknown_command_exits_with_one_line_naming_every_command(words, capsys):
    assert main(words) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert f"unknown command {words[0]!r}" in captured.err
    assert all(name in captured.err for name in EVERY_COMMAND)


def test_no_command_prints_the_help_and_fails(capsys):
    assert main([]) == 2
    assert "tiny-model" in capsys.readouterr().err


@pytest.mark.parametrize("name", EVERY_COMMAND)
def test_every_command_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    usage = capsys.readouterr().out
    assert f"hoi-r1 {name}" in usage or f"hoi-r1 [options] {name}" in usage  # (LightningCLI: "hoi-r1 [options] fit")


# ---------------------------------------------------------------------- configs
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", *_config_args(config), "--print_config"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: hoi_r1." in printed and "data:" in printed
    resolved = yaml.safe_load(printed)
    if resolved["data"]["task"] == "tools":  # tool-using episodes are scored by rank only (ToolEvaluation)
        assert resolved["model"]["init_args"]["evaluation"]["scores"] == "rank"


def test_a_mistyped_protocol_fails_when_the_config_is_parsed(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["validate", "--config", "configs/demo_sft.yaml", "--model.init_args.evaluation.protocol", "hico_oficial",
                  "--print_config"])
    assert exit_.value.code != 0
    assert "hico_oficial" in capsys.readouterr().err


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_an_overlay_alone_fails_with_one_line_naming_its_base(overlay, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the paths as users type them
    given = f"configs/{overlay.name}"
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", given, "--print_config"])
    assert exit_.value.code == 2
    base = f"configs/{overlay_base(overlay).name}"
    assert capsys.readouterr().err == (
        f"hoi-r1: error: {given} is an overlay of {base}: pass --config {base} --config {given}\n")


def test_an_overlay_of_an_overlay_names_the_whole_chain(tmp_path, capsys):
    (tmp_path / "base.yaml").write_text("seed_everything: 1\n")
    (tmp_path / "mid.yaml").write_text("# overlay-of: base.yaml\nseed_everything: 2\n")
    (tmp_path / "top.yaml").write_text("# overlay-of: mid.yaml\nseed_everything: 3\n")
    assert [p.name for p in config_chain(tmp_path / "top.yaml")] == ["base.yaml", "mid.yaml", "top.yaml"]
    for given in (["top"], ["mid", "top"], ["base", "top"], ["top", "base", "mid"]):
        with pytest.raises(SystemExit):
            hoi_r1.lightning_cli.check_overlays([a for name in given for a in ("--config", str(tmp_path / f"{name}.yaml"))])
        assert capsys.readouterr().err.strip().endswith(
            f"pass --config {tmp_path}/base.yaml --config {tmp_path}/mid.yaml --config {tmp_path}/top.yaml")
    hoi_r1.lightning_cli.check_overlays([f"--config={tmp_path / n}.yaml" for n in ("base", "mid", "top")])  # in order: fine


def test_help_shows_documented_arguments(capsys):
    with pytest.raises(SystemExit):
        cli_main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "--data.coordinate_frame" in text and "coordinate frame of boxes in the text" in text
    with pytest.raises(SystemExit):
        cli_main(["fit", "--model.help", "hoi_r1.sft.SFTModule"])
    text = capsys.readouterr().out
    assert "--model.model.name_or_path" in text
    assert "Hugging Face Hub name" in text  # the docstring of ModelSettings.name_or_path


def test_project_commands_dispatch(tmp_path, capsys):
    assert {"synth", "eval", "distill", "tiny-model"} <= set(COMMANDS)
    assert main(["tiny-model", "--out", str(tmp_path / "m"), "--image-size", "56"]) == 0
    assert (tmp_path / "m" / "config.json").exists()


def test_predict_writes_json_and_drawn_images(tiny_model_dir, synthetic_world, tmp_path):
    import json

    out = tmp_path / "pred"
    args = [
        "predict", "--config", str(ROOT / "configs" / "demo_sft.yaml"), "--config", str(ROOT / "configs" / "demo_predict.yaml"),
        "--model.init_args.model.name_or_path", str(tiny_model_dir),
        "--model.init_args.generation.max_new_tokens", "8",
        "--data.predict_images", str(synthetic_world / "images" / "test"),
        "--data.predict_limit", "3",
        "--data.vocabulary", str(synthetic_world / "vocabulary.json"),
        "--trainer.callbacks.output_dir", str(out),
    ]
    cli_main(args)
    records = sorted(out.glob("*.json"))
    assert len(records) == 3 and len(list(out.glob("*.png"))) == 3
    record = json.loads(records[0].read_text())
    assert {"file_name", "width", "height", "hois", "completion"} <= set(record)


def test_the_command_line_wins_over_checkpoint_hyper_parameters(tiny_model_dir, synthetic_world, tmp_path, monkeypatch):
    """``test --ckpt_path`` takes the checkpoint's hyper-parameters only where the command line and
    its config files say nothing (Lightning 2.6 alone would let the checkpoint win)."""
    world = [f"--data.{s}.annotations={synthetic_world / f}" for s, f in
             (("train", "train.json"), ("val", "test.json"), ("test", "test.json"))]
    monkeypatch.chdir(tmp_path)  # checkpoints land in tmp_path/checkpoints
    quiet = ["--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
             "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    cli_main(["fit", "--model=hoi_r1.sft.SFTModule", f"--model.model.name_or_path={tiny_model_dir}",
              "--model.generation.max_new_tokens=4", "--model.evaluation.protocol=qpic", *world, "--data.batch_size=2",
              "--trainer.max_steps=1", "--trainer.limit_val_batches=0", *quiet])
    ckpt = str(sorted((tmp_path / "checkpoints").rglob("*.ckpt"))[0])
    config = tmp_path / "eval.yaml"  # what users pass: a config naming the model, as in training
    config.write_text(f"model:\n  class_path: hoi_r1.sft.SFTModule\n  init_args:\n    model:\n"
                      f"      name_or_path: {tiny_model_dir}\n    generation:\n      max_new_tokens: 4\n")
    evaluate = ["test", f"--config={config}", f"--ckpt_path={ckpt}", *world, "--data.test.limit=2", "--data.batch_size=2", *quiet]
    plain = cli_main(evaluate)  # what the config leaves out comes from the checkpoint
    assert plain.model.evaluation_settings.protocol == "qpic" and plain.model.evaluation_settings.scores == "rank"
    asked = cli_main([*evaluate, "--model.init_args.evaluation.scores=logprob"])
    assert asked.model.evaluation_settings.scores == "logprob"  # the command line wins
    assert asked.model.evaluation_settings.protocol == "qpic"  # the rest still from the checkpoint
    # a setting the class no longer takes (generation.episodes of direct-mode modules before the tool
    # mode moved to hoi_r1.ov_hoi) is left out, not an error
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["generation"]["episodes"] = {"max_turns": 5}
    torch.save(state, tmp_path / "older.ckpt")
    older = cli_main(["test", f"--config={config}", f"--ckpt_path={tmp_path / 'older.ckpt'}", *evaluate[3:]])
    assert older.model.evaluation_settings.protocol == "qpic"
    state["hyper_parameters"]["_class_path"] = "hoi_r1.gone.OldModule"  # a class path of an older version
    torch.save(state, tmp_path / "moved.ckpt")
    moved = cli_main(["test", f"--config={config}", f"--ckpt_path={tmp_path / 'moved.ckpt'}", *evaluate[3:]])
    assert moved.model.evaluation_settings.protocol == "hico_official"  # the config's model, none of the checkpoint's


# ---------------------------------------------------------------------- checkpoint folders
def _folder(cli) -> Path:
    return Path(cli.trainer.checkpoint_callback.dirpath)


def test_a_run_without_dirpath_checkpoints_into_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = {"class_path": "hoi_r1.sft.SFTModule"}
    named = tmp_path / "named.yaml"
    named.write_text(yaml.safe_dump({"model": model, "trainer": {"logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "runs", "name": "sft_a"}}}}))
    unnamed = tmp_path / "my_run.yaml"
    unnamed.write_text(yaml.safe_dump({"model": model, "trainer": {"logger": False}}))
    assert _folder(cli_main(["--config", str(named)], run=False)) == tmp_path / "checkpoints" / "sft_a"
    versioned = cli_main(["--config", str(named), "--trainer.logger.init_args.version=seed1"], run=False)
    assert _folder(versioned) == tmp_path / "checkpoints" / "sft_a" / "seed1"
    assert versioned.config.trainer.callbacks[0].init_args.dirpath == "checkpoints/sft_a/seed1"  # in the saved config too
    assert _folder(cli_main(["--config", str(unnamed)], run=False)) == tmp_path / "checkpoints" / "my_run"
    assert _folder(cli_main(["--config", str(ROOT / "configs" / "demo_sft.yaml")], run=False)) == tmp_path / "checkpoints" / "demo_sft"


def test_a_new_fit_never_overwrites_a_runs_checkpoints_and_resume_finds_them(tiny_model_dir, synthetic_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit = ["fit", "--model=hoi_r1.sft.SFTModule", f"--model.model.name_or_path={tiny_model_dir}",
           "--model.generation.max_new_tokens=4", "--model.log_examples=0", "--data.batch_size=2",
           f"--data.train.annotations={synthetic_world / 'train.json'}", "--trainer.limit_val_batches=0",
           "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
           "--trainer.logger.name=sft_a", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    cli_main([*fit, "--trainer.max_steps=1"])
    last = tmp_path / "checkpoints" / "sft_a" / "last.ckpt"
    assert last.is_file()
    with pytest.raises(SystemExit) as exit_:  # a fresh run of the same name stops before loading anything
        cli_main([*fit, "--trainer.max_steps=1"])
    assert exit_.value.code == 2
    resumed = cli_main([*fit, "--trainer.max_steps=2", "--ckpt_path=last"])
    assert Path(resumed.trainer.ckpt_path) == last and resumed.trainer.global_step == 2


def test_a_requeued_slurm_job_may_reuse_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints" / "run").mkdir(parents=True)
    (tmp_path / "checkpoints" / "run" / "last.ckpt").write_bytes(b"")

    class Reached(Exception):
        pass

    def stop(self):
        raise Reached

    monkeypatch.setattr(HOICLI, "instantiate_classes", stop)
    fit = ["fit", "--model=hoi_r1.sft.SFTModule", "--trainer.logger=false"]
    with pytest.raises(SystemExit):
        cli_main(fit)
    with pytest.raises(Reached):  # resumed: no stop
        cli_main([*fit, "--ckpt_path=last"])
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with pytest.raises(Reached):  # Lightning restores the requeued job itself
        cli_main(fit)


def test_an_evaluation_of_last_stops_when_there_is_no_last_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no checkpoints/demo_sft here
    configs = ["--config", str(ROOT / "configs" / "demo_sft.yaml"), "--config", str(ROOT / "configs" / "demo_predict.yaml")]
    for command in ("predict", "test"):
        with pytest.raises(SystemExit) as exit_:  # Lightning alone would warn and use the untrained model
            cli_main([command, *configs[: 4 if command == "predict" else 2], "--ckpt_path=last"])
        assert exit_.value.code == 2
        assert capsys.readouterr().err == (
            "hoi-r1: error: --ckpt_path last: no last.ckpt in checkpoints/demo_sft; pass the checkpoint file instead\n")
    # predict's callbacks replace the SFT run's, and still name its folder for `--ckpt_path last`
    assert _folder(cli_main(configs, run=False)) == tmp_path / "checkpoints" / "demo_sft"
