"""Cold-start traces from ground truth on a generated synthetic world."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hoi_r1.answer import parse_answer
from hoi_r1.image_dataset import load_image
from hoi_r1.ov_hoi.cold_start import (
    ColdStartConfig,
    build_record,
    main,
    write_cold_start,
)
from hoi_r1.ov_hoi.cold_start_records import read_cold_start, record_frame, record_images, to_chat_messages
from hoi_r1.ov_hoi.detection import DetectionsFile, noisy_detections
from hoi_r1.ov_hoi.episode import read_transcript
from hoi_r1.ov_hoi.rewards import score_tool_completions
from hoi_r1.readers import read_annotations
from hoi_r1.reward_target import RewardTarget


@pytest.fixture(scope="module")
def world(synthetic_world):
    dataset = read_annotations(synthetic_world / "train.json")
    detections, _ = noisy_detections(dataset.samples, dataset.vocab, seed=0, miss_rate=0.2, false_alarm_rate=1.0)
    return dataset, detections


@pytest.mark.parametrize("frame", ["absolute_resized", "normalized_1000"])
def test_records_answer_with_the_ground_truth(world, tmp_path, frame):
    dataset, detections = world
    out = tmp_path / "cold.jsonl"
    assert write_cold_start(dataset.samples, dataset.vocab, detections, out, ColdStartConfig(frame=frame)) == 24
    records = read_cold_start(out)
    assert len(records) == 24
    targets, transcripts = [], []
    copied = boxes = 0
    for record, sample in zip(records, dataset.samples):
        assert record["file_name"] == sample.file_name
        roles = [m["role"] for m in record["messages"]]
        assert roles == ["assistant", "tool", "assistant", "tool", "assistant"]
        text_frame = record_frame(record)
        parsed = parse_answer(record["messages"][-1]["content"], dataset.vocab, text_frame)
        assert parsed.structure_ok and not parsed.problems
        groups = sample.grouped_pairs()
        assert len(parsed.triplets) == len(groups)
        # each box is the detection of its class the tools showed for it (IoU >= 0.5), else the annotation
        found = [d for d in detections.for_image(sample.file_name) if d.score >= 0.3]
        half_unit = 0.5 / min(text_frame.scale) + 1e-9
        for t, (h, o, verbs) in zip(parsed.triplets, groups):
            for written, truth, label in ((t.human_box, sample.human_boxes[h], "person"),
                                          (t.object_box, sample.object_boxes[o], dataset.vocab.objects[sample.object_labels[o]])):
                same = [np.array(d.box) for d in found if d.label == label]
                ious = [_iou(b, truth) for b in same]
                stand_in = same[int(np.argmax(ious))] if ious and max(ious) >= 0.5 else truth
                assert np.abs(np.array(written) - stand_in).max() <= half_unit
                copied += stand_in is not truth
                boxes += 1
            assert t.object_id == sample.object_labels[o] and list(t.verb_ids) == verbs
        # the first tool turn shows the file's person detections, one line each, in the text frame
        lines = record["messages"][1]["content"].split("</tool_response>")[0].removeprefix("<tool_response>").splitlines()
        expected = [d for d in found if d.label == "person"]
        if expected:
            assert len(lines) == len(expected) and all(line.startswith(f"person {k + 1}: [") for k, line in enumerate(lines))
        else:
            assert lines == ["none found: person"]
        transcripts.append("".join(m["content"] for m in record["messages"]))
        targets.append(RewardTarget(sample, text_frame, dataset.vocab))
    # the traces are what the rewards want: right, well formed, tools used; the verbs fit the geometry
    # of the annotated boxes, and mostly that of the (jittered) detections that stand for them
    breakdown = score_tool_completions(transcripts, targets)
    for name in ("accuracy", "format", "tool_usage"):
        assert min(breakdown.per_reward[name]) == 1.0, name
    assert np.mean(breakdown.per_reward["spatial"]) > 0.8
    reading = read_transcript(transcripts[0])
    assert reading.num_invalid_calls == 0 and reading.num_redundant_calls == 0
    assert 0.5 < copied / boxes < 1  # most boxes come from the detector; the missed ones from the annotation


def test_annotated_boxes_without_copying(world):
    dataset, detections = world
    config = ColdStartConfig(frame="absolute_original", copy_detections=False)
    transcripts, targets = [], []
    for sample in dataset.samples[:8]:
        record = build_record(sample, dataset.vocab, detections, config)
        parsed = parse_answer(record["messages"][-1]["content"], dataset.vocab, record_frame(record))
        for t, (h, o, _) in zip(parsed.triplets, sample.grouped_pairs()):
            assert np.abs(np.array(t.human_box) - sample.human_boxes[h]).max() <= 0.5
            assert np.abs(np.array(t.object_box) - sample.object_boxes[o]).max() <= 0.5
        transcripts.append("".join(m["content"] for m in record["messages"]))
        targets.append(RewardTarget(sample, record_frame(record), dataset.vocab))
    breakdown = score_tool_completions(transcripts, targets)
    for name in ("accuracy", "format", "tool_usage", "spatial"):
        assert min(breakdown.per_reward[name]) == 1.0, name


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_zoom_records_images_that_can_be_recreated(world):
    dataset, detections = world
    sample = dataset.samples[0]
    image = load_image(sample.image_path)
    record = build_record(sample, dataset.vocab, detections, ColdStartConfig(zoom=True), image=image)
    tool_turns = [m for m in record["messages"] if m["role"] == "tool"]
    assert "images" not in tool_turns[0] and tool_turns[1]["images"][0]["tool"] == "crop"
    images = record_images(json.loads(json.dumps(record)), image)
    assert len(images) == 1 and min(images[0].size) >= 8
    chat = to_chat_messages(record)
    assert chat[3]["content"][-1] == {"type": "image"} and chat[0]["content"] == [{"type": "text", "text": record["messages"][0]["content"]}]


def test_missing_detections_and_bad_files(world, tmp_path):
    dataset, _ = world
    with pytest.raises(KeyError, match="lacks 24 images"):
        write_cold_start(dataset.samples, dataset.vocab, DetectionsFile({}), tmp_path / "x.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"file_name": "a", "frame": {"kind": "absolute_original"}, "messages": []}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 1: 'messages' must be a non-empty list"):
        read_cold_start(bad)
    bad.write_text('\n{"file_name": "a", "frame": {"kind": "pixels"}, "messages": [{"role": "assistant", "content": "x"}]}\n')
    with pytest.raises(ValueError, match="line 2: 'frame' must be an object with kind in"):
        read_cold_start(bad)
    bad.write_text("{oops\n")
    with pytest.raises(ValueError, match="line 1: not valid JSON"):
        read_cold_start(bad)


def test_cli_writes_traces_and_annotated_boxes_on_request(world, synthetic_world, tmp_path, capsys):
    dataset, detections = world
    det = detections.write(tmp_path / "det.json")
    out = tmp_path / "cold.jsonl"
    argv = ["--annotations", str(synthetic_world / "train.json"), "--detections", str(det), "--out", str(out),
            "--max-images", "3", "--frame", "absolute_original"]
    assert main(argv) == 0
    records = read_cold_start(out)
    assert len(records) == 3 and records[0]["frame"]["kind"] == "absolute_original"
    assert main([*argv, "--annotated-boxes"]) == 0
    sample = dataset.samples[0]
    first = parse_answer(read_cold_start(out)[0]["messages"][-1]["content"], dataset.vocab, record_frame(records[0]))
    h, o, _ = sample.grouped_pairs()[0]
    assert np.abs(np.array(first.triplets[0].human_box) - sample.human_boxes[h]).max() <= 0.5
    assert "wrote 3 cold-start traces" in capsys.readouterr().out


def test_cli_leaves_out_the_unseen_classes_of_a_zero_shot_setting(world, synthetic_world, tmp_path):
    dataset, detections = world
    det = detections.write(tmp_path / "det.json")
    unseen = set(dataset.vocab.unseen("unseen_composition"))
    out = tmp_path / "zs.jsonl"
    argv = ["--annotations", str(synthetic_world / "train.json"), "--detections", str(det), "--out", str(out),
            "--zero-shot", "unseen_composition", "--on-bad-record", "skip"]
    assert main(argv) == 0
    answers = [parse_answer(r["messages"][-1]["content"], dataset.vocab, record_frame(r)) for r in read_cold_start(out)]
    shown = {dataset.vocab.interaction_id(v, t.object_id) for a in answers for t in a.triplets for v in t.verb_ids}
    assert shown and not shown & unseen
    full = [s for s in dataset.samples if any(dataset.vocab.interaction_id(int(v), int(s.object_labels[o])) in unseen
                                              for _, o, v, _ in s.pairs.tolist())]
    assert full  # the setting does remove pairs of this world
