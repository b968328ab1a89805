"""Detections file round trip and bad records, the two backends, noisy detections, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hoi_r1.boxes import box_iou
from hoi_r1.frames import Frame
from hoi_r1.ov_hoi.detection import (
    Detection,
    DetectionsFile,
    FileDetectionBackend,
    ModelGroundingBackend,
    main,
    noisy_detections,
)
from hoi_r1.readers.records import BadRecordError
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

FRAME = Frame("absolute_original", (100, 80), (100, 80))


def test_round_trip(tmp_path):
    original = DetectionsFile({
        "a.png": [Detection((1.0, 2.0, 30.5, 60.0), "person", 0.9), Detection((5.0, 6.0, 7.0, 8.0), "dining_table", 0.25)],
        "b.png": [],
    })
    back = DetectionsFile.read(original.write(tmp_path / "d" / "det.json"))
    assert dict(back.images) == {k: list(v) for k, v in original.images.items()}
    assert back.source == str(tmp_path / "d" / "det.json") and len(back) == 2 and "b.png" in back


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2", "not valid JSON"),
        ('{"images": []}', 'expected {"format": ..., "images": {file_name: [detections]}}'),
        ('{"format": "other", "images": {}}', "format 'other' is not 'hoi_r1.detections/1'"),
        ('{"images": {"a.png": {}}}', "record 0: image 'a.png': detections must be a list, found dict"),
        ('{"images": {"a.png": [], "b.png": [{"bbox": [1, 2, 3, 4], "label": "cup"}]}}',
         "record 1: image 'b.png', detection 0: has no key 'score'"),
        ('{"images": {"a.png": [{"bbox": [1, 2, 3], "label": "cup", "score": 1}]}}', "bbox must be 4 numbers"),
        ('{"images": {"a.png": [{"bbox": [3, 2, 1, 4], "label": "cup", "score": 1}]}}', "x1 < x2 and y1 < y2"),
        ('{"images": {"a.png": [{"bbox": [1, 2, 3, 4], "label": "", "score": 1}]}}', "label must be a non-empty string"),
        ('{"images": {"a.png": [{"bbox": [1, 2, 3, 4], "label": "cup", "score": 1.5}]}}', "score must be a number in [0, 1]"),
        ('{"images": {"a.png": [{"bbox": [1, 2, 3, true], "label": "cup", "score": 1}]}}', "bbox must be 4 numbers"),
    ],
)
def test_bad_files_name_the_file_and_record(tmp_path, content, message):
    path = tmp_path / "det.json"
    path.write_text(content)
    with pytest.raises(BadRecordError) as info:
        DetectionsFile.read(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        DetectionsFile.read("nope.json")


def test_file_backend_filters_and_ranks():
    dets = [Detection((0, 0, 10, 10), "cup", s) for s in (0.2, 0.9, 0.5, 0.7)] + [Detection((0, 0, 5, 5), "Dining Table", 0.8)]
    backend = FileDetectionBackend(DetectionsFile({"a.png": dets}), min_score=0.3, max_per_category=2)
    found = backend.detect("a.png", None, FRAME, ["cup", "dining_table"])
    assert [(d.label, d.score) for d in found] == [("cup", 0.9), ("Dining Table", 0.8), ("cup", 0.7)]
    assert backend.detect("a.png", None, FRAME, ["kite"]) == []


def test_model_grounding_backend_prompts_and_parses():
    seen = []

    def ground(instruction, image):
        seen.append(instruction)
        return ('<think>x</think><answer>[{"label": "cup", "box": [10, 20, 30, 40]}, {"label": "cup", "box": [1, 1, 5, 5]}, '
                '{"label": "kite", "box": [0, 0, 9, 9]}, {"label": "cup", "box": [5, 5, 5, 9]}]</answer>')

    backend = ModelGroundingBackend(ground)
    frame = Frame("normalized_1000", (100, 80), (100, 80))
    found = backend.detect("a.png", None, frame, ["cup", " cup", ""])
    assert "Labels: cup" in seen[0] and "0 to 1000" in seen[0]
    assert [(d.label, d.box, d.score) for d in found] == [("cup", (1.0, 1.6, 3.0, 3.2), 1.0), ("cup", (0.1, 0.08, 0.5, 0.4), 0.5)]
    assert ModelGroundingBackend(lambda i, im: "garbage").detect("a.png", None, frame, ["cup"]) == []


def _random_samples(n: int, seed: int = 0) -> list[HOISample]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        boxes = []
        for _ in range(4):
            x1, y1 = rng.uniform(0, 150, 2)
            boxes.append([x1, y1, x1 + rng.uniform(10, 40), y1 + rng.uniform(10, 40)])
        samples.append(HOISample(i, f"{i}.png", f"{i}.png", 200, 200, human_boxes=boxes[:2], object_boxes=boxes[2:],
                                 object_labels=[1, 2]))
    return samples


def test_noisy_detections_statistics_follow_the_settings():
    vocab = HOIVocabulary.open(["hold"], ["person", "cup", "kite"])
    samples = _random_samples(400)
    dets, stats = noisy_detections(samples, vocab, seed=3, miss_rate=0.2, false_alarm_rate=1.5, jitter=0.05)
    boxes = stats.kept + stats.missed
    assert boxes == 1600 and len(dets) == 400
    assert abs(stats.missed / boxes - 0.2) < 0.03  # binomial sd 0.01
    assert abs(stats.false_alarms / 400 - 1.5) < 0.2  # Poisson sd of the mean 0.06
    # kept boxes stay close to the truth (jitter 5 % of the size), false alarms score lower
    ious, true_scores, alarm_scores = [], [], []
    for s in samples:
        truth = np.concatenate([s.human_boxes, s.object_boxes])
        for d in dets.for_image(s.file_name):
            best = box_iou(torch.tensor([d.box], dtype=torch.float64), torch.from_numpy(truth)).max().item()
            (true_scores if d.score >= 0.5 and best > 0.5 else alarm_scores).append(d.score)
            if d.score >= 0.6:
                ious.append(best)
    assert np.median(ious) > 0.8 and min(true_scores) >= 0.5 and max(alarm_scores) <= 0.6
    again, _ = noisy_detections(samples, vocab, seed=3, miss_rate=0.2, false_alarm_rate=1.5, jitter=0.05)
    other, _ = noisy_detections(samples, vocab, seed=4, miss_rate=0.2, false_alarm_rate=1.5, jitter=0.05)
    assert dict(again.images) == dict(dets.images) and dict(other.images) != dict(dets.images)
    perfect, stats0 = noisy_detections(samples[:5], vocab, seed=0, miss_rate=0.0, false_alarm_rate=0.0, jitter=0.0)
    assert stats0.missed == stats0.false_alarms == 0
    assert [d.box for d in perfect.for_image("0.png")] != [] and all(
        any(np.allclose(d.box, b, atol=0.006) for b in np.concatenate([samples[0].human_boxes, samples[0].object_boxes]))
        for d in perfect.for_image("0.png"))
    with pytest.raises(ValueError, match="miss_rate"):
        noisy_detections(samples, vocab, miss_rate=1.5)


def test_cli_writes_a_file(synthetic_world, tmp_path, capsys):
    out = tmp_path / "det.json"
    assert main(["--annotations", str(synthetic_world / "train.json"), "--out", str(out), "--seed", "1"]) == 0
    dets = DetectionsFile.read(out)
    train = json.loads((synthetic_world / "train.json").read_text())
    assert set(dets.images) == {r["file_name"] for r in train}
    assert "wrote detections of 24 images" in capsys.readouterr().out
