"""HOIDataModule: annotation files → samples → chat batches for SFT and for generation.

Each split names an annotation file in any format :func:`hoi_r1.readers.read_annotations`
reads, and the folder of its images. The module builds, per image, the HOI-R1-style prompt (the
vocabulary's objects and their verbs, the coordinate frame of the boxes, the
``<think>…</think><answer>…</answer>`` contract) and, for SFT, the target answer in the same
frame. Images are resized by the model's own processor; :class:`~hoi_r1.frames.Frame` uses
the same pixel limits, so the numbers in the text refer to the pixels the model sees.

Collation (:mod:`hoi_r1.collate`) masks everything but the assistant answer and never
truncates inside an image span: a sample longer than ``max_length`` is left out and counted.
Order is seeded and resumable (:class:`~hoi_r1.sampling.ResumableSampler`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol, get_args, runtime_checkable

import lightning as L
import torch
from torch.utils.data import DataLoader

from hoi_r1.answer_render import ReasoningStyle
from hoi_r1.collate import GenerationCollator, SFTCollator
from hoi_r1.frames import FrameKind
from hoi_r1.image_dataset import HOIImageDataset, image_folder_samples, read_reasonings
from hoi_r1.models import load_processor
from hoi_r1.ov_hoi.cold_start_records import read_cold_start
from hoi_r1.ov_hoi.detection import DetectionsFile, FileDetectionBackend
from hoi_r1.prompts import PromptConfig
from hoi_r1.readers import HOIDataset, OnBadRecord, read_annotations
from hoi_r1.readers.zero_shot import apply_zero_shot
from hoi_r1.sampling import ResumableSampler
from hoi_r1.tasks import TASKS, Task
from hoi_r1.vocab import HOIVocabulary

TrainBatchKind = Literal["sft", "generation", "episodes"]
"""What a training module trains on: whole conversations (``sft``), prompts whose completions it
samples itself (``generation``, GRPO) or tool-using episodes it runs itself (``episodes``)."""


@runtime_checkable
class TrainBatches(Protocol):
    """What :meth:`HOIDataModule.train_dataloader` reads off the training module: the kind of
    batch it trains on and how many times the sampler serves each batch (GRPO: once per
    micro-batch and iteration of a generation batch). A LightningModule without them trains on
    ``sft`` batches served once."""

    train_batch_kind: TrainBatchKind
    train_batch_repeat: int


log = logging.getLogger(__name__)


@dataclass
class SplitFiles:
    """Where one split lives.

    Args:
        annotations: annotation file (PPDM/QPIC JSON, ``anno_bbox.mat``, SWIG-HOI JSON).
        images: folder of the images (default: the annotation file's folder).
        mat_split: for ``anno_bbox.mat``: ``train`` or ``test``.
        limit: use only the first ``limit`` images (quick runs); ``None`` uses all.
        detections: detections file of the split's images (``hoi-r1 detections`` layout) that
            answers the detection tools of ``task: tools``; every image must be in it.
    """

    annotations: str
    images: str | None = None
    mat_split: Literal["train", "test"] | None = None
    limit: int | None = None
    detections: str | None = None


torch.serialization.add_safe_globals([SplitFiles, PromptConfig])  # hyper-parameters inside checkpoints


class HOIDataModule(L.LightningDataModule):
    """HICO-DET, SWIG-HOI or synthetic HOI data for SFT, GRPO, evaluation and prediction.

    Args:
        processor: processor of the model (Hub name or local path); its tokenizer, chat template
            and image processor build the batches. Default: the model's (``model.model.name_or_path``).
        train: training split; ``None`` for evaluation-only runs.
        val: validation split (generation + HOI-mAP).
        test: test split.
        predict_images: folder of images to run ``predict`` on (no annotations needed).
        predict_limit: predict only the first ``predict_limit`` images (by name); ``None`` for all.
        predict_detections: detections file of the ``predict_images`` (keys: the image file
            names) for the detection tools of ``task: tools``.
        categories: SWIG-HOI category metadata (JSON, or THID's categories ``.py`` file).
        vocabulary: a vocabulary JSON replacing the dataset's in prompts (open vocabulary); for
            ``predict`` on a folder of images it is the label space (default: HICO-DET's).
        zero_shot: zero-shot setting (``rare_first``, ``non_rare_first``, ``unseen_object``,
            ``unseen_verb``, or a setting of a custom vocabulary): unseen classes are removed
            from the training split; the test split is unchanged.
        task: ``hoi`` (HOI answers), ``grounding`` (every person and object with its box, see
            :mod:`hoi_r1.grounding`) or ``tools`` (OV-HOI: SFT on the tool-using conversations of
            ``cold_start_file``; generation runs tool-using episodes, docs/ov_hoi.md).
        coordinate_frame: coordinate frame of boxes in the text (``absolute_resized`` for Qwen2.5-VL,
            ``normalized_1000`` for Qwen2-VL / Qwen3-VL).
        min_pixels: smallest image area after resizing; ``None`` keeps the processor's.
        max_pixels: largest image area after resizing; ``None`` keeps the processor's.
        prompt: prompt options.
        reasoning_file: JSONL of ``{"file_name": ..., "reasoning": ...}`` (thinking distillation);
            its texts go inside ``<think>`` of the SFT targets.
        reasoning_style: the ``<think>`` text of SFT targets without a reasoning of their own:
            ``verbs`` names every pair's verbs there, before any box; ``pairs`` names the people
            and objects only, so each pair's verbs are written after its boxes (docs/demo.md: the
            demo's tiny model, +16 Full mAP).
        cold_start_file: JSONL of tool-using traces (``hoi-r1 cold-start``) for ``task: tools``:
            the OV-HOI cold-start SFT (labels on the assistant turns, tool turns masked).
        max_length: longest SFT sequence in tokens; longer samples are left out and counted.
        batch_size: training batch size (per process).
        eval_batch_size: batch size of validation, test and prediction.
        num_workers: data-loading worker processes.
        pin_memory: pin batches in page-locked memory (GPU runs).
        persistent_workers: keep workers alive between epochs.
        seed: seed of the training order.
        on_bad_record: ``error`` stops at the first bad record; ``skip`` leaves it out and counts it.
        check_images: open and decode every image while reading the annotations.
    """

    def __init__(
        self,
        processor: str | None = None,
        train: SplitFiles | None = None,
        val: SplitFiles | None = None,
        test: SplitFiles | None = None,
        predict_images: str | None = None,
        predict_limit: int | None = None,
        predict_detections: str | None = None,
        categories: str | None = None,
        vocabulary: str | None = None,
        zero_shot: str | None = None,
        coordinate_frame: FrameKind = "absolute_resized",
        task: Task = "hoi",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        prompt: PromptConfig | None = None,
        reasoning_file: str | None = None,
        reasoning_style: ReasoningStyle = "verbs",
        cold_start_file: str | None = None,
        max_length: int = 4096,
        batch_size: int = 4,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
        on_bad_record: OnBadRecord = "error",
        check_images: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.splits = {"train": train, "val": val, "test": test}
        self.prompt = prompt or PromptConfig()
        self.datasets: dict[str, HOIImageDataset] = {}
        self.sources: dict[str, HOIDataset] = {}
        self._processor = None
        self.train_sampler: ResumableSampler | None = None
        self._pending_sampler_state: dict | None = None
        self._consumed: dict | None = None
        self._custom_vocab: HOIVocabulary | None = None
        self._detectors: dict = {}

    # ------------------------------------------------------------------ set-up
    def default_processor(self, name_or_path: str) -> None:
        """Use ``name_or_path``'s processor unless one was configured (called by the modules)."""
        if self.hparams.processor is None:
            self.hparams.processor = name_or_path

    @property
    def processor(self):
        if self._processor is None:
            if self.hparams.processor is None:
                raise ValueError("HOIDataModule needs `processor` (or a model module that provides it)")

            self._processor = load_processor(self.hparams.processor, min_pixels=self.hparams.min_pixels,
                                             max_pixels=self.hparams.max_pixels)
        return self._processor

    @property
    def vocab(self) -> HOIVocabulary:
        """The vocabulary of the prompts: the custom one if given, else the dataset's."""
        if self.hparams.vocabulary:
            if self._custom_vocab is None:
                self._custom_vocab = HOIVocabulary.from_json(self.hparams.vocabulary)
            return self._custom_vocab
        for split in ("train", "val", "test"):
            if split in self.sources:
                return self.sources[split].vocab
        if "predict" in self.datasets:
            log.warning("predicting without data.vocabulary: using HICO-DET's vocabulary")
            return HOIVocabulary.hico_det()
        raise RuntimeError("HOIDataModule.vocab is known once setup() has read a split")

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
            None: ("train", "val", "test", "predict"),
        }[stage]
        for split in wanted:
            if split in self.datasets:
                continue
            if split == "predict":
                if self.hparams.predict_images:
                    samples = image_folder_samples(self.hparams.predict_images)[: self.hparams.predict_limit]
                    self.datasets["predict"] = self._dataset(samples, None)
                continue
            files = self.splits[split]
            if files is None:
                continue
            source = self._read(split, files)
            self.sources[split] = source
            self.datasets[split] = self._dataset(source.samples, source)

    def _read(self, split: str, files: SplitFiles) -> HOIDataset:
        source = read_annotations(
            files.annotations,
            categories=self.hparams.categories,
            image_root=files.images,
            on_bad_record=self.hparams.on_bad_record,
            check_images=self.hparams.check_images,
            split=files.mat_split,
        )
        if self.hparams.zero_shot:
            source = apply_zero_shot(source, self.hparams.zero_shot, "train" if split == "train" else "test")
        if files.limit is not None:
            source = HOIDataset(
                samples=source.samples[: files.limit],
                vocab=source.vocab,
                source=source.source,
                skipped=source.skipped,
                unseen=source.unseen,
            )
        if source.skipped:
            log.warning("%s split (%s): %d bad records skipped", split, files.annotations, source.skipped)
        log.info("%s split: %d images from %s", split, len(source.samples), files.annotations)
        return source

    def _dataset(self, samples, source: HOIDataset | None) -> HOIImageDataset:
        reasonings = read_reasonings(self.hparams.reasoning_file) if self.hparams.reasoning_file else {}
        traces = {}
        if self.hparams.cold_start_file:
            traces = {r["file_name"]: r for r in read_cold_start(self.hparams.cold_start_file)}
        return HOIImageDataset(samples, reasonings=reasonings, traces=traces)

    # ------------------------------------------------------------------ loaders
    def sft_collator(self) -> SFTCollator:
        """Conversation batches of the task (:data:`hoi_r1.tasks.TASKS`)."""
        return TASKS[self.hparams.task].sft_collator(
            self.processor, self.vocab, self.prompt, self.hparams.coordinate_frame,
            max_length=self.hparams.max_length, reasoning_style=self.hparams.reasoning_style,
        )

    def generation_collator(self, split: str | None = None) -> GenerationCollator:
        """Prompt batches of the task for ``split`` (for episodes, its detections answer the tools)."""
        spec = TASKS[self.hparams.task]
        args = (self.processor, self.vocab, self.prompt, self.hparams.coordinate_frame)
        if spec.episodes:
            return spec.generation_collator(*args, detector=self.tool_detector(split) if split else None)
        return spec.generation_collator(*args)

    def tool_detector(self, split: str):
        """The detection tools' backend for ``split`` (``task: tools``): its detections file
        (:class:`~hoi_r1.ov_hoi.detection.FileDetectionBackend`), or ``None`` when none is set."""
        if split not in self._detectors:
            files = self.splits.get(split)
            path = self.hparams.predict_detections if split == "predict" else (files.detections if files else None)
            if not path:
                log.warning("%s split: no detections file, so the detection tools answer with an error", split)
                self._detectors[split] = None
                return None
            detections = DetectionsFile.read(path)
            samples = self.datasets[split].samples if split in self.datasets else []
            missing = [s.file_name for s in samples if s.file_name not in detections]
            if missing:
                raise ValueError(
                    f"detections file {path} ({split} split) lacks {len(missing)} of the split's "
                    f"{len(samples)} images, e.g. {missing[:3]}"
                )
            self._detectors[split] = FileDetectionBackend(detections)
        return self._detectors[split]

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        rank, world = _rank_and_world(self.trainer)
        module = getattr(self.trainer, "lightning_module", None)
        kind, repeat = (module.train_batch_kind, int(module.train_batch_repeat)) if isinstance(module, TrainBatches) else ("sft", 1)
        if kind not in get_args(TrainBatchKind):
            raise ValueError(f"{type(module).__name__}.train_batch_kind must be one of {get_args(TrainBatchKind)}, found {kind!r}")
        if self.train_sampler is None:
            # GRPO serves each prompt batch once per micro-batch of its generation batch.
            self.train_sampler = ResumableSampler(
                len(dataset), seed=self.hparams.seed, rank=rank, world_size=world,
                repeat=repeat, batch_size=self.hparams.batch_size,
            )
            if self._pending_sampler_state is not None:
                self.train_sampler.load_state_dict(self._pending_sampler_state)
        # SFT trains on full conversations; GRPO trains on prompts it completes itself (task
        # tools: whole tool-using episodes, hoi_r1.ov_hoi.tool_grpo).
        if kind != "sft" and TASKS[self.hparams.task].episodes != (kind == "episodes"):
            raise ValueError(
                "GRPO on data.task 'tools' needs the tool-using module hoi_r1.ov_hoi.tool_grpo.ToolGRPOModule, and that "
                f"module needs data.task 'tools' (found task {self.hparams.task!r}, module {type(module).__name__})"
            )
        collate = self.sft_collator() if kind == "sft" else self.generation_collator("train")
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=self.train_sampler,
            collate_fn=collate,
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.persistent_workers and self.hparams.num_workers > 0,
            drop_last=False,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        if "predict" not in self.datasets:
            raise ValueError("predict needs data.predict_images (a folder of images)")
        return self._eval_loader("predict")

    def _eval_loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            raise ValueError(f"no {split} split configured: set data.{split}.annotations")
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.eval_batch_size,
            shuffle=False,
            collate_fn=self.generation_collator(split),
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.persistent_workers and self.hparams.num_workers > 0,
        )

    # ------------------------------------------------------------------ resume
    def mark_consumed(self, ticket: tuple[int, int, int] | None) -> None:
        """Record the sampler ticket of the last sample a training step has used."""
        if ticket is not None:
            self._consumed = {"epoch": int(ticket[1]), "position": int(ticket[2])}

    def state_dict(self) -> dict:
        """The training order to resume from: the last *consumed* sample (loaders fetch ahead)."""
        if self.train_sampler is None:
            return {}
        state = self.train_sampler.state_dict()
        if self._consumed is not None:
            state.update(self._consumed)
        return {"train_sampler": state}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict.get("train_sampler")
        if state is None:
            return
        if self.train_sampler is None:
            self._pending_sampler_state = state  # applied when the training loader is built
        else:
            self.train_sampler.load_state_dict(state)


def _rank_and_world(trainer) -> tuple[int, int]:
    if trainer is None:
        return 0, 1
    return trainer.global_rank, trainer.world_size
