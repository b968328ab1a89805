"""``hoi-r1 eval`` benchmark: the whole command (read both files, check every prediction, HOI-mAP).

Writes a HICO-DET-sized annotation file (PPDM/QPIC JSON *without* width / height, like the real
``test_hico.json``, and no image files) and a predictions file of scored ``hois`` (100 per
image; the test set of :func:`benchmarks.metric_benchmark.make_test_set`), then times, on the
same files:

* ``command_s`` / ``command_cpu_s``: ``hoi-r1 eval`` (``python -m hoi_r1.cli eval``) in a fresh
  process, wall clock and the CPU time of its processes: interpreter start, imports, both files,
  the table (what a user waits for), with the helper process that decodes the predictions while
  the command imports torch; ``command_no_helper_s``: the same with ``--no-helper-process`` (the
  baseline), and ``no_helper_over_helper`` their ratio; each the median of ``--repeats`` runs,
  the two roads alternating (every run is listed in ``command*_runs_s``);
* ``typed_s``: :func:`hoi_r1.file_evaluation.evaluate_files` in this process (the typed ``msgspec``
  road of :mod:`hoi_r1.prediction_reader`);
* ``stdlib_s``: the same with the typed road switched off and the garbage collector left on, so
  the standard ``json`` parser and the checks over flat lists run as the command did before;
* ``per_entry_s`` (``--per-entry``): as ``stdlib_s`` with the per-entry reader only (the
  command before the vectorised checks).

Each in-process figure is wall clock, with the process's CPU time beside it (``*_cpu_s``; on a
shared machine the wall clock also counts waiting for a core); the load average before and
after is printed. Checks that every road gives the identical result.

Run: ``python -m benchmarks.eval_benchmark [--images N --pairs P --per-image K --protocol NAME
--per-entry --no-command --repeats R]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from benchmarks.metric_benchmark import make_test_set
from hoi_r1.file_evaluation import evaluate_files
from hoi_r1.prediction_reader import PredictionReader
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


def _timed(ann: Path, predictions: Path, protocol: str) -> tuple[dict, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = evaluate_files(ann, predictions, protocol=protocol)
    return result, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def time_command(ann: Path, predictions: Path, protocol: str, helper: bool = True) -> tuple[float, float]:
    """Wall and CPU seconds of ``hoi-r1 eval`` (``python -m hoi_r1.cli eval``) in a fresh process
    (one torch thread): interpreter, imports, both files, the table. ``helper``: with its helper
    process (the default of the command; CPU time then counts both processes), else
    ``--no-helper-process``."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "hoi_r1.cli", "eval", "--annotations", str(ann), "--predictions",
                    str(predictions), "--protocol", protocol] + ([] if helper else ["--no-helper-process"]),
                   check=True, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(time.perf_counter() - start, 2), round(cpu, 2)


def time_commands(ann: Path, predictions: Path, protocol: str, repeats: int) -> dict:
    """Both roads of the command, alternating, ``repeats`` times each; the median of each."""
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(repeats):
        for helper in (False, True):
            runs[helper].append(time_command(ann, predictions, protocol, helper))
    (wall, cpu), (inline_wall, inline_cpu) = (statistics.median_low(runs[h]) for h in (True, False))
    return {"command_s": wall, "command_cpu_s": cpu, "command_no_helper_s": inline_wall,
            "command_no_helper_cpu_s": inline_cpu, "no_helper_over_helper": round(inline_wall / wall, 2),
            "command_runs_s": [w for w, _ in runs[True]], "command_no_helper_runs_s": [w for w, _ in runs[False]]}


def run(num_images: int, num_pairs: int, per_image: int, protocol: str, per_entry: bool = False,
        command: bool = True, repeats: int = 3) -> dict:
    """Times the roads on fresh files; returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        ann, predictions, detections = write_files(Path(tmp), num_images, num_pairs, per_image)
        figures: dict = {"images": num_images, "detections": detections,
                         "predictions_mb": round(predictions.stat().st_size / 2**20, 1),
                         "load_before": round(os.getloadavg()[0], 2)}
        if command:
            figures |= time_commands(ann, predictions, protocol, repeats)
        typed, figures["typed_s"], figures["typed_cpu_s"] = _timed(ann, predictions, protocol)
        with mock.patch.object(PredictionReader, "_decode_typed", lambda self, data: None), \
                mock.patch("hoi_r1.file_evaluation._gc_paused", contextlib.nullcontext):
            stdlib, figures["stdlib_s"], figures["stdlib_cpu_s"] = _timed(ann, predictions, protocol)
            if per_entry:
                with mock.patch.object(PredictionReader, "_vectorised_hois", lambda self, entries: None):
                    slow, figures["per_entry_s"], figures["per_entry_cpu_s"] = _timed(ann, predictions, protocol)
                figures["per_entry_identical"] = slow == typed
        figures |= {"stdlib_over_typed": round(figures["stdlib_s"] / figures["typed_s"], 1),
                    "identical": stdlib == typed, "mAP_full": typed["mAP_full"],
                    "load_after": round(os.getloadavg()[0], 2)}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=9658)
    parser.add_argument("--pairs", type=int, default=33405)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--protocol", default="hico_official")
    parser.add_argument("--per-entry", action="store_true", help="also time the per-entry reader")
    parser.add_argument("--no-command", action="store_true", help="skip the fresh-process runs")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs of each road (median)")
    args = parser.parse_args(argv)
    figures = run(args.images, args.pairs, args.per_image, args.protocol, per_entry=args.per_entry,
                  command=not args.no_command, repeats=args.repeats)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
