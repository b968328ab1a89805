"""``hoi-r1 eval`` benchmark: the whole command (read both files, check every prediction, HOI-mAP).

Writes a HICO-DET-sized annotation file (PPDM/QPIC JSON *without* width / height, like the real
``test_hico.json``, and no image files) and a predictions file of scored ``hois`` (100 per
image; the test set of :func:`benchmarks.metric_benchmark.make_test_set`), then times
:func:`hoi_r1.evaluate.evaluate_files` twice in the same run: with the vectorised prediction
checks, and with the per-entry reader only (what the command did before). Prints both times,
the ratio and whether the two results are identical.

Run: ``python -m benchmarks.eval_benchmark [--images N --pairs P --per-image K --protocol NAME]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

from benchmarks.metric_benchmark import make_test_set
from hoi_r1.evaluate import _PredictionReader, evaluate_files
from hoi_r1.readers.hico_det import write_hico_json
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary


def write_files(folder: Path, num_images: int, num_pairs: int, per_image: int) -> tuple[Path, Path, int]:
    """Annotation and predictions files in ``folder``; returns their paths and the detection count."""
    vocab = HOIVocabulary.hico_det()
    preds, targets = make_test_set(vocab, num_images, num_pairs, per_image)
    samples, entries = [], []
    for p, t in zip(preds, targets):
        name = f"HICO_test2015_{t['image_id'] + 1:08d}.jpg"
        classes = t["hoi"].tolist()
        pairs = [(j, j, vocab.interactions[k][0], k) for j, k in enumerate(classes)]
        samples.append(HOISample(t["image_id"], name, name, 640, 480, t["human_boxes"].tolist(),
                                 t["object_boxes"].tolist(), t["object_labels"].tolist(), pairs))
        entries.append({"file_name": name, "hois": [
            {"human_box": h, "object_box": o, "object": vocab.objects[ol],
             "verb": vocab.verbs[vocab.interactions[k][0]], "score": s}
            for h, o, ol, k, s in zip(p["human_boxes"].tolist(), p["object_boxes"].tolist(),
                                      p["object_labels"].tolist(), p["hoi"].tolist(), p["scores"].tolist())]})
    ann = write_hico_json(samples, vocab, folder / "test_hico.json", with_hoi_category=False)
    records = json.loads(ann.read_text())
    for r in records:
        r.pop("width", None), r.pop("height", None)
    ann.write_text(json.dumps(records))
    predictions = folder / "predictions.json"
    predictions.write_text(json.dumps(entries))
    return ann, predictions, sum(len(e["hois"]) for e in entries)


def run(num_images: int, num_pairs: int, per_image: int, protocol: str, slow: bool = True) -> dict:
    """Times both readers on fresh files; returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        ann, predictions, detections = write_files(Path(tmp), num_images, num_pairs, per_image)
        mb = predictions.stat().st_size / 2**20
        start = time.perf_counter()
        fast = evaluate_files(ann, predictions, protocol=protocol)
        fast_s = time.perf_counter() - start
        figures = {"images": num_images, "detections": detections, "predictions_mb": round(mb, 1),
                   "vectorised_s": round(fast_s, 2), "mAP_full": fast["mAP_full"]}
        if slow:
            with mock.patch.object(_PredictionReader, "_vectorised_hois", lambda self, entries: None):
                start = time.perf_counter()
                per_entry = evaluate_files(ann, predictions, protocol=protocol)
                slow_s = time.perf_counter() - start
            figures |= {"per_entry_s": round(slow_s, 2), "ratio": round(slow_s / fast_s, 1),
                        "identical": per_entry == fast}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9658)
    parser.add_argument("--pairs", type=int, default=33405)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--protocol", default="hico_official")
    parser.add_argument("--no-slow", action="store_true", help="skip the per-entry reader")
    args = parser.parse_args(argv)
    figures = run(args.images, args.pairs, args.per_image, args.protocol, slow=not args.no_slow)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
