"""Validation and test under DDP (2 CPU processes, gloo) log the numbers of a 1-process run.

Five scenes on two ranks: ``DistributedSampler`` gives rank 0 the images 0, 2, 4 and rank 1 the
images 1, 3 and a padded duplicate of image 0. Every logged number, on both ranks, must equal
the 1-process run's: the HOI-mAP and also the parse, format, pair, truncation and tool
statistics, so they are global and count the padded duplicate once. Four evaluations run in
one launch:

- ``validate`` with the real tiny model generating (greedy, one image per batch so each image
  sees the very same computation as in the 1-process run);
- ``test`` with scripted answers that differ by image (right, partly right, unreadable and cut
  off), so a rank's own share gives other rates than the whole split;
- the same ``test`` with the GRPO module, which also logs the rewards of the answers;
- ``validate`` of the tool-using mode with a scripted episode writer (the cold-start teacher on
  even images, junk on odd ones).

The 1-process run is the test's own process; this file is also the worker of the DDP job:
``python test_evaluation_ddp.py DEVICES MODEL WORLD DETECTIONS OUT``, one process per rank started
with ``LOCAL_RANK`` / ``WORLD_SIZE`` / ``MASTER_PORT`` set.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers.tool_world import JUNK, TeacherTurns, ToolWorld

import hoi_r1.hoi_evaluation as hoi_evaluation
from hoi_r1.answer_render import render_answer
from hoi_r1.datamodule import HOIDataModule, SplitFiles
from hoi_r1.generation import Completions, GenerationSettings
from hoi_r1.grpo import GRPOModule
from hoi_r1.models import ModelSettings
from hoi_r1.ov_hoi.detection import noisy_detections
from hoi_r1.ov_hoi.episode_driver import EpisodeSettings
from hoi_r1.ov_hoi.evaluation import ToolEvaluation, ToolGenerationSettings
from hoi_r1.ov_hoi.sft import ToolSFTModule
from hoi_r1.readers import read_annotations
from hoi_r1.sft import SFTModule

ROOT = Path(__file__).resolve().parents[1]
NUM_SCENES = 5  # odd: rank 1 gets a padded duplicate of image 0
EXACT = ("parse_rate", "format_rate", "pairs_per_image", "truncation_rate", "/tools/")


def _scripted_text(sample, vocab, frame) -> tuple[str, bool]:
    """The scripted answer of an image and whether it counts as cut off at the token limit."""
    kind = sample.image_id % 3
    if kind == 0:
        return render_answer(sample, vocab, frame), False
    if kind == 1:
        first_pair = (sample.pairs[:, :2] == sample.pairs[0, :2]).all(axis=1)
        return render_answer(sample.with_pairs(first_pair), vocab, frame), False
    return "<think>the people are", True


def _evaluate(devices: int, model_dir: str, world: Path, detections: str, patch=setattr) -> dict[str, dict[str, float]]:
    """The three evaluations on ``devices`` CPU processes; what each returned (= logged), by run.

    Args:
        devices: processes of the job (this one is one of them).
        model_dir: the tiny model.
        world: the synthetic world (its ``test.json`` is the split).
        detections: the detections file of the split (tool-using mode).
        patch: how to replace the generation by scripts (``setattr``, or pytest's
            ``monkeypatch.setattr`` to undo it afterwards).
    """
    test_json = str(world / "test.json")
    vocab = read_annotations(test_json).vocab

    def trainer() -> L.Trainer:
        return L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)

    def module() -> SFTModule:
        return SFTModule(model=ModelSettings(name_or_path=model_dir), log_examples=0,
                         generation=GenerationSettings(max_new_tokens=8))

    def data(batch_size: int, **kwargs) -> HOIDataModule:
        split = SplitFiles(test_json, limit=NUM_SCENES, detections=kwargs.pop("detections", None))
        return HOIDataModule(val=split, test=split, eval_batch_size=batch_size, **kwargs)

    results: dict[str, dict[str, float]] = {}
    hoi = module()
    results["validate"] = trainer().validate(hoi, datamodule=data(1))[0]

    def scripted_generate(model, processor, batch, settings, logprobs=True) -> Completions:
        texts, cut = zip(*(_scripted_text(s, vocab, f) for s, f in zip(batch["samples"], batch["frames"])))
        empty = torch.zeros(len(texts), 1)
        return Completions(list(texts), empty.long(), empty, empty.long(), list(cut))

    patch(hoi_evaluation, "generate", scripted_generate)
    results["test"] = trainer().test(hoi, datamodule=data(2))[0]
    grpo = GRPOModule(model=ModelSettings(name_or_path=model_dir), log_examples=0,
                      generation=GenerationSettings(max_new_tokens=8))  # also logs the rewards of the answers
    results["grpo_test"] = trainer().test(grpo, datamodule=data(2))[0]

    teacher = HalfTeacher(ToolWorld(world, {"test": detections}, cold_start=None), "test")  # no traces needed
    patch(ToolEvaluation, "turn_writer", lambda self, model, processor, generation: teacher)
    tools = ToolSFTModule(model=ModelSettings(name_or_path=model_dir), log_examples=0,
                          generation=ToolGenerationSettings(max_new_tokens=8, episodes=EpisodeSettings(max_turns=4)))
    results["tools"] = trainer().validate(tools, datamodule=data(2, task="tools", detections=detections))[0]
    return results


class HalfTeacher(TeacherTurns):
    """The cold-start teacher on even images; junk (so no answer) on odd ones."""

    def __call__(self, conversations, images):
        taught = super().__call__(conversations, images)
        out = []
        for messages, turn in zip(conversations, taught):
            sample, _ = self.by_image[np.asarray(messages[1]["content"][0]["image"]).tobytes()]
            first_round = not any(m["role"] == "assistant" for m in messages)
            out.append(JUNK if first_round and sample.image_id % 2 else turn)
        return out


def _launch(tiny_model_dir, world, detections, out: Path, devices: int = 2) -> list[subprocess.Popen]:
    """Start every rank at once (as torchrun would: Lightning sees ``LOCAL_RANK`` and starts no
    process itself), so the ranks import in parallel."""
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(devices), "NODE_RANK": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, __file__, str(devices), str(tiny_model_dir), str(world), str(detections), str(out)]
    procs = []
    for rank in range(devices):
        with open(out / f"rank{rank}.log", "w") as log:
            procs.append(subprocess.Popen(args, cwd=out, env={**env, "LOCAL_RANK": str(rank)}, stdout=log,
                                          stderr=subprocess.STDOUT))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 600) -> None:
    """Wait for every process; when one fails, stop the others (its peers would wait for it)."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        if any(p.returncode not in (None, 0) for p in procs) or time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            break
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_log_the_numbers_of_one(tiny_model_dir, synthetic_world, tmp_path, monkeypatch):
    dataset = read_annotations(synthetic_world / "test.json")
    found, _ = noisy_detections(dataset.samples, dataset.vocab, seed=0)
    detections = found.write(tmp_path / "detections_test.json")
    ranks = _launch(tiny_model_dir, synthetic_world, detections, tmp_path / "ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks: the same float sums in the real model's generation
    try:  # the 1-process run here, while the ranks import
        single = _evaluate(1, str(tiny_model_dir), synthetic_world, str(detections), monkeypatch.setattr)
    finally:
        torch.set_num_threads(threads)
    _wait(ranks)
    for rank, proc in enumerate(ranks):
        log = tmp_path / "ddp" / f"rank{rank}.log"
        assert proc.returncode == 0, f"{log}:\n{log.read_text()[-4000:]}"

    single = json.loads(json.dumps(single))  # as the ranks wrote theirs
    for rank in range(2):
        double = json.loads((tmp_path / "ddp" / f"rank{rank}.json").read_text())
        assert double.keys() == single.keys()
        for run, values in single.items():
            assert double[run].keys() == values.keys(), (rank, run)
            for key, value in values.items():
                if any(part in key for part in EXACT):
                    assert double[run][key] == value, (rank, key)
                else:  # HOI-mAP
                    assert double[run][key] == pytest.approx(value, rel=1e-12, abs=1e-12, nan_ok=True), (rank, key)

    # the scripted runs see every image once: rank 0 alone (images 0, 2, 4) would give other rates
    ids = range(NUM_SCENES)
    test = single["test"]
    assert test["test/parse_rate"] == _logged(sum(i % 3 != 2 for i in ids) / NUM_SCENES)  # 4/5; rank 0 alone: 2/3
    assert test["test/truncation_rate"] == _logged(sum(i % 3 == 2 for i in ids) / NUM_SCENES)
    assert test["test/mAP_full"] > 0
    grpo = single["grpo_test"]  # the rewards of the same answers: means over the 5 distinct images
    assert grpo["test/reward/format"] == pytest.approx(sum(i % 3 != 2 for i in ids) / NUM_SCENES)  # rank 0 alone: 2/3
    assert grpo["test/parse_rate"] == test["test/parse_rate"]
    tools = single["tools"]
    assert tools["val/tools/answered"] == _logged(sum(i % 2 == 0 for i in ids) / NUM_SCENES)  # 3/5; rank 0 alone: 1
    assert {"val/mAP_full", "val/parse_rate", "val/tools/valid_calls_per_episode"} <= tools.keys()
    assert {"val/mAP_full", "val/parse_rate", "val/truncation_rate"} <= single["validate"].keys()


def _logged(value: float) -> float:
    """A number as Lightning's ``log`` keeps it (a float32 tensor)."""
    return float(torch.tensor(value, dtype=torch.float32))


if __name__ == "__main__":  # one rank of the DDP job
    _devices, _model, _world, _detections, _out = sys.argv[1:6]
    _results = _evaluate(int(_devices), _model, Path(_world), _detections)
    Path(_out, f"rank{os.environ['LOCAL_RANK']}.json").write_text(json.dumps(_results))
