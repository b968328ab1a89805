"""SWIG-HOI in THID's layout (``swig_trainval_1000.json``, ``swig_test_1000.json``) plus its
category metadata, read into :class:`~hoi_r1.sample.HOISample`, and writers for tests.

Annotation file (one JSON list, one element per image)::

    {"file_name": "...jpg", "img_id": 7, "height": 512, "width": 384,
     "box_annotations": [{"bbox": [x1, y1, x2, y2], "category_id": 0, "aux_category_id": []}],
     "hoi_annotations": [{"subject_id": 0, "object_id": 1, "action_id": 12}]}

``category_id`` is an object id (0..999, ``person`` = 0), ``action_id`` a verb id (0..406);
the interaction (class) id is looked up from ``(action_id, object label of the object box)``.
Boxes are kept as written (xyxy pixels; SWIG-HOI is evaluated in the continuous convention).
``aux_category_id`` is ignored. Boxes are split into humans and objects as in
:func:`~hoi_r1.readers.records.assemble_sample`.

Category metadata, accepted in three forms (``categories=``):

* THID's Python file (``swig_v1_categories.py``) with the list assignments ``SWIG_CATEGORIES``
  (objects), ``SWIG_ACTIONS`` (verbs) and ``SWIG_INTERACTIONS``; it is parsed with
  :func:`ast.parse` and :func:`ast.literal_eval` — never imported or executed;
* a JSON object with the same three keys (written by :func:`write_swig_categories`);
* a JSON list of interactions only; verb and object names are then taken from the interaction
  names, ``"<verb> <object name>"`` (SWIG verbs are single words), and must agree across classes.

Each interaction is ``{id, name, action_id, object_id, frequency, evaluation}``. The vocabulary
orders classes by ``id`` (ids must be 0..N-1) and sets ``frequency`` (0 unseen, 1 rare, 2
non-rare), ``rare`` = frequency 1, ``unevaluated`` = evaluation 0 and
``zero_shot = {"unseen": frequency 0}``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Iterable

from hoi_r1.readers.hico_det import load_json
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

_KEYS = {"objects": "SWIG_CATEGORIES", "verbs": "SWIG_ACTIONS", "interactions": "SWIG_INTERACTIONS"}


def read_swig_json(
    path: str | Path,
    categories: str | Path | HOIVocabulary,
    *,
    image_root: str | Path | None = None,
    on_bad_record: OnBadRecord = "error",
    check_images: bool = False,
    records: list | None = None,
) -> HOIDataset:
    """Read a THID SWIG-HOI annotation file.

    Args:
        path: the JSON file.
        categories: category metadata file (see the module docstring) or a ready vocabulary.
        image_root: folder holding the images (default: the annotation file's folder).
        on_bad_record: ``"error"`` raises :class:`BadRecordError`; ``"skip"`` drops the record.
        check_images: open and decode every image.
        records: the already parsed JSON list.
    """
    path = Path(path)
    vocab = categories if isinstance(categories, HOIVocabulary) else load_swig_categories(categories)
    if records is None:
        records = load_json(path)
    if not isinstance(records, list):
        raise BadRecordError(path, None, f"expected a JSON list of images, found {type(records).__name__}")
    root = Path(image_root) if image_root is not None else path.parent
    policy = RecordPolicy(path, on_bad_record)
    samples: list[HOISample] = []
    for index, record in enumerate(records):
        with policy.record(index):
            samples.append(_read_record(record, index, vocab, root, check_images))
    return HOIDataset(samples=samples, vocab=vocab, source=f"{path} (SWIG-HOI THID JSON)", skipped=policy.skipped)


def load_swig_categories(path: str | Path) -> HOIVocabulary:
    """Build the SWIG-HOI vocabulary from a category metadata file (``.py`` or ``.json``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, None, "category metadata file does not exist")
    if path.suffix == ".py":
        data: Any = _literal_lists(path)
    else:
        data = load_json(path)
    if isinstance(data, list):
        return _vocab_from_interactions(path, data, None, None)
    if not isinstance(data, dict):
        raise BadRecordError(path, None, f"expected a JSON object or list, found {type(data).__name__}")
    lists = {}
    for field, key in _KEYS.items():
        value = data.get(key, data.get(field))
        if not isinstance(value, list):
            raise BadRecordError(path, None, f"has no list {key!r} (or {field!r})")
        lists[field] = value
    return _vocab_from_interactions(path, lists["interactions"], lists["verbs"], lists["objects"])


def write_swig_json(samples: Iterable[HOISample], vocab: HOIVocabulary, path: str | Path) -> Path:
    """Write samples in THID's layout (box annotations: humans first, then objects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if vocab.person is None:
        raise ValueError(f"vocabulary {vocab.name!r} has no 'person' object for the human boxes")
    images = []
    for sample in samples:
        boxes, labels, pairs = annotation_list(sample)
        images.append(
            {
                "file_name": sample.file_name,
                "img_id": sample.image_id,
                "height": sample.height,
                "width": sample.width,
                "box_annotations": [
                    {"bbox": box, "category_id": vocab.person if label < 0 else label, "aux_category_id": []}
                    for box, label in zip(boxes, labels)
                ],
                "hoi_annotations": [
                    {"subject_id": s, "object_id": o, "action_id": verb} for s, o, verb, _ in pairs
                ],
            }
        )
    path.write_text(json.dumps(images))
    return path


def write_swig_categories(vocab: HOIVocabulary, path: str | Path) -> Path:
    """Write the category metadata of ``vocab``: a THID-style Python file when ``path`` ends in
    ``.py`` (three list assignments), else a JSON object with the same three keys."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lists = {
        "SWIG_CATEGORIES": [{"id": i, "name": n} for i, n in enumerate(vocab.objects)],
        "SWIG_ACTIONS": [{"id": i, "name": n} for i, n in enumerate(vocab.verbs)],
        "SWIG_INTERACTIONS": [
            {
                "id": c,
                "name": f"{vocab.verbs[v]} {vocab.objects[o]}",
                "action_id": v,
                "object_id": o,
                "frequency": vocab.frequency[c] if vocab.frequency else (1 if c in vocab.rare else 2),
                "evaluation": 0 if c in vocab.unevaluated else 1,
            }
            for c, (v, o) in enumerate(vocab.interactions)
        ],
    }
    if path.suffix == ".py":
        body = "".join(f"\n{key} = {json.dumps(value, indent=4)}\n" for key, value in lists.items())
        path.write_text(f'"""SWIG-HOI category metadata (written by hoi_r1)."""\n{body}')
    else:
        path.write_text(json.dumps(lists, indent=1))
    return path


# --------------------------------------------------------------------- helpers
def _literal_lists(path: Path) -> dict[str, Any]:
    """The values of the ``SWIG_*`` list assignments of a Python file, read as literals."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError) as e:
        raise BadRecordError(path, None, f"not parseable Python: {e}") from None
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in _KEYS.values():
            try:
                found[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
                raise BadRecordError(path, None, f"{target.id} is not a literal: {e}") from None
    if "SWIG_INTERACTIONS" not in found:
        raise BadRecordError(path, None, "has no SWIG_INTERACTIONS assignment")
    return found


def _vocab_from_interactions(
    path: Path, interactions: list, verbs: list | None, objects: list | None
) -> HOIVocabulary:
    policy = RecordPolicy(path)
    rows = []
    for index, entry in enumerate(interactions):
        with policy.record(index):
            row = {k: get_field(entry, k, int, "interaction") for k in ("id", "action_id", "object_id", "frequency")}
            row["evaluation"] = get_field(entry, "evaluation", int, "interaction") if "evaluation" in entry else 1
            row["name"] = get_field(entry, "name", str, "interaction")
            row["index"] = index
            if row["frequency"] not in (0, 1, 2):
                raise RecordProblem(f"frequency = {row['frequency']} is not 0, 1 or 2")
            rows.append(row)
    if sorted(r["id"] for r in rows) != list(range(len(rows))):
        raise BadRecordError(path, None, f"interaction ids must be 0..{len(rows) - 1}, each once")
    rows.sort(key=lambda r: r["id"])
    verb_names = _names(path, verbs, "SWIG_ACTIONS") if verbs is not None else _split_names(path, rows, 0)
    object_names = _names(path, objects, "SWIG_CATEGORIES") if objects is not None else _split_names(path, rows, 1)
    for r in rows:
        with policy.record(r["index"]):
            check_id(r["action_id"], len(verb_names), "action_id")
            check_id(r["object_id"], len(object_names), "object_id")
    pairs = [(r["action_id"], r["object_id"]) for r in rows]
    if len(set(pairs)) != len(pairs):
        seen: dict[tuple[int, int], int] = {}
        for r, pair in zip(rows, pairs):
            if pair in seen:
                problem = f"(action_id, object_id) = {pair} repeats interaction {seen[pair]}"
                raise BadRecordError(path, r["index"], problem)
            seen[pair] = r["id"]
    return HOIVocabulary(
        name="swig_hoi",
        verbs=tuple(verb_names),
        objects=tuple(object_names),
        interactions=tuple(pairs),
        rare=frozenset(r["id"] for r in rows if r["frequency"] == 1),
        zero_shot={"unseen": tuple(r["id"] for r in rows if r["frequency"] == 0)},
        unevaluated=frozenset(r["id"] for r in rows if r["evaluation"] == 0),
        frequency=tuple(r["frequency"] for r in rows),
    )


def _names(path: Path, entries: list, key: str) -> list[str]:
    """Names by id from a list of ``{id, name, ...}`` (ids must be 0..N-1)."""
    policy = RecordPolicy(path)
    names: dict[int, str] = {}
    for index, entry in enumerate(entries):
        with policy.record(index):
            names[get_field(entry, "id", int, key)] = get_field(entry, "name", str, key)
    if sorted(names) != list(range(len(entries))):
        raise BadRecordError(path, None, f"{key} ids must be 0..{len(entries) - 1}, each once")
    return [names[i] for i in range(len(entries))]


def _split_names(path: Path, rows: list[dict], part: int) -> list[str]:
    """Verb (part 0) or object (part 1) names from interaction names ``"<verb> <object>"``."""
    key = ("action_id", "object_id")[part]
    names: dict[int, str] = {}
    for r in rows:
        verb, _, obj = r["name"].partition(" ")
        name = (verb, obj)[part]
        if names.setdefault(r[key], name) != name:
            raise BadRecordError(path, r["index"], f"{key} {r[key]} is named both {names[r[key]]!r} and {name!r}")
    if sorted(names) != list(range(len(names))):
        raise BadRecordError(path, None, f"{key} values must cover 0..{len(names) - 1} to name them")
    return [names[i] for i in range(len(names))]


def _read_record(record: Any, image_id: int, vocab: HOIVocabulary, root: Path, check_images: bool) -> HOISample:
    file_name = get_field(record, "file_name", str)
    size = (get_field(record, "width", int), get_field(record, "height", int))
    boxes, labels = [], []
    for a, ann in enumerate(get_field(record, "box_annotations", list)):
        what = f"box_annotations[{a}]"
        boxes.append(check_box(get_field(ann, "bbox", list, what), f"{what}.bbox"))
        labels.append(check_id(get_field(ann, "category_id", int, what), len(vocab.objects), f"{what}.category_id"))
    pairs = []
    for k, hoi in enumerate(get_field(record, "hoi_annotations", list)):
        what = f"hoi_annotations[{k}]"
        subject = check_id(get_field(hoi, "subject_id", int, what), len(boxes), f"{what}.subject_id")
        obj = check_id(get_field(hoi, "object_id", int, what), len(boxes), f"{what}.object_id")
        verb = check_id(get_field(hoi, "action_id", int, what), len(vocab.verbs), f"{what}.action_id")
        cls = vocab.interaction_id(verb, labels[obj])
        if cls is None:
            raise RecordProblem(f"{what}: action {verb} with object {labels[obj]} is not a SWIG-HOI interaction")
        pairs.append((subject, obj, verb, cls))
    image_path, width, height = resolve_image(file_name, root, size, check_images)
    return assemble_sample(image_id, file_name, image_path, width, height, boxes, labels, pairs, vocab.person)
