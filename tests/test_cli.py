"""The hoi-r1 command: every shipped YAML parses, --help documents the arguments, sub-commands dispatch."""

from pathlib import Path

import pytest
import yaml

from hoi_r1.cli import COMMANDS, cli_main, main

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_configs_exist():
    assert CONFIGS, "configs/ holds no YAML"


def _config_args(config: Path) -> list[str]:
    """An overlay (first line ``# overlay-of: base.yaml``) is parsed on top of its base."""
    first = config.read_text().splitlines()[0]
    if first.startswith("# overlay-of:"):
        base = config.parent / first.split(":", 1)[1].strip()
        return ["--config", str(base), "--config", str(config)]
    return ["--config", str(config)]


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
