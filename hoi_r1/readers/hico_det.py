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

Two roads give the same samples. A well-formed file whose records all carry what the samples
need takes the **typed** road (:func:`decode_typed`): ``msgspec`` decodes the bytes into typed
records (types, keys and box lengths checked in C) and the value checks run over the whole file
at once in numpy. Anything else — a record the typed decoder refuses, a value a check rejects,
images to open — takes the **per-record** road, whose field checks name the file, the record
and the problem; so every error message is the per-record road's, whichever road was tried first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import msgspec
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


class TypedBox(msgspec.Struct, gc=False):
    """One element of ``annotations`` on the typed road."""

    bbox: tuple[float, float, float, float]
    category_id: int


class TypedPair(msgspec.Struct, gc=False):
    """One element of ``hoi_annotation`` on the typed road."""

    subject_id: int
    object_id: int
    category_id: int
    hoi_category_id: int | msgspec.UnsetType = msgspec.UNSET


class TypedRecord(msgspec.Struct, gc=False):
    """One image record on the typed road (``box_annotations`` / ``hoi_annotations``: the keys of
    a SWIG-HOI record, which sends the file to the per-record road and format detection)."""

    file_name: str
    annotations: list[TypedBox]
    hoi_annotation: list[TypedPair]
    width: int | msgspec.UnsetType = msgspec.UNSET
    height: int | msgspec.UnsetType = msgspec.UNSET
    box_annotations: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    hoi_annotations: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_TYPED = msgspec.json.Decoder(list[TypedRecord])


def decode_typed(path: str | Path) -> list[TypedRecord] | None:
    """The records of a PPDM/QPIC JSON file as typed records, or ``None`` when the file is
    anything else (missing, not JSON, not a list of well-formed HICO-DET records, a SWIG-HOI key).

    >>> import json, tempfile
    >>> record = {"file_name": "a.jpg", "annotations": [{"bbox": [0, 0, 1, 1], "category_id": 1}],
    ...           "hoi_annotation": []}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "test.json"
    ...     _ = path.write_text(json.dumps([record]))
    ...     typed = decode_typed(path)
    ...     _ = path.write_text(json.dumps([record | {"annotations": [{"bbox": [0, 0, 1]}]}]))
    ...     typed[0].annotations[0].bbox, decode_typed(path)
    ((0.0, 0.0, 1.0, 1.0), None)
    """
    try:
        records = _TYPED.decode(Path(path).read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    swig = any(r.box_annotations is not msgspec.UNSET or r.hoi_annotations is not msgspec.UNSET for r in records)
    return None if swig else records


def read_hico_json(
    path: str | Path,
    *,
    vocab: HOIVocabulary | None = None,
    image_root: str | Path | None = None,
    on_bad_record: OnBadRecord = "error",
    check_images: bool = False,
    records: list | None = None,
    read_image_sizes: bool = True,
    typed: list[TypedRecord] | None = None,
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
        typed: the file's :func:`decode_typed` records: tried first (the per-record road
            re-reads the file when they fail a check or need an image opened).
    """
    path = Path(path)
    vocab = vocab if vocab is not None else vocabulary_beside(path)
    root = Path(image_root) if image_root is not None else path.parent
    policy = RecordPolicy(path, on_bad_record)
    if typed is not None and not check_images:
        samples = _typed_samples(typed, vocab, root, read_image_sizes)
        if samples is not None:
            return HOIDataset(samples=samples, vocab=vocab, source=f"{path} (PPDM/QPIC JSON)", skipped=0)
    if records is None:
        records = load_json(path)
    if not isinstance(records, list):
        raise BadRecordError(path, None, f"expected a JSON list of images, found {type(records).__name__}")
    table = _category_table(vocab)
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


def _typed_samples(
    records: list[TypedRecord], vocab: HOIVocabulary, root: Path, read_image_sizes: bool
) -> list[HOISample] | None:
    """The samples of typed records with the per-record road's checks done over the whole file
    in numpy, or ``None`` as soon as any check fails or a record needs its image opened."""
    sizes = [(r.width, r.height) for r in records]
    if any((w is msgspec.UNSET) != (h is msgspec.UNSET) for w, h in sizes):
        return None  # one of width / height: the per-record road names the missing one
    if read_image_sizes and any(w is msgspec.UNSET for w, _ in sizes):
        return None  # sizes from image headers
    boxes_per = [len(r.annotations) for r in records]
    pairs_per = [len(r.hoi_annotation) for r in records]
    anns = [a for r in records for a in r.annotations]
    pairs = [p for r in records for p in r.hoi_annotation]
    try:
        boxes = np.array([a.bbox for a in anns], dtype=np.float64).reshape(-1, 4)
        categories = np.array([a.category_id for a in anns], dtype=np.int64)
        columns = np.array([(p.subject_id, p.object_id, p.category_id, p.hoi_category_id is not msgspec.UNSET,
                             0 if p.hoi_category_id is msgspec.UNSET else p.hoi_category_id) for p in pairs],
                           dtype=np.int64).reshape(-1, 5)
    except OverflowError:  # an integer beyond 64 bits
        return None
    if not np.isfinite(boxes).all() or (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        return None
    table = _category_table(vocab)
    keys = np.array(sorted(table), dtype=np.int64)
    at = np.searchsorted(keys, categories).clip(0, max(len(keys) - 1, 0))
    if len(categories) and (not len(keys) or (keys[at] != categories).any()):
        return None
    labels = np.array([table[int(k)] for k in keys], dtype=np.int64)[at] if len(categories) else categories
    subject, obj, verb, has_given, given = columns.T
    limit = np.repeat(np.array(boxes_per, dtype=np.int64), pairs_per)
    first = np.repeat(np.cumsum([0] + boxes_per[:-1], dtype=np.int64), pairs_per) if records else limit
    if ((subject < 0) | (subject >= limit) | (obj < 0) | (obj >= limit)).any():
        return None
    if ((verb < 1) | (verb > len(vocab.verbs))).any():
        return None
    object_labels = labels[first + obj]
    classes = np.full((len(vocab.verbs), len(vocab.objects) + 1), -1, dtype=np.int64)  # last column: label -1
    for c, (v, o) in enumerate(vocab.interactions):
        classes[v, o] = c
    cls = classes[verb - 1, object_labels]
    if (cls < 0).any() or ((has_given == 1) & (given != cls + 1)).any():
        return None
    box_rows, label_rows = boxes.tolist(), labels.tolist()
    pair_rows = list(zip(subject.tolist(), obj.tolist(), (verb - 1).tolist(), cls.tolist()))
    samples, a, k = [], 0, 0
    for image_id, (record, (width, height), nb, npairs) in enumerate(zip(records, sizes, boxes_per, pairs_per)):
        size = None if width is msgspec.UNSET else (width, height)
        image_path, width, height = resolve_image(record.file_name, root, size, False, read_image_sizes)
        samples.append(assemble_sample(image_id, record.file_name, image_path, width, height, box_rows[a:a + nb],
                                       label_rows[a:a + nb], pair_rows[k:k + npairs], vocab.person))
        a, k = a + nb, k + npairs
    return samples


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
