"""Validation, test and predict of the tool-using mode: episodes inside generation, HOI-mAP of
the final answers, tool statistics."""

from __future__ import annotations

import json

import lightning as L
import pytest
from helpers.tool_world import TeacherTurns, make_tool_world

from hoi_r1.datamodule import HOIDataModule, SplitFiles
from hoi_r1.hoi_evaluation import EvaluationSettings
from hoi_r1.models import ModelSettings
from hoi_r1.ov_hoi.detection import DetectionsFile
from hoi_r1.ov_hoi.episode_driver import EpisodeSettings
from hoi_r1.ov_hoi.evaluation import ToolEvaluation, ToolGenerationSettings
from hoi_r1.ov_hoi.sft import ToolSFTModule
from hoi_r1.readers import read_annotations


@pytest.fixture(scope="module")
def tool_world(synthetic_world, tmp_path_factory):
    return make_tool_world(synthetic_world, tmp_path_factory.mktemp("tools"))


def _data(tool_world, **kwargs):
    test = SplitFiles(str(tool_world.root / "test.json"), limit=4, detections=str(tool_world.detections["test"]))
    return HOIDataModule(val=test, test=test, task="tools", eval_batch_size=4, **kwargs)


def _module(model_dir, max_turns=4):
    return ToolSFTModule(model=ModelSettings(name_or_path=str(model_dir)), log_examples=1,
                         generation=ToolGenerationSettings(max_new_tokens=8, episodes=EpisodeSettings(max_turns=max_turns)))


def _trainer(tmp_path):
    return L.Trainer(accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                     logger=L.pytorch.loggers.TensorBoardLogger(tmp_path, name="tb"))


def test_validation_runs_episodes_with_the_model(tiny_model_dir, tool_world, tmp_path):
    results = _trainer(tmp_path).validate(_module(tiny_model_dir), datamodule=_data(tool_world))[0]
    for key in ("val/mAP_full", "val/parse_rate", "val/format_rate", "val/truncation_rate", "val/tools/answered",
                "val/tools/valid_calls_per_episode", "val/tools/invalid_calls_per_episode",
                "val/tools/redundant_calls_per_episode", "val/tools/turns_per_episode", "val/tools/turn_budget"):
        assert key in results, key
    assert 1 <= results["val/tools/turns_per_episode"] <= 4 and 0 <= results["val/tools/answered"] <= 1


def test_episodes_that_answer_right_score_full_map(tiny_model_dir, tool_world, tmp_path, monkeypatch):
    """A model that plays the cold-start teacher (tools, then the ground truth with the boxes the
    tools showed): the whole path from the tool batches through the driver, the parser and the
    metric gives the mAP and the call counts of the same traces written offline."""
    teacher = TeacherTurns(tool_world, "test")
    monkeypatch.setattr(ToolEvaluation, "turn_writer", lambda self, model, processor, generation: teacher)
    results = _trainer(tmp_path).test(_module(tiny_model_dir), datamodule=_data(tool_world))[0]
    samples = read_annotations(tool_world.root / "test.json").samples[:4]
    assert all(s.grouped_pairs() for s in samples)  # so every teacher episode has 3 turns
    offline = _offline_traces(samples, tool_world)
    assert results["test/mAP_full"] == pytest.approx(offline["mAP_full"]) and results["test/mAP_full"] > 0
    assert results["test/tools/answered"] == 1.0 and results["test/format_rate"] == 1.0
    assert results["test/tools/turns_per_episode"] == 3.0 and results["test/tools/turn_budget"] == 0.0
    # detect_humans and detect_objects, relations (and spatial_relations for missed boxes), a crop
    assert results["test/tools/valid_calls_per_episode"] == pytest.approx(offline["valid_calls"])
    assert offline["valid_calls"] >= 4 and results["test/tools/invalid_calls_per_episode"] == 0.0
    # a budget of 2 turns: the teacher never gets to answer
    results = _trainer(tmp_path).test(_module(tiny_model_dir, max_turns=2), datamodule=_data(tool_world))[0]
    assert results["test/tools/answered"] == 0.0 and results["test/tools/turn_budget"] == 1.0
    assert results["test/mAP_full"] == 0.0


def _offline_traces(samples, tool_world) -> dict:
    """HOI-mAP and valid calls per episode of the cold-start traces of ``samples`` against the test
    detections, written by :func:`build_record` and parsed in their text frame (a 4-image subset
    scores below 1: classes annotated elsewhere in the split count as missed)."""
    from hoi_r1.answer import parse_answer
    from hoi_r1.image_dataset import load_image
    from hoi_r1.ov_hoi.cold_start import build_record
    from hoi_r1.ov_hoi.cold_start_records import record_frame
    from hoi_r1.ov_hoi.episode import read_transcript
    from helpers.tool_world import COLD_START

    vocab = read_annotations(tool_world.root / "test.json").vocab
    detections = DetectionsFile.read(tool_world.detections["test"])
    records = [build_record(s, vocab, detections, COLD_START, image=load_image(s.image_path)) for s in samples]
    evaluation = ToolEvaluation(vocab, EvaluationSettings())
    answers = [parse_answer(r["messages"][-1]["content"], vocab, record_frame(r)) for r in records]
    evaluation.update(answers, {"samples": samples})
    calls = [read_transcript("".join(m["content"] for m in r["messages"])).num_valid_calls for r in records]
    return {"mAP_full": evaluation.compute()["mAP_full"], "valid_calls": sum(calls) / len(calls)}


def test_predict_writes_the_episode_transcript(tiny_model_dir, tool_world, tmp_path):
    test = DetectionsFile.read(tool_world.detections["test"])
    by_name = DetectionsFile({name.rsplit("/", 1)[-1]: dets for name, dets in test.images.items()})
    by_name.write(tmp_path / "predict_detections.json")
    data = HOIDataModule(predict_images=str(tool_world.root / "images" / "test"), predict_limit=2, task="tools",
                         predict_detections=str(tmp_path / "predict_detections.json"),
                         vocabulary=str(tool_world.root / "vocabulary.json"), eval_batch_size=2)
    records = [r for batch in _trainer(tmp_path).predict(_module(tiny_model_dir), datamodule=data) for r in batch]
    assert len(records) == 2 and all({"file_name", "hois", "completion"} <= set(r) for r in records)
    json.dumps(records)


def test_detections_must_cover_the_split_and_tool_scores_are_rank(tool_world, tmp_path, tiny_model_dir):
    DetectionsFile({}).write(tmp_path / "empty.json")
    data = HOIDataModule(processor=str(tiny_model_dir), task="tools",
                         val=SplitFiles(str(tool_world.root / "test.json"), detections=str(tmp_path / "empty.json")))
    data.setup("validate")
    with pytest.raises(ValueError, match="lacks 8 of the split's 8 images"):
        data.val_dataloader()
    with pytest.raises(ValueError, match="rank only"):
        ToolEvaluation(data.vocab, EvaluationSettings(scores="vote"))


def test_the_tool_mode_needs_its_module_and_its_module_needs_the_tool_mode(tiny_model_dir, tool_world, synthetic_world,
                                                                         tmp_path):
    from hoi_r1.sft import SFTModule

    plain = SFTModule(model=ModelSettings(name_or_path=str(tiny_model_dir)), log_examples=0)
    with pytest.raises(ValueError, match="hoi_r1.ov_hoi.sft.ToolSFTModule"):
        _trainer(tmp_path).validate(plain, datamodule=_data(tool_world))
    hoi_data = HOIDataModule(val=SplitFiles(str(synthetic_world / "test.json"), limit=2))
    with pytest.raises(ValueError, match="ToolSFTModule needs data.task 'tools'"):
        _trainer(tmp_path).validate(_module(tiny_model_dir), datamodule=hoi_data)


def test_help_documents_the_tool_sft_arguments(capsys):
    from hoi_r1.lightning_cli import cli_main

    with pytest.raises(SystemExit):
        cli_main(["fit", "--model.help", "hoi_r1.ov_hoi.sft.ToolSFTModule"])
    text = capsys.readouterr().out
    for option in ("--model.generation.max_new_tokens", "--model.generation.episodes.max_turns",
                   "--model.model.name_or_path", "--model.evaluation.scores", "--model.log_examples"):
        assert option in text, option
    assert "most model turns (generations) per episode" in text
