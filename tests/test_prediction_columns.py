"""The typed road's columns (hoi_r1.prediction_columns): decode, the helper's stream, the helper process."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from hoi_r1.prediction_columns import ColumnsRead, decode_columns, read_written_columns, write_columns

HOI = {"human_box": [0, 0, 9.5, 9], "object_box": [5, 5, 20, 20], "object": "bicycle", "verb": "ride", "score": 0.25}
ENTRIES = [
    {"file_name": "a.jpg", "hois": [HOI, HOI | {"verb": "hold", "object": "cup", "score": 1}], "extra": [1, None]},
    {"file_name": "b.jpg", "completion": "<answer>[]</answer>", "hois": [HOI]},  # the completion wins
    {"file_name": "c.jpg"},
    {"file_name": "d.jpg", "hois": []},
    {"file_name": "e.jpg", "hois": [HOI | {"human_box": [1, 2, 3, 4]}]},
]


@pytest.fixture()
def path(tmp_path):
    p = tmp_path / "preds.json"
    p.write_text(json.dumps(ENTRIES))
    return p


def test_decode_gives_one_row_per_scored_detection(path):
    c = decode_columns(path.read_bytes())
    assert c.file_names == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert c.completions == [None, "<answer>[]</answer>", None, None, None]
    assert c.sizes.tolist() == [2, -1, -1, 0, 1]
    assert c.human_boxes.tolist() == [[0, 0, 9.5, 9], [0, 0, 9.5, 9], [1, 2, 3, 4]]
    assert c.scores.tolist() == [0.25, 1.0, 0.25] and c.scores.dtype == np.float64
    assert [c.object_names[k] for k in c.object_codes] == ["bicycle", "cup", "bicycle"]
    assert [c.verb_names[k] for k in c.verb_codes] == ["ride", "hold", "ride"]


@pytest.mark.parametrize("change", [{"score": True}, {"score": "1"}, {"human_box": [0, 0, 1]}, {"verb": None}])
def test_decode_refuses_what_is_not_a_well_formed_detection(path, change):
    path.write_text(json.dumps([{"file_name": "a.jpg", "hois": [HOI | change]}]))
    assert decode_columns(path.read_bytes()) is None
    path.write_text(json.dumps([{"file_name": "a.jpg", "hois": [HOI]}]).replace("0.25", "1e400"))
    assert decode_columns(path.read_bytes()) is None  # not finite


def test_the_stream_round_trips_columns_and_refusals(path):
    c = decode_columns(path.read_bytes())
    for value in (c, None):
        stream = io.BytesIO()
        write_columns(value, stream)
        stream.seek(0)
        assert read_written_columns(stream) == value
    stream = io.BytesIO()
    write_columns(c, stream)
    with pytest.raises(EOFError, match="stream ended"):
        read_written_columns(io.BytesIO(stream.getvalue()[:-1]))


def test_the_helper_process_gives_what_this_process_decodes(path):
    assert ColumnsRead.start(path).process is None  # a small file: decoded here
    read = ColumnsRead.start(path, min_bytes=0)
    assert read.process is not None
    got = read.result()
    assert got == decode_columns(path.read_bytes())
    assert got.human_boxes.flags.writeable and read.process.returncode == 0


@pytest.mark.parametrize("script", ["import sys; sys.exit(3)",
                                    "import sys; sys.stdout.buffer.write(b'\\x10' + bytes(7) + b'{\"refu')"])
def test_a_failing_helper_is_logged_and_the_file_read_here(path, script, caplog):
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    with caplog.at_level(logging.WARNING, logger="hoi_r1.prediction_columns"):
        got = ColumnsRead(path, process).result()
    assert got == decode_columns(path.read_bytes())
    assert "helper process reading" in caplog.text and "reading it here" in caplog.text


def test_no_helper_starts_for_a_missing_file(tmp_path):
    read = ColumnsRead.start(tmp_path / "absent.json", min_bytes=0)
    assert read.process is None
    with pytest.raises(FileNotFoundError):
        read.result()


def test_the_eval_command_starts_its_helper_before_torch_is_imported():
    # what lets the helper's decoding overlap the import of torch in hoi-r1 eval
    code = "import sys, hoi_r1.eval_command; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
