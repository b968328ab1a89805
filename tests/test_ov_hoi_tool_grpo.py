"""ToolGRPOModule: GRPO on tool-using episodes with the real Trainer and the tiny model."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from helpers.tool_world import JUNK, TeacherTurns, make_tool_world

from hoi_r1.datamodule import HOIDataModule, SplitFiles
from hoi_r1.grpo import GRPOModule
from hoi_r1.grpo_settings import GRPOLogSettings, GRPOLossSettings, RolloutSettings
from hoi_r1.models import ModelSettings
from hoi_r1.ov_hoi.episode_driver import EpisodeSettings
from hoi_r1.ov_hoi.evaluation import ToolGenerationSettings
from hoi_r1.ov_hoi.tool_grpo import ToolGRPOModule
from hoi_r1.rollout.batch import RolloutBuffer


@pytest.fixture(scope="module")
def tool_world(synthetic_world, tmp_path_factory):
    return make_tool_world(synthetic_world, tmp_path_factory.mktemp("tools"))


def _data(tool_world, **kwargs):
    return HOIDataModule(
        train=SplitFiles(str(tool_world.root / "train.json"), detections=str(tool_world.detections["train"])),
        val=SplitFiles(str(tool_world.root / "test.json"), limit=2, detections=str(tool_world.detections["test"])),
        task="tools", batch_size=2, eval_batch_size=2, **kwargs,
    )


def _module(model_dir, cls=ToolGRPOModule, max_new_tokens=8, **kwargs):
    return cls(
        model=ModelSettings(name_or_path=str(model_dir), freeze_vision=True),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
        rollout=RolloutSettings(num_generations=2, max_completion_length=max_new_tokens),
        episodes=EpisodeSettings(max_turns=4),
        generation=ToolGenerationSettings(max_new_tokens=8, episodes=EpisodeSettings(max_turns=2)),
        log_examples=0,
        logging=GRPOLogSettings(completions=2, every_n_generations=1),
        **kwargs,
    )


def _trainer(tmp_path, **kwargs):
    options = dict(accelerator="cpu", max_steps=1, accumulate_grad_batches=1, limit_val_batches=0, log_every_n_steps=1)
    options.update(kwargs)
    return L.Trainer(default_root_dir=tmp_path, logger=L.pytorch.loggers.TensorBoardLogger(tmp_path, name="tb"),
                     enable_progress_bar=False, enable_model_summary=False, deterministic=True, **options)


class TeacherToolGRPO(ToolGRPOModule):
    """Episodes written by the cold-start teacher (right answers) or, for the second episode of
    each prompt, a junk turn: every group has a reward spread."""

    teacher: TeacherTurns

    def turn_writer(self, sampling):
        return self.teacher


def test_step_trains_on_exactly_the_model_tokens_of_each_episode(tiny_model_dir, tool_world, tmp_path):
    L.seed_everything(0)
    module = _module(tiny_model_dir, cls=TeacherToolGRPO, loss=GRPOLossSettings(steps_per_generation=2, beta=0.1))
    module.teacher = TeacherTurns(tool_world, "train", junk_odd=True)
    module.configure_model()
    before = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    data = _data(tool_world, cold_start_file=str(tool_world.cold_start), max_length=8192)
    trainer = _trainer(tmp_path, max_steps=1, accumulate_grad_batches=2)
    trainer.fit(module, datamodule=data)
    m = trainer.callback_metrics
    assert float(m["train/reward/accuracy"]) == pytest.approx(0.5)  # teacher episodes 1, junk 0
    assert float(m["train/reward/format"]) == pytest.approx(0.5)
    assert float(m["train/tools/answered"]) == pytest.approx(0.5)
    assert float(m["train/tools/valid_calls_per_episode"]) > 1
    assert torch.isfinite(m["train/loss"]) and torch.isfinite(m["train/kl"])
    changed = {k for k, v in before.items() if not torch.equal(v, module.model.state_dict()[k])}
    assert any(k.startswith("model.language_model") for k in changed)
    assert not any("visual.blocks" in k for k in changed)

    # the buffer's loss mask covers exactly the tokens the cold-start SFT labels for the same conversation
    buffer, tok = module._buffer, data.processor.tokenizer
    assert buffer.advantages[0] > 0 > buffer.advantages[1]
    sft = data.sft_collator()
    for prompt, image_id in enumerate(buffer.image_ids):
        index = next(i for i, s in enumerate(data.datasets["train"].samples) if s.image_id == image_id)
        labels = sft([data.datasets["train"][index]])["labels"][0]
        teacher_row, junk_row = 2 * prompt, 2 * prompt + 1
        model_tokens = buffer.completion_ids[teacher_row][buffer.completion_mask[teacher_row].bool()]
        assert torch.equal(model_tokens.cpu(), labels[labels != -100])
        junk = buffer.completion_ids[junk_row][buffer.completion_mask[junk_row].bool()]
        assert tok.decode(junk) == JUNK + "<|im_end|>"
        assert buffer.turns[junk_row] == [{"role": "assistant", "text": JUNK, "images": []}]
    # a checkpoint holds the episodes' turns (crops included) and reads back with weights_only
    trainer.save_checkpoint(tmp_path / "tools.ckpt")
    saved = torch.load(tmp_path / "tools.ckpt", weights_only=True)
    restored = RolloutBuffer.from_state_dict(saved["grpo"]["buffer"])
    assert [t["text"] for t in restored.turns[0]] == [t["text"] for t in buffer.turns[0]]
    assert any(t["images"] for t in restored.turns[0]) and saved["hyper_parameters"]["episodes"].max_turns == 4


def test_fit_with_the_policy_writing_episodes_logs_tool_statistics(tiny_model_dir, tool_world, tmp_path):
    L.seed_everything(0)
    module = _module(tiny_model_dir, loss=GRPOLossSettings(steps_per_generation=2))
    trainer = _trainer(tmp_path, max_steps=1, accumulate_grad_batches=2, limit_val_batches=1, val_check_interval=2)
    trainer.fit(module, datamodule=_data(tool_world))
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss"])
    for key in ("train/reward/accuracy", "train/reward/format", "train/reward/tool_usage", "train/reward/spatial",
                "train/tools/valid_calls_per_episode", "train/tools/turns_per_episode", "train/tools/answered",
                "train/completion_length/mean", "val/mAP_full", "val/parse_rate", "val/tools/answered",
                "val/tools/invalid_calls_per_episode", "val/reward/accuracy", "val/reward"):
        assert key in m, key
    assert 1 <= float(m["train/tools/turns_per_episode"]) <= 4


def test_buffer_with_episode_turns_round_trips_through_a_checkpoint(tmp_path):
    from PIL import Image

    from hoi_r1.ov_hoi.episode import Episode, Turn
    from hoi_r1.ov_hoi.episode_rollout import episode_of, plain_turns

    crop = Image.effect_noise((12, 8), 40).convert("RGB")
    episode = Episode([Turn("assistant", "<think>a</think><tool_call>{}</tool_call>"),
                       Turn("tool", "<tool_response>x</tool_response>", (crop,)), Turn("assistant", "<answer>[]</answer>")])
    turns = [plain_turns(episode), [{"role": "assistant", "text": "?", "images": []}]]
    buffer = RolloutBuffer(image_ids=[3], group_size=2, micro_batches=1, completion_ids=torch.tensor([[5, 6], [7, 0]]),
                           completion_mask=torch.tensor([[1, 1], [1, 0]]), advantages=torch.tensor([0.5, -0.5]),
                           num_items=3.0, ref_logp=torch.zeros(2, 2), turns=turns)
    torch.save({"grpo": {"buffer": buffer.state_dict()}}, tmp_path / "c.ckpt")
    state = torch.load(tmp_path / "c.ckpt", weights_only=True)["grpo"]["buffer"]
    restored = RolloutBuffer.from_state_dict(state).to("cpu")
    assert restored.image_ids == [3] and torch.equal(restored.completion_ids, buffer.completion_ids)
    assert [[(t["role"], t["text"]) for t in row] for row in restored.turns] == [[(t["role"], t["text"]) for t in row]
                                                                                for row in turns]
    again = episode_of(restored.turns[0])
    assert [t.role for t in again.turns] == ["assistant", "tool", "assistant"]
    assert again.images[0].size == (12, 8) and again.images[0].tobytes() == crop.tobytes()


def test_tool_mode_is_refused_where_it_cannot_run(tiny_model_dir, tool_world, tmp_path, synthetic_world):
    with pytest.raises(ValueError, match="engine 'hf' only"):
        ToolGRPOModule(engine="vllm")
    plain = GRPOModule(model=ModelSettings(name_or_path=str(tiny_model_dir)),
                       rollout=RolloutSettings(num_generations=2, max_completion_length=4))
    with pytest.raises(ValueError, match="ToolGRPOModule"):
        _trainer(tmp_path).fit(plain, datamodule=_data(tool_world))
    hoi_data = HOIDataModule(train=SplitFiles(str(synthetic_world / "train.json")), batch_size=2)
    with pytest.raises(ValueError, match="needs data.task 'tools'"):
        _trainer(tmp_path).fit(_module(tiny_model_dir), datamodule=hoi_data)


def test_help_documents_the_tool_grpo_arguments(capsys):
    from hoi_r1.lightning_cli import cli_main

    with pytest.raises(SystemExit):
        cli_main(["fit", "--model.help", "hoi_r1.ov_hoi.tool_grpo.ToolGRPOModule"])
    text = capsys.readouterr().out
    for option in ("--model.rewards.accuracy", "--model.tool_usage.saturation", "--model.spatial.verb_cues",
                   "--model.episodes.max_turns", "--model.episodes.stop_strings", "--model.generation.episodes.max_turns",
                   "--model.rollout.num_generations"):
        assert option in text, option
    assert "most model turns (generations) per episode" in text
