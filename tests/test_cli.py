"""The hoi-r1 command: every shipped YAML parses, --help documents the arguments, sub-commands dispatch."""

from pathlib import Path

import pytest

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
