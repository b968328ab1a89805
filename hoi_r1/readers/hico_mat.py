"""HICO-DET from the official ``anno_bbox.mat`` (read with :func:`scipy.io.loadmat`), and a
writer of the same layout for tests.

Layout (MATLAB structs; ``split`` picks ``bbox_train`` or ``bbox_test``)::

    bbox_<split>(i).filename               'HICO_test2015_00000001.jpg'
    bbox_<split>(i).size                   struct: width, height, depth
    bbox_<split>(i).hoi(j).id              class id, 1-based (1..600)
    bbox_<split>(i).hoi(j).bboxhuman(k)    struct: x1, x2, y1, y2 (1-based, inclusive pixels)
    bbox_<split>(i).hoi(j).bboxobject(k)   same
    bbox_<split>(i).hoi(j).connection      (K, 2): 1-based (bboxhuman index, bboxobject index)
    bbox_<split>(i).hoi(j).invis           1 when the interaction is not visible (no boxes)

Choices made here:

* **Coordinates.** ``zero_based=True`` (default) subtracts 1 from every coordinate, giving the
  0-based pixels of the PPDM/QPIC *train* JSON; ``zero_based=False`` keeps the file's 1-based
  values (what ``test_hico.json`` holds). :func:`write_hico_mat` adds the 1 back, so writing
  samples to JSON and to ``.mat`` and reading both gives the same boxes.
* **Box sharing.** The file lists boxes per interaction, so one person doing three things
  appears three times. Boxes with exactly equal coordinates are merged within an image: humans
  among humans, objects among objects of the same object class. Boxes are numbered in order of
  first use (interactions in file order, then connection rows in order).
* **Labels.** The file has no object labels: a pair's object label and verb come from its
  class (``vocab.interactions[id - 1]``). Invisible interactions (``invis == 1``) give no pairs.
* ``list_action``, when present in the file, must name the vocabulary's classes
  (``vname``/``nname``), else the file is rejected.

Round trip: for a sample whose boxes are distinct, all used by a pair and numbered in order of
first use, ``read_hico_mat(write_hico_mat([s]))`` equals ``s`` (pairs of one class that are not
adjacent become separate ``hoi`` entries, so pair order is kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np

from hoi_r1.readers.hico_det import vocabulary_beside
from hoi_r1.readers.records import (
    BadRecordError,
    HOIDataset,
    MissingFileError,
    OnBadRecord,
    RecordPolicy,
    RecordProblem,
    as_int,
    check_box,
    check_id,
    resolve_image,
)
from hoi_r1.sample import HOISample
from hoi_r1.vocab import HOIVocabulary

Split = Literal["train", "test"]
_BOX_FIELDS = ("x1", "x2", "y1", "y2")  # field order of the official file


def read_hico_mat(
    path: str | Path,
    split: Split,
    *,
    vocab: HOIVocabulary | None = None,
    image_root: str | Path | None = None,
    on_bad_record: OnBadRecord = "error",
    check_images: bool = False,
    zero_based: bool = True,
) -> HOIDataset:
    """Read one split of ``anno_bbox.mat``.

    Args:
        path: the ``.mat`` file.
        split: ``"train"`` (``bbox_train``) or ``"test"`` (``bbox_test``).
        vocab: label space; default ``vocabulary.json`` beside the file when present, else
            HICO-DET's.
        image_root: folder holding the split's images (default: the file's folder).
        on_bad_record: ``"error"`` raises :class:`BadRecordError`; ``"skip"`` drops the image.
        check_images: open and decode every image.
        zero_based: subtract 1 from the file's 1-based coordinates (see the module docstring).
    """
    from scipy.io import loadmat

    path = Path(path)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', found {split!r}")
    if not path.is_file():
        raise MissingFileError(path, None, "annotation file does not exist")
    key = f"bbox_{split}"
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=[key, "list_action"])
    except (ValueError, TypeError, OSError, NotImplementedError) as e:
        raise BadRecordError(path, None, f"not a readable MATLAB file: {e}") from None
    if key not in mat:
        raise BadRecordError(path, None, f"has no variable {key!r}")
    vocab = vocab if vocab is not None else vocabulary_beside(path)
    if "list_action" in mat:
        _check_list_action(path, mat["list_action"], vocab)
    root = Path(image_root) if image_root is not None else path.parent
    shift = 1.0 if zero_based else 0.0
    policy = RecordPolicy(path, on_bad_record)
    samples: list[HOISample] = []
    for index, record in enumerate(_entries(mat[key])):
        with policy.record(index):
            samples.append(_read_image(record, index, vocab, root, check_images, shift))
    return HOIDataset(samples=samples, vocab=vocab, source=f"{path} ({key}, official .mat)", skipped=policy.skipped)


def write_hico_mat(
    samples: Iterable[HOISample],
    vocab: HOIVocabulary,
    path: str | Path,
    split: Split,
    *,
    zero_based: bool = True,
) -> Path:
    """Write samples in the ``anno_bbox.mat`` layout (one split, plus ``list_action``).

    Args:
        samples: the samples; boxes get ``+ 1`` when ``zero_based`` (inverse of the reader).
        vocab: the label space (class ids are written 1-based).
        path: the ``.mat`` file to write.
        split: ``"train"`` or ``"test"``.
        zero_based: whether the samples' boxes are 0-based (add 1 on writing).
    """
    from scipy.io import savemat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shift = 1.0 if zero_based else 0.0
    samples = list(samples)
    images = np.empty((1, len(samples)), dtype=[("filename", "O"), ("size", "O"), ("hoi", "O")])
    for i, sample in enumerate(samples):
        images[0, i] = (sample.file_name, _size_struct(sample), _hoi_structs(sample, shift))
    actions = np.empty((len(vocab.interactions), 1), dtype=[("nname", "O"), ("vname", "O")])
    for c, (verb, obj) in enumerate(vocab.interactions):
        actions[c, 0] = (vocab.objects[obj], vocab.verbs[verb])
    savemat(path, {f"bbox_{split}": images, "list_action": actions})
    return path


# --------------------------------------------------------------------- reading helpers
def _entries(value: Any) -> list:
    """A MATLAB struct array (squeezed by loadmat) as a list: one struct, an array, or empty."""
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _attr(struct: Any, name: str, what: str) -> Any:
    if not hasattr(struct, "_fieldnames"):
        raise RecordProblem(f"{what} must be a MATLAB struct, found {type(struct).__name__}")
    if name not in struct._fieldnames:
        raise RecordProblem(f"{what} has no field {name!r}")
    return getattr(struct, name)


def _text(value: Any, what: str) -> str:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if not isinstance(value, str):
        raise RecordProblem(f"{what} must be text, found {type(value).__name__}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise RecordProblem(f"{what} must be one number, found an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float, np.number)):
        raise RecordProblem(f"{what} must be a number, found {value!r:.40}")
    return float(value)


def _read_image(
    record: Any, index: int, vocab: HOIVocabulary, root: Path, check_images: bool, shift: float
) -> HOISample:
    file_name = _text(_attr(record, "filename", "image"), "filename")
    size = _attr(record, "size", "image")
    width = as_int(_number(_attr(size, "width", "size"), "size.width"), "size.width")
    height = as_int(_number(_attr(size, "height", "size"), "size.height"), "size.height")
    humans: dict[tuple[float, ...], int] = {}
    objects: dict[tuple[float, ...], int] = {}  # key: box + object label
    object_labels: list[int] = []
    pairs = []
    for j, hoi in enumerate(_entries(_attr(record, "hoi", "image"))):
        what = f"hoi[{j}]"
        cls = check_id(_number(_attr(hoi, "id", what), f"{what}.id"), vocab.num_classes, f"{what}.id", base=1)
        if _number(_attr(hoi, "invis", what), f"{what}.invis") != 0:
            continue
        verb, obj = vocab.interactions[cls]
        human_boxes = _boxes(hoi, "bboxhuman", what, shift)
        object_boxes = _boxes(hoi, "bboxobject", what, shift)
        for r, (h, o) in enumerate(_connections(_attr(hoi, "connection", what), f"{what}.connection")):
            h = check_id(h, len(human_boxes), f"{what}.connection[{r}] human index", base=1)
            o = check_id(o, len(object_boxes), f"{what}.connection[{r}] object index", base=1)
            h_id = humans.setdefault(human_boxes[h], len(humans))
            o_key = (*object_boxes[o], obj)
            if o_key not in objects:
                objects[o_key] = len(objects)
                object_labels.append(obj)
            pairs.append((h_id, objects[o_key], verb, cls))
    image_path, width, height = resolve_image(file_name, root, (width, height), check_images)
    return HOISample(
        image_id=index,
        file_name=file_name,
        image_path=image_path,
        width=width,
        height=height,
        human_boxes=list(humans),
        object_boxes=[key[:4] for key in objects],
        object_labels=object_labels,
        pairs=pairs,
    )


def _boxes(hoi: Any, name: str, what: str, shift: float) -> list[tuple[float, ...]]:
    value = _attr(hoi, name, what)
    if isinstance(value, np.ndarray) and value.size == 0:
        return []
    return [_box(b, f"{what}.{name}[{k}]", shift) for k, b in enumerate(_entries(value))]


def _box(struct: Any, what: str, shift: float) -> tuple[float, ...]:
    x1, x2, y1, y2 = (_number(_attr(struct, f, what), f"{what}.{f}") for f in _BOX_FIELDS)
    return tuple(v - shift for v in check_box([x1, y1, x2, y2], what))


def _connections(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.size % 2 or (arr.ndim == 2 and arr.shape[1] != 2) or arr.ndim > 2:
        raise RecordProblem(f"{what} must have shape (K, 2), found {arr.shape}")
    return arr.reshape(-1, 2)


def _check_list_action(path: Path, value: Any, vocab: HOIVocabulary) -> None:
    entries = _entries(value)
    if len(entries) != vocab.num_classes:
        problem = f"list_action has {len(entries)} classes, the vocabulary {vocab.num_classes}"
        raise BadRecordError(path, None, problem)
    for c, entry in enumerate(entries):
        try:
            names = tuple(_text(_attr(entry, key, "list_action"), key) for key in ("vname", "nname"))
        except RecordProblem as e:
            raise BadRecordError(path, None, f"list_action[{c}]: {e}") from None
        verb, obj = vocab.interactions[c]
        if (vocab.verb_id(names[0]), vocab.object_id(names[1])) != (verb, obj):
            problem = f"list_action[{c}] is {' '.join(names)!r}, the vocabulary says {vocab.interaction_name(c)!r}"
            raise BadRecordError(path, None, problem)


# --------------------------------------------------------------------- writing helpers
def _size_struct(sample: HOISample) -> np.ndarray:
    size = np.empty((1, 1), dtype=[("width", "O"), ("height", "O"), ("depth", "O")])
    size[0, 0] = (float(sample.width), float(sample.height), 3.0)
    return size


def _hoi_structs(sample: HOISample, shift: float) -> np.ndarray:
    """One ``hoi`` entry per run of adjacent pairs of the same class (keeps the pair order)."""
    runs: list[list[tuple[int, int]]] = []
    classes: list[int] = []
    for h, o, _, cls in sample.pairs.tolist():
        if not classes or classes[-1] != cls:
            runs.append([])
            classes.append(cls)
        runs[-1].append((h, o))
    fields = [("id", "O"), ("bboxhuman", "O"), ("bboxobject", "O"), ("connection", "O"), ("invis", "O")]
    out = np.empty((1, len(runs)), dtype=fields)
    for j, (cls, run) in enumerate(zip(classes, runs)):
        hs = list(dict.fromkeys(h for h, _ in run))
        os_ = list(dict.fromkeys(o for _, o in run))
        connection = np.array([[hs.index(h) + 1, os_.index(o) + 1] for h, o in run], dtype=np.float64)
        out[0, j] = (
            float(cls + 1),
            _box_structs(sample.human_boxes[hs], shift),
            _box_structs(sample.object_boxes[os_], shift),
            connection,
            0.0,
        )
    return out


def _box_structs(boxes_xyxy: np.ndarray, shift: float) -> np.ndarray:
    out = np.empty((1, len(boxes_xyxy)), dtype=[(f, "O") for f in _BOX_FIELDS])
    for k, (x1, y1, x2, y2) in enumerate(boxes_xyxy.tolist()):
        out[0, k] = (x1 + shift, x2 + shift, y1 + shift, y2 + shift)
    return out
