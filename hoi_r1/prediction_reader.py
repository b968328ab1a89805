"""The predictions file of ``hoi-r1 eval``: read, checked, and turned into metric inputs.

A predictions file is a JSON list with one entry per image, either scored detections::

    {"file_name": "HICO_test2015_00000001.jpg",
     "hois": [{"human_box": [x1, y1, x2, y2], "object_box": [x1, y1, x2, y2],
               "object": "bicycle", "verb": "ride", "score": 0.87}, ...]}

or an HOI-R1 answer ``{"file_name": ..., "completion": "<think>…</think><answer>[…]</answer>"}``
(a ``completion`` string wins over ``hois``). Other keys are ignored.

Reading takes one of two roads, with the same result:

* **typed** (every well-formed file): :mod:`hoi_r1.prediction_columns` decodes the bytes
  straight into typed records, checking every type and box length in C as it parses, and
  returns flat numpy columns (in this process, or in the helper process ``hoi-r1 eval``
  starts, :class:`~hoi_r1.prediction_columns.ColumnsRead`); the finite, name and class checks
  run over whole arrays.
* **generic** (anything the typed road refuses or any array check fails on): the standard
  ``json`` module, as before, then the same checks over flat lists and, at the first problem,
  the per-entry reader (:meth:`PredictionReader._read_hoi`), which names the first bad entry in
  its own words. So every message is the standard parser's and the per-entry reader's, whatever
  road a good file takes.

>>> import json, tempfile
>>> from types import SimpleNamespace
>>> from hoi_r1.vocab import HOIVocabulary
>>> vocab = HOIVocabulary.open(["ride"], ["person", "bicycle"], [("ride", "bicycle")])
>>> entry = {"file_name": "a.jpg", "hois": [{"human_box": [0, 0, 9, 9], "object_box": [5, 5, 20, 20],
...          "object": "bicycle", "verb": "ride", "score": 0.5}]}
>>> path = Path(tempfile.mkdtemp()) / "preds.json"
>>> _ = path.write_text(json.dumps([entry]))
>>> samples = {"a.jpg": SimpleNamespace(image_id=3, file_name="a.jpg")}
>>> PredictionReader(path, vocab).read(samples)[3]["hoi"].tolist()
[0]
>>> _ = path.write_text(json.dumps([entry | {"hois": [entry["hois"][0] | {"verb": "fly"}]}]))
>>> PredictionReader(path, vocab).read(samples)
Traceback (most recent call last):
...
hoi_r1.prediction_reader.BadPredictionError: ...preds.json: entry 0: hois[0]: unknown verb 'fly'
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from hoi_r1.answer import parse_answer
from hoi_r1.frames import Frame
from hoi_r1.metric_input import to_metric_preds
from hoi_r1.prediction_columns import ColumnsRead, PredictionColumns, decode_columns
from hoi_r1.readers.records import MissingImage, RecordProblem, image_size
from hoi_r1.vocab import HOIVocabulary

logger = logging.getLogger(__name__)
OnBadPrediction = Literal["error", "skip"]
MAX_WARNINGS = 20


class BadPredictionError(ValueError):
    """A predictions-file entry that cannot be evaluated (the message names file and entry)."""


_HOI_FIELDS = itemgetter("human_box", "object_box", "object", "verb", "score")


class PredictionReader:
    """Reads a predictions file into metric-input dicts keyed by image id.

    Args:
        path: the predictions file.
        vocab: the annotations' vocabulary (object and verb names, classes).
        frame: coordinate frame of boxes inside ``completion`` texts (:data:`hoi_r1.frames.FRAME_KINDS`).
        on_bad: ``error`` raises :class:`BadPredictionError` at the first bad entry; ``skip``
            drops it, counts it in :attr:`skipped` and logs the first :data:`MAX_WARNINGS`.
    """

    def __init__(self, path: Path, vocab: HOIVocabulary, frame: str = "absolute_original",
                 on_bad: OnBadPrediction = "error") -> None:
        if on_bad not in ("error", "skip"):
            raise ValueError(f"on_bad_prediction must be 'error' or 'skip', found {on_bad!r}")
        self.path, self.vocab, self.frame, self.on_bad = Path(path), vocab, frame, on_bad
        self.skipped: Counter = Counter()
        self.answer_problems: Counter = Counter()
        self._classes = np.full((len(vocab.verbs), len(vocab.objects)), -1, dtype=np.int64)
        for k, (v, o) in enumerate(vocab.interactions):
            self._classes[v, o] = k

    def read(self, samples: dict[str, Any], prefetched: ColumnsRead | None = None) -> dict[int, dict]:
        """Metric-input prediction dicts by image id.

        Args:
            samples: annotated images by file name (objects with ``image_id``, ``image_path``,
                ``width``, ``height``).
            prefetched: the typed road of this file already started in a helper process
                (:meth:`ColumnsRead.start`); ``None``: decode it here.
        """
        if not self.path.exists():
            raise FileNotFoundError(f"predictions file {self.path} does not exist")
        typed = prefetched.result() if prefetched is not None else self._decode_typed(self.path.read_bytes())
        columns = self._typed_columns(typed) if typed is not None else None
        if columns is not None:
            views = [(name, text, () if n >= 0 else None)
                     for name, text, n in zip(typed.file_names, typed.completions, typed.sizes.tolist())]
        else:  # the generic road: messages of the standard parser and the per-entry reader
            entries = self._decode_generic()
            columns = self._vectorised_hois(entries)
            views = [_view(e) for e in entries]
        return self._assemble(views, columns, samples)

    # ------------------------------------------------------------------ decoding
    def _decode_typed(self, data: bytes) -> PredictionColumns | None:
        """The typed road's columns, or ``None`` if the file is anything but a list of
        well-formed entries."""
        return decode_columns(data)

    def _decode_generic(self) -> list:
        try:
            entries = json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise BadPredictionError(f"{self.path}: not valid JSON: {e}") from None
        if not isinstance(entries, list):
            raise BadPredictionError(
                f"{self.path}: expected a JSON list of per-image entries, found {type(entries).__name__}"
            )
        return entries

    # ------------------------------------------------------------------ whole-array checks
    def _typed_columns(self, typed: PredictionColumns) -> dict[int, dict] | None:
        """The scored ``hois`` of the typed road as metric columns by entry index, or ``None``
        when a name is unknown or a pair no class (the generic road then names the first bad
        entry)."""
        object_ids, verb_ids = _ids(typed.object_names, self.vocab.object_id), _ids(typed.verb_names, self.vocab.verb_id)
        if object_ids is None or verb_ids is None:
            return None
        index = np.flatnonzero(typed.sizes >= 0).tolist()
        return self._columns(index, typed.sizes[index].tolist(), typed.human_boxes, typed.object_boxes, typed.scores,
                             object_ids[typed.object_codes], verb_ids[typed.verb_codes])

    def _vectorised_hois(self, entries: list) -> dict[int, dict] | None:
        """The ``hois`` of the parsed entries checked and converted at once, as metric columns
        by entry index; ``None`` as soon as anything is off (a missing key, a wrong type, a
        non-finite number, an unknown name, a pair that is no class), and then the per-entry
        reader (:meth:`_from_hois`) reports the first bad entry. The checks are type sets over
        flat lists (``set(map(type, ...))``) and numpy, not one Python call per value."""
        chosen = [(i, e["hois"]) for i, e in enumerate(entries) if isinstance(e, dict)
                  and not isinstance(e.get("completion"), str) and isinstance(e.get("hois"), list)]
        index, sizes = [i for i, _ in chosen], [len(h) for _, h in chosen]
        flat = list(chain.from_iterable(h for _, h in chosen))
        if not flat:
            empty = np.zeros(0, dtype=np.int64)
            return self._columns(index, sizes, np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0), empty, empty)
        if set(map(type, flat)) != {dict}:
            return None
        try:
            human, obj_box, objects, verbs, scores = zip(*map(_HOI_FIELDS, flat))
        except KeyError:
            return None
        boxes = human + obj_box
        if set(map(type, boxes)) != {list} or set(map(len, boxes)) != {4}:
            return None
        coords = list(chain.from_iterable(boxes))
        if not set(map(type, coords)) <= {int, float} or not set(map(type, scores)) <= {int, float}:
            return None
        if set(map(type, objects)) != {str} or set(map(type, verbs)) != {str}:
            return None
        try:
            xyxy = np.array(coords, dtype=np.float64).reshape(2, -1, 4)
            score = np.array(scores, dtype=np.float64)
        except OverflowError:
            return None
        if not (np.isfinite(xyxy).all() and np.isfinite(score).all()):  # the typed road checked its own
            return None
        object_ids, verb_ids = _ids(objects, self.vocab.object_id), _ids(verbs, self.vocab.verb_id)
        if object_ids is None or verb_ids is None:
            return None
        return self._columns(index, sizes, xyxy[0], xyxy[1], score, object_ids, verb_ids)

    def _columns(self, index: list[int], sizes: list[int], human: np.ndarray, obj: np.ndarray, score: np.ndarray,
                 obj_ids: np.ndarray, verb_ids: np.ndarray) -> dict[int, dict] | None:
        """The class check over the flat columns (``sizes[k]`` rows for entry ``index[k]``, every
        number finite), then one dict of tensors per entry (views of the flat tensors); ``None``
        when a (verb, object) pair is no class."""
        classes = self._classes[verb_ids, obj_ids]
        if (classes < 0).any():
            return None
        split = [torch.from_numpy(a).split(sizes) for a in (human, obj, obj_ids, classes, score)]
        keys = ("human_boxes", "object_boxes", "object_labels", "hoi", "scores")
        return {i: dict(zip(keys, parts)) for i, *parts in zip(index, *split)}

    # ------------------------------------------------------------------ entries
    def _assemble(self, views: list[tuple], columns: dict[int, dict] | None, samples: dict) -> dict[int, dict]:
        out: dict[int, dict] = {}
        completions: list[tuple[str, Any]] = []
        seen: set[int] = set()
        for i, (file_name, completion, hois) in enumerate(views):
            if file_name is None:
                self._bad(i, "entry_without_file_name", "not an object with a string 'file_name'")
                continue
            sample = samples.get(file_name)
            if sample is None:
                self._bad(i, "unknown_file", f"file_name {file_name!r} is not in the annotations")
                continue
            if sample.image_id in seen:
                self._bad(i, "duplicate_file", f"file_name {file_name!r} appears twice")
                continue
            seen.add(sample.image_id)
            if completion is not None:
                completions.append((completion, sample))
            elif hois is not None:
                if columns is not None:
                    out[sample.image_id] = {"image_id": sample.image_id, **columns[i]}
                else:
                    out[sample.image_id] = self._from_hois(i, hois, sample.image_id)
            else:
                self._bad(i, "entry_without_hois", "needs a 'hois' list or a 'completion' string")
        sizes = self._image_sizes([s for _, s in completions])
        for text, sample in completions:
            out[sample.image_id] = self._from_completion(text, sample, sizes.get(sample.image_id))
        return out

    def _image_sizes(self, samples: list) -> dict[int, tuple[int, int]]:
        """Original sizes of the images whose completions need them: only a text frame other
        than ``absolute_original`` does, and only for records without ``width`` / ``height``.
        Missing or unreadable image files are all named in one error."""
        if self.frame == "absolute_original":
            return {}
        sizes, missing = {}, []
        for s in samples:
            if s.width > 0 and s.height > 0:
                sizes[s.image_id] = (s.width, s.height)
                continue
            try:
                sizes[s.image_id] = image_size(Path(s.image_path), check_images=False)
            except (MissingImage, RecordProblem):
                missing.append(s.image_path)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise BadPredictionError(
                f"{self.path}: --frame {self.frame} needs the original size of every image with a "
                f"'completion' to convert its boxes to original pixels, and the annotation file has no "
                f"width/height for them; {len(missing)} image file(s) missing or unreadable: {shown}"
            )
        return sizes

    def _from_completion(self, text: str, sample: Any, size: tuple[int, int] | None) -> dict:
        width, height = size if size is not None else (sample.width, sample.height)
        if self.frame == "absolute_original" and not (width > 0 and height > 0):
            # size unknown (not read): text units are original pixels whatever the size
            frame = Frame(self.frame, (1, 1), (1, 1))
        else:
            frame = Frame.for_image(self.frame, width, height)
        parsed = parse_answer(text, self.vocab, frame)
        self.answer_problems.update(parsed.problem_counts())
        return to_metric_preds(parsed, self.vocab, sample.image_id)

    def _from_hois(self, i: int, hois: list, image_id: int) -> dict:
        rows = []
        for j, hoi in enumerate(hois):
            row = self._read_hoi(i, j, hoi)
            if row is not None:
                rows.append(row)
        humans, objects, labels, classes, scores = zip(*rows) if rows else ((), (), (), (), ())
        return {"image_id": image_id,
                "human_boxes": torch.tensor(humans, dtype=torch.float64).reshape(-1, 4),
                "object_boxes": torch.tensor(objects, dtype=torch.float64).reshape(-1, 4),
                "object_labels": torch.tensor(labels, dtype=torch.long),
                "hoi": torch.tensor(classes, dtype=torch.long),
                "scores": torch.tensor(scores, dtype=torch.float64)}

    def _read_hoi(self, i: int, j: int, hoi: Any) -> tuple | None:
        where = f"hois[{j}]"
        if not isinstance(hoi, dict):
            return self._bad(i, "bad_hoi", f"{where} is not an object")
        boxes = [_box(hoi.get(k)) for k in ("human_box", "object_box")]
        if boxes[0] is None or boxes[1] is None:
            return self._bad(i, "bad_box", f"{where}: human_box and object_box must be 4 finite numbers")
        score = hoi.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            return self._bad(i, "bad_score", f"{where}: score must be a finite number, found {score!r}")
        obj = self.vocab.object_id(hoi["object"]) if isinstance(hoi.get("object"), str) else None
        if obj is None:
            return self._bad(i, "unknown_object", f"{where}: unknown object {hoi.get('object')!r}")
        verb = self.vocab.verb_id(hoi["verb"]) if isinstance(hoi.get("verb"), str) else None
        if verb is None:
            return self._bad(i, "unknown_verb", f"{where}: unknown verb {hoi.get('verb')!r}")
        cls = self.vocab.interaction_id(verb, obj)
        if cls is None:
            return self._bad(i, "invalid_pair", f"{where}: ({hoi['verb']!r}, {hoi['object']!r}) is not a class")
        return boxes[0], boxes[1], obj, cls, float(score)

    def _bad(self, i: int, code: str, problem: str) -> None:
        message = f"{self.path}: entry {i}: {problem}"
        if self.on_bad == "error":
            raise BadPredictionError(message)
        self.skipped[code] += 1
        if sum(self.skipped.values()) <= MAX_WARNINGS:
            logger.warning("skipped: %s", message)
        return None


def _view(entry: Any) -> tuple[str | None, str | None, list | None]:
    """``(file_name, completion, hois)`` of a parsed entry, ``None`` for each that is missing or
    of the wrong type."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
        return None, None, None
    completion, hois = entry.get("completion"), entry.get("hois")
    return entry["file_name"], completion if isinstance(completion, str) else None, \
        hois if isinstance(hois, list) else None


def _ids(names: Sequence[str], lookup: Any) -> np.ndarray | None:
    """``(N,)`` ids of ``names`` by ``lookup`` (one call per distinct name), or ``None`` if one
    is unknown."""
    memo = {name: lookup(name) for name in set(names)}
    if any(v is None for v in memo.values()):
        return None
    return np.fromiter(map(memo.__getitem__, names), dtype=np.int64, count=len(names))


def _box(value: Any) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]
