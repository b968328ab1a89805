"""HICO-DET in the PPDM/QPIC JSON layout (``trainval_hico.json``, ``test_hico.json``,
``corre_hico.npy``), read into :class:`~hoi_r1.sample.HOISample` and written back.

Layout (one JSON list, one element per image)::

    {"file_name": "HICO_train2015_00000001.jpg",
     "annotations": [{"bbox": [x1, y1, x2, y2], "category_id": 1}, ...],      # COCO-91 ids, person = 1
     "hoi_annotation": [{"subject_id": 0, "object_id": 1,                     # indices into annotations
                         "category_id": 77, "hoi_category_id": 153}, ...]}    # verb + 1, class + 1

* ``hoi_category_id`` is present in the train file only. The class is always derived from
  ``(verb, object label of the object annotation)`` through the vocabulary; when the file also
  gives ``hoi_category_id`` the two must agree (else the record is bad).
* Coordinates are kept **exactly as written**. The train file holds 0-based pixels; the test
  file appears to hold the official 1-based values. Nothing is shifted here: the metric's
  ``plus_one`` pixel convention (the official one) makes IoU invariant to a common shift, and
  ground truth and predictions are compared in the same original-pixel frame.
* The files carry no image size. Our writer adds ``width`` and ``height`` keys (PPDM/QPIC
  readers ignore unknown keys); when they are absent the size is read from the image header
  under ``image_root`` (default: the annotation file's folder).
* Object labels: ``category_id`` is ``vocab.coco91_ids[object]`` when the vocabulary has COCO-91
  ids (HICO-DET), else ``object + 1``; humans use the ``person`` category (``0`` when the
  vocabulary has no ``person`` object).
* A non-HICO vocabulary is written beside the JSON as ``vocabulary.json`` and read from there.
* ``corre_hico.npy``: ``(num_verbs, num_objects)`` 0/1 validity, columns in ascending
  ``category_id`` order (for HICO-DET: COCO-80 order, as QPIC indexes it).

Box splitting into humans and objects follows :func:`~hoi_r1.readers.records.assemble_sample`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hoi_r1.readers.records import (
    BadRecordError,
    HOIDataset,
    MissingFileError,
    OnBadRecord,
    RecordPolicy,
    RecordProblem,
    annotation_list,
    assemble_sample,
    check_box,
    check_id,
    get_field,
    resolve_image,
)
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

VOCABULARY_FILE = "vocabulary.json"
"""Name of the vocabulary file written beside annotation files of a non-HICO vocabulary."""


def read_hico_json(
    path: str | Path,
    *,
    vocab: HOIVocabulary | None = None,
    image_root: str | Path | None = None,
    on_bad_record: OnBadRecord = "error",
    check_images: bool = False,
    records: list | None = None,
    read_image_sizes: bool = True,
) -> HOIDataset:
    """Read a PPDM/QPIC JSON annotation file.

    Args:
        path: the JSON file.
        vocab: label space; default ``vocabulary.json`` beside the file when present, else
            HICO-DET's.
        image_root: folder holding the images (default: the annotation file's folder).
        on_bad_record: ``"error"`` raises :class:`BadRecordError`; ``"skip"`` drops the record.
        check_images: open and decode every image (finds missing, unreadable, truncated files).
        records: the already parsed JSON list (saves a second parse when the caller has it).
        read_image_sizes: open the image header of a record without ``width`` / ``height``;
            with ``False`` such a sample gets width and height 0 (unknown), and no image file
            is needed (``hoi-r1 eval`` on boxes in original pixels).
    """
    path = Path(path)
    if records is None:
        records = load_json(path)
    if not isinstance(records, list):
        raise BadRecordError(path, None, f"expected a JSON list of images, found {type(records).__name__}")
    vocab = vocab if vocab is not None else vocabulary_beside(path)
    root = Path(image_root) if image_root is not None else path.parent
    table = _category_table(vocab)
    policy = RecordPolicy(path, on_bad_record)
    samples: list[HOISample] = []
    for index, record in enumerate(records):
        with policy.record(index):
            samples.append(_read_record(record, index, vocab, table, root, check_images, read_image_sizes))
    return HOIDataset(samples=samples, vocab=vocab, source=f"{path} (PPDM/QPIC JSON)", skipped=policy.skipped)


def write_hico_json(
    samples: Iterable[HOISample], vocab: HOIVocabulary, path: str | Path, *, with_hoi_category: bool = True
) -> Path:
    """Write samples as PPDM/QPIC JSON (annotations: humans first, then objects).

    Args:
        samples: the samples to write (boxes are written as they are).
        vocab: the label space; a non-HICO one is also written to ``vocabulary.json`` beside.
        path: the JSON file to write.
        with_hoi_category: write ``hoi_category_id`` (the train file has it, the test file not).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = category_ids(vocab)
    human_category = ids[vocab.person] if vocab.person is not None else 0
    images = []
    for sample in samples:
        boxes, labels, pairs = annotation_list(sample)
        annotations = [
            {"bbox": box, "category_id": human_category if label < 0 else ids[label]}
            for box, label in zip(boxes, labels)
        ]
        hois = []
        for subject, obj, verb, hoi in pairs:
            row = {"subject_id": subject, "object_id": obj, "category_id": verb + 1}
            if with_hoi_category:
                row["hoi_category_id"] = hoi + 1
            hois.append(row)
        images.append(
            {
                "file_name": sample.file_name,
                "width": sample.width,
                "height": sample.height,
                "annotations": annotations,
                "hoi_annotation": hois,
            }
        )
    path.write_text(json.dumps(images))
    if not is_hico_det(vocab):
        vocab.to_json(path.parent / VOCABULARY_FILE)
    return path


def write_validity_npy(vocab: HOIVocabulary, path: str | Path) -> Path:
    """Write the ``(num_verbs, num_objects)`` verb x object validity matrix (``corre_hico.npy``
    layout: columns in ascending file ``category_id`` order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matrix = np.zeros((len(vocab.verbs), len(vocab.objects)), dtype=np.int64)
    column = _validity_columns(vocab)
    for verb, obj in vocab.interactions:
        matrix[verb, column[obj]] = 1
    np.save(path, matrix)
    return path


def read_validity_npy(path: str | Path, vocab: HOIVocabulary) -> np.ndarray:
    """Read a validity matrix back as a bool ``(num_verbs, num_objects)`` array whose columns
    are object ids of ``vocab``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, None, "validity matrix file does not exist")
    matrix = np.load(path, allow_pickle=False)
    expected = (len(vocab.verbs), len(vocab.objects))
    if matrix.shape != expected:
        raise BadRecordError(path, None, f"validity matrix has shape {matrix.shape}, expected {expected}")
    return matrix[:, _validity_columns(vocab)] != 0


# --------------------------------------------------------------------- shared helpers
def load_json(path: Path) -> Any:
    """Parse a JSON annotation file; missing or malformed files raise :class:`BadRecordError`."""
    if not path.is_file():
        raise MissingFileError(path, None, "annotation file does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRecordError(path, None, f"not valid JSON: {e}") from None


def vocabulary_beside(path: Path) -> HOIVocabulary:
    """``vocabulary.json`` beside an annotation file when present, else HICO-DET's vocabulary."""
    candidate = path.parent / VOCABULARY_FILE
    return HOIVocabulary.from_json(candidate) if candidate.is_file() else HOIVocabulary.hico_det()


def is_hico_det(vocab: HOIVocabulary) -> bool:
    """Whether ``vocab`` has HICO-DET's verbs, objects, classes and COCO-91 ids."""
    ref = HOIVocabulary.hico_det()
    return (vocab.verbs, vocab.objects, vocab.interactions, vocab.coco91_ids) == (
        ref.verbs,
        ref.objects,
        ref.interactions,
        ref.coco91_ids,
    )


def category_ids(vocab: HOIVocabulary) -> list[int]:
    """File ``category_id`` of each object id: COCO-91 ids when the vocabulary has them, else id + 1.

    >>> category_ids(HOIVocabulary.open(["ride"], ["person", "horse"]))
    [1, 2]
    """
    return list(vocab.coco91_ids) if vocab.coco91_ids else [o + 1 for o in range(len(vocab.objects))]


def _category_table(vocab: HOIVocabulary) -> dict[int, int]:
    table = {c: o for o, c in enumerate(category_ids(vocab))}
    if vocab.person is None:
        table[0] = -1  # humans of a vocabulary without a person object
    return table


def _validity_columns(vocab: HOIVocabulary) -> np.ndarray:
    """Column of each object id in the validity matrix (ascending category id)."""
    order = np.argsort(category_ids(vocab), kind="stable")
    column = np.empty(len(order), dtype=np.int64)
    column[order] = np.arange(len(order))
    return column


def _read_record(
    record: Any, image_id: int, vocab: HOIVocabulary, table: dict[int, int], root: Path, check_images: bool,
    read_image_sizes: bool = True,
) -> HOISample:
    file_name = get_field(record, "file_name", str)
    size = None
    if "width" in record or "height" in record:
        size = (get_field(record, "width", int), get_field(record, "height", int))
    boxes, labels = [], []
    for a, ann in enumerate(get_field(record, "annotations", list)):
        what = f"annotations[{a}]"
        boxes.append(check_box(get_field(ann, "bbox", list, what), f"{what}.bbox"))
        category = get_field(ann, "category_id", int, what)
        if category not in table:
            raise RecordProblem(f"{what}.category_id = {category} is not an object category of {vocab.name!r}")
        labels.append(table[category])
    pairs = []
    for k, hoi in enumerate(get_field(record, "hoi_annotation", list)):
        what = f"hoi_annotation[{k}]"
        subject = check_id(get_field(hoi, "subject_id", int, what), len(boxes), f"{what}.subject_id")
        obj = check_id(get_field(hoi, "object_id", int, what), len(boxes), f"{what}.object_id")
        verb = check_id(get_field(hoi, "category_id", int, what), len(vocab.verbs), f"{what}.category_id", base=1)
        cls = vocab.interaction_id(verb, labels[obj])
        if cls is None:
            raise RecordProblem(f"{what}: verb {verb} with object label {labels[obj]} is not a class of {vocab.name!r}")
        if "hoi_category_id" in hoi:
            given = get_field(hoi, "hoi_category_id", int, what)
            given = check_id(given, vocab.num_classes, f"{what}.hoi_category_id", base=1)
            if given != cls:
                raise RecordProblem(
                    f"{what}.hoi_category_id = {given + 1} disagrees with (verb, object) class {cls + 1}"
                )
        pairs.append((subject, obj, verb, cls))
    image_path, width, height = resolve_image(file_name, root, size, check_images, read_image_sizes)
    return assemble_sample(image_id, file_name, image_path, width, height, boxes, labels, pairs, vocab.person)
