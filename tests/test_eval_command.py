"""``hoi-r1 eval`` core: annotation file + predictions file -> HOI-mAP JSON and table."""

from __future__ import annotations

import json
import random

import pytest
import torch

from hoi_r1.answer_render import render_answer
from hoi_r1.eval_command import main
from hoi_r1.file_evaluation import BadPredictionError, evaluate_files
from hoi_r1.frames import Frame
from hoi_r1.hoi_map import hoi_mean_average_precision, targets_from_sample
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


def _without_sizes(tmp, ann):
    """A copy of the annotations without width / height, like the real test_hico.json."""
    records = json.loads(ann.read_text())
    for r in records:
        r.pop("width"), r.pop("height")
    bare = tmp / "bare.json"
    bare.write_text(json.dumps(records))
    return bare


def test_no_image_files_needed_for_boxes_in_original_pixels(files):
    # like the real test_hico.json: records without width / height, and no image on disk
    tmp, ann, samples = files
    bare = _without_sizes(tmp, ann)
    assert not list(tmp.glob("*.jpg"))
    preds = write(tmp / "preds.json", [{"file_name": s.file_name, "hois": hois_of(s)} for s in samples])
    assert evaluate_files(bare, preds)["mAP_full"] == pytest.approx(evaluate_files(ann, preds)["mAP_full"], abs=0)
    # completions in original pixels do not need sizes either
    original = Frame.for_image("absolute_original", 100, 80)
    texts = write(tmp / "texts.json", [{"file_name": s.file_name,
                                         "completion": render_answer(s, VOCAB, original, reasoning="ok")}
                                        for s in samples])
    assert evaluate_files(bare, texts)["mAP_full"] == pytest.approx(evaluate_files(ann, texts)["mAP_full"], abs=0)


def test_text_frames_name_the_missing_images_they_need(files):
    from PIL import Image

    tmp, ann, samples = files
    bare = _without_sizes(tmp, ann)
    entries = []
    for s in samples[:3]:  # completions for three images only
        frame = Frame.for_image("normalized_1000", s.width, s.height)
        entries.append({"file_name": s.file_name, "completion": render_answer(s, VOCAB, frame, reasoning="ok")})
    preds = write(tmp / "preds.json", entries)
    with pytest.raises(BadPredictionError) as info:
        evaluate_files(bare, preds, frame="normalized_1000")
    message = str(info.value)
    assert "--frame normalized_1000 needs the original size" in message and "3 image file(s) missing" in message
    assert all(str(tmp / s.file_name) in message for s in samples[:3])
    assert str(tmp / samples[3].file_name) not in message  # images without a completion are not needed
    for s in samples[:3]:
        Image.new("RGB", (s.width, s.height)).save(tmp / s.file_name)
    got = evaluate_files(bare, preds, frame="normalized_1000")
    assert got["mAP_full"] == evaluate_files(ann, preds, frame="normalized_1000")["mAP_full"]


def test_typed_generic_and_per_entry_roads_agree(files, monkeypatch):
    # integer and float coordinates, integer scores, extra keys, an entry without hois
    from hoi_r1.prediction_reader import PredictionReader

    tmp, ann, samples = files
    rng = random.Random(3)
    entries = [{"file_name": s.file_name, "extra": [1, {"a": None}],
                "hois": hois_of(s, score=rng.random(), shift=rng.choice([0, 1.5, 7]))
                + [{"human_box": [1, 2, 30, 40], "object_box": [5.5, 6, 20, 70], "object": "cup", "verb": "hold",
                    "score": 1, "note": "x"}]} for s in samples[:-1]] + [{"file_name": samples[-1].file_name,
                                                                          "hois": []}]
    preds = write(tmp / "preds.json", entries)
    roads = []
    typed, generic = PredictionReader._typed_columns, PredictionReader._vectorised_hois
    monkeypatch.setattr(PredictionReader, "_typed_columns", lambda self, e: roads.append("typed") or typed(self, e))
    monkeypatch.setattr(PredictionReader, "_vectorised_hois", lambda self, e: roads.append("generic") or generic(self, e))
    fast = evaluate_files(ann, preds, protocol="qpic")
    assert roads == ["typed"]
    monkeypatch.setattr(PredictionReader, "_decode_typed", lambda self, data: None)
    lists = evaluate_files(ann, preds, protocol="qpic")
    assert roads == ["typed", "generic"]
    monkeypatch.setattr(PredictionReader, "_vectorised_hois", lambda self, e: None)
    per_entry = evaluate_files(ann, preds, protocol="qpic")
    assert fast == lists == per_entry


@pytest.mark.parametrize("hoi_change", [
    {"score": 1e400}, {"score": True}, {"human_box": [0, 0, 5, "5"]}, {"object_box": [0, 0, 5, 5, 5]},
    {"verb": None}, {"object": "horse"},
])
def test_a_file_the_typed_road_refuses_is_read_by_the_generic_road(files, hoi_change):
    # JSON the typed decoder refuses (1e400 overflows, a bool score) or a check fails on: the
    # message is the per-entry reader's, naming the entry, as before the typed road existed
    tmp, ann, samples = files
    entries = [{"file_name": s.file_name, "hois": hois_of(s)} for s in samples]
    bad = {"human_box": [0, 0, 5, 5], "object_box": [0, 0, 5, 5], "object": "cup", "verb": "hold", "score": 0.5}
    entries[3]["hois"].append(bad | hoi_change)
    preds = tmp / "preds.json"
    preds.write_text(json.dumps(entries).replace("Infinity", "1e400"))
    with pytest.raises(BadPredictionError, match=rf"preds.json: entry 3: hois\[{len(entries[3]['hois']) - 1}\]: "):
        evaluate_files(ann, preds)
    assert sum(evaluate_files(ann, preds, on_bad_prediction="skip")["skipped"].values()) == 1


def test_non_utf8_and_nan_literals_read_as_the_standard_parser_reads_them(files):
    tmp, ann, samples = files
    preds = tmp / "preds.json"
    preds.write_text(json.dumps([{"file_name": samples[0].file_name, "hois": hois_of(samples[0], score=float("nan"))
                                  or [{"human_box": [0, 0, 5, 5], "object_box": [0, 0, 5, 5], "object": "cup",
                                       "verb": "hold", "score": float("nan")}]}]))
    with pytest.raises(BadPredictionError, match=r"entry 0: hois\[0\]: score must be a finite number, found nan"):
        evaluate_files(ann, preds)
    preds.write_bytes(b'[{"file_name": "\xff"}]')
    with pytest.raises(UnicodeDecodeError):
        evaluate_files(ann, preds)


def test_eval_benchmark_roads_give_identical_results():
    from benchmarks.eval_benchmark import run

    figures = run(num_images=150, num_pairs=300, per_image=4, protocol="hoi_r1", per_entry=True, command=False)
    assert figures["identical"] is True and figures["per_entry_identical"] is True
    assert figures["detections"] == 600 and 0 < figures["mAP_full"] < 1


def test_the_helper_process_and_this_process_give_the_same_result_and_messages(files, capsys, monkeypatch):
    from hoi_r1.prediction_columns import ColumnsRead

    monkeypatch.setattr("hoi_r1.prediction_columns.HELPER_MIN_BYTES", 0)  # a helper even for a small file
    started, start = [], ColumnsRead.start
    monkeypatch.setattr(ColumnsRead, "start", lambda path: started.append(start(path)) or started[-1])
    tmp, ann, samples = files
    entries = [{"file_name": s.file_name, "hois": hois_of(s, score=0.1 * k, shift=k % 3)} for k, s in enumerate(samples)]
    preds = write(tmp / "preds.json", entries)
    results = []
    for flag in ("--helper-process", "--no-helper-process"):
        out = tmp / f"result{flag}.json"
        assert main(["--annotations", str(ann), "--predictions", str(preds), "--output", str(out), flag]) == 0
        results.append(json.loads(out.read_text()))
    assert len(started) == 1 and started[0].process is not None and started[0].process.returncode == 0
    assert results[0] == results[1] and results[0]["num_detections"] == sum(len(e["hois"]) for e in entries)
    entries[4]["hois"].append({"human_box": [0, 0, 5, 5], "object_box": [0, 0, 5, 5], "object": "cup", "verb": "ride",
                               "score": 0.5})  # (ride, cup) is no class: the helper's columns are refused here
    write(preds, entries)
    messages = []
    for flag in ("--helper-process", "--no-helper-process"):
        with pytest.raises(SystemExit):
            main(["--annotations", str(ann), "--predictions", str(preds), flag])
        messages.append(capsys.readouterr().err)
    assert messages[0] == messages[1] and "entry 4: hois[" in messages[0] and "is not a class" in messages[0]
