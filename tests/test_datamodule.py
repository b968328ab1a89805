"""HOIDataModule and collation: batches the tiny model trains on, labels on the answer only."""

import json
import logging

import pytest
import torch
from PIL import Image

from hoi_r1.datamodule import HOIDataModule, SplitFiles
from hoi_r1.generation import model_inputs
from hoi_r1.image_dataset import load_image, read_reasonings
from hoi_r1.models import ModelSettings, load_model
from hoi_r1.prompts import PromptConfig


@pytest.fixture
def datamodule(tiny_model_dir, synthetic_world):
    dm = HOIDataModule(
        processor=str(tiny_model_dir),
        train=SplitFiles(str(synthetic_world / "train.json")),
        val=SplitFiles(str(synthetic_world / "test.json")),
        batch_size=4,
        eval_batch_size=3,
    )
    dm.setup("fit")
    return dm


def test_sft_batch_trains_the_tiny_model(datamodule, tiny_model_dir):
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and len(batch["samples"]) == 4
    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir)))
    out = model(**model_inputs(batch), labels=batch["labels"])
    assert torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_labels_cover_exactly_the_answer(datamodule):
    tok = datamodule.processor.tokenizer
    batch = next(iter(datamodule.train_dataloader()))
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    for row in range(batch["input_ids"].shape[0]):
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        kept = labels[labels != -100]
        text = tok.decode(kept)
        assert text.startswith("<think>") and text.endswith("</answer><|im_end|>")
        assert "<|im_start|>" not in text and "user" not in text.split("</think>")[0][:10]
        assert not ((labels != -100) & (ids == image_id)).any()
        assert not ((labels != -100) & (batch["attention_mask"][row] == 0)).any()
        # the labelled tokens are a contiguous run at the end of the real tokens
        positions = (labels != -100).nonzero().flatten()
        assert torch.equal(positions, torch.arange(int(positions[0]), int(positions[-1]) + 1))


def test_generation_batch_is_left_padded_prompt(datamodule):
    batch = next(iter(datamodule.val_dataloader()))
    tok = datamodule.processor.tokenizer
    assert "labels" not in batch and len(batch["frames"]) == 3
    for row in batch["input_ids"]:
        text = tok.decode(row, skip_special_tokens=False)
        assert text.rstrip("\n").endswith("<|im_start|>assistant")
    assert (batch["attention_mask"][:, -1] == 1).all()


def test_too_long_samples_are_left_out_and_counted(tiny_model_dir, synthetic_world, caplog):
    caplog.set_level(logging.WARNING, logger="hoi_r1")  # (a benchmark run earlier may have raised its level)
    dm = HOIDataModule(processor=str(tiny_model_dir), train=SplitFiles(str(synthetic_world / "train.json")), batch_size=4)
    dm.setup("fit")
    collate = dm.sft_collator()
    items = [dm.datasets["train"][i] for i in range(4)]
    full = collate(items)
    lengths = full["attention_mask"].sum(1)
    collate.max_length = int(lengths.max()) - 1
    out = collate(items)
    longest = int((lengths == lengths.max()).sum())
    assert out["input_ids"].shape[0] == 4 - longest
    assert collate.too_long == longest
    assert "longer than max_length" in caplog.text
    collate.max_length = 10
    with pytest.raises(ValueError, match="max_length"):
        collate(items)


def test_training_order_is_seeded_and_resumable(datamodule):
    first = [s.file_name for b in datamodule.train_dataloader() for s in b["samples"]]
    assert len(first) == len(set(first)) == len(datamodule.datasets["train"])
    datamodule.train_sampler = None
    again = [s.file_name for b in datamodule.train_dataloader() for s in b["samples"]]
    assert again == first
    # resume after the second batch of epoch 0
    datamodule.train_sampler = None
    datamodule.load_state_dict({"train_sampler": {"epoch": 0, "position": 8, "seed": 0, "size": 24}})
    resumed = [s.file_name for b in datamodule.train_dataloader() for s in b["samples"]]
    assert resumed == first[8:]


def test_consumed_ticket_is_what_gets_saved(datamodule):
    loader = iter(datamodule.train_dataloader())
    batch = next(loader)
    next(loader)  # a loader that fetched ahead must not move the saved position
    datamodule.mark_consumed(batch["ticket"])
    assert datamodule.state_dict()["train_sampler"]["position"] == 4


def test_prompt_lists_the_custom_vocabulary(tiny_model_dir, synthetic_world, tmp_path):
    from hoi_r1.vocab import HOIVocabulary

    custom = HOIVocabulary.open(["juggle"], ["person", "ball"])
    custom.to_json(tmp_path / "vocab.json")
    dm = HOIDataModule(
        processor=str(tiny_model_dir),
        val=SplitFiles(str(synthetic_world / "test.json")),
        vocabulary=str(tmp_path / "vocab.json"),
        prompt=PromptConfig(list_verbs_per_object=False),
    )
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    text = dm.processor.tokenizer.decode(batch["input_ids"][0])
    assert "juggle" in text and "bicycle" not in text


def test_reasoning_file_goes_inside_think(tiny_model_dir, synthetic_world, tmp_path):
    records = json.loads((synthetic_world / "train.json").read_text())
    name = records[0]["file_name"]
    (tmp_path / "r.jsonl").write_text(json.dumps({"file_name": name, "reasoning": "Zebra reasoning."}) + "\n")
    dm = HOIDataModule(
        processor=str(tiny_model_dir), train=SplitFiles(str(synthetic_world / "train.json")),
        reasoning_file=str(tmp_path / "r.jsonl"),
    )
    dm.setup("fit")
    index = next(i for i, s in enumerate(dm.datasets["train"].samples) if s.file_name == name)
    batch = dm.sft_collator()([dm.datasets["train"][index]])
    labels = batch["labels"][0]
    assert dm.processor.tokenizer.decode(labels[labels != -100]).startswith("<think>Zebra reasoning.</think>")


@pytest.mark.parametrize("style", ["verbs", "pairs"])
def test_reasoning_style_decides_where_verbs_are_first_written(tiny_model_dir, synthetic_world, style):
    dm = HOIDataModule(processor=str(tiny_model_dir), train=SplitFiles(str(synthetic_world / "train.json")),
                       reasoning_style=style)
    dm.setup("fit")
    item = next(it for it in (dm.datasets["train"][i] for i in range(len(dm.datasets["train"]))) if it.sample.num_pairs)
    labels = dm.sft_collator()([item])["labels"][0]
    target = dm.processor.tokenizer.decode(labels[labels != -100])
    thinking = target.split("</think>")[0]
    verb = dm.vocab.verbs[int(item.sample.pairs[0, 2])].replace("_", " ")
    assert (f": {verb}" in thinking) == (style == "verbs"), thinking
    assert f'"verb class": ["{verb}' in target.replace("_", " ")  # the answer always names them


def test_bad_reasoning_file_names_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"file_name": "a.png", "reasoning": "x"}\n{"file_name": 3}\n')
    with pytest.raises(ValueError, match=r"r.jsonl, line 2"):
        read_reasonings(path)


def test_images_follow_exif_orientation_and_errors_name_the_file(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        load_image(tmp_path / "broken.jpg")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")


def test_grounding_task_labels_every_entity(tiny_model_dir, synthetic_world):
    dm = HOIDataModule(processor=str(tiny_model_dir), train=SplitFiles(str(synthetic_world / "train.json")), task="grounding")
    dm.setup("fit")
    item = dm.datasets["train"][0]
    batch = dm.sft_collator()([item])
    labels = batch["labels"][0]
    answer = json.loads(dm.processor.tokenizer.decode(labels[labels != -100]).split("<answer>")[1].split("</answer>")[0])
    sample = item.sample
    assert len(answer) == len(sample.human_boxes) + len(sample.object_boxes)
    assert sum(a["label"] == "person" for a in answer) == len(sample.human_boxes)


def test_worker_processes_give_the_same_batches(tiny_model_dir, synthetic_world):
    def files(num_workers):
        dm = HOIDataModule(
            processor=str(tiny_model_dir), train=SplitFiles(str(synthetic_world / "train.json")),
            batch_size=4, num_workers=num_workers, persistent_workers=num_workers > 0,
        )
        dm.setup("fit")
        batches = list(dm.train_dataloader())
        return [[s.file_name for s in b["samples"]] for b in batches], [b["ticket"] for b in batches]

    assert files(0) == files(2)


def test_labels_cover_every_assistant_turn_and_no_tool_turn(datamodule):
    tok = datamodule.processor.tokenizer
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "find the cup"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<tool_call>{}</tool_call>"}]},
        {"role": "tool", "content": [{"type": "text", "text": "<tool_response>cup at [1, 2, 3, 4]</tool_response>"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>[]</answer>"}]},
    ]
    ids = torch.tensor([tok.encode(datamodule.processor.apply_chat_template(messages, tokenize=False))])
    labels = datamodule.sft_collator().labels(ids, torch.ones_like(ids))
    kept = tok.decode(labels[0][labels[0] != -100])
    assert kept == "<tool_call>{}</tool_call><|im_end|><answer>[]</answer><|im_end|>"


def test_tool_traces_become_multi_turn_sft_batches(tiny_model_dir, synthetic_world, tmp_path):
    from hoi_r1.ov_hoi.cold_start import ColdStartConfig, write_cold_start
    from hoi_r1.ov_hoi.detection import noisy_detections
    from hoi_r1.readers import read_annotations

    train = read_annotations(synthetic_world / "train.json")
    detections, _ = noisy_detections(train.samples, train.vocab, seed=0)
    config = ColdStartConfig(min_pixels=3136, max_pixels=12544, zoom=True)
    write_cold_start(train.samples, train.vocab, detections, tmp_path / "traces.jsonl", config)
    dm = HOIDataModule(
        processor=str(tiny_model_dir), train=SplitFiles(str(synthetic_world / "train.json")),
        task="tools", cold_start_file=str(tmp_path / "traces.jsonl"), batch_size=2, max_length=8192,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    tok = dm.processor.tokenizer
    for row in range(2):
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        kept = tok.decode(labels[labels != -100])
        assert "<tool_call>" in kept and kept.endswith("</answer><|im_end|>")
        assert "<tool_response>" not in kept  # tool turns are never trained on
        assert "<tool_response>" in tok.decode(ids)
    # the crops shown by tool responses are images of the conversation too
    images = int((batch["image_grid_thw"].shape[0]))
    assert images > 2 and images == int((batch["input_ids"] == tok.convert_tokens_to_ids("<|vision_start|>")).sum())
    model = load_model(ModelSettings(name_or_path=str(tiny_model_dir)))
    assert torch.isfinite(model(**model_inputs(batch), labels=batch["labels"]).loss)
