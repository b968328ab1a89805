"""The hoi-r1 command: every shipped YAML parses, --help documents the arguments, sub-commands dispatch."""

from pathlib import Path

import pytest

from hoi_r1.cli import COMMANDS, cli_main, main

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


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
