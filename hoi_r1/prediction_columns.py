"""The scored detections of a predictions file as flat numpy columns, read here or in a helper process.

This is the typed road of :mod:`hoi_r1.prediction_reader`: ``msgspec`` decodes the bytes
straight into typed records (:class:`HoiRecord`, :class:`EntryRecord`), checking every type
and box length in C as it parses; the numbers then go into numpy with ``fromiter``, and the
object and verb names become codes into the list of distinct names. It imports neither torch
nor the metric, so it can run in a process of its own.

:class:`ColumnsRead` does that: ``hoi-r1 eval`` starts ``python -m hoi_r1.prediction_columns
FILE`` before it imports torch, and the two processes share the work on two cores (the
helper decodes the predictions while the command imports torch and reads the annotations).
The helper writes the columns to its standard output as one JSON header (lengths, names,
file names, completions) followed by the raw bytes of each array; nothing is pickled. If the
helper cannot start or fails, the file is read in this process, with the same result.

>>> import json, tempfile
>>> path = Path(tempfile.mkdtemp()) / "preds.json"
>>> hoi = {"human_box": [0, 0, 9, 9], "object_box": [5, 5, 20, 20], "object": "bicycle", "verb": "ride", "score": 1}
>>> _ = path.write_text(json.dumps([{"file_name": "a.jpg", "hois": [hoi, hoi | {"verb": "hold"}]},
...                                 {"file_name": "b.jpg", "completion": "<answer>[]</answer>"}]))
>>> columns = decode_columns(path.read_bytes())
>>> columns.sizes.tolist(), columns.verb_codes.tolist(), columns.verb_names, columns.completions
([2, -1], [0, 1], ['ride', 'hold'], [None, '<answer>[]</answer>'])
>>> columns == ColumnsRead.start(path, min_bytes=0).result()  # in a helper process
True
>>> _ = path.write_text(json.dumps([{"file_name": "a.jpg", "hois": [hoi | {"score": "high"}]}]))
>>> decode_columns(path.read_bytes()) is None  # refused: the reader's other road names the entry
True
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, fields
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import IO, Iterable

import msgspec
import numpy as np

logger = logging.getLogger(__name__)


class HoiRecord(msgspec.Struct, gc=False):
    """One scored detection as the typed road decodes it (ints are read as floats; a bool, a
    string, a missing key or a box of other than 4 numbers is refused)."""

    human_box: tuple[float, float, float, float]
    object_box: tuple[float, float, float, float]
    object: str
    verb: str
    score: float


class EntryRecord(msgspec.Struct, gc=False):
    """One predictions-file entry as the typed road decodes it."""

    file_name: str
    hois: list[HoiRecord] | None = None
    completion: str | None = None


_DECODER = msgspec.json.Decoder(list[EntryRecord])
_ARRAYS = {"sizes": np.int64, "human_boxes": np.float64, "object_boxes": np.float64, "scores": np.float64,
           "object_codes": np.int32, "verb_codes": np.int32}
"""The array fields of :class:`PredictionColumns` and their dtypes, in the helper's output order."""
HELPER_MIN_BYTES = 8 * 2**20
"""Smaller files are decoded in this process: starting the helper costs about 0.1 s, about what
decoding 8 MiB takes (docs/benchmarks.md)."""


@dataclass
class PredictionColumns:
    """A predictions file read by the typed road: one row per entry, one row per scored detection.

    Args:
        file_names: ``file_name`` of each entry.
        completions: ``completion`` of each entry (``None`` where it has none).
        sizes: ``(E,)`` number of detections of each entry read as scored ``hois``; ``-1`` for an
            entry with a ``completion`` (which wins over ``hois``) or without ``hois``.
        human_boxes: ``(N, 4)`` float64, the entries' detections one after the other.
        object_boxes: ``(N, 4)`` float64.
        scores: ``(N,)`` float64.
        object_codes: ``(N,)`` int32 index of each detection's object name in ``object_names``.
        object_names: distinct object names, in order of first appearance.
        verb_codes: ``(N,)`` int32 index into ``verb_names``.
        verb_names: distinct verb names.
    """

    file_names: list[str]
    completions: list[str | None]
    sizes: np.ndarray
    human_boxes: np.ndarray
    object_boxes: np.ndarray
    scores: np.ndarray
    object_codes: np.ndarray
    object_names: list[str]
    verb_codes: np.ndarray
    verb_names: list[str]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PredictionColumns):
            return NotImplemented
        return all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
                   for a, b in ((getattr(self, f.name), getattr(other, f.name)) for f in fields(self)))


def decode_columns(data: bytes) -> PredictionColumns | None:
    """The columns of a predictions file's bytes, or ``None`` if the file is anything but a JSON
    list of well-formed entries with finite numbers (the reader's generic road then reports the
    first bad entry)."""
    try:
        entries = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    scored = [e.hois if e.completion is None and e.hois is not None else None for e in entries]
    flat = list(chain.from_iterable(h for h in scored if h is not None))
    n = len(flat)
    human = np.fromiter(chain.from_iterable(map(attrgetter("human_box"), flat)), np.float64, count=4 * n)
    obj = np.fromiter(chain.from_iterable(map(attrgetter("object_box"), flat)), np.float64, count=4 * n)
    score = np.fromiter(map(attrgetter("score"), flat), np.float64, count=n)
    if not (np.isfinite(human).all() and np.isfinite(obj).all() and np.isfinite(score).all()):
        return None
    object_codes, object_names = name_codes(map(attrgetter("object"), flat))
    verb_codes, verb_names = name_codes(map(attrgetter("verb"), flat))
    sizes = np.fromiter((-1 if h is None else len(h) for h in scored), np.int64, count=len(scored))
    return PredictionColumns([e.file_name for e in entries], [e.completion for e in entries], sizes,
                             human.reshape(-1, 4), obj.reshape(-1, 4), score, object_codes, object_names,
                             verb_codes, verb_names)


def name_codes(names: Iterable[str]) -> tuple[np.ndarray, list[str]]:
    """``(codes, distinct)``: ``names[i] == distinct[codes[i]]``, distinct names in order of first
    appearance (a dictionary lookup per name; Python code runs only for a new name).

    >>> codes, distinct = name_codes(["ride", "hold", "ride"])
    >>> codes.tolist(), distinct
    ([0, 1, 0], ['ride', 'hold'])
    """
    memo = _Codes()
    codes = np.fromiter(map(memo.__getitem__, names), np.int32)
    return codes, list(memo)


class _Codes(dict):
    """Name -> code, the next code for a name not seen before."""

    def __missing__(self, name: str) -> int:
        code = self[name] = len(self)
        return code


def write_columns(columns: PredictionColumns | None, stream: IO[bytes]) -> None:
    """The helper's output: an 8-byte little-endian header length, the JSON header, then the
    raw bytes of each array of :data:`_ARRAYS` (``{"refused": true}`` and nothing else for
    ``None``)."""
    if columns is None:
        header = msgspec.json.encode({"refused": True})
    else:
        header = msgspec.json.encode({
            "refused": False, "file_names": columns.file_names, "completions": columns.completions,
            "object_names": columns.object_names, "verb_names": columns.verb_names,
            "shapes": {name: list(getattr(columns, name).shape) for name in _ARRAYS}})
    stream.write(len(header).to_bytes(8, "little"))
    stream.write(header)
    if columns is not None:
        for name, dtype in _ARRAYS.items():
            stream.write(memoryview(np.ascontiguousarray(getattr(columns, name), dtype=dtype)).cast("B"))
    stream.flush()


def read_written_columns(stream: IO[bytes]) -> PredictionColumns | None:
    """What :func:`write_columns` wrote (writable arrays, read straight into their memory).

    Raises:
        EOFError: the stream ends before the last array.
    """
    length = int.from_bytes(_read_exactly(stream, 8), "little")
    header = msgspec.json.decode(_read_exactly(stream, length))
    if header["refused"]:
        return None
    arrays = {}
    for name, dtype in _ARRAYS.items():
        array = np.empty(header["shapes"][name], dtype=dtype)
        _read_exactly(stream, array.nbytes, into=memoryview(array).cast("B"))
        arrays[name] = array
    return PredictionColumns(header["file_names"], header["completions"], object_names=header["object_names"],
                             verb_names=header["verb_names"], **arrays)


def _read_exactly(stream: IO[bytes], size: int, into: memoryview | None = None) -> bytes | memoryview:
    buffer = memoryview(bytearray(size)) if into is None else into
    done = 0
    while done < size:
        got = stream.readinto(buffer[done:])
        if not got:
            raise EOFError(f"the stream ended after {done} of {size} bytes")
        done += got
    return bytes(buffer) if into is None else buffer


class ColumnsRead:
    """:func:`decode_columns` of one file, running in a helper process from :meth:`start` on.

    Start it before the heavy imports: the helper is ``python -m hoi_r1.prediction_columns
    FILE`` (a fresh interpreter, so it is safe whatever threads this process has, on every
    platform). :meth:`result` waits for it; a helper that cannot start or fails is logged and
    the file is decoded in this process instead.

    Args:
        path: the predictions file.
        process: the running helper (``None``: decode in :meth:`result`).
    """

    def __init__(self, path: Path, process: subprocess.Popen | None) -> None:
        self.path, self.process = Path(path), process

    @classmethod
    def start(cls, path: str | Path, min_bytes: int | None = None) -> ColumnsRead:
        """Start the helper on ``path``; decode in this process instead when the file is smaller
        than ``min_bytes`` (default :data:`HELPER_MIN_BYTES`), when it is no file (the reader then
        says what is wrong with it) or when the helper cannot start."""
        min_bytes = HELPER_MIN_BYTES if min_bytes is None else min_bytes
        if not Path(path).is_file() or Path(path).stat().st_size < min_bytes:
            return cls(Path(path), None)
        try:
            process = subprocess.Popen([sys.executable, "-m", "hoi_r1.prediction_columns", str(path)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        except OSError as e:
            logger.warning("could not start the helper process that reads %s (%s): reading it here", path, e)
            process = None
        return cls(Path(path), process)

    def result(self) -> PredictionColumns | None:
        """The file's columns, or ``None`` where the typed road refuses it.

        Raises:
            OSError: the file cannot be read (only when it is read in this process).
        """
        if self.process is not None:
            try:
                columns = read_written_columns(self.process.stdout)
                self.process.stdout.close()
                if self.process.wait() == 0:
                    return columns
            except (EOFError, ValueError, KeyError, msgspec.DecodeError):
                self.process.kill()
            logger.warning("the helper process reading %s failed (exit code %s): reading it here",
                           self.path, self.process.wait())
            self.process = None
        return decode_columns(self.path.read_bytes())


def main(argv: list[str] | None = None) -> int:
    """The helper: decode the file named by the one argument, write its columns to stdout.

    The cyclic garbage collector stays off (the decoded records are millions of objects and no
    cycles), and the process ends without freeing them: its reader is waiting for the exit."""
    (path,) = sys.argv[1:] if argv is None else argv
    gc.disable()
    try:
        data = Path(path).read_bytes()
    except OSError as e:  # the reader in the parent reads it again and reports it
        print(f"hoi_r1.prediction_columns: {e}", file=sys.stderr)
        return 1
    write_columns(decode_columns(data), sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
