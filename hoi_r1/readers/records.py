"""Turning raw annotation records into :class:`~hoi_r1.sample.HOISample` safely.

Every reader walks a list of per-image records. Each record is checked field by field; a
problem raises :class:`BadRecordError`, whose message names the file, the record index and
the problem. With ``on_bad_record="skip"`` the reader drops that record instead, counts it in
:attr:`HOIDataset.skipped` and logs the same message as a warning. Whole-file problems (a
missing or unreadable annotation file) have no record index and are never skipped.

Readers share one way of assembling a sample from "a list of boxes + a list of (subject
index, object index, verb, class) rows" (PPDM/QPIC JSON and SWIG-HOI both look like this):

* an annotation that is the subject of a pair becomes a human box;
* an annotation that is the object of a pair becomes an object box (a person as object keeps
  the ``person`` object id); one annotation can be both;
* an annotation referenced by no pair becomes a human box if it is a person, else an object
  box (so a written sample with unpaired boxes reads back the same);
* boxes keep the file's order within each list.

>>> policy = RecordPolicy("train.json", "skip")
>>> with policy.record(3):
...     raise RecordProblem("bbox has x2 < x1")
>>> policy.skipped
1
>>> try:
...     with RecordPolicy("train.json").record(3):
...         raise RecordProblem("bbox has x2 < x1")
... except BadRecordError as e:
...     print(e)
train.json: record 3: bbox has x2 < x1
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

logger = logging.getLogger(__name__)

OnBadRecord = Literal["error", "skip"]
"""What a reader does with a bad record: raise :class:`BadRecordError`, or skip it (counted, logged)."""


@dataclass
class HOIDataset:
    """The samples of one split with the vocabulary they index.

    Args:
        samples: one :class:`HOISample` per image, ``image_id`` = position in the annotation file.
        vocab: the label space the samples index.
        source: where the samples came from (annotation file path and format).
        skipped: how many records were skipped as bad (``on_bad_record="skip"``) or dropped by a
            zero-shot filter because no annotation was left.
        unseen: class ids held out of training by a zero-shot setting (empty when none).
    """

    samples: list[HOISample] = field(repr=False)
    vocab: HOIVocabulary = field(repr=False)
    source: str
    skipped: int = 0
    unseen: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (
            f"HOIDataset(source={self.source!r}, images={len(self.samples)}, vocab={self.vocab.name!r}, "
            f"skipped={self.skipped}, unseen={len(self.unseen)} classes)"
        )

    def __getitem__(self, index: int) -> HOISample:
        return self.samples[index]

    def pair_counts(self) -> dict[int, int]:
        """Annotated pairs per class id over all samples (classes without pairs are absent)."""
        if not self.samples:
            return {}
        ids, counts = np.unique(np.concatenate([s.hoi_ids for s in self.samples]), return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}


class BadRecordError(ValueError):
    """A bad annotation record (or annotation file, when ``index`` is ``None``).

    Attributes:
        file: the annotation file.
        index: position of the record in the file, ``None`` for whole-file problems.
        problem: what is wrong.
    """

    def __init__(self, file: str | Path, index: int | None, problem: str):
        self.file, self.index, self.problem = str(file), index, problem
        where = f"{self.file}: " if index is None else f"{self.file}: record {index}: "
        super().__init__(where + problem)


class MissingFileError(BadRecordError, FileNotFoundError):
    """An annotation file (or, inside a record, an image file) that does not exist."""

    def __init__(self, file: str | Path, index: int | None, problem: str):
        BadRecordError.__init__(self, file, index, problem)


class RecordProblem(Exception):
    """Raised by the field checks below; :meth:`RecordPolicy.record` turns it into a
    :class:`BadRecordError` that names the file and the record index."""


class RecordPolicy:
    """Applies the ``on_bad_record`` policy to the records of one file."""

    def __init__(self, file: str | Path, on_bad_record: OnBadRecord = "error"):
        if on_bad_record not in ("error", "skip"):
            raise ValueError(f"on_bad_record must be 'error' or 'skip', found {on_bad_record!r}")
        self.file, self.on_bad_record, self.skipped = str(file), on_bad_record, 0

    def record(self, index: int) -> "_RecordContext":
        """Context for reading record ``index``: a :class:`RecordProblem` or
        :class:`BadRecordError` inside becomes a named error, or a counted, logged skip."""
        return _RecordContext(self, index)


class _RecordContext:
    def __init__(self, policy: RecordPolicy, index: int):
        self.policy, self.index = policy, index

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or not isinstance(error, (RecordProblem, BadRecordError)):
            return False
        if isinstance(error, BadRecordError):
            bad = error
        elif isinstance(error, MissingImage):
            bad = MissingFileError(self.policy.file, self.index, str(error))
        else:
            bad = BadRecordError(self.policy.file, self.index, str(error))
        if self.policy.on_bad_record == "error":
            raise bad from None
        self.policy.skipped += 1
        logger.warning("skipped %s", bad)
        return True


class MissingImage(RecordProblem):
    """The image file of a record does not exist."""


# --------------------------------------------------------------------- field checks
def get_field(record: Any, key: str, kind: type | tuple[type, ...], what: str = "record") -> Any:
    """``record[key]``, checked to exist and to have type ``kind`` (``bool`` is never an int)."""
    if not isinstance(record, dict):
        raise RecordProblem(f"{what} must be a JSON object, found {type(record).__name__}")
    if key not in record:
        raise RecordProblem(f"{what} has no key {key!r}")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise RecordProblem(f"{what} key {key!r} must be {names}, found {type(value).__name__} {value!r:.40}")
    return value


def as_int(value: Any, what: str) -> int:
    """An integer (a float with an integral value is accepted, as MATLAB files store doubles)."""
    if isinstance(value, (bool, np.bool_)):
        raise RecordProblem(f"{what} must be an integer, found {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise RecordProblem(f"{what} must be an integer, found {value!r:.40}")


def check_id(value: Any, size: int, what: str, base: int = 0) -> int:
    """An id in ``[base, base + size)``, returned 0-based."""
    i = as_int(value, what)
    if not base <= i < base + size:
        raise RecordProblem(f"{what} = {i} is out of range [{base}, {base + size - 1}]")
    return i - base


def check_box(value: Any, what: str) -> list[float]:
    """A finite ``[x1, y1, x2, y2]`` with ``x1 <= x2`` and ``y1 <= y2``."""
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 4:
        raise RecordProblem(f"{what} must be a list of 4 numbers, found {value!r:.60}")
    if any(isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.number)) for v in value):
        raise RecordProblem(f"{what} must hold numbers, found {list(value)!r:.60}")
    box = [float(v) for v in value]
    if not all(math.isfinite(v) for v in box):
        raise RecordProblem(f"{what} has a non-finite value: {box}")
    if box[2] < box[0] or box[3] < box[1]:
        raise RecordProblem(f"{what} has x2 < x1 or y2 < y1: {box}")
    return box


def image_size(path: Path, check_images: bool) -> tuple[int, int]:
    """``(width, height)`` from the image header; with ``check_images`` the whole image is
    decoded so that truncated or unreadable files are found."""
    from PIL import Image

    if not path.is_file():
        raise MissingImage(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            if check_images:
                image.load()
            return image.size
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for bad files
        raise RecordProblem(f"image file {path} is unreadable: {e}") from None


def resolve_image(
    file_name: str, image_root: Path, size: tuple[int, int] | None, check_images: bool,
    read_image_sizes: bool = True,
) -> tuple[str, int, int]:
    """Image path and ``(width, height)``: the record's size when it has one, else the image's.
    The image is opened only when the size is needed or ``check_images`` asks for it; with
    ``read_image_sizes=False`` a record without a size gets ``(0, 0)`` (unknown) and no image
    is opened."""
    path = image_root / file_name
    if size is None and not read_image_sizes and not check_images:
        return str(path), 0, 0
    if size is None or check_images:
        found = image_size(path, check_images)
        if size is not None and tuple(found) != tuple(size):
            raise RecordProblem(f"image file {path} is {found[0]}x{found[1]}, the record says {size[0]}x{size[1]}")
        size = found
    return str(path), int(size[0]), int(size[1])


# --------------------------------------------------------------------- assembly
def assemble_sample(
    image_id: int,
    file_name: str,
    image_path: str,
    width: int,
    height: int,
    boxes: Sequence[Sequence[float]],
    labels: Sequence[int],
    pairs: Sequence[tuple[int, int, int, int]],
    person: int | None,
) -> HOISample:
    """Split annotation boxes into human and object boxes (rules in the module docstring).

    Args:
        boxes: ``(A, 4)`` annotation boxes in file order.
        labels: object id of each annotation.
        pairs: rows ``(subject annotation index, object annotation index, verb id, class id)``.
        person: object id of ``person`` (``None`` if the vocabulary has none).

    >>> s = assemble_sample(0, "a.jpg", "a.jpg", 9, 9, [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]],
    ...                     [0, 3, 0], [(2, 1, 7, 11)], person=0)
    >>> s.human_boxes.tolist(), s.object_labels.tolist(), s.pairs.tolist()
    ([[0.0, 0.0, 1.0, 1.0], [4.0, 4.0, 5.0, 5.0]], [3], [[1, 0, 7, 11]])
    """
    subjects = {p[0] for p in pairs}
    objects = {p[1] for p in pairs}
    referenced = subjects | objects
    human_of: dict[int, int] = {}
    object_of: dict[int, int] = {}
    for a, label in enumerate(labels):
        if a in subjects or (a not in referenced and label == person):
            human_of[a] = len(human_of)
        if a in objects or (a not in referenced and label != person):
            object_of[a] = len(object_of)
    return HOISample(
        image_id=image_id,
        file_name=file_name,
        image_path=image_path,
        width=width,
        height=height,
        human_boxes=[boxes[a] for a in human_of],
        object_boxes=[boxes[a] for a in object_of],
        object_labels=[labels[a] for a in object_of],
        pairs=[(human_of[s], object_of[o], v, c) for s, o, v, c in pairs],
    )


def annotation_list(sample: HOISample) -> tuple[list[list[float]], list[int], list[tuple[int, int, int, int]]]:
    """The inverse of :func:`assemble_sample` for writers: annotations are the human boxes
    (labelled ``person`` by the caller) then the object boxes; pair rows index that list."""
    boxes = sample.human_boxes.tolist() + sample.object_boxes.tolist()
    labels = [-1] * len(sample.human_boxes) + sample.object_labels.tolist()
    offset = len(sample.human_boxes)
    pairs = [(h, offset + o, v, c) for h, o, v, c in sample.pairs.tolist()]
    return boxes, labels, pairs
