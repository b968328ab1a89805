"""Tool-using episodes with the tiny model: turns written in padded batches, training sequences
in the cold-start SFT layout, log-probs of the model tokens."""

from __future__ import annotations

import pytest
import torch
from helpers.tool_world import TeacherTurns, make_tool_world

from hoi_r1.datamodule import HOIDataModule, SplitFiles
from hoi_r1.models import ModelSettings, load_model
from hoi_r1.ov_hoi.episode_driver import EpisodeSettings
from hoi_r1.ov_hoi.episode_rollout import (
    PolicyTurnWriter,
    conversation_images,
    episode_logps,
    episode_sequences,
    plain_turns,
    run_policy_episodes,
)
from hoi_r1.rollout.engine import RolloutSampling


@pytest.fixture(scope="module")
def tool_world(synthetic_world, tmp_path_factory):
    return make_tool_world(synthetic_world, tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="module")
def data(tiny_model_dir, tool_world):
    dm = HOIDataModule(
        processor=str(tiny_model_dir), task="tools", cold_start_file=str(tool_world.cold_start), max_length=8192,
        train=SplitFiles(str(tool_world.root / "train.json"), detections=str(tool_world.detections["train"])),
    )
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(ModelSettings(name_or_path=str(tiny_model_dir))).eval()


def _teacher_episodes(data, tool_world, items):
    batch = data.generation_collator("train")(items)
    episodes = run_policy_episodes(TeacherTurns(tool_world, "train"), batch, 1, EpisodeSettings(max_turns=4))
    return batch, episodes


def test_training_sequences_are_the_cold_start_sft_conversations(data, tool_world):
    """An episode that replays a cold-start trace encodes to the SFT collator's tokens, images and labels."""
    items = [data.datasets["train"][i] for i in (0, 3)]
    batch, episodes = _teacher_episodes(data, tool_world, items)
    assert all(e.stop_reason == "answer" for e in episodes) and episodes[0].images  # with crops
    sequences = episode_sequences(data.processor, batch["tool_messages"], [plain_turns(e) for e in episodes])
    sft = data.sft_collator()(items)  # right-padded; the episodes' sequences are left-padded
    ids, attention = sequences.inputs["input_ids"], sequences.inputs["attention_mask"].bool()
    for row in range(2):
        ours, theirs = ids[row][attention[row]], sft["input_ids"][row][sft["attention_mask"][row].bool()]
        assert torch.equal(ours, theirs)
        labels = sft["labels"][row][sft["attention_mask"][row].bool()]
        assert torch.equal(sequences.model_mask[row][attention[row]], labels != -100)
    assert torch.equal(sequences.inputs["image_grid_thw"], sft["image_grid_thw"])
    assert torch.equal(sequences.inputs["pixel_values"], sft["pixel_values"])
    # the region: from the first model token on, masked to the model's tokens
    region, mask = sequences.region(pad_id=-1)
    for row in range(2):
        labels = sft["labels"][row]
        assert torch.equal(region[row][mask[row]], labels[labels != -100])


def test_log_probs_of_model_tokens_match_one_full_forward_per_row(data, tool_world, model):
    items = [data.datasets["train"][i] for i in (1, 2)]
    _, episodes = _teacher_episodes(data, tool_world, items)
    episodes[1].turns[:] = episodes[1].turns[:3]  # rows of different lengths: more left padding
    batch = data.generation_collator("train")(items)
    sequences = episode_sequences(data.processor, batch["tool_messages"], [plain_turns(e) for e in episodes])
    region, mask = sequences.region()
    with torch.no_grad():
        batched = episode_logps(model, sequences, region.shape[1], temperature=0.7)
    for row in range(2):
        alone = episode_sequences(data.processor, batch["tool_messages"][row : row + 1], [plain_turns(episodes[row])])
        ids = alone.inputs["input_ids"]
        with torch.no_grad():
            logits = model(**{k: v for k, v in alone.inputs.items()}).logits[:, :-1] / 0.7
        full = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[0, :, 0]  # (L-1,): token p+1
        expected = full[alone.model_mask[0, 1:]]
        assert torch.allclose(batched[row][mask[row]], expected, atol=1e-4)
        past_region = sequences.inputs["input_ids"].shape[1] - int(sequences.starts[row])
        assert torch.all(batched[row, past_region:] == 0)
    assert region.shape[1] > sequences.inputs["input_ids"].shape[1] - int(sequences.starts[1])  # row 1 was shorter


def test_turns_written_in_one_padded_batch_equal_one_by_one(data, tool_world, model):
    items = [data.datasets["train"][i] for i in (0, 1)]
    _, episodes = _teacher_episodes(data, tool_world, items)
    batch = data.generation_collator("train")(items)
    # two conversations of different lengths: one just started, one after four turns (a crop shown)
    conversations = [batch["tool_messages"][0], [*batch["tool_messages"][1], *episodes[1].messages()[:4]]]
    assert len(episodes[1].images) == 1 and episodes[1].turns[3].images
    images = [[], episodes[1].images]
    writer = PolicyTurnWriter(model, data.processor, RolloutSampling(6, greedy=True), ("</answer>", "<tool_response>"))
    together = writer(conversations, images)
    alone = [writer([c], [i])[0] for c, i in zip(conversations, images)]
    assert together == alone and all(isinstance(truncated, bool) for _, truncated in together)
    assert writer.clean("a<|im_start|>assistant\nb<|image_pad|>c<|im_end|>") == "aassistant\nbc"


def test_images_follow_the_placeholders():
    messages = [{"role": "user", "content": [{"type": "image", "image": "prompt"}]},
                {"role": "tool", "content": [{"type": "text", "text": "x"}, {"type": "image"}, {"type": "image"}]}]
    assert conversation_images(messages, ["a", "b"]) == ["prompt", "a", "b"]
    with pytest.raises(ValueError, match="more image placeholders"):
        conversation_images(messages, ["a"])
    with pytest.raises(ValueError, match="left over"):
        conversation_images(messages, ["a", "b", "c"])
