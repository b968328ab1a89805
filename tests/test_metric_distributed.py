"""HOIMeanAveragePrecision over 2 real processes (gloo, CPU) equals 1 process, padding included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from benchmarks.metric_benchmark import make_test_set
from hoi_r1.hoi_map import hoi_mean_average_precision
from hoi_r1.vocab import HOIVocabulary

ROOT = Path(__file__).resolve().parents[1]
NUM_IMAGES = 45  # odd: DistributedSampler pads rank 1 with a duplicate of image 0
PROTOCOLS = ("hico_official", "qpic", "pocket")

WORKER = textwrap.dedent("""
    import json, sys
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler
    from benchmarks.metric_benchmark import make_test_set
    from hoi_r1.metric import HOIMeanAveragePrecision
    from hoi_r1.vocab import HOIVocabulary

    rank, world, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    vocab = HOIVocabulary.hico_det()
    preds, targets = make_test_set(vocab, NUM_IMAGES, 200, 30, empty_images=3, seed=3)
    indices = list(DistributedSampler(range(NUM_IMAGES), num_replicas=world, rank=rank, shuffle=False))
    results = {}
    for protocol in PROTOCOLS:
        metric = HOIMeanAveragePrecision(vocab, protocol=protocol, per_class=True, known_object=True,
                                         zero_shot="rare_first")
        for i in range(0, len(indices), 4):
            batch = indices[i : i + 4]
            metric.update([preds[j] for j in batch], [targets[j] for j in batch])
        results[protocol] = {k: v.tolist() for k, v in metric.compute().items()}
    with open(out, "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()
""").replace("NUM_IMAGES", str(NUM_IMAGES)).replace("PROTOCOLS", repr(PROTOCOLS))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), "2", port, str(tmp_path / f"r{r}.json")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    for p in procs:
        output, _ = p.communicate(timeout=120)
        assert p.returncode == 0, output

    vocab = HOIVocabulary.hico_det()
    preds, targets = make_test_set(vocab, NUM_IMAGES, 200, 30, empty_images=3, seed=3)
    for protocol in PROTOCOLS:
        single = hoi_mean_average_precision(preds, targets, vocab, protocol=protocol, per_class=True,
                                            known_object=True, zero_shot="rare_first")
        assert single["mAP_full"].item() > 0
        for r in range(2):
            got = json.loads((tmp_path / f"r{r}.json").read_text())[protocol]
            assert got.keys() == single.keys()
            for k, v in single.items():
                torch.testing.assert_close(torch.tensor(got[k], dtype=torch.float64), v, equal_nan=True, rtol=0, atol=0)
