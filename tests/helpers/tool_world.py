"""Helpers of the tool-mode tests: a synthetic world with detections files and cold-start traces,
and a scripted batched "model" that plays the cold-start teacher inside episodes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hoi_r1.frames import Frame
from hoi_r1.image_dataset import load_image
from hoi_r1.ov_hoi.cold_start import ColdStartConfig, cold_start_teacher, write_cold_start
from hoi_r1.ov_hoi.detection import DetectionsFile, FileDetectionBackend, noisy_detections
from hoi_r1.readers import read_annotations

COLD_START = ColdStartConfig(min_pixels=3136, max_pixels=12544, zoom=True)  # the tiny processor's pixel limits
JUNK = "I am not sure."


@dataclass(frozen=True)
class ToolWorld:
    root: Path
    detections: dict  # split -> detections file
    cold_start: Path


def make_tool_world(world: Path, out: Path) -> ToolWorld:
    """Detections files for both splits and cold-start traces (with crops) of the training split."""
    detections = {}
    for split in ("train", "test"):
        dataset = read_annotations(world / f"{split}.json")
        found, _ = noisy_detections(dataset.samples, dataset.vocab, seed=0)
        detections[split] = found.write(out / f"detections_{split}.json")
        if split == "train":  # the traces read the file as the tools will (rounded values)
            written = DetectionsFile.read(detections[split])
            write_cold_start(dataset.samples, dataset.vocab, written, out / "cold_start.jsonl", COLD_START)
    return ToolWorld(world, detections, out / "cold_start.jsonl")


class TeacherTurns:
    """A scripted batched turn writer: each conversation (found by its image) is played by the
    cold-start teacher of its sample, reading the split's detections file as the episode's tools
    do; with ``junk_odd``, odd conversations of the first round write :data:`JUNK` instead (and so
    end at once)."""

    def __init__(self, tool_world: ToolWorld, split: str, junk_odd: bool = False) -> None:
        self.junk_odd = junk_odd
        self.detector = FileDetectionBackend(DetectionsFile.read(tool_world.detections[split]))
        self.by_image = {}
        dataset = read_annotations(tool_world.root / f"{split}.json")
        for sample in dataset.samples:
            self.by_image[np.asarray(load_image(sample.image_path)).tobytes()] = (sample, dataset.vocab)

    def __call__(self, conversations, images):
        out = []
        for k, messages in enumerate(conversations):
            first_round = not any(m["role"] == "assistant" for m in messages)
            if self.junk_odd and first_round and k % 2:
                out.append(JUNK)
                continue
            image = messages[1]["content"][0]["image"]
            sample, vocab = self.by_image[np.asarray(image).tobytes()]
            frame = Frame.for_image(COLD_START.frame, sample.width, sample.height, COLD_START.min_pixels,
                                    COLD_START.max_pixels)
            teacher = cold_start_teacher(sample, vocab, frame, self.detector, COLD_START, image)
            out.append(teacher(messages, images[k]))
        return out
