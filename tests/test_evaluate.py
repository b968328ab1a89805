"""``hoi-r1 eval`` core: annotation file + predictions file -> HOI-mAP JSON and table."""

from __future__ import annotations

import json
import random

import pytest
import torch

from hoi_r1.answer import render_answer
from hoi_r1.evaluate import BadPredictionError, evaluate_files, main
from hoi_r1.frames import Frame
from hoi_r1.metric import hoi_mean_average_precision, targets_from_sample
from hoi_r1.readers import read_annotations
from hoi_r1.readers.hico_det import write_hico_json
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

VOCAB = HOIVocabulary(
    name="tiny", verbs=("hold", "ride", "sit_on"), objects=("person", "bicycle", "cup"),
    interactions=((1, 1), (0, 1), (2, 1), (0, 2)), rare=frozenset({2}),
)


def make_samples(n=12, seed=0):
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        k = rng.randrange(0, 3)
        humans = [[x := rng.randint(1, 40), 1, x + rng.randint(10, 40), 60] for _ in range(k)]
        objects = [[y := rng.randint(1, 40), 30, y + rng.randint(10, 40), 70] for _ in range(k)]
        labels, pairs = [], []
        for j in range(k):
            cls = rng.randrange(VOCAB.num_classes)
            verb, obj = VOCAB.interactions[cls]
            labels.append(obj)
            pairs.append([j, j, verb, cls])
        samples.append(HOISample(i, f"img_{i:03d}.jpg", f"img_{i:03d}.jpg", 100, 80, humans, objects, labels, pairs))
    return samples


@pytest.fixture()
def files(tmp_path):
    samples = make_samples()
    ann = write_hico_json(samples, VOCAB, tmp_path / "test.json", with_hoi_category=False)
    return tmp_path, ann, read_annotations(ann).samples


def hois_of(sample, score=0.9, shift=0.0):
    out = []
    for h, o, v, k in sample.pairs.tolist():
        out.append({"human_box": [c + shift for c in sample.human_boxes[h].tolist()],
                    "object_box": sample.object_boxes[o].tolist(),
                    "object": VOCAB.objects[VOCAB.interactions[k][1]], "verb": VOCAB.verbs[v], "score": score})
    return out


def write(path, entries):
    path.write_text(json.dumps(entries))
    return path


def test_perfect_predictions_cli_writes_json_and_table(files, capsys):
    tmp, ann, samples = files
    preds = write(tmp / "preds.json", [{"file_name": s.file_name, "hois": hois_of(s)} for s in samples])
    out = tmp / "result.json"
    assert main(["--annotations", str(ann), "--predictions", str(preds), "--protocol", "qpic",
                 "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["mAP_full"] == pytest.approx(1.0, abs=1e-12)
    assert result["mean_max_recall"] == pytest.approx(1.0, abs=1e-12)
    assert len(result["per_class_ap"]) == VOCAB.num_classes
    assert result["num_images"] == len(samples)
    table = capsys.readouterr().out
    assert "mAP full" in table and "100.00" in table and "mean max recall" in table


def test_result_equals_the_metric_on_the_same_samples(files):
    tmp, ann, samples = files
    rng = random.Random(3)
    entries = []
    for s in samples[:-2]:  # the last two images get no entry
        hois = hois_of(s, shift=rng.choice([0, 2, 9]))
        for h in hois:
            h["score"] = rng.random()
        entries.append({"file_name": s.file_name, "hois": hois})
    preds = write(tmp / "preds.json", entries)
    result = evaluate_files(ann, preds, protocol="gen_vlkt", known_object=True, zero_shot=[0, 3])
    metric_preds = []
    for s in samples:
        rows = [h for e in entries if e["file_name"] == s.file_name for h in e["hois"]]
        metric_preds.append({
            "image_id": s.image_id,
            "human_boxes": torch.tensor([r["human_box"] for r in rows], dtype=torch.float64).reshape(-1, 4),
            "object_boxes": torch.tensor([r["object_box"] for r in rows], dtype=torch.float64).reshape(-1, 4),
            "object_labels": torch.tensor([VOCAB.object_id(r["object"]) for r in rows], dtype=torch.long),
            "hoi": torch.tensor([VOCAB.interaction_id(VOCAB.verb_id(r["verb"]), VOCAB.object_id(r["object"]))
                                 for r in rows], dtype=torch.long),
            "scores": torch.tensor([r["score"] for r in rows], dtype=torch.float64)})
    expected = hoi_mean_average_precision(metric_preds, [targets_from_sample(s) for s in samples], VOCAB,
                                          protocol="gen_vlkt", known_object=True, zero_shot=[0, 3], per_class=True)
    for key in ("mAP_full", "mAP_rare", "mAP_non_rare", "mAP_unseen", "mAP_seen", "mean_max_recall",
                "mAP_full_known_object"):
        assert result[key] == pytest.approx(expected[key].item(), abs=1e-15), key
    assert 0 < result["mAP_full"] < 1
    assert result["num_images_with_predictions"] == len(samples) - 2


def test_completion_entries_are_parsed(files):
    tmp, ann, samples = files
    entries = []
    for s in samples:
        frame = Frame.for_image("normalized_1000", s.width, s.height)
        entries.append({"file_name": s.file_name, "completion": render_answer(s, VOCAB, frame, reasoning="ok")})
    preds = write(tmp / "preds.json", entries)
    good = evaluate_files(ann, preds, frame="normalized_1000", protocol="pocket")
    assert good["mAP_full"] > 0.9  # rounding to the 0..1000 grid keeps every pair-IoU far above 0.5
    wrong_frame = evaluate_files(ann, preds, protocol="pocket")  # read as original pixels
    assert wrong_frame["mAP_full"] < good["mAP_full"]


@pytest.mark.parametrize("bad, code", [
    ({"file_name": "nope.jpg", "hois": []}, "unknown_file"),
    ({"file_name": "img_000.jpg", "hois": [{"human_box": [0, 0, 5, 5], "object_box": [0, 0, 5, 5],
                                            "object": "horse", "verb": "ride", "score": 0.5}]}, "unknown_object"),
    ({"file_name": "img_000.jpg", "hois": [{"human_box": [0, 0, 5, 5], "object_box": [0, 0, 5, 5],
                                            "object": "cup", "verb": "fly", "score": 0.5}]}, "unknown_verb"),
    ({"file_name": "img_000.jpg", "hois": [{"human_box": [0, 0, 5, 5], "object_box": [0, 0, 5, 5],
                                            "object": "cup", "verb": "ride", "score": 0.5}]}, "invalid_pair"),
    ({"file_name": "img_000.jpg", "hois": [{"human_box": [0, 0, 5], "object_box": [0, 0, 5, 5],
                                            "object": "cup", "verb": "hold", "score": 0.5}]}, "bad_box"),
    ({"file_name": "img_000.jpg", "hois": [{"human_box": [0, 0, 5, 5], "object_box": [0, 0, 5, 5],
                                            "object": "cup", "verb": "hold", "score": "high"}]}, "bad_score"),
])
def test_bad_entries_error_or_skip(files, bad, code, capsys):
    tmp, ann, samples = files
    preds = write(tmp / "preds.json", [{"file_name": s.file_name, "hois": hois_of(s)} for s in samples[1:]] + [bad])
    with pytest.raises(BadPredictionError, match=rf"preds.json: entry {len(samples) - 1}: "):
        evaluate_files(ann, preds)
    result = evaluate_files(ann, preds, on_bad_prediction="skip")
    assert result["skipped"] == {code: 1}
    with pytest.raises(SystemExit) as exit_info:
        main(["--annotations", str(ann), "--predictions", str(preds)])
    assert exit_info.value.code == 2
    assert f"entry {len(samples) - 1}" in capsys.readouterr().err


def test_missing_and_malformed_prediction_files(files):
    tmp, ann, _ = files
    with pytest.raises(FileNotFoundError, match="absent.json"):
        evaluate_files(ann, tmp / "absent.json")
    (tmp / "broken.json").write_text("[{")
    with pytest.raises(BadPredictionError, match="broken.json: not valid JSON"):
        evaluate_files(ann, tmp / "broken.json")
    (tmp / "dict.json").write_text("{}")
    with pytest.raises(BadPredictionError, match="JSON list"):
        evaluate_files(ann, tmp / "dict.json")
