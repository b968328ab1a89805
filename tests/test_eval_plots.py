"""``hoi-r1 eval --breakdown`` / ``--plots``: the geometry breakdown worked by hand, the PNGs."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from hoi_r1.eval_breakdown import breakdown
from hoi_r1.eval_command import main
from hoi_r1.file_evaluation import evaluate_files
from hoi_r1.pr_curves import precision_recall_curves
from hoi_r1.readers.hico_det import write_hico_json
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

pytest.importorskip("matplotlib")

VOCAB = HOIVocabulary.open(["ride"], ["person", "bicycle"], [("ride", "bicycle")])
H0, NEAR, FAR = [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [100.0, 0.0, 110.0, 10.0]
H1, MID = [0.0, 0.0, 40.0, 40.0], [30.0, 0.0, 70.0, 40.0]
FP_H, FP_O = [200.0, 200.0, 210.0, 210.0], [201.0, 200.0, 211.0, 210.0]


def eleven(precisions):
    ap = 0.0
    for p in precisions:
        ap = ap + p / 11.0
    return ap


def target(image_id, pairs):
    return {"image_id": image_id, "human_boxes": torch.tensor([h for h, _ in pairs], dtype=torch.float64),
            "object_boxes": torch.tensor([o for _, o in pairs], dtype=torch.float64),
            "object_labels": torch.ones(len(pairs), dtype=torch.long), "hoi": torch.zeros(len(pairs), dtype=torch.long)}


def pred(image_id, rows):
    return target(image_id, [(h, o) for h, o, _ in rows]) | {
        "scores": torch.tensor([s for *_, s in rows], dtype=torch.float64)}


def tiny_case():
    # image 0: pair A (object on the human: distance 0, area 100) and pair B (object 10 human
    # sizes away, area 100); image 1: pair C (distance 30 / 40 = 0.75, area 1,600).
    # Detections: A exactly (0.9), a false positive at distance 0.1, area 100 that ranks first
    # (0.95), C exactly (0.8); B is missed.
    targets = [target(0, [(H0, NEAR), (H0, FAR)]), target(1, [(H1, MID)])]
    preds = [pred(0, [(H0, NEAR, 0.9), (FP_H, FP_O, 0.95)]), pred(1, [(H1, MID, 0.8)])]
    return preds, targets


def test_breakdown_by_distance_and_area_worked_by_hand():
    preds, targets = tiny_case()
    out = breakdown(preds, targets, VOCAB)
    distance = {r["bin"]: r for r in out["distance"]}
    # 0-0.5: A and the false positive; FP first -> precision 1/2 at recall 1 -> AP 0.5
    assert distance["0-0.5"]["num_gt_pairs"] == 1 and distance["0-0.5"]["num_detections"] == 2
    assert distance["0-0.5"]["mAP"] == pytest.approx(eleven([0.5] * 11), abs=1e-15)
    assert distance["0-0.5"]["recall"] == 1.0
    # 0.5-1: C found -> AP 1; 1-2: empty; 2+: B missed -> AP 0, recall 0
    assert distance["0.5-1"]["mAP"] == pytest.approx(1.0, abs=1e-12) and distance["0.5-1"]["recall"] == 1.0
    assert distance["1-2"] == distance["1-2"] | {"num_gt_pairs": 0, "num_detections": 0, "mAP": None, "recall": None}
    assert distance["2+"]["mAP"] == 0.0 and distance["2+"]["recall"] == 0.0
    area = {r["bin"]: r for r in out["area"]}
    # < 32²: A and B, the FP then A -> recall 1/2 at precision 1/2 -> AP 6 x 0.5 / 11
    assert area["<32²"]["num_gt_pairs"] == 2
    assert area["<32²"]["mAP"] == pytest.approx(eleven([0.5] * 6 + [0.0] * 5), abs=1e-15)
    assert area["<32²"]["recall"] == 0.5
    assert area["32²-96²"]["mAP"] == pytest.approx(1.0, abs=1e-12) and area["32²-96²"]["num_gt_pairs"] == 1
    assert area["96²+"]["num_gt_pairs"] == 0 and area["96²+"]["mAP"] is None


def test_breakdown_applies_the_top_k_cut_to_the_whole_image():
    # qpic keeps the 100 best detections per image: 100 far-away false positives scoring above
    # the true positive push it out, and binning must not bring it back
    targets = [target(0, [(H0, NEAR)])]
    fps = [(FP_H, [201.0 + 200, 200.0, 211.0 + 200, 210.0], 0.99 - k * 1e-4) for k in range(100)]
    preds = [pred(0, [(H0, NEAR, 0.5)] + fps)]
    near = {r["bin"]: r for r in breakdown(preds, targets, VOCAB, protocol="qpic")["distance"]}["0-0.5"]
    assert near["num_detections"] == 0 and near["recall"] == 0.0


def test_pr_curves_worked_by_hand():
    preds, targets = tiny_case()
    curves = precision_recall_curves(preds, targets, VOCAB)
    # ranked: FP (0.95), A (0.9), C (0.8); 3 ground-truth pairs
    assert curves.recall[0].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert curves.precision[0].tolist() == pytest.approx([0.0, 0.5, 2 / 3])
    assert curves.max_recall.tolist() == pytest.approx([2 / 3]) and curves.npos.tolist() == [3]


@pytest.fixture()
def files(tmp_path):
    samples = [HOISample(0, "a.jpg", "a.jpg", 300, 300, [H0], [NEAR, FAR], [1, 1], [[0, 0, 0, 0], [0, 1, 0, 0]]),
               HOISample(1, "b.jpg", "b.jpg", 300, 300, [H1], [MID], [1], [[0, 0, 0, 0]])]
    ann = write_hico_json(samples, VOCAB, tmp_path / "test.json", with_hoi_category=False)
    (tmp_path / "vocabulary.json").write_text(json.dumps(VOCAB.to_dict()))
    hoi = lambda h, o, s: {"human_box": h, "object_box": o, "object": "bicycle", "verb": "ride", "score": s}  # noqa: E731
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"file_name": "a.jpg", "hois": [hoi(H0, NEAR, 0.9), hoi(FP_H, FP_O, 0.95)]},
                                 {"file_name": "b.jpg", "hois": [hoi(H1, MID, 0.8)]}]))
    return tmp_path, ann, preds


def test_breakdown_in_the_result_and_the_table(files, capsys):
    tmp, ann, preds = files
    result = evaluate_files(ann, preds, breakdown=True)
    preds_m, targets = tiny_case()
    assert result["breakdown"] == breakdown(preds_m, targets, VOCAB)
    assert main(["--annotations", str(ann), "--predictions", str(preds), "--breakdown"]) == 0
    table = capsys.readouterr().out
    assert "by distance" in table and "by area" in table and "50.00" in table


def test_plots_are_written_as_valid_pngs(files, capsys):
    tmp, ann, preds = files
    out = tmp / "plots"
    assert main(["--annotations", str(ann), "--predictions", str(preds), "--plots", str(out),
                 "--train-annotations", str(ann), "--output", str(tmp / "result.json")]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ap_per_class.png", "breakdown.png", "max_recall.png", "pr_curves.png"]
    for path in out.iterdir():
        assert path.stat().st_size > 5_000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size[0] >= 800 and image.size[1] >= 500
    result = json.loads((tmp / "result.json").read_text())
    assert sorted(result["plots"]) == sorted(str(p) for p in out.iterdir()) and "breakdown" in result
    assert "plots written" in capsys.readouterr().out


def test_plots_without_matplotlib_say_how_to_install_it(files, monkeypatch, capsys):
    import sys

    tmp, ann, preds = files
    monkeypatch.delitem(sys.modules, "hoi_r1.eval_plots", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ModuleNotFoundError
    with pytest.raises(SystemExit) as info:
        main(["--annotations", str(ann), "--predictions", str(preds), "--plots", str(tmp / "plots")])
    assert info.value.code == 2 and "pip install -e '.[plots]'" in capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["hico_official", "qpic", "gen_vlkt", "pocket", "swig", "hoi_r1"])
def test_pr_curves_rank_and_match_tied_scores_as_the_metric_does(protocol):
    """The curves' 11-point AP is the metric's AP of every protocol, also where the protocol's own
    tie order and matching decide which of tied detections is the hit (pocket, swig)."""
    import dataclasses

    from hoi_r1.hoi_map import hoi_mean_average_precision
    from hoi_r1.metric_protocols import get_protocol

    vocab = dataclasses.replace(VOCAB, frequency=(2,))
    # image 0: one pair, three tied detections on it and one beside it; image 1: no pair, two tied
    # detections: which of them rank first decides the precision at full recall
    targets = [target(0, [(H0, NEAR)]), target(1, [])]
    preds = [pred(0, [(H0, NEAR, 0.5), (H0, NEAR, 0.5), (FP_H, FP_O, 0.5), (H0, NEAR, 0.5)]),
             pred(1, [(H0, NEAR, 0.5), (FP_H, FP_O, 0.5)])]
    curves = precision_recall_curves(preds, targets, vocab, protocol)
    recall, precision = curves.recall[0], curves.precision[0]
    ap = 0.0
    for t in get_protocol(protocol).recall_thresholds:
        reached = precision[recall >= t]
        ap = ap + (float(reached.max()) if len(reached) else 0.0) / 11.0
    expected = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True)["per_class_ap"][0]
    assert ap == pytest.approx(float(expected), abs=1e-12)
