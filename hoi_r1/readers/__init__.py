"""Dataset readers: annotation files in, :class:`~hoi_r1.sample.HOISample` lists out.

:func:`read_annotations` detects the format from the file:

* ``*.mat`` — the official HICO-DET ``anno_bbox.mat`` (:mod:`hoi_r1.readers.hico_mat`);
* a JSON list whose images have ``hoi_annotation`` — PPDM/QPIC HICO-DET JSON, also written by
  the synthetic world of :mod:`hoi_r1.synthetic.world` (:mod:`hoi_r1.readers.hico_det`);
* a JSON list whose images have ``box_annotations`` / ``hoi_annotations`` — SWIG-HOI in THID's
  layout, which needs ``categories`` (:mod:`hoi_r1.readers.swig_hoi`).

Data layout and conventions for users: ``docs/data.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from hoi_r1.readers.hico_det import decode_typed, load_json, read_hico_json
from hoi_r1.readers.hico_mat import read_hico_mat
from hoi_r1.readers.records import BadRecordError, HOIDataset, MissingFileError, OnBadRecord
from hoi_r1.readers.swig_hoi import read_swig_json
from hoi_r1.readers.zero_shot import apply_zero_shot, rare_from_training
from hoi_r1.vocab import HOIVocabulary

__all__ = [
    "BadRecordError",
    "HOIDataset",
    "MissingFileError",
    "OnBadRecord",
    "apply_zero_shot",
    "rare_from_training",
    "read_annotations",
]


def read_annotations(
    path: str | Path,
    *,
    vocab: HOIVocabulary | None = None,
    categories: str | Path | None = None,
    image_root: str | Path | None = None,
    on_bad_record: OnBadRecord = "error",
    check_images: bool = False,
    split: Literal["train", "test"] | None = None,
    read_image_sizes: bool = True,
) -> HOIDataset:
    """Read an annotation file of any supported format.

    Args:
        path: annotation file (``*.json`` or ``anno_bbox.mat``).
        vocab: label space (HICO formats; default: ``vocabulary.json`` beside the file, else
            HICO-DET's). SWIG-HOI builds its vocabulary from ``categories``.
        categories: SWIG-HOI category metadata (JSON list, or THID's categories ``.py`` file).
        image_root: folder holding the images (default: the annotation file's folder).
        on_bad_record: ``"error"`` raises :class:`BadRecordError`; ``"skip"`` drops and counts
            the record.
        check_images: open and decode every image.
        split: which split of ``anno_bbox.mat`` to read (``bbox_train`` or ``bbox_test``);
            required for ``.mat`` files, ignored otherwise.
        read_image_sizes: PPDM/QPIC JSON records without ``width`` / ``height`` take their size
            from the image header; with ``False`` they get size 0 (unknown) and no image is
            opened (the other formats carry sizes).
    """
    path = Path(path)
    options = dict(image_root=image_root, on_bad_record=on_bad_record, check_images=check_images)
    if path.suffix.lower() == ".mat":
        if split is None:
            raise ValueError(f"{path}: reading anno_bbox.mat needs split='train' or 'test'")
        return read_hico_mat(path, split, vocab=vocab, **options)
    typed = decode_typed(path) if not check_images else None  # a well-formed PPDM/QPIC file: the typed road
    if typed is not None:
        return read_hico_json(path, vocab=vocab, typed=typed, read_image_sizes=read_image_sizes, **options)
    records = load_json(path)
    kind = _json_kind(path, records)
    if kind == "swig":
        if categories is None:
            raise ValueError(f"{path}: SWIG-HOI annotations need categories= (category metadata file)")
        return read_swig_json(path, categories, records=records, **options)
    return read_hico_json(path, vocab=vocab, records=records, read_image_sizes=read_image_sizes, **options)


def _json_kind(path: Path, records: object) -> Literal["hico", "swig"]:
    if not isinstance(records, list):
        raise BadRecordError(path, None, f"expected a JSON list of images, found {type(records).__name__}")
    for record in records:
        if isinstance(record, dict):
            if "box_annotations" in record or "hoi_annotations" in record:
                return "swig"
            if "hoi_annotation" in record or "annotations" in record:
                return "hico"
    return "hico"  # an empty list (or only bad records): the HICO reader reports them
